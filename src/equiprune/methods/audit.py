"""The `audit` verb: per-group metrics with bootstrap intervals, FATE against a baseline, cost.

``audit_model`` scores one model on one dataset; ``audit_run`` does the same for
a run folder (its model, its data split, by default its chain's baseline) and
writes the evidence into the folder: ``predictions_<split>.csv``, the ``audit``
section of metrics.json and report.md / report.html.

The paper two-group metrics (docs/METRICS.md) are always computed; ``groups`` adds
an equiprune extension, a multi-group audit by another metadata column (or the
intersection of two columns).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from ..data.atomic import atomic_write
from ..data.cache import file_sha256
from ..data.fingerprint import changed_tables, table_hashes
from ..data.skin_tone import add_skin_tone_columns, skin_tone_summary
from ..engine import Predictions, RunDir, describe_diff, predict, read_json, resolve_device
from ..engine.health import check_finite, degenerate_warnings

#: a group with fewer images than this gets a small-sample warning (report: beside its numbers too)
SMALL_GROUP = 30
from ..metrics import (
    MetricsError,
    bootstrap_ci,
    bootstrap_samples,
    fate_samples,
    fate_scores_or_undefined,
    group_fairness,
    intersect_groups,
    multigroup_gaps,
    paired_bootstrap,
)
from ..metrics import ScoreSettings
from ..models import model_cost
from .audit_scores import score_section

__all__ = [
    "AuditConfig",
    "AuditError",
    "AuditResult",
    "audit_model",
    "audit_run",
    "audit_section_name",
    "predictions_to_frame",
    "SPLITS",
]

SPLITS = ("test", "val", "train")
# Per-group accuracy numbers whose signed g0 - g1 difference the report explains.
_GAP_BASES = ("acc", "precision", "recall", "f1")


class AuditError(ValueError):
    """Bad audit input: unknown split or column, a baseline that does not match, ..."""


@dataclass
class AuditConfig:
    """Settings of an audit.

    Attributes:
        split: which split of the run's data to score (test, val or train).
        n_boot: bootstrap resamples for every interval (stratified by group).
        seed: seed of the bootstrap resampling.
        alpha: 1 - confidence level of the intervals (0.05 gives 95%).
        fate_lambda: the lambda of FATE (weight of the fairness change).
        groups: optional metadata column for an extra multi-group audit, e.g.
            ``"fitzpatrick"``, or two columns ``"fitzpatrick,sex"`` for their
            intersection. The two-group paper metrics are computed regardless.
        min_group_size: multi-group audits leave groups smaller than this out
            of the gaps (they stay in the per-group table).
        full_classes: pass the dataset's class count to the metrics instead of
            deriving C from the data as the reference code does (a documented
            deviation; only matters when a class is absent from the split).
        latency: measure the forward latency (takes a second or two).
        scores: also the threshold-free and calibration numbers (per-group
            AUC, ECE, NLL, FNR/FPR, Eodd at a fixed specificity;
            docs/GROUP_SCORES.md), from the same predictions.
        ece_bins, ece_binning: ECE bins, ``equal`` (width) or ``adaptive`` (mass).
        specificity: the specificity of MEDFAIR's fixed-specificity Eodd.
        batch_size: prediction batch size.
        device: "auto", "cpu", "cuda", ...
        progress: show a progress bar while predicting.
    """

    split: str = "test"
    n_boot: int = 1000
    seed: int = 0
    alpha: float = 0.05
    fate_lambda: float = 1.0
    groups: str | None = None
    min_group_size: int = 1
    full_classes: bool = False
    latency: bool = True
    scores: bool = True
    ece_bins: int = 10
    ece_binning: str = "equal"
    specificity: float = 0.8
    batch_size: int = 256
    device: str = "auto"
    progress: bool = False

    def validate(self) -> None:
        """Raise AuditError when a setting is out of range."""
        if self.split not in SPLITS:
            raise AuditError(f"split must be one of {', '.join(SPLITS)}; got {self.split!r}.")
        if int(self.n_boot) < 1:
            raise AuditError(f"n_boot must be >= 1 (e.g. 1000); got {self.n_boot}.")
        if not 0.0 < float(self.alpha) < 1.0:
            raise AuditError(f"alpha must be in (0, 1), e.g. 0.05 for 95% intervals; got {self.alpha}.")
        if self.groups is not None and not str(self.groups).strip():
            raise AuditError("groups is empty; give a metadata column such as 'fitzpatrick'.")
        try:
            self.score_settings().validate()
        except MetricsError as exc:
            raise AuditError(str(exc)) from exc

    def score_settings(self) -> ScoreSettings:
        """The settings of the threshold-free and calibration numbers."""
        return ScoreSettings(n_bins=self.ece_bins, binning=self.ece_binning, specificity=self.specificity,
                             min_group_size=self.min_group_size)


@dataclass(eq=False)
class AuditResult:
    """Everything an audit measured; ``to_dict()`` is what metrics.json stores.

    ``intervals``: metric -> {estimate, lo, hi, std}; ``signed_gaps``: group 0 minus
    group 1 of accuracy/precision/recall/F1 with intervals; ``fate`` and
    ``fate_intervals`` (empty without a baseline): ``fate_eopp0`` etc. of this model
    against the baseline; ``paired``: metric -> paired-bootstrap difference
    (this model minus baseline); ``confusion``: counts of shape (2, C, C),
    [group, true class, predicted class].
    """

    split: str
    metrics: dict[str, float]
    intervals: dict[str, dict[str, float]]
    predictions: Predictions
    classes: list[str]
    group_names: list[str]
    confusion: np.ndarray
    signed_gaps: dict[str, dict[str, float]] = field(default_factory=dict)
    fate: dict[str, float | None] = field(default_factory=dict)
    fate_intervals: dict[str, dict[str, float]] = field(default_factory=dict)
    paired: dict[str, dict[str, Any]] = field(default_factory=dict)
    baseline_metrics: dict[str, float] | None = None
    baseline_intervals: dict[str, dict[str, float]] = field(default_factory=dict)
    baseline_path: str | None = None
    baseline_source: str | None = None
    cost: dict[str, float] | None = None
    baseline_cost: dict[str, float] | None = None
    multigroup: dict[str, Any] | None = None
    scores: dict[str, Any] | None = None
    skin_tone: dict[str, Any] | None = None   # estimated ITA against the given group (data.skin_tone_summary)
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # what makes the numbers misleading (a one-class classifier): shown first in the terminal and report
    warnings: list[str] = field(default_factory=list)
    group_coding: str = ""
    predictions_file: str | None = None
    report_html: Path | None = None
    report_md: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (the `audit` section of metrics.json)."""
        return {
            "split": self.split,
            "settings": dict(self.settings),
            "classes": list(self.classes),
            "group_names": list(self.group_names),
            "group_coding": self.group_coding,
            "metrics": dict(self.metrics),
            "intervals": self.intervals,
            "signed_gaps": self.signed_gaps,
            "baseline": None if self.baseline_metrics is None else {
                "path": self.baseline_path, "source": self.baseline_source,
                "metrics": dict(self.baseline_metrics), "intervals": self.baseline_intervals,
                "cost": self.baseline_cost,
            },
            "fate": dict(self.fate),
            "fate_intervals": self.fate_intervals,
            "paired": self.paired,
            "cost": self.cost,
            "confusion": {"labels": list(self.classes[: self.confusion.shape[-1]]),
                          "counts": self.confusion.tolist()},
            "multigroup": self.multigroup,
            "scores": self.scores,
            "skin_tone": self.skin_tone,
            "predictions_file": self.predictions_file,
            "notes": list(self.notes),
            "warnings": list(self.warnings),
        }


def audit_section_name(split: str) -> str:
    """metrics.json section of an audit: ``audit`` for the test split, ``audit_<split>`` otherwise."""
    return "audit" if split == "test" else f"audit_{split}"


# ----------------------------------------------------------------------------- pieces


def _interval_dict(estimate: float, samples: np.ndarray, alpha: float) -> dict[str, float]:
    s = samples[np.isfinite(samples)]
    if s.size == 0:
        return {"estimate": float(estimate), "lo": float("nan"), "hi": float("nan"), "std": float("nan")}
    lo, hi = np.percentile(s, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return {"estimate": float(estimate), "lo": float(lo), "hi": float(hi), "std": float(s.std())}


def _confusion(p: Predictions, c: int) -> np.ndarray:
    """Counts per (group, true, predicted) for groups 0/1; shape (2, C, C)."""
    key = (p.groups * c + p.y_true) * c + p.y_pred
    return np.bincount(key, minlength=2 * c * c).reshape(2, c, c)


def _check_same_items(p: Predictions, b: Predictions) -> None:
    if len(p) != len(b) or not np.array_equal(p.index, b.index) or not np.array_equal(p.y_true, b.y_true) \
            or not np.array_equal(p.groups, b.groups):
        raise AuditError(
            "the baseline predictions are not for the same items as the audited model "
            f"({len(b)} vs {len(p)} items, or another order/labels/groups). Predict the baseline "
            "on the same split of the same data (audit_run does this for you).")


def _column_names(column: str, values: np.ndarray, group_names: list[str]) -> list[str]:
    """Display names of a metadata column's sorted distinct values."""
    if column == "group":
        return [group_names[int(v)] if 0 <= int(v) < len(group_names) else str(v) for v in values]
    if "fitz" in column.lower() and np.issubdtype(values.dtype, np.integer):
        roman = {1: "I", 2: "II", 3: "III", 4: "IV", 5: "V", 6: "VI"}
        return [f"type {roman.get(int(v), str(v))}" for v in values]
    return [str(v) for v in values]


def _group_codes(dataset: Any, p: Predictions, spec: str, group_names: list[str]
                 ) -> tuple[list[str], np.ndarray, list[str]]:
    """(columns, group code per prediction, name per code) of a multi-group audit by metadata column(s)."""
    meta = getattr(dataset, "meta", None)
    if not isinstance(meta, pd.DataFrame):
        raise AuditError("this dataset has no metadata table (`meta`), so --groups cannot be used.")
    cols = [c.strip() for c in spec.split(",") if c.strip()]
    if not 1 <= len(cols) <= 2:
        raise AuditError(f"groups takes one column or two separated by a comma; got {spec!r}.")
    missing = [c for c in cols if c not in meta.columns]
    if missing:
        raise AuditError(
            f"metadata column(s) {missing} not found; this dataset has: {', '.join(map(str, meta.columns))}.")
    if len(p.index) and (p.index.min() < 0 or p.index.max() >= len(meta)):
        raise AuditError("prediction indices point outside the metadata table; the dataset is inconsistent.")
    vals = [meta[c].to_numpy()[p.index] for c in cols]
    for c, v in zip(cols, vals):
        if pd.isna(v).any():
            raise AuditError(f"column {c!r} has missing values for some items; fill or drop them first.")
    if len(cols) == 1:
        ids_vals, ids = np.unique(vals[0], return_inverse=True)
        names = _column_names(cols[0], ids_vals, group_names)
        ids = ids.reshape(-1).astype(np.int64)
    else:
        ua, ub = np.unique(vals[0]), np.unique(vals[1])
        # value -> name maps: a list would be indexed by position, not by value.
        ig = intersect_groups(vals[0], vals[1], dict(zip(ua.tolist(), _column_names(cols[0], ua, group_names))),
                              dict(zip(ub.tolist(), _column_names(cols[1], ub, group_names))), sep=" & ")
        ids, names = ig.ids, ig.names
    return cols, ids, names


def _multigroup(dataset: Any, p: Predictions, spec: str, group_names: list[str],
                num_classes: int | None, min_group_size: int) -> dict[str, Any]:
    """Per-group table, pairwise paper gaps and worst pairs by metadata column(s)."""
    cols, ids, names = _group_codes(dataset, p, spec, group_names)
    res = multigroup_gaps(p.y_true, p.y_pred, ids, num_classes=num_classes, group_names=names,
                          min_group_size=min_group_size)
    def records(df: pd.DataFrame) -> list[dict[str, Any]]:
        # numpy scalars -> Python ones, so the section is plain JSON data.
        return [{str(k): (v.item() if isinstance(v, np.generic) else v) for k, v in r.items()}
                for r in df.to_dict(orient="records")]

    return {
        "column": ",".join(cols),
        "table": records(res.table.reset_index()),
        "pairwise": records(res.pairwise),
        "gaps": records(res.gaps.reset_index()),
        "num_classes": int(res.num_classes),
    }


def _paired_resamples(sm: dict[str, np.ndarray], sb: dict[str, np.ndarray], cfg: AuditConfig,
                      paired: dict[str, Any]) -> bool:
    """Whether the model's (`sm`) and baseline's (`sb`) resamples are the same resamples.

    bootstrap_samples draws its resample indices from the group codes and the
    seed only, so two calls with the same seed see the same resamples. That is
    checked against paired_bootstrap (which guarantees pairing) before FATE
    intervals are drawn from them.
    """
    d = sm["f1"] - sb["f1"]
    lo, hi = np.nanpercentile(d, [100 * cfg.alpha / 2, 100 * (1 - cfg.alpha / 2)])
    return (math.isclose(lo, paired["f1"]["lo"], abs_tol=1e-12)
            and math.isclose(hi, paired["f1"]["hi"], abs_tol=1e-12))


# ----------------------------------------------------------------------------- API


def audit_model(model: nn.Module, dataset: Any, cfg: AuditConfig | None = None,
                baseline: Predictions | None = None, image_size: int | None = None) -> AuditResult:
    """Audit `model` on `dataset` (items `(image, label, group, index)`).

    Args:
        model: the classifier (moved to ``cfg.device``).
        dataset: a GroupDataset (``classes``, ``group_names`` and ``meta`` are used
            when present).
        cfg: AuditConfig; defaults to 1000 stratified resamples, 95% intervals.
        baseline: predictions of the baseline model on the *same* dataset; gives
            FATE and paired-bootstrap differences (this model minus baseline).
        image_size: input size for the cost measurement (MACs, latency); no cost
            is measured without it.
    """
    cfg = cfg or AuditConfig()
    cfg.validate()
    device = resolve_device(cfg.device)
    model.to(device)
    pred = predict(model, dataset, batch_size=cfg.batch_size, device=device, progress=cfg.progress)
    check_finite(model, pred, dataset)  # NaN logits would become class 0 everywhere: zero gaps that mean nothing
    classes = [str(c) for c in getattr(dataset, "classes", [])]
    group_names = [str(g) for g in getattr(dataset, "group_names", [])] or ["group 0", "group 1"]
    num_classes = len(classes) if cfg.full_classes and classes else None
    notes: list[str] = []
    if cfg.full_classes:
        notes.append("C is the dataset's class count (deviation from the reference, which derives C "
                     "from the data).")

    res = group_fairness(pred.y_true, pred.y_pred, pred.groups, num_classes=num_classes)
    metrics = res.to_dict()
    c = res.num_classes
    if not classes or len(classes) < c:
        classes = classes + [str(i) for i in range(len(classes), c)]
    ci = bootstrap_ci(pred.y_true, pred.y_pred, pred.groups, n_boot=cfg.n_boot, seed=cfg.seed,
                      alpha=cfg.alpha, num_classes=num_classes)
    intervals = {k: {"estimate": v.estimate, "lo": v.lo, "hi": v.hi, "std": v.std} for k, v in ci.items()}
    samples = bootstrap_samples(pred.y_true, pred.y_pred, pred.groups, n_boot=cfg.n_boot, seed=cfg.seed,
                                num_classes=num_classes)
    signed = {b: _interval_dict(metrics[f"{b}_g0"] - metrics[f"{b}_g1"],
                                samples[f"{b}_g0"] - samples[f"{b}_g1"], cfg.alpha) for b in _GAP_BASES}

    result = AuditResult(split=cfg.split, metrics=metrics, intervals=intervals, predictions=pred,
                         classes=classes, group_names=group_names, confusion=_confusion(pred, c), signed_gaps=signed,
                         settings=asdict(cfg), notes=notes,
                         warnings=degenerate_warnings(pred.y_pred, classes, pred.y_true))
    for g, name in enumerate(group_names[:2]):
        n = int(metrics.get(f"n_g{g}", 0) or 0)
        if 0 < n < SMALL_GROUP:
            result.warnings.append(f"group {name} has only {n} images on the {cfg.split} split (fewer than "
                                   f"{SMALL_GROUP}): its numbers and interval rest on few images; read its gaps "
                                   "with care.")

    if baseline is not None:
        _check_same_items(pred, baseline)
        base = group_fairness(baseline.y_true, baseline.y_pred, baseline.groups, num_classes=num_classes)
        result.baseline_metrics = base.to_dict()
        bci = bootstrap_ci(baseline.y_true, baseline.y_pred, baseline.groups, n_boot=cfg.n_boot, seed=cfg.seed,
                           alpha=cfg.alpha, num_classes=num_classes)
        result.baseline_intervals = {k: {"estimate": v.estimate, "lo": v.lo, "hi": v.hi, "std": v.std}
                                     for k, v in bci.items()}
        pb = paired_bootstrap(pred.y_true, baseline.y_pred, pred.y_pred, pred.groups, n_boot=cfg.n_boot,
                              seed=cfg.seed, alpha=cfg.alpha, num_classes=num_classes)
        result.paired = {k: asdict(v) for k, v in pb.items()}
        result.fate, undefined = fate_scores_or_undefined(res, base, lam=cfg.fate_lambda)
        by_reason: dict[str, list[str]] = {}  # one criterion with a zero baseline must not hide the others
        for k, msg in undefined.items():
            by_reason.setdefault(msg, []).append(f"FATE({k[5:]})")
        for msg, names in by_reason.items():
            result.notes.append(f"{', '.join(names)} left out. {msg}")
        base_samples = bootstrap_samples(baseline.y_true, baseline.y_pred, baseline.groups, n_boot=cfg.n_boot,
                                         seed=cfg.seed, num_classes=num_classes)
        if _paired_resamples(samples, base_samples, cfg, result.paired):
            for k, s in fate_samples(samples, base_samples, lam=cfg.fate_lambda).items():
                if result.fate.get(k) is not None:
                    result.fate_intervals[k] = _interval_dict(result.fate[k], s, cfg.alpha)
        else:
            result.notes.append("FATE intervals left out: the bootstrap resamples of the two models could "
                                "not be paired.")

    if cfg.groups:
        if "ita6" in [c.strip() for c in cfg.groups.split(",")] and hasattr(dataset, "images"):
            add_skin_tone_columns(dataset, progress=cfg.progress)  # estimated from the pixels, cached
        result.multigroup = _multigroup(dataset, pred, cfg.groups, group_names, num_classes, cfg.min_group_size)
    if cfg.scores:
        by_column = None
        if cfg.groups:
            cols, ids, names = _group_codes(dataset, pred, cfg.groups, group_names)
            by_column = (",".join(cols), ids, names)
        try:
            result.scores = score_section(pred, cfg.score_settings(), cfg.n_boot, cfg.seed, cfg.alpha, group_names,
                                          classes, baseline=baseline, by_column=by_column)
        except MetricsError as exc:
            result.notes.append(f"threshold-free and calibration numbers left out: {exc}")
    result.skin_tone = skin_tone_summary(dataset)
    if image_size is not None:
        result.cost = model_cost(model, int(image_size), latency=cfg.latency).to_dict()
    return result


def predictions_to_frame(p: Predictions, extra: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """Predictions as a table: index, y_true, y_pred, group, prob_0..prob_{C-1} (+ extra columns)."""
    df = pd.DataFrame({"index": p.index, "y_true": p.y_true, "y_pred": p.y_pred, "group": p.groups})
    if extra:
        for k, v in extra.items():
            df[k] = v
    probs = np.asarray(p.probs)
    for j in range(probs.shape[1] if probs.ndim == 2 else 0):
        df[f"prob_{j}"] = probs[:, j]
    return df


# DataConfig fields that change how data are loaded, not which images are in a split, and the
# training-only augmentation (val and test images are never augmented): a baseline trained with
# another augmentation preset was still predicted on the same images.
_RUNTIME_DATA_KEYS = ("progress", "decode_workers", "cache_dir", "augment")


def _data_identity(data_config: Any) -> dict[str, Any]:
    d = asdict(data_config) if hasattr(data_config, "__dataclass_fields__") else dict(data_config)
    return {k: v for k, v in d.items() if k not in _RUNTIME_DATA_KEYS}


def check_same_data(base_data: Any, data: Any, base_path: str | Path, run_path: str | Path) -> None:
    """Raise AuditError when a baseline was predicted on other images than the audited run.

    Only the settings that choose the images count: the training-only
    augmentation and loading settings may differ. The message names the
    differing fields only.
    """
    a, b = _data_identity(base_data), _data_identity(data)
    if a != b:
        raise AuditError(
            f"baseline {base_path} was run on other data than {run_path} (baseline -> this run: "
            f"{describe_diff(a, b)}); FATE compares two models on the same images, so pass a baseline trained "
            "on the same data settings (the training augmentation may differ).")


def _resolve_baseline(run_path: Path, config: dict[str, Any], baseline_run: str | Path | None
                      ) -> tuple[Path | None, str | None, list[str]]:
    notes: list[str] = []
    if baseline_run is not None:
        path = Path(baseline_run)
        if not path.is_dir():
            raise AuditError(f"baseline run folder {path} does not exist; pass an existing run folder "
                             "(one written by `equiprune train`).")
        return path, "argument", notes
    from_cfg = config.get("baseline")
    if not from_cfg:
        return None, None, notes
    path = Path(from_cfg)
    if not path.is_absolute():
        path = (run_path / path) if (run_path / path).is_dir() else path
    if path.resolve() == run_path.resolve():
        return None, None, notes
    if not path.is_dir():
        notes.append(f"the baseline recorded in config.json ({from_cfg}) does not exist any more; "
                     "FATE is left out (pass --baseline to give another).")
        return None, None, notes
    notes.append(f"baseline taken from config.json: {path}")
    return path, "config.json", notes


def predictions_name(split: str) -> str:
    """File name of a run's stored per-image predictions on `split`."""
    return f"predictions_{split}.csv"


def _stored_audit(rd: RunDir, cfg: AuditConfig) -> tuple[Predictions, dict[str, Any] | None] | None:
    """A baseline's stored predictions and cost on `cfg.split`, if its model.pt is the one they came from.

    None (predict again) when the run was never audited on that split, was
    audited before hashes were recorded, its model changed since, or its
    stored cost lacks the latency this audit asks for.
    """
    section = rd.read_metrics().get(audit_section_name(cfg.split)) or {}
    f = rd.file(predictions_name(cfg.split))
    if not section.get("model_sha256") or not f.exists() or section.get("split") != cfg.split:
        return None
    cost = section.get("cost")
    if cfg.latency and cost is not None and cost.get("latency_ms") is None:
        return None
    if section["model_sha256"] != file_sha256(rd.model_path):
        return None
    df = pd.read_csv(f)
    probs = df[[c for c in df.columns if c.startswith("prob_")]].to_numpy(dtype=np.float64)
    pred = Predictions(y_true=df["y_true"].to_numpy(), y_pred=df["y_pred"].to_numpy(), groups=df["group"].to_numpy(),
                       probs=probs, index=df["index"].to_numpy())
    return pred, cost


def store_audit(rd: RunDir, result: AuditResult, split: str, extra: dict[str, Any] | None = None) -> None:
    """Write an audit into a run folder: ``predictions_<split>.csv`` (atomically) and its metrics.json section.

    The section carries the SHA-256 of the folder's model.pt, so that a later
    audit using this run as its baseline reads these predictions instead of
    predicting again while the model is unchanged. `extra`: more columns for
    the predictions table (the multi-group audit's metadata).
    """
    name = predictions_name(split)
    frame = predictions_to_frame(result.predictions, extra)
    atomic_write(rd.file(name), lambda tmp: frame.to_csv(tmp, index=False))
    result.predictions_file = name
    section = result.to_dict()
    if rd.model_path.exists():
        section["model_sha256"] = file_sha256(rd.model_path)
    rd.set_section(audit_section_name(split), section)


def _changed_table_warnings(loaded: Any) -> list[str]:
    """A warning per metadata table that changed since the run (or the run its chain started from) was trained."""
    recorded = loaded.config.get("tables")
    if recorded is None and loaded.config.get("baseline"):
        base_cfg = Path(loaded.config["baseline"]) / RunDir.CONFIG
        recorded = read_json(base_cfg).get("tables") if base_cfg.is_file() else None
    return [f"the metadata table {p} changed since this model was trained (its SHA-256 differs): the audit uses "
            "today's table, which may not hold the rows the model was trained and selected on."
            for p in changed_tables(recorded, table_hashes(loaded.data_config))]


def audit_run(run_path: str | Path, cfg: AuditConfig | None = None, baseline_run: str | Path | None = None
              ) -> AuditResult:
    """Audit the model of a run folder on its own data and write the evidence there.

    The baseline is `baseline_run` if given, else the ``baseline`` recorded in the
    run's config.json (the vanilla run its chain started from) when that is
    another folder. Writes ``predictions_<split>.csv``, the
    ``audit`` section (``audit_<split>`` for val/train) of metrics.json. The
    HTML/Markdown report is the report layer's job:
    `equiprune.api.audit` does both.
    """
    from .runs import open_run

    cfg = cfg or AuditConfig()
    cfg.validate()
    run_path = Path(run_path)
    loaded = open_run(run_path)
    loaded.run.hold()  # one writer: refused while another process writes this folder, before decoding data
    splits = loaded.splits()
    dataset = getattr(splits, cfg.split, None)
    if dataset is None or len(dataset) == 0:
        raise AuditError(f"the data of {run_path} has no {cfg.split!r} split; use --split with one of "
                         f"{', '.join(s for s in SPLITS if getattr(splits, s, None) is not None)}.")
    image_size = loaded.image_size

    base_path, source, notes = _resolve_baseline(run_path, loaded.config, baseline_run)
    base_pred = base_cost = None
    reused = False
    if base_path is not None:
        base = open_run(base_path)
        check_same_data(base.data_config, loaded.data_config, base_path, run_path)
        stored = _stored_audit(base.run, cfg)
        if stored is not None:
            (base_pred, base_cost), reused = stored, True
        else:
            device = resolve_device(cfg.device)
            base.model.to(device)
            base_pred = predict(base.model, dataset, batch_size=cfg.batch_size, device=device,
                                progress=cfg.progress)
            if image_size is not None:
                base_cost = model_cost(base.model, int(image_size), latency=cfg.latency).to_dict()

    result = audit_model(loaded.model, dataset, cfg, baseline=base_pred, image_size=image_size)
    result.notes[:0] = notes
    result.warnings += list(getattr(splits, "warnings", []))  # e.g. images shared by splits, when allowed
    result.warnings += _changed_table_warnings(loaded)
    result.group_coding = getattr(splits, "group_coding", "")
    if base_path is not None:
        result.baseline_path = str(base_path.resolve())
        result.baseline_source = source
        result.baseline_cost = base_cost

    rd: RunDir = loaded.run
    extra = None
    if result.multigroup is not None:
        meta = dataset.meta
        extra = {f"meta_{c}": meta[c].to_numpy()[result.predictions.index]
                 for c in result.multigroup["column"].split(",")}
    store_audit(rd, result, cfg.split, extra)
    rd.log(f"audit ({cfg.split}): macro-F1 {result.metrics['f1']:.4f}, Eodd {result.metrics['eodd']:.4f}"
           + (f", FATE(Eodd) {result.fate.get('fate_eodd')}" if result.fate else "")
           + (" (baseline predictions read from its audit: its model.pt is unchanged)" if reused else ""), echo=False)

    return result

