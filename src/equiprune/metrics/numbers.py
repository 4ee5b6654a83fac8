"""Numbers read back from JSON and tables: one way to turn a value into a float, or NaN when it is missing."""
from __future__ import annotations

import math
from typing import Any

__all__ = ["float_or_nan", "format_float"]


def float_or_nan(x: Any) -> float:
    """`x` as a float; NaN for None and for anything that is not a number.

    metrics.json stores undefined values (NaN, inf) as null and sections may
    lack a key, so every reader of stored results goes through this one rule.
    """
    try:
        return float(x) if x is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def format_float(x: Any, digits: int = 4, missing: str = "–") -> str:
    """`x` with `digits` decimals, or `missing` when it is not a finite number (`float_or_nan`)."""
    v = float_or_nan(x)
    return f"{v:.{digits}f}" if math.isfinite(v) else missing
