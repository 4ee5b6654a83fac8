"""Is a model's output something a fairness audit can be computed on?

Two ways a broken model looks perfectly fair (Eodd 0.000 [0.00, 0.00]):

* non-finite outputs: one NaN or inf weight turns every logit into NaN, the
  arg-max is then class 0 for every image, and every gap is zero. That is an
  error, not a result: `check_finite` stops the audit and names the
  parameter (or, if every parameter is finite, the first layer whose output
  is not) so the user knows the checkpoint is broken;
* a degenerate classifier: predicting one class for everything gives both
  groups the same rates, so every gap is zero too. The numbers are right but
  mean nothing about fairness: `degenerate_warnings` words a warning that
  the audit puts at the top of its terminal output and report.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .predict import Predictions


class NonFiniteOutputError(ValueError):
    """A model produced NaN or infinite outputs; the message names where they come from."""


def non_finite_tensors(model: nn.Module) -> list[str]:
    """Names of the parameters and buffers holding NaN or inf values, with how many."""
    out = []
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if t.is_floating_point() or t.is_complex():
            bad = int((~torch.isfinite(t.detach())).sum())
            if bad:
                out.append(f"{name} ({bad} of {t.numel()} values)")
    return out


def first_non_finite_layer(model: nn.Module, images: torch.Tensor) -> str | None:
    """The first module (in execution order) whose output holds NaN or inf on `images`, if any."""
    found: list[str] = []

    def hook(name: str):
        def fn(_mod: nn.Module, _inp: Any, out: Any) -> None:
            if not found and isinstance(out, torch.Tensor) and out.is_floating_point() \
                    and not bool(torch.isfinite(out).all()):
                found.append(name)
        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if n and not list(m.children())]
    try:
        with torch.no_grad():
            model.eval()(images)
    finally:
        for h in handles:
            h.remove()
    return found[0] if found else None


def check_finite(model: nn.Module, pred: Predictions, dataset: Any, source: str = "the model") -> None:
    """Raise `NonFiniteOutputError` if any predicted probability is NaN or inf.

    The message names the non-finite parameters of `model`, else the first
    layer whose output is non-finite on the first offending image.
    """
    probs = np.asarray(pred.probs, dtype=np.float64)
    bad_rows = ~np.isfinite(probs).all(axis=1) if probs.ndim == 2 else ~np.isfinite(probs)
    n_bad = int(bad_rows.sum())
    if n_bad == 0:
        return
    where = non_finite_tensors(model)
    if where:
        shown = ", ".join(where[:3]) + (f" and {len(where) - 3} more" if len(where) > 3 else "")
        cause = f"its parameter{'s' if len(where) > 1 else ''} {shown} {'are' if len(where) > 1 else 'is'} not finite"
    else:
        cause = "every parameter is finite, so an activation overflows"
        try:
            item = int(np.asarray(pred.index)[np.flatnonzero(bad_rows)[0]])
            x = dataset[item][0].unsqueeze(0).to(next(model.parameters()).device)
            layer = first_non_finite_layer(model, x)
            if layer:
                cause += f" (first non-finite output: layer {layer})"
        except Exception:  # noqa: BLE001 - locating is best effort; the error below stands anyway
            pass
    raise NonFiniteOutputError(
        f"{source} outputs NaN/inf for {n_bad} of {len(bad_rows)} images: {cause}. Its predictions (all "
        "class 0) would show zero fairness gaps that mean nothing; the checkpoint is broken (a diverged "
        "training or a damaged file): retrain it, or audit an earlier checkpoint.")


def degenerate_warnings(y_pred: np.ndarray, classes: Sequence[str], y_true: np.ndarray | None = None) -> list[str]:
    """Warnings for a classifier that predicts one class for everything, or never predicts some class.

    Only classes present in the data (`y_true`) count as never predicted.
    """
    y_pred = np.asarray(y_pred)
    if y_pred.size == 0:
        return []
    names = list(classes)
    label = lambda c: names[c] if 0 <= c < len(names) else str(c)  # noqa: E731
    predicted = np.unique(y_pred)
    if predicted.size == 1:
        return [f"the model predicts one class ({label(int(predicted[0]))}) for all {y_pred.size} images: its "
                "fairness gaps are zero because it treats everyone alike by ignoring the image, which is not "
                "fairness. Check the checkpoint and its training before reading this audit."]
    present = np.unique(np.asarray(y_true)) if y_true is not None else np.arange(len(names))
    never = [int(c) for c in present if c not in set(predicted.tolist())]
    if not never:
        return []
    shown = ", ".join(label(c) for c in never[:10]) + (f" and {len(never) - 10} more" if len(never) > 10 else "")
    return [f"the model never predicts {len(never)} of the {present.size} classes in this split ({shown}): "
            "gaps on those classes only reflect that; check its training (class balance, epochs) before "
            "reading them as fairness."]
