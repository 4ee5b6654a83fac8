"""Calibration numbers from stored probabilities: ECE bins, reliability curves, NLL/BCE per sample.

Why these definitions (docs/GROUP_SCORES.md has the full text):

* The *confidence* of a prediction is, for a binary task, the probability of
  the positive class and its *target* the true label (MEDFAIR's
  ``expected_calibration_error(pred_probs, labels)`` on the positive-class
  probability); for more classes it is the top-label confidence
  ``p[i, y_pred[i]]`` and the target is whether that prediction is right
  (Guo et al., 2017).
* ECE = sum over bins of (bin weight) x |mean confidence - mean target| =
  sum_b |sum_{i in b} (conf_i - target_i)| / n. Written as sums, the same
  formula serves one evaluation and any number of bootstrap resamples (a
  resample is a vector of per-sample counts).
* Equal-width bins split [0, 1] into ``n_bins`` intervals (m-1)/M < c <= m/M
  (confidence 0 goes to the first bin). MEDFAIR's ``pd.cut`` spans the
  *observed* range of the probabilities instead of [0, 1]; equiprune keeps the
  textbook [0, 1] bins so that ECE values of two models share bin edges.
* Adaptive (equal-mass) bins take their edges from the quantiles of the
  confidences of each group on the full data (MEDFAIR's ``quantile_bins``);
  the bootstrap keeps those edges for every resample, so the resamples
  estimate the same statistic.
* NLL is the mean of -log p[i, y_i]; for a binary task this is MEDFAIR's
  ``BCELoss`` on the positive-class probability. The log is clamped at -100
  as torch's BCELoss does, so a confident mistake costs 100, not inf.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ECE_BINNING", "confidence_and_target", "bin_ids", "sample_nll", "ReliabilityCurve",
           "reliability_curve"]

ECE_BINNING: tuple[str, ...] = ("equal", "adaptive")
_LOG_FLOOR = -100.0


def confidence_and_target(probs: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, target) per sample: positive-class probability and label when C = 2, else top-label."""
    if probs.shape[1] == 2:
        return probs[:, 1].astype(np.float64), (y_true == 1).astype(np.float64)
    conf = probs[np.arange(len(y_pred)), y_pred].astype(np.float64)
    return conf, (y_pred == y_true).astype(np.float64)


def bin_ids(conf: np.ndarray, gi: np.ndarray, n_groups: int, n_bins: int, binning: str) -> np.ndarray:
    """Bin index (0..n_bins-1) of every sample; adaptive edges are per group (full-data quantiles)."""
    if binning == "equal":
        return np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    out = np.zeros(len(conf), dtype=np.int64)
    qs = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    for g in range(n_groups):
        m = gi == g
        if not m.any():
            continue
        edges = np.quantile(conf[m], qs)
        # side="left": a value equal to an edge falls in the lower bin, as (lo, hi] bins do.
        out[m] = np.searchsorted(edges, conf[m], side="left")
    return out


def sample_nll(probs: np.ndarray, y_true: np.ndarray) -> np.ndarray:
    """-log p[i, y_i] with the log clamped at -100 (torch BCELoss's clamp)."""
    p = probs[np.arange(len(y_true)), y_true].astype(np.float64)
    with np.errstate(divide="ignore"):
        return -np.maximum(np.log(p), _LOG_FLOOR)


@dataclass(frozen=True)
class ReliabilityCurve:
    """One group's reliability diagram: per non-empty bin its mean confidence, mean target and size."""

    confidence: list[float]
    accuracy: list[float]
    count: list[int]
    edges: list[float]

    def to_dict(self) -> dict[str, list]:
        return {"confidence": self.confidence, "accuracy": self.accuracy, "count": self.count, "edges": self.edges}


def reliability_curve(conf: np.ndarray, target: np.ndarray, n_bins: int = 10, binning: str = "equal"
                      ) -> ReliabilityCurve:
    """Reliability diagram data of one set of samples (one group)."""
    b = bin_ids(conf, np.zeros(len(conf), np.int64), 1, n_bins, binning)
    cnt = np.bincount(b, minlength=n_bins)
    sc = np.bincount(b, weights=conf, minlength=n_bins)
    st = np.bincount(b, weights=target, minlength=n_bins)
    keep = cnt > 0
    if binning == "equal":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    else:
        edges = np.r_[0.0, np.quantile(conf, np.linspace(0, 1, n_bins + 1)[1:-1]) if len(conf) else [], 1.0]
    return ReliabilityCurve(confidence=(sc[keep] / cnt[keep]).tolist(), accuracy=(st[keep] / cnt[keep]).tolist(),
                            count=cnt[keep].astype(int).tolist(), edges=[float(e) for e in edges])

