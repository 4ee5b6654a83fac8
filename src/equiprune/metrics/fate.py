"""FATE, FairAdaBN's accuracy/fairness trade-off score (docs/METRICS.md)."""

from __future__ import annotations

import math

from .fairness import FairnessResult, MetricsError

__all__ = ["fate", "fate_scores", "FATE_CRITERIA"]

FATE_CRITERIA: tuple[str, ...] = ("eopp0", "eopp1", "eodd")


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
