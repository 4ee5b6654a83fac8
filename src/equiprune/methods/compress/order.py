"""Order studies: compress-then-mitigate versus mitigate-then-compress, with SCP as the mitigation.

For every sweep value v of a compression method C, four models are made from
the input model M and audited against M on the same split:

==================== ===========================================================
``compressed``       C_v(M)
``compress_then_scp`` SCP(C_v(M))  (mitigation applied to the compressed model)
``scp``              SCP(M)       (computed once, shared by all values)
``scp_then_compress`` C_v(SCP(M))  (compressing the mitigated model)
==================== ===========================================================

and the two orders are compared directly: a paired bootstrap of
``scp_then_compress`` − ``compress_then_scp`` on the same resamples (negative
ΔEodd: mitigating first is fairer). SCP is `methods.scp.run_scp`, its loop,
fine-tuning and validation-FATE model selection unchanged.

Two methods need care. Int8 models cannot be fine-tuned or channel-pruned, so
`quant` has no compress-then-SCP arm and is refused (mitigate-then-compress for
quantization is `equiprune compress --method quant` on an SCP run folder).
SCP's fine-tuning would refill the zeros of unstructured pruning, so for
prune-local / prune-global the compress-then-SCP model is pruned again to the
same sparsity after SCP (no further training); both orders then end at the
same sparsity, and the record says so (`re_pruned`).

Training budgets differ between the arms unless set: SCP fine-tunes after each
of its cuts, so compress-then-SCP has been trained after compression, while
SCP-then-compress only gets the compressor's own fine-tuning
(`CompressConfig.finetune`, 0 epochs by default; distillation always trains).
Give the compressor as many fine-tuning epochs as SCP's to compare orders
rather than training budgets; the table reports both as they were run.

Every model lives in a run folder (``scp/`` and ``points/<v>/<arm>/``) with a
config.json, so each can be audited from disk; history records are keyed by
(point, arm) and finished arms are skipped on resume.
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from torch import nn

from ...engine import RunDir
from ...metrics import paired_bootstrap
from ...models import input_size
from ..audit import audit_model, predictions_name, store_audit
from ..paired_runs import run_predictions
from .base import CompressError, CompressResult, measure_cost
from .magnitude import MagnitudeConfig, magnitude_prune
from .sweep import (KEY_METRICS, CompressConfig, _audit_cfg, _load_point, _log, _run_config, _save_point,
                    _settings, _source, audit_uncompressed, compress, point_label, point_record, start_sweep_dir)

ARMS = ("compressed", "compress_then_scp", "scp", "scp_then_compress")
ARM_LABELS = {"compressed": "compressed", "compress_then_scp": "compress → SCP", "scp": "SCP only",
              "scp_then_compress": "SCP → compress"}


@dataclass
class OrderStudyResult:
    """Per-(point, arm) records, the direct order comparison per point, and where the files are."""

    records: list[dict[str, Any]]
    comparison: dict[str, dict[str, Any]]
    table: pd.DataFrame
    uncompressed: dict[str, Any]
    run: RunDir | None = None
    table_csv: Path | None = None
    table_md: Path | None = None
    method: str = ""


def _scp_settings(scp: Any) -> dict[str, Any]:
    d = asdict(scp)
    d.pop("progress", None)
    d.get("finetune", {}).pop("progress", None)
    return d


def _run_scp_arm(model: nn.Module, splits: Any, scp: Any, prd: RunDir | None, arch: dict[str, Any] | None,
                 image_size: int, latency: bool) -> CompressResult:
    from ..scp import run_scp

    res = run_scp(copy.deepcopy(model), splits, scp, run_dir=prd, arch=arch)
    out = res.model.cpu().eval()
    details = {"best_iter": res.loop.best_iter, "layer": res.loop.layer,
               "channels_removed": res.loop.channels_removed, "stop_reason": res.loop.stop_reason}
    return CompressResult(model=out, technique=f"scp-{scp.scorer}", param=scp.ratio,
                          cost=measure_cost(out, image_size, latency=latency), details=details,
                          arch=dict(arch) if arch else None)


def _arm(prd: RunDir | None, make: Callable[[RunDir | None], CompressResult], config: dict[str, Any],
         extra: dict[str, Any], arch: dict[str, Any] | None) -> CompressResult:
    """Load a finished arm from its folder, or make and save it."""
    if prd is not None:
        done = _load_point(prd)
        if done is not None:
            return done
    result = make(prd)
    if prd is not None:
        _save_point(prd, result, config, extra, arch)
    return result


def _predictions_of(prd: RunDir | None, split: str, cache: dict[str, np.ndarray], key: str) -> np.ndarray | None:
    if key in cache:
        return cache[key]
    if prd is not None and prd.file(predictions_name(split)).exists():
        return run_predictions(prd.path, split)["y_pred"].to_numpy()
    return None


def order_study(source: Any, cfg: CompressConfig, scp: Any, run_dir: str | Path | RunDir | None = None,
                splits: Any = None, arch: dict[str, Any] | None = None, data_config: Any = None
                ) -> OrderStudyResult:
    """Compare compress-then-SCP with SCP-then-compress at every sweep value of `cfg` (see module docstring).

    `scp` is an `SCPConfig`; `source` a LoadedRun or a model (then pass `splits`,
    `arch`, and `data_config` for auditable folders).
    """
    cfg.validate()
    scp.validate()
    if cfg.method == "quant":
        raise CompressError(
            "an order study needs a compressed model SCP can prune and fine-tune, which an int8 model is not. "
            "For quantization run SCP first (`equiprune prune scp`) and then `equiprune compress --method quant` "
            "on its run folder; use --order-study with prune-*, lowrank or distill")
    model, splits, arch, data_config, parent = _source(source, splits, arch, data_config)
    values = cfg.values()
    labels = [point_label(v) for v in values]
    dataset = getattr(splits, cfg.audit.split, None)
    if dataset is None or len(dataset) == 0:
        raise CompressError(f"the data has no {cfg.audit.split!r} split to audit on")
    size = input_size(arch, model, splits)
    model = model.cpu().eval()
    settings = {"compress": _settings(cfg), "scp": _scp_settings(scp)}
    rd = start_sweep_dir(run_dir, parent, "compress-order", settings, arch, data_config, cfg.method)
    records: list[dict[str, Any]] = []
    uncompressed = None
    if rd is not None:
        stored = rd.read_config()
        stored["sweep"] = list(dict.fromkeys([*stored.get("sweep", []), *labels]))
        rd.write_config(stored)
        metrics = rd.read_metrics()
        records = [r for r in metrics["history"] if r.get("point") in labels + ["-"]]
        uncompressed = metrics.get("uncompressed")
    base_res, section = audit_uncompressed(model, dataset, cfg, size)
    if uncompressed is None:
        uncompressed = section
        if rd is not None:
            rd.set_section("uncompressed", uncompressed)
    base_pred = base_res.predictions
    base_cost = uncompressed["cost"]
    extra = dict(getattr(parent, "extra", {}) or {})
    done = {(r["point"], r["arm"]) for r in records}
    preds: dict[str, np.ndarray] = {}
    sub = lambda *parts: RunDir(rd.path.joinpath(*parts)) if rd is not None else None  # noqa: E731

    def audit_arm(label: str, arm: str, result: CompressResult, prd: RunDir | None) -> None:
        if (label, arm) in done:
            return
        acfg = _audit_cfg(cfg, result.technique)
        audit = audit_model(result.model, dataset, acfg, baseline=base_pred)
        audit.cost, audit.baseline_cost = result.cost.to_dict(), base_cost
        rec = {**point_record(label, label, result, audit, base_cost), "arm": arm}
        preds[f"{label}/{arm}"] = audit.predictions.y_pred
        if prd is not None:
            store_audit(prd, audit, acfg.split)
            rd.append_history(rec)
        records.append(rec)
        done.add((label, arm))
        _log(rd, f"order study {label} / {ARM_LABELS[arm]}: macro-F1 {audit.metrics['f1']:.4f}, "
                 f"Eodd {audit.metrics['eodd']:.4f}", cfg.progress)

    def cfg_for(kind: str, **more: Any) -> dict[str, Any]:
        return _run_config(parent, kind, {**settings, **more}, arch, data_config, method=cfg.method)

    # SCP on the input model: once for all values.
    scp_dir = sub("scp")
    scp_res = _arm(scp_dir, lambda prd: _run_scp_arm(model, splits, scp, prd, arch, size, cfg.latency),
                   cfg_for("compress-order-scp"), extra, arch)
    audit_arm("-", "scp", scp_res, scp_dir)

    for value, label in zip(values, labels):
        comp_dir = sub("points", label, "compressed")
        comp = _arm(comp_dir, lambda prd: compress(model, splits, cfg, value, run_dir=prd, arch=arch, image_size=size),
                    cfg_for("compress-point", value=value), extra, arch)
        audit_arm(label, "compressed", comp, comp_dir)

        def then_scp(prd: RunDir | None) -> CompressResult:
            res = _run_scp_arm(comp.model, splits, scp, prd, comp.arch or arch, size, cfg.latency)
            if cfg.method in ("prune-local", "prune-global"):
                before = float(sum(int((p == 0).sum()) for p in res.model.parameters()))
                mcfg = MagnitudeConfig(sparsity=float(value), scope=cfg.method.split("-")[1],
                                       skip_final=cfg.skip_final, latency=cfg.latency)
                pruned = magnitude_prune(res.model, None, mcfg, arch=comp.arch or arch, image_size=size)
                res = replace(pruned, technique=f"{comp.technique}+scp",
                              details={**res.details, "re_pruned": True, "zeros_before_re_pruning": before,
                                       **pruned.details})
            else:
                res = replace(res, technique=f"{comp.technique}+scp")
            return res

        a2_dir = sub("points", label, "compress_then_scp")
        a2 = _arm(a2_dir, then_scp, cfg_for("compress-order-arm", value=value, arm="compress_then_scp"), extra,
                  comp.arch or arch)
        audit_arm(label, "compress_then_scp", a2, a2_dir)

        b2_dir = sub("points", label, "scp_then_compress")
        b2 = _arm(b2_dir, lambda prd: replace(
            compress(scp_res.model, splits, cfg, value, run_dir=prd, arch=arch, image_size=size),
            technique=f"scp+{comp.technique}"),
            cfg_for("compress-order-arm", value=value, arm="scp_then_compress"), extra, arch)
        audit_arm(label, "scp_then_compress", b2, b2_dir)

    # Direct comparison of the two orders on the same resamples.
    comparison: dict[str, dict[str, Any]] = {}
    split = cfg.audit.split
    for label in labels:
        pa = _predictions_of(sub("points", label, "compress_then_scp"), split, preds, f"{label}/compress_then_scp")
        pb = _predictions_of(sub("points", label, "scp_then_compress"), split, preds, f"{label}/scp_then_compress")
        if pa is None or pb is None:
            continue
        pb_res = paired_bootstrap(base_pred.y_true, pa, pb, base_pred.groups, n_boot=cfg.audit.n_boot,
                                  seed=cfg.audit.seed, alpha=cfg.audit.alpha)
        comparison[label] = {k: asdict(pb_res[k]) for k in KEY_METRICS if k in pb_res}
    arm_order = {a: i for i, a in enumerate(ARMS)}
    point_order = {lab: i for i, lab in enumerate(["-", *labels])}
    records.sort(key=lambda r: (point_order.get(r["point"], 99), arm_order[r["arm"]]))
    table = order_table(records, uncompressed)
    result = OrderStudyResult(records=records, comparison=comparison, table=table, uncompressed=uncompressed, run=rd,
                              method=cfg.method)
    if rd is not None:  # the tables are the report's (report.compress_report.write_order_outputs)
        rd.set_section("order_comparison", comparison)
    return result


def order_table(records: list[dict[str, Any]], uncompressed: dict[str, Any]) -> pd.DataFrame:
    """One row per (point, arm), plus the uncompressed model first."""
    rows = [{"point": "-", "arm": "uncompressed", "size_mb": uncompressed["cost"].get("size_bytes", math.nan) / 1e6,
             "latency_ms": uncompressed["cost"].get("latency_ms"),
             **{k: uncompressed["intervals"][k]["estimate"] for k in ("f1", "f1_g0", "f1_g1", "eodd", "eopp1")},
             "d_eodd": math.nan, "d_f1": math.nan, "fate_eodd": math.nan, "widened": ""}]
    for r in records:
        rows.append({"point": r["point"], "arm": r["arm"], "size_mb": (r["cost"].get("size_bytes") or math.nan) / 1e6,
                     "latency_ms": r["cost"].get("latency_ms"),
                     **{k: r["intervals"][k]["estimate"] for k in ("f1", "f1_g0", "f1_g1", "eodd", "eopp1")},
                     "d_eodd": r["paired"].get("eodd", {}).get("estimate", math.nan),
                     "d_f1": r["paired"].get("f1", {}).get("estimate", math.nan),
                     "fate_eodd": r["fate"].get("fate_eodd"), "widened": ",".join(r["widened"])})
    return pd.DataFrame(rows)


def order_study_from_run(run_path: str | Path, cfg: CompressConfig, scp: Any, out: str | Path) -> OrderStudyResult:
    """`equiprune compress --order-study`: an order study of the model in a run folder, into a new run folder."""
    from ..runs import open_run

    parent = open_run(run_path)
    parent.model.eval()
    return order_study(parent, cfg, scp, out)
