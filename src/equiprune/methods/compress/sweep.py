"""A sweep of one compression technique, every point audited against the uncompressed model.

`run_compress_sweep` compresses the model at each sweep value, audits each
compressed model on the audit split (bootstrap intervals, FATE and paired
bootstrap differences against the uncompressed model's predictions, via
`methods.audit.audit_model`) and writes, in the run folder:

- ``config.json`` (kind ``compress``; the sweep values under ``sweep``),
- ``metrics.json``: one ``history`` record per finished point, the
  ``uncompressed`` section (audit and cost of the input model) and a
  ``sweep`` section (file names, the widened points),
- ``points/<value>/``: a run folder per point (config.json, model.pt,
  metrics.json with ``compress`` and ``audit`` sections, predictions CSV),
  so ``equiprune audit --run RUN/points/<value>`` works on it,
- ``sweep_table.csv`` / ``sweep_table.md``: cost and fairness per point, with
  the gaps that widen significantly marked,
- ``plots/fairness_vs_size.png``, ``plots/fairness_vs_latency.png`` (when latency
  is measured) and ``plots/fairness_vs_nonzero_params.png`` (the axis on which
  unstructured pruning, which keeps tensors dense, shows its compression).

The reference of every point is the sweep's input model. A point folder's
config.json names the chain's vanilla baseline (as every run folder does), so
`equiprune audit --run` on a point compares against that run, which is the
same model when the sweep was started from a vanilla run.

"Widens significantly": the paired bootstrap interval of (compressed −
uncompressed) for a gap metric (Eodd, Eopp0, Eopp1, DP, F1 gap) lies entirely
above 0. The sweep is resumable: finished points (history records) are
skipped, a point whose model was saved but not yet audited is reloaded rather
than recomputed, and fine-tuning/distillation inside a point resumes from its
per-epoch state.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from torch import nn

from ...engine import Predictions, RunDir, TrainConfig
from ...metrics import GAP_METRICS as TWO_GROUP_GAPS
from ...metrics import float_or_nan as _num
from ...models import input_size, load_checkpoint
from ..audit import AuditConfig, AuditResult, audit_model, store_audit
from .base import CompressError, CompressResult, measure_cost
from .distill import DistillConfig, distill
from .lowrank import RANK_RULES, LowRankConfig, low_rank
from .magnitude import MagnitudeConfig, StructuredConfig, magnitude_prune, structured_prune
from .quantize import MODES, QuantConfig, quantize

METHODS = ("quant", "prune-local", "prune-global", "prune-structured", "distill", "lowrank")
DEFAULT_SWEEPS: dict[str, list[float | str]] = {
    "quant": ["dynamic", "static"],
    "prune-local": [0.1, 0.3, 0.5, 0.7, 0.9],
    "prune-global": [0.1, 0.3, 0.5, 0.7, 0.9],
    "prune-structured": [0.1, 0.2, 0.3, 0.5, 0.7],
    "distill": [0.75, 0.5, 0.25],
    "lowrank": [0.99, 0.95, 0.9, 0.8, 0.6],
}
# Gaps whose paired difference (compressed - uncompressed) > 0 means "less fair": metrics.GAP_METRICS and F1 Diff.
GAP_METRICS = (*TWO_GROUP_GAPS, "f1_diff")
# Metrics kept with intervals and paired differences in every history record.
KEY_METRICS = ("acc", "f1", "f1_g0", "f1_g1", "f1_diff", "acc_g0", "acc_g1", *TWO_GROUP_GAPS)
# Settings that do not change results, left out of the resume check.
_VOLATILE = ("sweep", "progress")


def _default_finetune() -> TrainConfig:
    return TrainConfig(epochs=0, lr=0.01)


@dataclass
class CompressConfig:
    """Settings of a compression sweep.

    `method`: quant | prune-local | prune-global | prune-structured | distill |
    lowrank. `sweep`: the values, by method: quantization modes (dynamic,
    static, qat); sparsity for prune-local/global; channel ratio for
    prune-structured; student width factor for distill; for lowrank the
    energy kept (`lowrank_by="energy"`), the fraction of the full rank
    ("rank_ratio") or the rank ("rank"). Empty = `DEFAULT_SWEEPS[method]`.
    `finetune` runs after pruning / factoring (0 epochs by default), `qat` is
    the fine-tuning of the qat mode, `distill` the student's training.
    `audit` settings apply to every point and to the uncompressed model.
    """

    method: str = "prune-global"
    sweep: list[float | str] = field(default_factory=list)
    finetune: TrainConfig = field(default_factory=_default_finetune)
    # quantization
    backend: str = "x86"
    calibration_size: int = 256
    calibration_seed: int = 0
    qat: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1, lr=1e-3, schedule="none"))
    # pruning
    skip_final: bool = False
    structured_global: bool = False
    # low rank
    lowrank_by: str = "energy"
    # distillation
    temperature: float = 4.0
    alpha: float = 0.9
    group_weights: str | list[float] = "none"
    weight_ce: bool = False
    distill: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=10))
    # evaluation
    audit: AuditConfig = field(default_factory=lambda: AuditConfig(latency=False))
    latency: bool = True
    progress: bool = True

    def values(self) -> list[float | str]:
        """The sweep values, validated and typed for the method."""
        raw = list(self.sweep) if self.sweep else list(DEFAULT_SWEEPS.get(self.method, []))
        if self.method == "quant":
            bad = [v for v in raw if str(v) not in MODES]
            if bad:
                raise CompressError(f"quant sweep values are modes ({', '.join(MODES)}), got {bad}")
            out: list[float | str] = [str(v) for v in raw]
        else:
            try:
                out = [float(v) for v in raw]
            except (TypeError, ValueError):
                raise CompressError(f"{self.method} sweep values must be numbers, got {raw}") from None
        labels = [point_label(v) for v in out]
        if len(set(labels)) != len(labels):
            raise CompressError(f"the sweep repeats a value: {labels}")
        return out

    def validate(self) -> None:
        if self.method not in METHODS:
            raise CompressError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.lowrank_by not in RANK_RULES:
            raise CompressError(f"lowrank_by must be one of {', '.join(RANK_RULES)}, got {self.lowrank_by!r}")
        if not self.values():
            raise CompressError("the sweep is empty; give at least one value")
        self.audit.validate()
        for v in self.values():  # fail before any work, not at the fourth point
            technique_config(self, v).validate()


@dataclass
class SweepResult:
    """Per-point records (as in metrics.json), the table, and where the files are."""

    records: list[dict[str, Any]]
    table: pd.DataFrame
    uncompressed: dict[str, Any]
    run: RunDir | None = None
    table_csv: Path | None = None
    table_md: Path | None = None
    plots: list[Path] = field(default_factory=list)
    results: dict[str, CompressResult] = field(default_factory=dict)  # points computed in this call
    method: str = ""
    group_names: list[str] = field(default_factory=list)


def point_label(value: float | str) -> str:
    """Folder name and record key of a sweep value (``0.5``, ``0.05``, ``static``)."""
    return value if isinstance(value, str) else format(float(value), "g")


def technique_config(cfg: CompressConfig, value: float | str) -> Any:
    """The technique config of one sweep point."""
    m = cfg.method
    if m == "quant":
        return QuantConfig(mode=str(value), backend=cfg.backend, calibration_size=cfg.calibration_size,
                           calibration_seed=cfg.calibration_seed, qat=replace(cfg.qat), latency=cfg.latency)
    if m in ("prune-local", "prune-global"):
        return MagnitudeConfig(sparsity=float(value), scope=m.split("-")[1], skip_final=cfg.skip_final,
                               finetune=replace(cfg.finetune), latency=cfg.latency)
    if m == "prune-structured":
        return StructuredConfig(ratio=float(value), global_pruning=cfg.structured_global,
                                finetune=replace(cfg.finetune), latency=cfg.latency)
    if m == "distill":
        return DistillConfig(width_factor=float(value), temperature=cfg.temperature, alpha=cfg.alpha,
                             group_weights=cfg.group_weights, weight_ce=cfg.weight_ce, train=replace(cfg.distill),
                             latency=cfg.latency)
    if m == "lowrank":
        return LowRankConfig(by=cfg.lowrank_by, value=float(value), finetune=replace(cfg.finetune),
                             latency=cfg.latency)
    raise CompressError(f"method must be one of {', '.join(METHODS)}, got {m!r}")


_RUNNERS: dict[type, Callable[..., CompressResult]] = {
    QuantConfig: quantize, MagnitudeConfig: magnitude_prune, StructuredConfig: structured_prune,
    DistillConfig: distill, LowRankConfig: low_rank,
}


def compress(model: nn.Module, splits: Any, cfg: CompressConfig, value: float | str,
             run_dir: str | Path | RunDir | None = None, arch: dict[str, Any] | None = None,
             image_size: int | None = None) -> CompressResult:
    """Compress `model` with `cfg.method` at one sweep value."""
    tcfg = technique_config(cfg, value)
    for sub in ("finetune", "train", "qat"):
        tc = getattr(tcfg, sub, None)
        if isinstance(tc, TrainConfig):
            tc.progress = tc.progress and cfg.progress
    return _RUNNERS[type(tcfg)](model, splits, tcfg, run_dir=run_dir, arch=arch, image_size=image_size)


# ----------------------------------------------------------------------------- records


def _iv(res: AuditResult, k: str) -> dict[str, float]:
    iv = res.intervals.get(k, {})
    return {"estimate": iv.get("estimate", res.metrics.get(k)), "lo": iv.get("lo"), "hi": iv.get("hi")}


def widened_gaps(paired: dict[str, dict[str, Any]]) -> list[str]:
    """Gap metrics whose paired interval (compressed − uncompressed) lies entirely above 0."""
    out = []
    for k in GAP_METRICS:
        p = paired.get(k)
        if p is not None and p.get("lo") is not None and np.isfinite(p["lo"]) and p["lo"] > 0:
            out.append(k)
    return out


def _short_details(details: dict[str, Any]) -> dict[str, Any]:
    """Details small enough for the sweep history (long lists stay in the point's folder)."""
    drop = ("calibration_indices", "finetune_history", "history", "qat_history", "layer_sparsity", "layers",
            "channels", "int8_layers")
    return {k: v for k, v in details.items() if k not in drop}


def point_record(label: str, value: float | str, result: CompressResult, audit: AuditResult,
                 base_cost: dict[str, float]) -> dict[str, Any]:
    """One history record: cost, metrics with intervals, paired differences, FATE, widened gaps."""
    cost = result.cost.to_dict()
    size_ratio = cost["size_bytes"] / base_cost["size_bytes"] if base_cost.get("size_bytes") else math.nan
    lat, base_lat = cost.get("latency_ms"), base_cost.get("latency_ms")
    speedup = base_lat / lat if lat and base_lat and np.isfinite(lat) and np.isfinite(base_lat) else math.nan
    paired = {k: {kk: audit.paired[k][kk] for kk in ("estimate", "lo", "hi", "p_value")}
              for k in KEY_METRICS if k in audit.paired}
    f1p = audit.paired.get("f1", {})
    return {
        "point": label, "value": value, "technique": result.technique, "param": result.param,
        "cost": cost, "size_ratio": size_ratio, "speedup": speedup,
        "metrics": dict(audit.metrics),
        "intervals": {k: _iv(audit, k) for k in KEY_METRICS},
        "paired": paired, "fate": dict(audit.fate),
        "widened": widened_gaps(audit.paired),
        "f1_drop_significant": bool(f1p.get("hi") is not None and f1p["hi"] < 0),
        "details": _short_details(result.details),
    }


# ----------------------------------------------------------------------------- the table


def sweep_table(records: list[dict[str, Any]], uncompressed: dict[str, Any]) -> pd.DataFrame:
    """One row for the uncompressed model, then one per point (flat columns)."""
    rows = []
    base = {"point": "uncompressed", "technique": "none", "value": None, "cost": uncompressed.get("cost", {}),
            "size_ratio": 1.0, "speedup": 1.0, "metrics": uncompressed["metrics"],
            "intervals": uncompressed["intervals"], "paired": {}, "fate": {}, "widened": [],
            "f1_drop_significant": False}
    for r in [base, *records]:
        c = r.get("cost") or {}
        row: dict[str, Any] = {
            "point": r["point"], "technique": r["technique"], "value": r.get("value"),
            "size_mb": _num(c.get("size_bytes")) / 1e6, "size_ratio": _num(r.get("size_ratio")),
            "params": _num(c.get("params")), "nonzero_params": _num(c.get("nonzero_params")),
            "mmacs": _num(c.get("macs")) / 1e6, "latency_ms": _num(c.get("latency_ms")),
            "speedup": _num(r.get("speedup")),
        }
        for k in ("acc", "f1", "f1_g0", "f1_g1", "f1_diff", *TWO_GROUP_GAPS):
            iv = (r.get("intervals") or {}).get(k) or {}
            row[k] = _num(iv.get("estimate", r["metrics"].get(k)))
            if k in ("f1_g0", "f1_g1", "f1", "eodd", "eopp1", "eopp0"):
                row[f"{k}_lo"], row[f"{k}_hi"] = _num(iv.get("lo")), _num(iv.get("hi"))
        for k in ("f1", *GAP_METRICS):
            p = (r.get("paired") or {}).get(k) or {}
            row[f"d_{k}"], row[f"d_{k}_lo"], row[f"d_{k}_hi"] = (_num(p.get("estimate")), _num(p.get("lo")),
                                                                 _num(p.get("hi")))
        for k in ("fate_eodd", "fate_eopp1"):
            row[k] = _num((r.get("fate") or {}).get(k))
        row["widened"] = ",".join(r.get("widened") or [])
        row["f1_drop_significant"] = bool(r.get("f1_drop_significant"))
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- the sweep


def _source(source: Any, splits: Any, arch: dict[str, Any] | None, data_config: Any
            ) -> tuple[nn.Module, Any, dict[str, Any] | None, Any, Any]:
    """(model, splits, arch, data_config, parent LoadedRun or None) from a LoadedRun or a model.

    A reprogrammed model is refused (before any folder is written): compressing
    it would leave its trigger in front of a model it was not learned for.
    """
    from ...models.trigger import ReprogrammedModel
    from ..runs import refuse_reprogrammed

    if isinstance(source, nn.Module):
        if isinstance(source, ReprogrammedModel):
            raise CompressError("this is a reprogrammed model (a trigger in front of a frozen model); compress "
                                "its frozen model (`.model`) instead, then reprogram the compressed model.")
        if splits is None:
            raise CompressError("pass `splits` with a model (or pass the LoadedRun of its run folder)")
        return source, splits, arch, data_config, None
    if not hasattr(source, "model") or not hasattr(source, "arch"):
        raise CompressError(f"source must be an nn.Module or a LoadedRun (open_run), got {type(source).__name__}")
    refuse_reprogrammed(source, "compress", "compressed")
    return source.model, splits if splits is not None else source.splits(), arch or source.arch, \
        data_config or source.data_config, source


def _settings(cfg: CompressConfig) -> dict[str, Any]:
    d = asdict(cfg)
    for k in _VOLATILE:
        d.pop(k, None)
    for sub in ("finetune", "qat", "distill", "audit"):
        d[sub].pop("progress", None)
    return d


def _run_config(parent: Any, kind: str, settings: dict[str, Any], arch: dict[str, Any] | None,
                data_config: Any, **more: Any) -> dict[str, Any]:
    from ..runs import child_config

    if parent is not None:
        cfg = child_config(parent, kind, settings, **more)
        if arch is not None:
            cfg["arch"] = dict(arch)
        return cfg
    return {"kind": kind, "parent": None, "lineage": [], "baseline": None,
            "data": asdict(data_config) if data_config is not None else None, "arch": arch,
            "settings": settings, **more}


def start_sweep_dir(run_dir: str | Path | RunDir | None, parent: Any, kind: str, settings: dict[str, Any],
                    arch: dict[str, Any] | None, data_config: Any, method: str) -> RunDir | None:
    """The folder of a sweep or an order study, created or resumed (None without `run_dir`).

    From a run folder (`parent`) it is a child run (`runs.start_child_run`: the
    same-folder and other-settings checks); from a bare model it is a folder
    without parent whose config.json records the given data and arch.
    """
    if run_dir is None:
        return None
    if parent is not None:
        from ..runs import start_child_run

        return start_child_run(parent, run_dir, kind, settings, verb="compress", method=method, arch=dict(arch))[1]
    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    rd.check_or_write_config(_run_config(None, kind, settings, arch, data_config, method=method),
                             keys=["kind", "parent", "data", "arch", "settings", "method"])
    return rd


def _audit_cfg(cfg: CompressConfig, technique: str) -> AuditConfig:
    a = replace(cfg.audit, progress=cfg.audit.progress and cfg.progress)
    if technique.startswith("quant"):
        a.device = "cpu"  # int8 kernels run on the CPU only
    return a


def _save_point(prd: RunDir, result: CompressResult, config: dict[str, Any], extra: dict[str, Any],
                arch: dict[str, Any] | None) -> None:
    from ..runs import save_run_model

    prd.write_config(config)
    save_run_model(prd, result.model, result.arch or arch or {}, {**extra, "compress": result.summary()})
    prd.set_section("compress", result.summary())  # written last: marks the point as complete


def _load_point(prd: RunDir) -> CompressResult | None:
    section = prd.read_metrics().get("compress")
    if not section or not prd.model_path.exists():
        return None
    from ...models import ModelCost

    model, arch, _ = load_checkpoint(prd.model_path)
    cost = ModelCost(**{k: (None if v is None or (isinstance(v, float) and math.isnan(v)) else v)
                        for k, v in section["cost"].items()})
    return CompressResult(model=model.eval(), technique=section["technique"], param=section["param"], cost=cost,
                          details=section.get("details") or {}, arch=arch)


def _log(rd: RunDir | None, msg: str, progress: bool) -> None:
    if rd is not None:
        rd.log(msg, echo=progress)
    elif progress:
        print(msg)


def audit_uncompressed(model: nn.Module, dataset: Any, cfg: CompressConfig, image_size: int
                       ) -> tuple[AuditResult, dict[str, Any]]:
    """Audit and cost of the input model: the reference of every point."""
    res = audit_model(model, dataset, replace(cfg.audit, progress=cfg.audit.progress and cfg.progress))
    cost = measure_cost(model.cpu().eval(), image_size, latency=cfg.latency).to_dict()
    section = {"metrics": res.metrics, "intervals": {k: _iv(res, k) for k in KEY_METRICS}, "cost": cost,
               "split": cfg.audit.split}
    return res, section


def run_compress_sweep(source: Any, cfg: CompressConfig, run_dir: str | Path | RunDir | None = None,
                       splits: Any = None, arch: dict[str, Any] | None = None, data_config: Any = None
                       ) -> SweepResult:
    """Compress at every sweep value, audit each point against the uncompressed model, write the evidence.

    `source` is a `LoadedRun` (from `open_run`; its model, data, arch and
    lineage are used) or a model, which then needs `splits` (and `arch` for
    distillation and for saving static-quantized points; `data_config` so that
    the point folders can be audited from disk).
    """
    cfg.validate()
    model, splits, arch, data_config, parent = _source(source, splits, arch, data_config)
    values = cfg.values()
    dataset = getattr(splits, cfg.audit.split, None)
    if dataset is None or len(dataset) == 0:
        raise CompressError(f"the data has no {cfg.audit.split!r} split to audit on")
    size = input_size(arch, model, splits)
    model = model.cpu().eval()
    settings = _settings(cfg)
    rd = start_sweep_dir(run_dir, parent, "compress", settings, arch, data_config, cfg.method)
    labels = [point_label(v) for v in values]
    group_names = [str(g) for g in getattr(dataset, "group_names", [])] or ["group 0", "group 1"]

    records: list[dict[str, Any]] = []
    uncompressed: dict[str, Any] | None = None
    if rd is not None:
        stored = rd.read_config()
        stored["sweep"] = list(dict.fromkeys([*stored.get("sweep", []), *labels]))
        rd.write_config(stored)
        metrics = rd.read_metrics()
        records = [r for r in metrics["history"] if r.get("point") in labels]
        uncompressed = metrics.get("uncompressed")
        if records:
            _log(rd, f"resuming the {cfg.method} sweep: {len(records)} of {len(values)} points done", cfg.progress)

    done = {r["point"] for r in records}
    base_pred: Predictions | None = None
    if uncompressed is None or any(lab not in done for lab in labels):
        base_res, section = audit_uncompressed(model, dataset, cfg, size)
        base_pred = base_res.predictions
        if uncompressed is None:
            uncompressed = section
            if rd is not None:
                rd.set_section("uncompressed", uncompressed)
    base_cost = uncompressed["cost"]
    extra = dict(getattr(parent, "extra", {}) or {})
    computed: dict[str, CompressResult] = {}
    for value, label in zip(values, labels):
        if label in done:
            continue
        prd = RunDir(rd.path / "points" / label) if rd is not None else None
        result = _load_point(prd) if prd is not None else None
        if result is None:
            _log(rd, f"{cfg.method} at {label}: compressing", cfg.progress)
            result = compress(model, splits, cfg, value, run_dir=prd, arch=arch, image_size=size)
            if prd is not None:
                pcfg = _run_config(parent, "compress-point", {**settings, "value": value}, result.arch or arch,
                                   data_config, method=cfg.method, technique=result.technique, value=value)
                _save_point(prd, result, pcfg, extra, arch)
        computed[label] = result
        acfg = _audit_cfg(cfg, result.technique)
        audit = audit_model(result.model, dataset, acfg, baseline=base_pred)
        audit.cost = result.cost.to_dict()
        audit.baseline_cost = base_cost
        if parent is not None:
            audit.baseline_path, audit.baseline_source = str(parent.run.path.resolve()), "compress sweep input"
        rec = point_record(label, value, result, audit, base_cost)
        if prd is not None:
            store_audit(prd, audit, acfg.split)
            rd.append_history(rec)
        records.append(rec)
        _log(rd, f"{cfg.method} at {label}: size {rec['cost']['size_bytes'] / 1e6:.3f} MB "
                 f"(x{rec['size_ratio']:.3f}), macro-F1 {audit.metrics['f1']:.4f}, Eodd {audit.metrics['eodd']:.4f}"
                 + (f", widened: {', '.join(rec['widened'])}" if rec["widened"] else ""), cfg.progress)

    order = {lab: i for i, lab in enumerate(labels)}
    records.sort(key=lambda r: order[r["point"]])
    if rd is not None:  # the table and plots are the report's (report.compress_report.write_sweep_outputs)
        rd.set_section("sweep", {"method": cfg.method, "points": labels,
                                 "widened": {r["point"]: r["widened"] for r in records if r["widened"]}})
    return SweepResult(records=records, table=sweep_table(records, uncompressed), uncompressed=uncompressed,
                       run=rd, results=computed, method=cfg.method, group_names=group_names)


def compress_from_run(run_path: str | Path, cfg: CompressConfig, out: str | Path) -> SweepResult:
    """`equiprune compress`: a sweep of the model in a run folder, into a new run folder."""
    from ..runs import open_run

    parent = open_run(run_path)
    parent.model.eval()
    return run_compress_sweep(parent, cfg, out)
