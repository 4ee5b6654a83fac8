"""Threshold-free ranking numbers: AUC per group from per-sample weights, and MEDFAIR's threshold at a specificity.

AUC is computed as the Mann-Whitney statistic, the probability that a random
positive scores above a random negative (ties count one half), which equals
scikit-learn's ``roc_auc_score``. With per-sample weights w (1 for the full
data, the number of times a sample was drawn in a bootstrap resample) it is

    AUC = sum_{i pos, j neg} w_i w_j ([s_i > s_j] + [s_i = s_j] / 2) / (W_pos W_neg),

computed for a whole chunk of resamples at once from the scores sorted once
(per distinct score: the positive and negative weight, then a cumulative sum
of the negative weight below it). No sklearn call per resample.

The fixed-specificity threshold follows MEDFAIR's ``eqodd_at_specificity``:
the ROC curve of the pooled data (``sklearn.metrics.roc_curve``), the
threshold linearly interpolated at 1 - FPR = specificity, predictions
``score > threshold``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["AucPlan", "auc_plan", "auc_from_weights", "RocPlan", "roc_plan", "roc_curve_weighted",
           "threshold_at_specificity"]


@dataclass(frozen=True)
class AucPlan:
    """Samples of one group sorted by one class's score, cut into runs of equal score."""

    idx: np.ndarray      # sample positions, ascending score
    starts: np.ndarray   # first position (in idx) of each distinct score
    pos: np.ndarray      # float 1/0: sample is of the class (positive)


def auc_plan(scores: np.ndarray, positive: np.ndarray, members: np.ndarray) -> AucPlan | None:
    """The plan for one group's `members` (None when the group is empty)."""
    if len(members) == 0:
        return None
    s = scores[members]
    order = np.argsort(s, kind="stable")
    s_sorted = s[order]
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    return AucPlan(idx=members[order], starts=starts, pos=positive[members[order]].astype(np.float64))


def auc_from_weights(w: np.ndarray, plan: AucPlan) -> np.ndarray:
    """AUC for each row of weights `w` (k, n); NaN where the group has no positive or no negative weight."""
    wg = w[:, plan.idx]
    p = np.add.reduceat(wg * plan.pos, plan.starts, axis=1)
    q = np.add.reduceat(wg * (1.0 - plan.pos), plan.starts, axis=1)
    below = np.cumsum(q, axis=1) - q
    num = (p * (below + 0.5 * q)).sum(axis=1)
    den = p.sum(axis=1) * q.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


@dataclass(frozen=True)
class RocPlan:
    """Scores of one class sorted once (descending), so each resample's ROC curve needs no sort."""

    scores: np.ndarray   # descending
    pos: np.ndarray      # float 1/0 in the same order
    order: np.ndarray


def roc_plan(positive: np.ndarray, scores: np.ndarray) -> RocPlan:
    order = np.argsort(-scores, kind="mergesort")
    return RocPlan(scores=scores[order].astype(np.float64), pos=positive[order].astype(np.float64), order=order)


def roc_curve_weighted(plan: RocPlan, weights: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) as ``sklearn.metrics.roc_curve(drop_intermediate=True)`` gives them.

    A point is kept when its incoming step differs from its outgoing one
    (sklearn's rule: a non-zero second difference of the TP or FP counts);
    the point (0, 0) comes first with an infinite threshold. `weights` are in
    the original sample order; samples of weight 0 are absent, as in the
    resample they stand for.
    """
    s, pos = plan.scores, plan.pos
    w = np.ones(len(s)) if weights is None else weights[plan.order]
    if weights is not None:
        nz = w > 0
        s, pos, w = s[nz], pos[nz], w[nz]
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), len(s) - 1]
    tps = np.cumsum(w * pos)[last]
    fps = np.cumsum(w * (1.0 - pos))[last]
    thr = s[last]
    if len(tps) > 2:
        keep = np.r_[True, (np.diff(fps, 2) != 0) | (np.diff(tps, 2) != 0), True]
        tps, fps, thr = tps[keep], fps[keep], thr[keep]
    tps, fps, thr = np.r_[0.0, tps], np.r_[0.0, fps], np.r_[np.inf, thr]
    with np.errstate(invalid="ignore", divide="ignore"):
        return fps / fps[-1], tps / tps[-1], thr


def threshold_at_specificity(plan: RocPlan, specificity: float, weights: np.ndarray | None = None) -> float:
    """MEDFAIR's threshold: ROC thresholds interpolated at 1 - FPR = `specificity` (NaN with one class only).

    The infinite first threshold (the point (0, 0)) is replaced by 1, a
    threshold no probability exceeds, so the interpolation stays finite.
    """
    fpr, tpr, thr = roc_curve_weighted(plan, weights)
    if not (np.isfinite(fpr[-1]) and np.isfinite(tpr[-1])):
        return float("nan")
    spec = 1.0 - fpr
    # spec falls along the curve; np.interp needs it increasing.
    return float(np.interp(specificity, spec[::-1], np.minimum(thr, 1.0)[::-1]))
