"""Per-group AUC, accuracy, calibration and error rates from stored probabilities (MEDFAIR's numbers).

The paper metrics (:func:`equiprune.metrics.group_fairness`) judge hard
predictions. Medical-imaging fairness work is also read against MEDFAIR
(Zong et al., ICLR 2023), which reports threshold-free and calibration
numbers per group and picks models by their worst group. This module gives
those numbers for two groups or more, from ``(y_true, probs, groups)`` (and
the decisions ``y_pred``, argmax of ``probs`` unless given), with the same
stratified and paired bootstrap as the paper metrics.

Every number is computed from per-sample weights (1 for the data as given,
the draw counts of a bootstrap resample otherwise), so one code path gives the
estimate and all resamples, vectorised over a chunk of resamples. With two
groups coded 0/1 and the same seed, the resamples are exactly those of
:func:`equiprune.metrics.bootstrap_ci`.

Names (``GroupScores.values``; ``<k>`` is a group id, ``<c>`` a class index):

* ``auc_g<k>``: AUC of group k (binary: of the positive-class probability;
  more classes: one-vs-rest macro mean over the classes that have positives
  and negatives in the group). A group with one class only has no AUC: NaN,
  and ``notes`` says so (never 0.5). ``auc``: pooled over all samples.
  ``worst_group_auc`` = min over groups, ``auc_gap`` = max - min.
* ``acc_g<k>``, ``acc``, ``worst_group_acc`` (min), ``acc_gap``.
* ``ece_g<k>``, ``ece``, ``worst_group_ece`` (max), ``ece_gap``: expected
  calibration error, 10 equal-width bins or equal-mass ("adaptive") bins
  (:mod:`equiprune.metrics.calibration`).
* ``nll_g<k>``, ``nll``, ``worst_group_nll`` (max), ``nll_gap``: mean
  negative log-likelihood (BCE for a binary task).
* ``fnr_g<k>_c<c>`` / ``fpr_g<k>_c<c>``: one-vs-rest false-negative
  (underdiagnosis) and false-positive rate of class c in group k, 0/0 = NaN
  (MEDFAIR's convention; the paper routine's 0/0 = 0 would call an absent
  class perfectly diagnosed). ``fnr_gap_c<c>``: max - min over groups;
  ``fnr_gap`` / ``fpr_gap``: the largest over classes, named in
  ``GroupScores.largest_gap``.
* ``eodd_at_spec``: equalized odds at a fixed specificity (MEDFAIR): the
  threshold is chosen on the pooled data so that specificity is 0.8, then
  0.5 (|dTPR| + |dFPR|) between the groups (the largest over pairs for more
  groups; MEDFAIR prints 1 minus this). More classes: per class one-vs-rest
  (``eodd_at_spec_c<c>``), mean over classes.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import sparse

from .bootstrap import Interval, PairedInterval, _check_params, _percentiles, _resample_index_chunks, _rng
from .calibration import ECE_BINNING, bin_ids, confidence_and_target, reliability_curve, sample_nll
from .fairness import MetricsError, _as_int_vector, _to_numpy
from .ranking import auc_from_weights, auc_plan, roc_plan, threshold_at_specificity

__all__ = [
    "SCORE_METRICS",
    "SCORE_SENSE",
    "SCORE_LABELS",
    "ScoreSettings",
    "GroupScores",
    "group_scores",
    "bootstrap_group_scores",
    "paired_group_scores",
    "group_score_samples",
    "intervals_from_samples",
    "paired_from_samples",
]

# The summary numbers, in report order; +1 if higher is better, -1 if lower is.
SCORE_SENSE: dict[str, int] = {
    "auc": 1, "worst_group_auc": 1, "auc_gap": -1,
    "acc": 1, "worst_group_acc": 1, "acc_gap": -1,
    "ece": -1, "worst_group_ece": -1, "ece_gap": -1,
    "nll": -1, "worst_group_nll": -1, "nll_gap": -1,
    "fnr_gap": -1, "fpr_gap": -1, "eodd_at_spec": -1,
}
SCORE_METRICS: tuple[str, ...] = tuple(SCORE_SENSE)
SCORE_LABELS: dict[str, str] = {
    "auc": "AUC", "worst_group_auc": "worst-group AUC", "auc_gap": "AUC gap",
    "acc": "accuracy", "worst_group_acc": "worst-group accuracy", "acc_gap": "accuracy gap",
    "ece": "ECE", "worst_group_ece": "worst-group ECE", "ece_gap": "ECE gap",
    "nll": "NLL", "worst_group_nll": "worst-group NLL", "nll_gap": "NLL gap",
    "fnr_gap": "largest FNR gap", "fpr_gap": "largest FPR gap", "eodd_at_spec": "Eodd at specificity",
}
_PER_GROUP = ("auc", "acc", "ece", "nll")
_WORST = {"auc": np.nanmin, "acc": np.nanmin, "ece": np.nanmax, "nll": np.nanmax}


@dataclass(frozen=True)
class ScoreSettings:
    """How the scores are computed: ECE bins (``equal`` or ``adaptive``), the specificity of Eodd."""

    n_bins: int = 10
    binning: str = "equal"
    specificity: float = 0.8
    min_group_size: int = 1

    def validate(self) -> None:
        if self.binning not in ECE_BINNING:
            raise MetricsError(f"ECE binning must be one of {', '.join(ECE_BINNING)}; got {self.binning!r}.")
        if int(self.n_bins) < 1:
            raise MetricsError(f"n_bins must be >= 1 (10 is usual); got {self.n_bins}.")
        if not 0.0 < float(self.specificity) < 1.0:
            raise MetricsError(f"specificity must be in (0, 1), e.g. 0.8 as in MEDFAIR; got {self.specificity}.")


@dataclass(eq=False)
class GroupScores:
    """Result of :func:`group_scores` (see the module docstring for the names in ``values``)."""

    values: dict[str, float]
    group_ids: list[int]
    group_names: list[str]
    group_sizes: list[int]
    num_classes: int
    largest_gap: dict[str, Any] | None
    reliability: dict[str, dict[str, list]]
    notes: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"values": dict(self.values), "group_ids": list(self.group_ids), "group_names": list(self.group_names),
                "group_sizes": list(self.group_sizes), "num_classes": self.num_classes,
                "largest_gap": self.largest_gap, "reliability": self.reliability, "notes": list(self.notes),
                "settings": dict(self.settings)}


# ------------------------------------------------------------------------ input


def _check_inputs(y_true: Any, probs: Any, groups: Any, y_pred: Any | None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    y = _as_int_vector(y_true, "y_true", allow_negative=False)
    g = _as_int_vector(groups, "groups", allow_negative=True)
    p = _to_numpy(probs, "probs").astype(np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise MetricsError(f"probs must be an (n, C) array of class probabilities with C >= 2; got shape {p.shape}. "
                           "Stored predictions keep them as the prob_0..prob_{C-1} columns.")
    if not (len(y) == len(g) == len(p)):
        raise MetricsError(f"y_true, probs and groups must have the same length; got {len(y)}, {len(p)}, {len(g)}.")
    if len(y) == 0:
        raise MetricsError("no samples: there is nothing to score.")
    if not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1 + 1e-6:
        raise MetricsError("probs must be finite probabilities in [0, 1] (softmax outputs), not logits.")
    if y.max() >= p.shape[1]:
        raise MetricsError(f"y_true has class {y.max()} but probs has only {p.shape[1]} columns.")
    yp = p.argmax(1).astype(np.int64) if y_pred is None else _as_int_vector(y_pred, "y_pred", allow_negative=False)
    if len(yp) != len(y):
        raise MetricsError(f"y_pred has {len(yp)} entries for {len(y)} samples.")
    if yp.max() >= p.shape[1]:
        raise MetricsError(f"y_pred has class {yp.max()} but probs has only {p.shape[1]} columns.")
    return y, p, g, yp


def _onehot(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, width: int) -> sparse.csr_matrix:
    return sparse.csr_matrix((values, (rows, cols)), shape=(len(rows), width))


@dataclass
class _Model:
    """One model's per-sample quantities and the sparse maps that sum them per group."""

    probs: np.ndarray
    y_pred: np.ndarray
    sums: sparse.csr_matrix      # (n, G*K) weights -> per-group sums of several quantities at once
    ece_group: sparse.csr_matrix  # (n, G*B) conf - target per group and bin
    ece_all: sparse.csr_matrix    # (n, B) the same pooled
    auc_plans: list[list[Any]]    # [group or G for pooled][class] -> AucPlan | None
    auc_classes: np.ndarray       # (G+1, C) bool: class has both labels on the full data
    reliability: dict[str, dict[str, list]]


@dataclass
class _Data:
    y: np.ndarray
    gi: np.ndarray
    ids: np.ndarray
    names: list[str]
    n_g: np.ndarray
    c: int
    cfg: ScoreSettings


# Column blocks of _Model.sums (each G wide, or G*C for the class counts).
_BLOCKS = ("n", "correct", "nll")


def _prepare_model(d: _Data, probs: np.ndarray, y_pred: np.ndarray) -> _Model:
    n, g_count, c = len(d.y), len(d.ids), d.c
    rows = np.arange(n)
    conf, target = confidence_and_target(probs, d.y, y_pred)
    loss = sample_nll(probs, d.y)
    correct = (y_pred == d.y).astype(np.float64)
    # Block layout: [n | correct | nll] each G wide, then [true | pred | tp] each G*C wide.
    width = 3 * g_count + 3 * g_count * c
    base_true, base_pred, base_tp = 3 * g_count, 3 * g_count + g_count * c, 3 * g_count + 2 * g_count * c
    cols = np.concatenate([d.gi, g_count + d.gi, 2 * g_count + d.gi, base_true + d.gi * c + d.y,
                           base_pred + d.gi * c + y_pred, base_tp + d.gi * c + d.y])
    vals = np.concatenate([np.ones(n), correct, loss, np.ones(n), np.ones(n), correct])
    sums = sparse.csr_matrix((vals, (np.tile(rows, 6), cols)), shape=(n, width))
    b = int(d.cfg.n_bins)
    bins_g = bin_ids(conf, d.gi, g_count, b, d.cfg.binning)
    bins_all = bin_ids(conf, np.zeros(n, np.int64), 1, b, d.cfg.binning)
    ece_group = _onehot(rows, d.gi * b + bins_g, conf - target, g_count * b)
    ece_all = _onehot(rows, bins_all, conf - target, b)
    classes = [1] if c == 2 else list(range(c))
    members = [np.flatnonzero(d.gi == k) for k in range(g_count)] + [rows]
    plans = [[auc_plan(probs[:, cls], d.y == cls, m) if cls in classes else None for cls in range(c)]
             for m in members]
    defined = np.zeros((g_count + 1, c), dtype=bool)
    for k, m in enumerate(members):
        for cls in classes:
            pos = int((d.y[m] == cls).sum())
            defined[k, cls] = 0 < pos < len(m)
    reliability = {d.names[k]: reliability_curve(conf[m], target[m], b, d.cfg.binning).to_dict()
                   for k, m in enumerate(members[:-1])}
    return _Model(probs, y_pred, sums, ece_group, ece_all, plans, defined, reliability)


def _eodd_at_spec(d: _Data, m: _Model, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(k,) Eodd at the fixed specificity (mean over classes) and (k, C) per class."""
    k, g_count = w.shape[0], len(d.ids)
    classes = [1] if d.c == 2 else list(range(d.c))
    per_class = np.full((k, d.c), np.nan)
    ia, ib = np.triu_indices(g_count, k=1)
    for cls in classes:
        pos = d.y == cls
        s = m.probs[:, cls]
        plan = roc_plan(pos, s)
        thr = np.array([threshold_at_specificity(plan, d.cfg.specificity, w[r]) for r in range(k)])
        pred = (s[None, :] > thr[:, None]).astype(np.float64)
        cell = d.gi * 2 + pos.astype(np.int64)
        onehot = _onehot(np.arange(len(d.y)), cell, np.ones(len(d.y)), 2 * g_count)
        total = (onehot.T @ w.T).T.reshape(k, g_count, 2)
        hits = (onehot.T @ (w * pred).T).T.reshape(k, g_count, 2)
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = hits / total              # [..., 0] FPR, [..., 1] TPR; NaN when a cell is empty
        gap = 0.5 * (np.abs(rate[:, ia, 0] - rate[:, ib, 0]) + np.abs(rate[:, ia, 1] - rate[:, ib, 1]))
        with _quiet():
            per_class[:, cls] = np.nanmax(gap, axis=1)
        per_class[np.isnan(thr), cls] = np.nan
    sel = per_class[:, classes]
    with _quiet():
        return np.nanmean(sel, axis=1), per_class


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence numpy's 'mean of empty slice' warnings: NaN is the documented answer there."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _evaluate(d: _Data, m: _Model, w: np.ndarray) -> dict[str, np.ndarray]:
    """Every number for each row of the weight matrix `w` (k, n)."""
    k, g_count, c = w.shape[0], len(d.ids), d.c
    s = np.asarray((m.sums.T @ w.T).T)
    nw, correct, nll = (s[:, i * g_count:(i + 1) * g_count] for i in range(3))
    off = 3 * g_count
    true, pred, tp = (s[:, off + i * g_count * c: off + (i + 1) * g_count * c].reshape(k, g_count, c)
                      for i in range(3))
    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"), _quiet():
        per = {"acc": correct / nw, "nll": nll / nw}
        eg = np.abs(np.asarray((m.ece_group.T @ w.T).T).reshape(k, g_count, -1)).sum(-1) / nw
        per["ece"] = eg
        auc = np.full((k, g_count + 1, c), np.nan)
        for gk in range(g_count + 1):
            for cls in range(c):
                plan = m.auc_plans[gk][cls]
                if plan is not None and m.auc_classes[gk, cls]:
                    auc[:, gk, cls] = auc_from_weights(w, plan)
        auc_mean = np.nanmean(auc, axis=2)
        per["auc"] = auc_mean[:, :g_count]
        total = nw.sum(1)
        out["auc"] = auc_mean[:, g_count]
        out["acc"] = correct.sum(1) / total
        out["nll"] = nll.sum(1) / total
        out["ece"] = np.abs(np.asarray((m.ece_all.T @ w.T).T)).sum(1) / total
        small = d.n_g < d.cfg.min_group_size      # left out of worst values and gaps
        for name in _PER_GROUP:
            v = per[name]
            for j, gid in enumerate(d.ids):
                out[f"{name}_g{gid}"] = v[:, j]
            vv = np.where(small[None, :], np.nan, v)
            out[f"worst_group_{name}"] = _WORST[name](vv, axis=1)
            out[f"{name}_gap"] = np.where((~np.isnan(vv)).sum(1) >= 2, np.nanmax(vv, 1) - np.nanmin(vv, 1), np.nan)
        fnr = 1.0 - tp / true
        fpr = (pred - tp) / (nw[:, :, None] - true)
        for name, r in (("fnr", fnr), ("fpr", fpr)):
            for j, gid in enumerate(d.ids):
                for cls in range(c):
                    out[f"{name}_g{gid}_c{cls}"] = r[:, j, cls]
            rr = np.where(small[None, :, None], np.nan, r)
            enough = (~np.isnan(rr)).sum(1) >= 2
            gaps = np.where(enough, np.nanmax(rr, 1) - np.nanmin(rr, 1), np.nan)   # (k, C)
            for cls in range(c):
                out[f"{name}_gap_c{cls}"] = gaps[:, cls]
            out[f"{name}_gap"] = np.nanmax(gaps, axis=1)
    eodd, eodd_c = _eodd_at_spec(d, m, w) if g_count >= 2 else (np.full(k, np.nan), np.full((k, c), np.nan))
    out["eodd_at_spec"] = eodd
    if c > 2:
        for cls in range(c):
            out[f"eodd_at_spec_c{cls}"] = eodd_c[:, cls]
    return out


# ------------------------------------------------------------------------ public


def _data(y: np.ndarray, g: np.ndarray, c: int, group_names: Sequence[str] | Mapping[int, str] | None,
          cfg: ScoreSettings) -> _Data:
    ids, gi = np.unique(g, return_inverse=True)
    gi = gi.reshape(-1).astype(np.int64)

    def name(v: int) -> str:
        if isinstance(group_names, Mapping):
            return str(group_names.get(v, v))
        if group_names is not None and 0 <= v < len(group_names):
            return str(group_names[v])
        return f"group {v}"

    return _Data(y=y, gi=gi, ids=ids.astype(np.int64), names=[name(int(v)) for v in ids],
                 n_g=np.bincount(gi, minlength=len(ids)), c=c, cfg=cfg)


def _largest_gap(d: _Data, v: Mapping[str, float], class_names: Sequence[str] | None) -> dict[str, Any] | None:
    best = None
    small = d.n_g < d.cfg.min_group_size
    for rate in ("fnr", "fpr"):
        for cls in range(d.c):
            gap = v.get(f"{rate}_gap_c{cls}", math.nan)
            if not math.isfinite(gap) or (best is not None and gap <= best["gap"]):
                continue
            vals = [(v[f"{rate}_g{gid}_c{cls}"], j) for j, gid in enumerate(d.ids)
                    if not small[j] and math.isfinite(v[f"{rate}_g{gid}_c{cls}"])]
            hi, lo = max(vals), min(vals)
            best = {"rate": rate, "class": cls,
                    "class_name": str(class_names[cls]) if class_names and cls < len(class_names) else str(cls),
                    "gap": float(gap), "group_hi": int(d.ids[hi[1]]), "group_lo": int(d.ids[lo[1]]),
                    "name_hi": d.names[hi[1]], "name_lo": d.names[lo[1]], "value_hi": float(hi[0]),
                    "value_lo": float(lo[0])}
    return best


def _notes(d: _Data, m: _Model, class_names: Sequence[str] | None) -> list[str]:
    notes = []
    cname = (lambda i: str(class_names[i]) if class_names and i < len(class_names) else f"class {i}")
    used = [1] if d.c == 2 else list(range(d.c))
    for j, name in enumerate(d.names):
        present = np.unique(d.y[d.gi == j])
        if not m.auc_classes[j].any():
            only = ", ".join(cname(int(i)) for i in present)
            notes.append(f"AUC of {name} is undefined: its {int(d.n_g[j])} samples are all of one class ({only}); "
                         "it is left out of the worst-group AUC and the AUC gap.")
        elif d.c > 2 and m.auc_classes[j, used].sum() < len(used):
            missing = [cname(i) for i in used if not m.auc_classes[j, i]]
            notes.append(f"AUC of {name} averages {int(m.auc_classes[j, used].sum())} of {len(used)} classes: "
                         f"{', '.join(missing)} has no sample (or only samples) in this group.")
        if d.n_g[j] < d.cfg.min_group_size:
            notes.append(f"{name} has {int(d.n_g[j])} samples (< {d.cfg.min_group_size}): kept per group, left out "
                         "of worst-group numbers and gaps.")
    return notes


def group_scores(y_true: Any, probs: Any, groups: Any, y_pred: Any | None = None,
                 group_names: Sequence[str] | Mapping[int, str] | None = None,
                 class_names: Sequence[str] | None = None, settings: ScoreSettings | None = None) -> GroupScores:
    """Per-group AUC, accuracy, ECE, NLL, FNR/FPR per class and Eodd at a fixed specificity.

    Args:
        y_true: true class per sample.
        probs: (n, C) class probabilities (softmax outputs), as stored in predictions_<split>.csv.
        groups: integer group code per sample; any number of groups.
        y_pred: the decisions (default: argmax of probs); accuracy, FNR, FPR and
            the top-label ECE use them.
        group_names: names by group code (sequence indexed by code, or mapping).
        class_names: names of the classes, for the largest-gap sentence.
        settings: ECE bins and the specificity of the fixed-specificity Eodd.
    """
    cfg = settings or ScoreSettings()
    cfg.validate()
    y, p, g, yp = _check_inputs(y_true, probs, groups, y_pred)
    d = _data(y, g, p.shape[1], group_names, cfg)
    m = _prepare_model(d, p, yp)
    ev = _evaluate(d, m, np.ones((1, len(y))))
    values = {k: float(v[0]) for k, v in ev.items()}
    return GroupScores(values=values, group_ids=d.ids.tolist(), group_names=list(d.names),
                       group_sizes=d.n_g.astype(int).tolist(), num_classes=d.c,
                       largest_gap=_largest_gap(d, values, class_names), reliability=m.reliability,
                       notes=_notes(d, m, class_names), settings=dict(cfg.__dict__))


def _weights(idx: np.ndarray, n: int) -> np.ndarray:
    k = idx.shape[0]
    flat = (np.arange(k)[:, None] * n + idx).ravel()
    return np.bincount(flat, minlength=k * n).reshape(k, n).astype(np.float64)


def group_score_samples(y_true: Any, models: Sequence[tuple[Any, Any | None]], groups: Any, n_boot: int = 1000,
                        seed: int | np.random.Generator | None = 0, stratify: bool = True,
                        settings: ScoreSettings | None = None
                        ) -> tuple[list[dict[str, float]], list[dict[str, np.ndarray]]]:
    """Full-data values and (n_boot,) resampled values of every model, all on the same resamples.

    `models` is a list of ``(probs, y_pred)`` (``y_pred`` None: argmax). One
    call serves a model's own intervals, a baseline's and their paired
    differences (:func:`intervals_from_samples`, :func:`paired_from_samples`).
    """
    cfg = settings or ScoreSettings()
    cfg.validate()
    n_boot = _check_params(n_boot)
    prepared = []
    d = None
    for probs, y_pred in models:
        y, p, g, yp = _check_inputs(y_true, probs, groups, y_pred)
        if d is None:
            d = _data(y, g, p.shape[1], None, cfg)
        elif p.shape[1] != d.c:
            raise MetricsError(f"the two models have {d.c} and {p.shape[1]} probability columns; compare models "
                               "of the same task.")
        prepared.append(_prepare_model(d, p, yp))
    if d is None:
        raise MetricsError("no model to score.")
    full = [{k: float(v[0]) for k, v in _evaluate(d, m, np.ones((1, len(d.y)))).items()} for m in prepared]
    chunks: list[list[dict[str, np.ndarray]]] = [[] for _ in prepared]
    rng = _rng(seed)
    for idx in _resample_index_chunks(d.gi, n_boot, rng, stratify, values=range(len(d.ids))):
        w = _weights(idx, len(d.y))
        for j, m in enumerate(prepared):
            chunks[j].append(_evaluate(d, m, w))
    samples = [{k: np.concatenate([ch[k] for ch in per]) for k in per[0]} for per in chunks]
    return full, samples


def intervals_from_samples(full: Mapping[str, float], samples: Mapping[str, np.ndarray], alpha: float = 0.05
                           ) -> dict[str, Interval]:
    """Percentile intervals; NaN resamples left out, a NaN estimate keeps NaN bounds."""
    out = {}
    for k, est in full.items():
        s = samples[k]
        ok = s[np.isfinite(s)]
        if not math.isfinite(est) or ok.size == 0:
            out[k] = Interval(est, math.nan, math.nan, math.nan)
            continue
        lo, hi = _percentiles(ok, alpha)
        out[k] = Interval(est, lo, hi, float(ok.std()))
    return out


def paired_from_samples(full_a: Mapping[str, float], samples_a: Mapping[str, np.ndarray],
                        full_b: Mapping[str, float], samples_b: Mapping[str, np.ndarray], alpha: float = 0.05
                        ) -> dict[str, PairedInterval]:
    """Paired differences b - a from two models' values on the same resamples."""
    out = {}
    for k in full_a:
        a, b = full_a[k], full_b[k]
        diff = samples_b[k] - samples_a[k]
        dd = diff[np.isfinite(diff)]
        if not (math.isfinite(a) and math.isfinite(b)) or dd.size == 0:
            out[k] = PairedInterval(b - a, math.nan, math.nan, math.nan, False, a, b)
            continue
        lo, hi = _percentiles(dd, alpha)
        p_value = min(1.0, 2.0 * min(np.sum(dd <= 0) + 1, np.sum(dd >= 0) + 1) / (len(dd) + 1))
        out[k] = PairedInterval(b - a, lo, hi, float(p_value), bool(lo > 0 or hi < 0), a, b)
    return out


def bootstrap_group_scores(y_true: Any, probs: Any, groups: Any, y_pred: Any | None = None, n_boot: int = 1000,
                           seed: int | np.random.Generator | None = 0, alpha: float = 0.05, stratify: bool = True,
                           settings: ScoreSettings | None = None) -> dict[str, Interval]:
    """Percentile interval of every number of :func:`group_scores` (stratified by group by default).

    NaN resamples (a class missing from a group in that resample) are left out
    of the percentiles; a number that is NaN on the full data keeps NaN bounds.
    """
    _check_params(n_boot, alpha)
    full, samples = group_score_samples(y_true, [(probs, y_pred)], groups, n_boot, seed, stratify, settings)
    return intervals_from_samples(full[0], samples[0], alpha)


def paired_group_scores(y_true: Any, probs_a: Any, probs_b: Any, groups: Any, y_pred_a: Any | None = None,
                        y_pred_b: Any | None = None, n_boot: int = 1000,
                        seed: int | np.random.Generator | None = 0, alpha: float = 0.05, stratify: bool = True,
                        settings: ScoreSettings | None = None) -> dict[str, PairedInterval]:
    """Paired difference b - a of every number, both models scored on the same resamples."""
    _check_params(n_boot, alpha)
    full, samples = group_score_samples(y_true, [(probs_a, y_pred_a), (probs_b, y_pred_b)], groups, n_boot, seed,
                                        stratify, settings)
    return paired_from_samples(full[0], samples[0], full[1], samples[1], alpha)
