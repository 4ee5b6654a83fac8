"""FATE, FairAdaBN's accuracy/fairness trade-off score (docs/METRICS.md)."""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from .fairness import GAP_METRICS, FairnessResult, MetricsError

__all__ = ["fate", "fate_array", "fate_samples", "fate_scores", "fate_scores_or_undefined", "FAIR_CRITERIA",
           "FATE_CRITERIA"]

# The gaps FATE is defined on, in the order of its output (fate_eopp0, fate_eopp1, fate_eodd).
FATE_CRITERIA: tuple[str, ...] = ("eopp0", "eopp1", "eodd")
# The same gaps in the order commands offer them (Eodd, every method's default, first): the criteria a
# pruning loop can judge its iterations by.
FAIR_CRITERIA: tuple[str, ...] = tuple(m for m in GAP_METRICS if m in FATE_CRITERIA)


def _finite(x: float, name: str) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError) as exc:
        raise MetricsError(f"{name} must be a number; got {x!r}.") from exc
    if not math.isfinite(v):
        raise MetricsError(f"{name} must be finite; got {v}.")
    return v


def fate(acc_m: float, acc_b: float, fc_m: float, fc_b: float, lam: float = 1.0) -> float:
    """``(acc_m - acc_b)/acc_b - lam * (fc_m - fc_b)/fc_b``; higher is better.

    ``m`` is the mitigated model and ``b`` the baseline it came from; ACC is macro
    F1 in FairAdaBN and FC one of eopp0/eopp1/eodd. A zero baseline makes the
    relative change undefined, so it raises instead of returning inf.
    """
    acc_m = _finite(acc_m, "acc_m")
    acc_b = _finite(acc_b, "acc_b")
    fc_m = _finite(fc_m, "fc_m")
    fc_b = _finite(fc_b, "fc_b")
    lam = _finite(lam, "lam")
    if acc_b == 0:
        raise MetricsError(
            "FATE is undefined: the baseline accuracy acc_b is 0, so the relative "
            "accuracy change divides by zero. Check the baseline predictions."
        )
    if fc_b == 0:
        raise MetricsError(
            "FATE is undefined: the baseline fairness criterion fc_b is 0 (the baseline "
            "is already perfectly fair on it), so the relative change divides by zero. "
            "Report the absolute values instead, or use another criterion."
        )
    return (acc_m - acc_b) / acc_b - lam * (fc_m - fc_b) / fc_b


def fate_scores(
    mitigated: FairnessResult, baseline: FairnessResult, lam: float = 1.0
) -> dict[str, float]:
    """``{"fate_eopp0", "fate_eopp1", "fate_eodd"}`` with ACC = overall macro F1."""
    return {
        f"fate_{fc}": fate(
            mitigated.f1, baseline.f1, getattr(mitigated, fc), getattr(baseline, fc), lam
        )
        for fc in FATE_CRITERIA
    }


def fate_scores_or_undefined(mitigated: FairnessResult, baseline: FairnessResult, lam: float = 1.0
                             ) -> tuple[dict[str, float | None], dict[str, str]]:
    """`fate_scores`, except that an undefined criterion (zero baseline gap) gives None instead of raising.

    Returns the scores and, for each None, the reason (`fate`'s error message),
    so that one exactly fair criterion does not hide the others.
    """
    scores: dict[str, float | None] = {}
    why: dict[str, str] = {}
    for fc in FATE_CRITERIA:
        try:
            scores[f"fate_{fc}"] = fate(mitigated.f1, baseline.f1, getattr(mitigated, fc), getattr(baseline, fc), lam)
        except MetricsError as exc:
            scores[f"fate_{fc}"] = None
            why[f"fate_{fc}"] = str(exc)
    return scores, why


def fate_array(acc_m: np.ndarray, acc_b: np.ndarray, fc_m: np.ndarray, fc_b: np.ndarray,
               lam: float = 1.0) -> np.ndarray:
    """`fate` elementwise, e.g. over bootstrap resamples; NaN where the baseline's accuracy or gap is 0.

    An exactly fair (or F1-0) baseline resample has no FATE, so it is NaN here
    rather than an error: interval code keeps the finite values.
    """
    acc_m, acc_b, fc_m, fc_b = (np.asarray(a, dtype=np.float64) for a in (acc_m, acc_b, fc_m, fc_b))
    with np.errstate(divide="ignore", invalid="ignore"):
        acc_term = (acc_m - acc_b) / acc_b
        fc_term = (fc_m - fc_b) / fc_b
        return np.where((acc_b > 0) & (fc_b > 0), acc_term - lam * fc_term, np.nan)


def fate_samples(model: Mapping[str, np.ndarray], baseline: Mapping[str, np.ndarray],
                 lam: float = 1.0) -> dict[str, np.ndarray]:
    """``fate_<criterion>`` per resample from two `bootstrap_samples` results (ACC = macro F1).

    Both must come from the same resamples (`bootstrap_samples` with the same
    groups and seed draws the same indices), which pairs the two models item by item.
    """
    return {f"fate_{fc}": fate_array(model["f1"], baseline["f1"], model[fc], baseline[fc], lam)
            for fc in FATE_CRITERIA}
