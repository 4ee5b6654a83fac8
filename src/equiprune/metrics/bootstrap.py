"""Bootstrap confidence intervals for every number of ``FairnessResult.to_dict()``.

Resampling is stratified by group by default: each resample draws n_g0 samples
with replacement from group 0 and n_g1 from group 1, so group sizes (and hence the
meaning of "group 1 is the minority") are the same in every resample, and no
resample can lose a group.

The class count C is fixed to the full-data value for every resample. The
reference derives C from the data; re-deriving it per resample would change the
denominator of the class means whenever a resample happens to miss the highest
class, so the resamples would not estimate the same statistic as the reported
number.

Caveat on absolute gaps (eopp0, eopp1, eodd, dp, the ``*_diff`` numbers): they
are means of absolute values, so they are biased upwards and their bootstrap
distribution sits above 0 even when the population gap is 0. An interval of an
absolute gap that excludes 0 is therefore *not* evidence of unfairness; use the
``*_signed`` variants (or a paired comparison) to ask whether a gap is non-zero.

The work is vectorised: the resample indices of a chunk of resamples are drawn at
once and the per-(resample, group, class) counts come from three ``np.bincount``
calls over the whole chunk; the metrics are then computed for all resamples
together by the same count-based code as ``group_fairness``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .fairness import (
    METRIC_NAMES,
    MetricsError,
    _check_two_groups,
    _group_class_counts,
    _metrics_from_counts,
    _resolve_num_classes,
    _validate_common,
)

__all__ = [
    "Interval",
    "PairedInterval",
    "bootstrap_samples",
    "bootstrap_ci",
    "paired_bootstrap",
]

# Upper bound on resample-elements (resamples x samples) held at once; keeps the
# index and key arrays around 16 MB each whatever n_boot is.
_CHUNK_ELEMENTS = 1 << 21


@dataclass(frozen=True)
class Interval:
    """Full-data estimate with a percentile bootstrap interval [lo, hi] and bootstrap std."""

    estimate: float
    lo: float
    hi: float
    std: float

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies inside the closed interval."""
        return self.lo <= value <= self.hi


@dataclass(frozen=True)
class PairedInterval:
    """Difference b - a of one metric between two models on the same resamples.

    ``p_value`` is a two-sided bootstrap sign fraction,
    ``min(1, 2 * min((#d<=0 + 1), (#d>=0 + 1)) / (n_boot + 1))``: a rough
    measure of how often the resampled difference falls on the other side of 0,
    not an exact test.
    """

    estimate: float
    lo: float
    hi: float
    p_value: float
    excludes_zero: bool
    estimate_a: float
    estimate_b: float


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _check_params(n_boot: int, alpha: float | None = None) -> int:
    if isinstance(n_boot, bool) or int(n_boot) != n_boot or int(n_boot) < 1:
        raise MetricsError(f"n_boot must be a positive integer; got {n_boot!r}.")
    if alpha is not None and not 0.0 < float(alpha) < 1.0:
        raise MetricsError(f"alpha must be in (0, 1), e.g. 0.05 for 95% intervals; got {alpha!r}.")
    return int(n_boot)


def _resample_index_chunks(
    g: np.ndarray, n_boot: int, rng: np.random.Generator, stratify: bool, values: Sequence[int] = (0, 1)
) -> Iterator[np.ndarray]:
    """Yield (k, n) arrays of row indices, k resamples at a time, n_boot rows in total.

    Stratified draws resample within each group code of `values` in turn (the
    two paper groups by default; more groups for the multi-group scores).
    """
    n = len(g)
    per_chunk = max(1, _CHUNK_ELEMENTS // n)
    members = [np.flatnonzero(g == v) for v in values] if stratify else None
    done = 0
    while done < n_boot:
        k = min(per_chunk, n_boot - done)
        if members is None:
            yield rng.integers(0, n, size=(k, n))
        else:
            yield np.concatenate(
                [m[rng.integers(0, len(m), size=(k, len(m)))] for m in members], axis=1
            )
        done += k


def _chunk_counts(
    idx: np.ndarray, y: np.ndarray, p: np.ndarray, g: np.ndarray, c: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """tp, true and predicted counts of shape (k, 2, C) for k resamples at once."""
    k = idx.shape[0]
    # Offsetting the group code by 2 per resample turns k x 2 groups into one
    # group axis, so the single-evaluation counter does all resamples at once.
    gb = (np.arange(k)[:, None] * 2 + g[idx]).ravel()
    tp, true_sum, pred_sum = _group_class_counts(y[idx].ravel(), p[idx].ravel(), gb, 2 * k, c)
    shape = (k, 2, c)
    return tp.reshape(shape), true_sum.reshape(shape), pred_sum.reshape(shape)


def _bootstrap_arrays(
    y: np.ndarray,
    preds: list[np.ndarray],
    g: np.ndarray,
    cs: list[int],
    n_boot: int,
    seed: int | np.random.Generator | None,
    stratify: bool,
    stacklevel: int = 3,
) -> list[dict[str, np.ndarray]]:
    """Per prediction vector, {metric: (n_boot,) array}; same resamples for all of them.

    Resamples that lose a group (only possible without stratification) are NaN.
    ``stacklevel`` makes the warning about them name the public function's caller.
    """
    rng = _rng(seed)
    chunks: list[list[dict[str, np.ndarray]]] = [[] for _ in preds]
    for idx in _resample_index_chunks(g, n_boot, rng, stratify):
        for j, (p, c) in enumerate(zip(preds, cs)):
            tp, true_sum, pred_sum = _chunk_counts(idx, y, p, g, c)
            scalars, _ = _metrics_from_counts(tp, true_sum, pred_sum)
            lost = (true_sum.sum(-1) == 0).any(-1)
            if lost.any():
                scalars = {k: np.where(lost, np.nan, v) for k, v in scalars.items()}
            chunks[j].append(scalars)
    out = [{k: np.concatenate([ch[k] for ch in per]) for k in METRIC_NAMES} for per in chunks]
    n_lost = int(np.isnan(out[0]["acc"]).sum())
    if n_lost == n_boot:
        raise MetricsError(
            "every bootstrap resample lost one of the groups; use stratify=True."
        )
    if n_lost:
        warnings.warn(
            f"{n_lost} of {n_boot} unstratified resamples had no sample of one group and "
            "were left out; use stratify=True to keep group sizes fixed.",
            RuntimeWarning,
            stacklevel=stacklevel,
        )
    return out


def _prepare(
    y_true: Any, preds: dict[str, Any], groups: Any, num_classes: int | None
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray, list[int]]:
    y, ps, g = _validate_common(y_true, preds, groups)
    _check_two_groups(g)
    plist = [ps[k] for k in preds]
    # C per model as group_fairness would derive it, so each full-data estimate
    # equals group_fairness(y_true, pred, groups, num_classes) exactly.
    cs = [_resolve_num_classes(y, [p], num_classes) for p in plist]
    return y, plist, g, cs


def _full_data(y: np.ndarray, p: np.ndarray, g: np.ndarray, c: int) -> dict[str, float]:
    scalars, _ = _metrics_from_counts(*_group_class_counts(y, p, g, 2, c))
    return {k: float(v) for k, v in scalars.items()}


def bootstrap_samples(
    y_true: Any,
    y_pred: Any,
    groups: Any,
    n_boot: int = 1000,
    seed: int | np.random.Generator | None = 0,
    num_classes: int | None = None,
    stratify: bool = True,
) -> dict[str, np.ndarray]:
    """The bootstrap distribution itself: ``{metric: (n_boot,) array}`` (for plots).

    Same resampling as :func:`bootstrap_ci`; NaN marks an unstratified resample
    that lost a group.
    """
    n_boot = _check_params(n_boot)
    y, (p,), g, (c,) = _prepare(y_true, {"y_pred": y_pred}, groups, num_classes)
    return _bootstrap_arrays(y, [p], g, [c], n_boot, seed, stratify)[0]


def _percentiles(samples: np.ndarray, alpha: float) -> tuple[float, float]:
    lo, hi = np.nanpercentile(samples, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


@dataclass(frozen=True)
class _Statistic:
    """One metric's statistic: full-data value, per-resample values (NaN: lost a group), interval."""

    full: list[float]  # the metric of each model on the full data
    estimate: float
    samples: np.ndarray
    lo: float
    hi: float


def _bootstrap_statistic(
    y_true: Any,
    preds: dict[str, Any],
    groups: Any,
    stat: Callable[[Sequence[Any]], Any],
    n_boot: int,
    seed: int | np.random.Generator | None,
    alpha: float,
    num_classes: int | None,
    stratify: bool,
) -> dict[str, _Statistic]:
    """Per metric, ``stat`` of the models' values on the full data and on shared resamples.

    ``stat`` gets one value (or one (n_boot,) array) per prediction vector, in
    the order of ``preds``: ``v[0]`` gives one model's interval, ``v[1] - v[0]``
    a paired difference. The interval is the percentile interval of the
    resampled statistic, NaN resamples left out.
    """
    n_boot = _check_params(n_boot, alpha)
    y, plist, g, cs = _prepare(y_true, preds, groups, num_classes)
    full = [_full_data(y, p, g, c) for p, c in zip(plist, cs)]
    # stacklevel 4: the warning names whoever called bootstrap_ci / paired_bootstrap.
    boot = _bootstrap_arrays(y, plist, g, cs, n_boot, seed, stratify, stacklevel=4)
    out: dict[str, _Statistic] = {}
    for k in METRIC_NAMES:
        samples = stat([b[k] for b in boot])
        lo, hi = _percentiles(samples, alpha)
        out[k] = _Statistic([f[k] for f in full], stat([f[k] for f in full]), samples, lo, hi)
    return out


def bootstrap_ci(
    y_true: Any,
    y_pred: Any,
    groups: Any,
    n_boot: int = 1000,
    seed: int | np.random.Generator | None = 0,
    alpha: float = 0.05,
    num_classes: int | None = None,
    stratify: bool = True,
) -> dict[str, Interval]:
    """Percentile bootstrap interval for every number of ``group_fairness(...).to_dict()``.

    ``estimate`` is the full-data value (identical to group_fairness). Resampling
    is within groups when ``stratify`` (default), and C is fixed to the full-data
    class count for every resample (see the module docstring for why).
    """
    stats = _bootstrap_statistic(y_true, {"y_pred": y_pred}, groups, lambda v: v[0], n_boot, seed, alpha,
                                 num_classes, stratify)
    return {k: Interval(s.estimate, s.lo, s.hi, float(np.nanstd(s.samples))) for k, s in stats.items()}


def paired_bootstrap(
    y_true: Any,
    pred_a: Any,
    pred_b: Any,
    groups: Any,
    n_boot: int = 1000,
    seed: int | np.random.Generator | None = 0,
    alpha: float = 0.05,
    num_classes: int | None = None,
    stratify: bool = True,
) -> dict[str, PairedInterval]:
    """Difference b - a of every metric between two models scored on the same data.

    Both models are evaluated on the *same* resample indices (that is what makes
    the comparison paired: sample-level noise common to both cancels). Each
    model's C is derived from its own predictions exactly as group_fairness does,
    unless ``num_classes`` is given, so ``estimate_a``/``estimate_b`` equal the
    separate group_fairness numbers.
    """
    stats = _bootstrap_statistic(y_true, {"pred_a": pred_a, "pred_b": pred_b}, groups, lambda v: v[1] - v[0],
                                 n_boot, seed, alpha, num_classes, stratify)
    out: dict[str, PairedInterval] = {}
    for k, s in stats.items():
        d = s.samples[~np.isnan(s.samples)]
        p_value = min(1.0, 2.0 * min(np.sum(d <= 0) + 1, np.sum(d >= 0) + 1) / (len(d) + 1))
        out[k] = PairedInterval(
            estimate=s.estimate,
            lo=s.lo,
            hi=s.hi,
            p_value=float(p_value),
            excludes_zero=bool(s.lo > 0 or s.hi < 0),
            estimate_a=s.full[0],
            estimate_b=s.full[1],
        )
    return out
