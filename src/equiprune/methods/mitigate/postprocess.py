"""Post-processing: per-group, per-class decision offsets fitted on the validation split only.

Source: Hardt, Price & Srebro, "Equality of Opportunity in Supervised
Learning", NeurIPS 2016, Sec. 4 (a group-dependent threshold on the score
that equalises the true- and false-positive rates). Here, for any number of
classes: an offset per group and class is added to the model's log-scores,
ŷ = argmax_c (log p_c(x) + b[g, c]), and the offsets b are chosen to
minimise the validation Eodd subject to validation macro-F1 ≥ the model's
own minus `tolerance`. Two classes: b[g] = (0, d_g), and every pair of
thresholds on a grid of the groups' score quantiles is tried (Hardt et
al.'s deterministic thresholds; their randomised mixing of two thresholds
is not used). More classes: coordinate descent over b[g, c] on a grid of
steps, accepting only moves that keep F1 within the tolerance and lower
Eodd. Zero offsets (the model itself) are always feasible, so the fitted
offsets never raise the validation Eodd; the test split is never read.

The offsets live in the model (`models.GroupOffsetLinear` replaces the last
linear layer, buffer `offsets`), so model.pt carries them and every verb
that predicts (`engine.predict` feeds the groups) applies them; they are
also written to the `mitigation` section of metrics.json.

Group at inference: NEEDED (the offset depends on the item's group).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ...engine import TrainConfig, predict
from ...metrics import group_fairness
from ...models import GroupOffsetLinear, final_linear_name, replace_module
from .base import MethodSpec, Mitigation, MitigationConfig, num_groups_of


def _no_training() -> TrainConfig:
    return TrainConfig(epochs=0, optimizer="adam", lr=1e-4, schedule="cosine", select_on="last")


@dataclass
class PostprocessConfig(MitigationConfig):
    finetune: TrainConfig = field(default_factory=_no_training)  # `mitigate` never trains; `train --method` does
    tolerance: float = 0.01      # allowed fall of validation macro-F1
    grid: int = 41               # candidate thresholds per group (2 classes) / steps per offset (more classes)
    rounds: int = 3              # coordinate-descent sweeps (more than 2 classes)

    HELP = {"tolerance": "largest allowed fall of validation macro-F1 below the model's (default 0.01)",
            "grid": "candidate thresholds per group, or offset steps per class (default 41)",
            "rounds": "coordinate-descent sweeps over groups x classes, more than 2 classes (default 3)"}

    def validate(self) -> None:
        super().validate()
        self.check("tolerance", self.tolerance, self.tolerance >= 0, ">= 0")
        self.check("grid", self.grid, self.grid >= 3, ">= 3")
        self.check("rounds", self.rounds, self.rounds >= 1, ">= 1")


def _scores(y: np.ndarray, pred: np.ndarray, g: np.ndarray) -> tuple[float, float]:
    r = group_fairness(y, pred, g)
    return float(r.eodd), float(r.f1)


def _predict(logp: np.ndarray, g: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    return (logp + offsets[g]).argmax(1)


def fit_offsets(logp: np.ndarray, y: np.ndarray, g: np.ndarray, num_groups: int, tolerance: float = 0.01,
                grid: int = 41, rounds: int = 3) -> tuple[np.ndarray, dict[str, float]]:
    """Offsets b (groups x classes) minimising Eodd of argmax(logp + b[g]) subject to F1 ≥ F1(b=0) - tolerance.

    Reads only what it is given (validation log-scores, labels, groups).
    Returns the offsets and the validation Eodd/F1 before and after.
    """
    n, c = logp.shape
    offsets = np.zeros((num_groups, c))
    eodd0, f10 = _scores(y, _predict(logp, g, offsets), g)
    floor = f10 - tolerance
    best = (eodd0, -f10)
    if c == 2:
        margin = logp[:, 1] - logp[:, 0]
        qs = np.linspace(0, 1, grid)
        cands = [np.unique(np.concatenate([[0.0], -np.quantile(margin[g == k], qs) + 1e-9]))
                 if np.any(g == k) else np.zeros(1) for k in range(num_groups)]
        if num_groups != 2:
            raise ValueError("post-processing compares two groups")
        for d0 in cands[0]:
            for d1 in cands[1]:
                pred = (margin + np.where(g == 0, d0, d1) > 0).astype(np.int64)
                eodd, f1 = _scores(y, pred, g)
                if f1 >= floor and (eodd, -f1) < best:
                    best = (eodd, -f1)
                    offsets = np.array([[0.0, d0], [0.0, d1]])
    else:
        steps = np.linspace(-2.0, 2.0, grid)
        for _ in range(rounds):
            moved = False
            for k in range(num_groups):
                for cls in range(c):
                    base = offsets[k, cls]
                    for s in steps:
                        trial = offsets.copy()
                        trial[k, cls] = base + s
                        eodd, f1 = _scores(y, _predict(logp, g, trial), g)
                        if f1 >= floor and (eodd, -f1) < best:
                            best, offsets, moved = (eodd, -f1), trial, True
            if not moved:
                break
    eodd1, f11 = _scores(y, _predict(logp, g, offsets), g)
    return offsets, {"val_eodd_before": eodd0, "val_f1_before": f10, "val_eodd_after": eodd1, "val_f1_after": f11}


class Postprocess(Mitigation):
    def __init__(self, layer: GroupOffsetLinear, cfg: PostprocessConfig) -> None:
        self.layer, self.cfg = layer, cfg

    def finish(self, model: nn.Module, splits: Any) -> dict[str, Any]:
        with torch.no_grad():
            self.layer.offsets.zero_()
        val = predict(model, splits.val)
        logp = np.log(np.clip(val.probs, 1e-12, None))
        offsets, info = fit_offsets(logp, val.y_true, val.groups, self.layer.offsets.shape[0],
                                    self.cfg.tolerance, self.cfg.grid, self.cfg.rounds)
        with torch.no_grad():
            self.layer.offsets.copy_(torch.as_tensor(offsets, dtype=self.layer.offsets.dtype))
        return {"offsets": offsets.tolist(), "fitted_on": "val", **info}


def build(model: nn.Module, splits: Any, cfg: PostprocessConfig) -> Mitigation:
    name = final_linear_name(model)
    layer = model.get_submodule(name)
    if not isinstance(layer, GroupOffsetLinear):
        layer = GroupOffsetLinear.from_linear(layer, num_groups_of(splits))
        replace_module(model, name, layer)
    return Postprocess(layer, cfg)


SPECS = (MethodSpec(name="postprocess", label="Post-processing (group offsets)", config=PostprocessConfig,
                    build=build, group_at_inference=True, trains=False,
                    summary="per-group decision offsets fitted on validation (lower Eodd, F1 within --tolerance)",
                    source="Hardt et al., NeurIPS 2016, Sec. 4 (group thresholds)"),)
