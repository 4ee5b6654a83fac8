"""Two-group fairness and accuracy numbers of the dermatology fairness-pruning papers.

The definitions are those of ``docs/METRICS.md`` (normative): they reproduce the
metric routine shared by FairPrune, the fair multi-exit framework and Sensitive
Channel Pruning number for number, quirks included:

* ``C = max(max(y_true), max(y_pred)) + 1`` unless ``num_classes`` is passed;
* every class in ``range(C)`` enters the class averages, even a class that has no
  sample in a group (its rates are then 0), and any 0/0 is 0;
* ``eodd`` adds the TPR gap and the FPR gap *before* taking the absolute value,
  then halves the class mean;
* ``dp`` is a *sum* over classes of the gap in predicted-class rates;
* gaps are signed as group 0 minus group 1.

Everything is computed from three count arrays per group and class (true
positives, true count, predicted count) so that the same code serves one
evaluation and a whole batch of bootstrap resamples (leading batch axes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "MetricsError",
    "FairnessResult",
    "group_fairness",
    "GAP_LABELS",
    "GAP_METRICS",
    "METRIC_NAMES",
]


class MetricsError(ValueError):
    """Bad input to an ``equiprune.metrics`` function (the message says what to do)."""


# The two-group gaps (absolute, lower is fairer), in the order commands offer them: the one list behind
# CLI choices, tables and plots. F1 Diff. (`f1_diff`) is a gap too but is reported with the per-group F1.
GAP_METRICS: tuple[str, ...] = ("eodd", "eopp0", "eopp1", "dp")
# How reports name them (and the F1 gap).
GAP_LABELS: dict[str, str] = {"eodd": "Eodd", "eopp0": "Eopp0", "eopp1": "Eopp1", "dp": "DP", "f1_diff": "F1 Diff."}

# Order of the flat dictionary returned by FairnessResult.to_dict(); also the
# set of numbers the bootstrap helpers give intervals for.
METRIC_NAMES: tuple[str, ...] = (
    "eopp0",
    "eopp1",
    "eodd",
    "dp",
    "eopp0_signed",
    "eopp1_signed",
    "eodd_signed",
    "dp_signed",
    "acc",
    "acc_g0",
    "acc_g1",
    "precision",
    "recall",
    "f1",
    "precision_g0",
    "precision_g1",
    "precision_avg",
    "precision_diff",
    "recall_g0",
    "recall_g1",
    "recall_avg",
    "recall_diff",
    "f1_g0",
    "f1_g1",
    "f1_avg",
    "f1_diff",
    "num_classes",
    "n",
    "n_g0",
    "n_g1",
)


# --------------------------------------------------------------------------- input


def _to_numpy(x: Any, name: str) -> np.ndarray:
    """Array from a numpy array, torch tensor (duck-typed, torch is not imported) or list."""
    if hasattr(x, "detach") and hasattr(x, "cpu") and hasattr(x, "numpy"):
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise MetricsError(f"{name} could not be turned into an array: {exc}") from exc
    return arr


def _as_int_vector(x: Any, name: str, *, allow_negative: bool) -> np.ndarray:
    """1-D int64 vector of class indices or group codes, with a clear error otherwise."""
    arr = _to_numpy(x, name)
    if arr.ndim == 2 and name.startswith(("y_pred", "pred")) and arr.shape[1] > 1:
        raise MetricsError(
            f"{name} has shape {arr.shape}: it looks like scores or logits. Pass class "
            f"indices, e.g. {name}.argmax(1)."
        )
    if arr.ndim != 1:
        if arr.ndim == 2 and 1 in arr.shape:
            arr = arr.reshape(-1)
        else:
            raise MetricsError(f"{name} must be a 1-D array of integers; got shape {arr.shape}.")
    if arr.dtype == bool:
        arr = arr.astype(np.int64)
    elif np.issubdtype(arr.dtype, np.integer):
        arr = arr.astype(np.int64, copy=False)
    elif np.issubdtype(arr.dtype, np.floating):
        if arr.size and (not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr))):
            raise MetricsError(
                f"{name} must hold integer codes; it has non-integer or non-finite values "
                f"(dtype {arr.dtype}). Pass class indices / group codes, not scores."
            )
        arr = arr.astype(np.int64)
    else:
        raise MetricsError(
            f"{name} must hold integer codes; got dtype {arr.dtype}. Encode categories as "
            "integers first (e.g. pandas.factorize, or equiprune.metrics.intersect_groups "
            "for groups)."
        )
    if not allow_negative and arr.size and arr.min() < 0:
        raise MetricsError(
            f"{name} must hold class indices >= 0; found {int(arr.min())}. Map unknown "
            "labels to a class or drop those rows."
        )
    return arr


def _validate_common(
    y_true: Any, preds: dict[str, Any], groups: Any
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Validate y_true, one or more prediction vectors and groups (same length, non-empty)."""
    y = _as_int_vector(y_true, "y_true", allow_negative=False)
    ps = {k: _as_int_vector(v, k, allow_negative=False) for k, v in preds.items()}
    g = _as_int_vector(groups, "groups", allow_negative=True)
    lengths = {"y_true": len(y), **{k: len(v) for k, v in ps.items()}, "groups": len(g)}
    if len(set(lengths.values())) != 1:
        detail = ", ".join(f"{k}={v}" for k, v in lengths.items())
        raise MetricsError(f"inputs must have the same length; got {detail}.")
    if len(y) == 0:
        raise MetricsError("inputs are empty: there are no predictions to score.")
    return y, ps, g


def _check_two_groups(g: np.ndarray) -> None:
    values = np.unique(g)
    bad = values[(values != 0) & (values != 1)]
    if bad.size:
        raise MetricsError(
            "the two-group paper metrics need groups coded 0/1; found group values "
            f"{values.tolist()}. For more than two groups use "
            "equiprune.metrics.multigroup_table / multigroup_gaps (and intersect_groups "
            "for e.g. skin tone x sex); to compare two groups recode them to 0/1."
        )
    if values.size < 2:
        raise MetricsError(
            f"only group {int(values[0])} is present: the fairness gaps compare group 0 "
            "with group 1, so both must have at least one sample."
        )


def _resolve_num_classes(y: np.ndarray, preds: list[np.ndarray], num_classes: int | None) -> int:
    """C = max(max(y), max(p)) + 1 as in the reference, or the caller's larger value."""
    data_c = int(max([int(y.max())] + [int(p.max()) for p in preds])) + 1
    if num_classes is None:
        return data_c
    if isinstance(num_classes, bool) or int(num_classes) != num_classes:
        raise MetricsError(f"num_classes must be an integer; got {num_classes!r}.")
    num_classes = int(num_classes)
    if num_classes < data_c:
        raise MetricsError(
            f"num_classes={num_classes} but the data contain class index {data_c - 1}; "
            f"pass num_classes >= {data_c} (or None to derive it as the reference does)."
        )
    return num_classes


# ----------------------------------------------------------------------- counting


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0 wherever den == 0 (the reference's zero_division=0)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    zero = den == 0
    out = num / np.where(zero, 1.0, den)
    return np.where(zero, 0.0, out)


def _group_class_counts(
    y: np.ndarray, p: np.ndarray, g_idx: np.ndarray, n_groups: int, c: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """tp, true count and predicted count per (group, class), each (n_groups, c) int64.

    g_idx must already be in range(n_groups).
    """
    size = n_groups * c
    key_true = g_idx * c + y
    key_pred = g_idx * c + p
    true_sum = np.bincount(key_true, minlength=size).reshape(n_groups, c)
    pred_sum = np.bincount(key_pred, minlength=size).reshape(n_groups, c)
    tp = np.bincount(key_true[y == p], minlength=size).reshape(n_groups, c)
    return tp, true_sum, pred_sum


def _rates(
    tp: np.ndarray, true_sum: np.ndarray, pred_sum: np.ndarray
) -> dict[str, np.ndarray]:
    """One-vs-rest TPR, TNR, FPR and predicted-class rate; shapes (..., C).

    n per group is the sum of the true counts over classes.
    """
    n = true_sum.sum(-1, keepdims=True)
    fp = pred_sum - tp
    negatives = n - true_sum  # TN + FP
    tn = negatives - fp
    return {
        "tpr": _safe_div(tp, true_sum),
        "tnr": _safe_div(tn, negatives),
        "fpr": _safe_div(fp, negatives),
        "ppr": _safe_div(pred_sum, n),
    }


def _macro_prf(
    tp: np.ndarray, true_sum: np.ndarray, pred_sum: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """sklearn ``average="macro"`` precision, recall, F1 over the last axis.

    sklearn averages over the labels present in y_true or y_pred of the subset (not
    over range(C)), with zero_division -> 0 and F1 = 2 tp / (true + pred) per class.
    """
    present = (true_sum + pred_sum) > 0
    k = present.sum(-1)
    precision = _safe_div(tp, pred_sum)
    recall = _safe_div(tp, true_sum)
    f1 = _safe_div(2.0 * tp, true_sum + pred_sum)

    def avg(v: np.ndarray) -> np.ndarray:
        return _safe_div(np.where(present, v, 0.0).sum(-1), k)

    return avg(precision), avg(recall), avg(f1)


def _metrics_from_counts(
    tp: np.ndarray, true_sum: np.ndarray, pred_sum: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """All METRIC_NAMES from counts of shape (..., 2, C) (axis -2 is the group).

    Returns (scalars, per_class) where every scalar has the leading shape (...)
    and per-class rates have shape (..., 2, C).
    """
    r = _rates(tp, true_sum, pred_sum)
    d = {k: v[..., 0, :] - v[..., 1, :] for k, v in r.items()}
    c = tp.shape[-1]
    n_g = true_sum.sum(-1)  # (..., 2)
    out: dict[str, np.ndarray] = {}
    out["eopp0"] = np.abs(d["tnr"]).mean(-1)
    out["eopp1"] = np.abs(d["tpr"]).mean(-1)
    out["eodd"] = np.abs(d["tpr"] + d["fpr"]).mean(-1) / 2
    out["dp"] = np.abs(d["ppr"]).sum(-1)
    out["eopp0_signed"] = d["tnr"].mean(-1)
    out["eopp1_signed"] = d["tpr"].mean(-1)
    out["eodd_signed"] = (d["tpr"] + d["fpr"]).mean(-1) / 2
    # Both groups' predicted-class rates sum to 1, so this is 0 up to rounding; it is
    # kept (computed, not hard-coded) because the reference reports it.
    out["dp_signed"] = d["ppr"].sum(-1)

    correct_g = tp.sum(-1)
    out["acc"] = _safe_div(correct_g.sum(-1), n_g.sum(-1))
    acc_g = _safe_div(correct_g, n_g)
    out["acc_g0"], out["acc_g1"] = acc_g[..., 0], acc_g[..., 1]

    prec, rec, f1 = _macro_prf(tp.sum(-2), true_sum.sum(-2), pred_sum.sum(-2))
    out["precision"], out["recall"], out["f1"] = prec, rec, f1
    for name, v in zip(("precision", "recall", "f1"), _macro_prf(tp, true_sum, pred_sum)):
        out[f"{name}_g0"] = v[..., 0]
        out[f"{name}_g1"] = v[..., 1]
        out[f"{name}_avg"] = (v[..., 0] + v[..., 1]) / 2
        out[f"{name}_diff"] = np.abs(v[..., 0] - v[..., 1])

    shape = n_g.shape[:-1]
    out["num_classes"] = np.full(shape, float(c))
    out["n"] = n_g.sum(-1).astype(np.float64)
    out["n_g0"] = n_g[..., 0].astype(np.float64)
    out["n_g1"] = n_g[..., 1].astype(np.float64)
    return {k: out[k] for k in METRIC_NAMES}, r


# ------------------------------------------------------------------------- result


@dataclass(eq=False)
class FairnessResult:
    """Paper fairness and accuracy numbers for two groups (0 and 1).

    Gaps are group 0 minus group 1 before any absolute value. ``dp_signed`` is 0
    by definition (each group's predicted-class rates sum to 1) and is reported
    only because the reference reports it. Per-class arrays have shape (2, C),
    row = group, for plotting.
    """

    eopp0: float
    eopp1: float
    eodd: float
    dp: float
    eopp0_signed: float
    eopp1_signed: float
    eodd_signed: float
    dp_signed: float
    acc: float
    acc_g0: float
    acc_g1: float
    precision: float
    recall: float
    f1: float
    precision_g0: float
    precision_g1: float
    precision_avg: float
    precision_diff: float
    recall_g0: float
    recall_g1: float
    recall_avg: float
    recall_diff: float
    f1_g0: float
    f1_g1: float
    f1_avg: float
    f1_diff: float
    num_classes: int
    n: int
    n_g0: int
    n_g1: int
    tpr: np.ndarray = field(repr=False)
    tnr: np.ndarray = field(repr=False)
    fpr: np.ndarray = field(repr=False)
    ppr: np.ndarray = field(repr=False)  # P(pred = c | group)
    support: np.ndarray = field(repr=False)  # true count per (group, class)

    def to_dict(self) -> dict[str, float]:
        """Flat ``{name: float}`` of every scalar, in METRIC_NAMES order."""
        return {k: float(getattr(self, k)) for k in METRIC_NAMES}


_INT_FIELDS = ("num_classes", "n", "n_g0", "n_g1")


def _result_from_counts(tp: np.ndarray, true_sum: np.ndarray, pred_sum: np.ndarray) -> FairnessResult:
    scalars, rates = _metrics_from_counts(tp, true_sum, pred_sum)
    kwargs: dict[str, Any] = {
        k: (int(v) if k in _INT_FIELDS else float(v)) for k, v in scalars.items()
    }
    return FairnessResult(
        **kwargs,
        tpr=rates["tpr"],
        tnr=rates["tnr"],
        fpr=rates["fpr"],
        ppr=rates["ppr"],
        support=true_sum.copy(),
    )


def group_fairness(
    y_true: Any, y_pred: Any, groups: Any, num_classes: int | None = None
) -> FairnessResult:
    """Paper metrics (docs/METRICS.md) of predictions for two groups coded 0/1.

    Args:
        y_true, y_pred: class indices (numpy, torch or list).
        groups: 0/1 group code per sample; both groups must be present.
        num_classes: C; by default ``max(max(y_true), max(y_pred)) + 1`` exactly as
            the reference code. Passing the real class count is a documented
            deviation: classes never seen in the data then enter the class means
            with rates 0, which lowers eopp0/eopp1/eodd.
    """
    y, ps, g = _validate_common(y_true, {"y_pred": y_pred}, groups)
    p = ps["y_pred"]
    _check_two_groups(g)
    c = _resolve_num_classes(y, [p], num_classes)
    return _result_from_counts(*_group_class_counts(y, p, g, 2, c))
