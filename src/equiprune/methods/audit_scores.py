"""The audit's threshold-free and calibration section: per-group AUC, ECE, NLL, FNR/FPR with intervals.

`audit_model` calls :func:`score_section` with the predictions it already has
(probabilities included), so nothing is predicted again. The section holds,
for the two paper groups and, with ``--groups COL``, for that column's groups:
the values of :func:`equiprune.metrics.group_scores`, their stratified
bootstrap intervals, the paired differences against the baseline (same
resamples), the largest FNR/FPR gap by name, reliability-diagram data per
group and notes on undefined numbers (docs/GROUP_SCORES.md).
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Any, Sequence

import numpy as np

from ..engine import Predictions
from ..metrics import MetricsError, ScoreSettings, group_scores
from ..metrics.group_scores import group_score_samples, intervals_from_samples, paired_from_samples

__all__ = ["SECTION_KEY", "score_section", "score_block"]

SECTION_KEY = "scores"


def _iv(v: Any) -> dict[str, float]:
    return {"estimate": v.estimate, "lo": v.lo, "hi": v.hi, "std": v.std}


def score_block(pred: Predictions, groups: np.ndarray, names: Sequence[str], classes: Sequence[str],
                settings: ScoreSettings, n_boot: int, seed: int, alpha: float,
                baseline: Predictions | None = None) -> dict[str, Any]:
    """One grouping's numbers (values, intervals, paired vs baseline, largest gap, reliability, notes)."""
    res = group_scores(pred.y_true, pred.probs, groups, y_pred=pred.y_pred, group_names=list(names),
                       class_names=list(classes), settings=settings)
    models = [(pred.probs, pred.y_pred)] + ([(baseline.probs, baseline.y_pred)] if baseline is not None else [])
    full, samples = group_score_samples(pred.y_true, models, groups, n_boot=n_boot, seed=seed, settings=settings)
    block = res.to_dict()
    block["intervals"] = {k: _iv(v) for k, v in intervals_from_samples(full[0], samples[0], alpha).items()}
    if baseline is not None:
        base = group_scores(baseline.y_true, baseline.probs, groups, y_pred=baseline.y_pred,
                            group_names=list(names), class_names=list(classes), settings=settings)
        block["baseline"] = {"values": base.values, "largest_gap": base.largest_gap,
                             "intervals": {k: _iv(v) for k, v in
                                           intervals_from_samples(full[1], samples[1], alpha).items()}}
        # Paired difference: this model minus the baseline, as the paper metrics' `paired`.
        block["paired"] = {k: asdict(v) for k, v in paired_from_samples(full[1], samples[1], full[0], samples[0],
                                                                        alpha).items()}
    return block


def score_section(pred: Predictions, settings: ScoreSettings, n_boot: int, seed: int, alpha: float,
                  group_names: Sequence[str], classes: Sequence[str], baseline: Predictions | None = None,
                  by_column: tuple[str, np.ndarray, Sequence[str]] | None = None) -> dict[str, Any] | None:
    """The ``scores`` section of an audit, or None with the reason in ``notes`` of the caller.

    `by_column`: (column spec, group code per prediction, name per code) of a
    multi-group audit; scored like the two paper groups.
    """
    probs = np.asarray(pred.probs)
    if probs.ndim != 2 or probs.shape[1] < 2 or len(probs) != len(pred):
        raise MetricsError("these predictions carry no class probabilities, so AUC and calibration cannot be "
                           "computed; predict again with `equiprune audit` (it stores prob_0..prob_{C-1}).")
    out: dict[str, Any] = {"settings": asdict(settings)}
    out["two_groups"] = score_block(pred, pred.groups, group_names, classes, settings, n_boot, seed, alpha, baseline)
    if by_column is not None:
        column, codes, names = by_column
        out["by_column"] = {"column": column, **score_block(pred, codes, names, classes, settings, n_boot, seed,
                                                            alpha, baseline)}
    return out
