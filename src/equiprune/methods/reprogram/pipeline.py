"""Reprogramming on run folders: one λ (`reprogram_from_run`) or a λ sweep (`sweep_from_run`).

Both audit the reprogrammed model against the FROZEN model it was made from
(the `--run` folder's model without trigger) on the same split: bootstrap
intervals of macro-F1 and the gaps, and the paired-bootstrap interval of the
change of each gap (reprogrammed minus frozen). A reduction is called
significant when that paired interval lies entirely below 0.
"""
from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from torch import nn

from ...engine import Predictions, RunDir, predict, resolve_device
from ..audit import AuditConfig, AuditResult, audit_model
from .core import CRITERIA, ReprogramConfig, ReprogramResult, run_reprogram
from ...models import save_checkpoint
from ...models.trigger import ReprogramError, ReprogrammedModel, check_geometry, default_size, load_reprogrammed

SECTION = "reprogram_audit"


@dataclass
class ReprogramRunResult:
    """One reprogramming run and its audit against the frozen model."""

    result: ReprogramResult
    audit: AuditResult
    summary: dict[str, Any]
    run: RunDir
    exported: Path | None = None  # the one-file export of the reprogrammed model, when asked for


@dataclass
class SweepResult:
    """A λ sweep: one run folder per λ, one summary row per λ, the frozen model's row."""

    rows: list[dict[str, Any]]
    baseline: dict[str, Any]
    runs: list[ReprogramRunResult] = field(default_factory=list)
    run: RunDir | None = None
    plot: Path | None = None  # tradeoff.png, once `report.reprogram_plots.write_sweep_pictures` drew it
    criterion: str = "eodd"
    split: str = "test"


def summarize(audit: AuditResult, lam: float | None, fair_metrics: Sequence[str] = CRITERIA) -> dict[str, Any]:
    """Flat row: F1 and the gaps with intervals, and the paired change of each gap vs the baseline."""
    row: dict[str, Any] = {"lam": lam}
    for k in ("f1", "acc", *fair_metrics):
        iv = audit.intervals[k]
        row.update({k: iv["estimate"], f"{k}_lo": iv["lo"], f"{k}_hi": iv["hi"]})
    for k in ("f1", *fair_metrics):
        pr = audit.paired.get(k)
        if pr is None:
            continue
        row.update({f"{k}_change": pr["estimate"], f"{k}_change_lo": pr["lo"], f"{k}_change_hi": pr["hi"],
                    f"{k}_change_p": pr["p_value"], f"{k}_change_excludes_zero": bool(pr["excludes_zero"])})
        if k != "f1":
            row[f"{k}_reduced"] = bool(pr["excludes_zero"] and pr["hi"] < 0)
    for k, v in audit.fate.items():
        row[k] = v
    return row


def describe_row(row: dict[str, Any], crit: str) -> str:
    """One line: macro-F1 and the gap with intervals, and the paired change of the gap if known."""
    def iv(k: str) -> str:
        return f"{row[k]:.4f} [{row[k + '_lo']:.4f}, {row[k + '_hi']:.4f}]"

    text = f"macro-F1 {iv('f1')}, {crit} {iv(crit)}"
    c = f"{crit}_change"
    if c in row:
        verdict = "excludes 0" if row[f"{c}_excludes_zero"] else "includes 0"
        text += (f"; change of {crit} vs frozen {row[c]:+.4f} [{row[c + '_lo']:+.4f}, {row[c + '_hi']:+.4f}] "
                 f"({verdict})")
    return text


def _checker(cfg: ReprogramConfig):
    """The check `start_child_run` runs on the parent before any folder is written."""
    def check(parent: Any) -> None:
        if isinstance(parent.model, ReprogrammedModel) or parent.extra.get("reprogram"):
            raise ReprogramError(f"{parent.run.path} is already a reprogrammed run; reprogram its parent run "
                                 "instead (its config.json names it under 'parent')")
        image_size = parent.image_size  # a trigger that cannot fit is refused here
        check_geometry(cfg.trigger, image_size, cfg.size or default_size(cfg.trigger, image_size), cfg.location)
    return check


def _child_dir(parent: Any, out: str | Path | RunDir, settings: dict[str, Any], cfg: ReprogramConfig,
               kind: str = "reprogram", **more: Any) -> tuple[Any, RunDir]:
    from ..runs import start_child_run

    return start_child_run(parent, out, kind, settings, verb="reprogram", check=_checker(cfg),
                           method="fairness reprogramming", **more)


def _audit_cfg(audit_cfg: AuditConfig | None, cfg: ReprogramConfig) -> AuditConfig:
    a = audit_cfg or AuditConfig(device=cfg.device)
    return dataclasses.replace(a, latency=False)


def _reprogram_into(parent: Any, splits: Any, cfg: ReprogramConfig, rd: RunDir, dataset: Any,
                    frozen_pred: Predictions, acfg: AuditConfig) -> ReprogramRunResult:
    extra = {k: v for k, v in parent.extra.items() if k != "reprogram"}
    res = run_reprogram(parent.model, splits, cfg, run_dir=rd, arch=parent.arch, extra=extra)
    audit = audit_model(res.model, dataset, acfg, baseline=frozen_pred)
    summary = summarize(audit, cfg.lam)
    rd.set_section(acfg.split, audit.metrics)
    rd.set_section(SECTION, {"split": acfg.split, "baseline": "the frozen --run model without trigger",
                             "summary": summary, "audit": audit.to_dict()})
    rd.log(f"{acfg.split}: {describe_row(summary, cfg.criterion)}", echo=cfg.progress)
    return ReprogramRunResult(result=res, audit=audit, summary=summary, run=rd)


def _frozen_predictions(model: nn.Module, dataset: Any, acfg: AuditConfig) -> Predictions:
    device = resolve_device(acfg.device)
    model.to(device)
    return predict(model, dataset, batch_size=acfg.batch_size, device=device)


def _split(splits: Any, name: str) -> Any:
    ds = getattr(splits, name, None)
    if ds is None or len(ds) == 0:
        raise ReprogramError(f"the data has no {name!r} split to audit on")
    return ds


def reprogram_from_run(parent_path: str | Path, cfg: ReprogramConfig, out: str | Path,
                       audit_cfg: AuditConfig | None = None) -> ReprogramRunResult:
    """`equiprune reprogram`: train a trigger for the model of a run folder, into the run folder `out`.

    Works on any run folder (a vanilla, pruned or compressed model). Writes
    config.json, metrics.json (per-epoch history; sections ``selection``, the
    audit split's metrics and ``reprogram_audit``), model.pt (frozen model +
    trigger) and trigger.pt; `equiprune.api.reprogram` adds trigger.png. Re-running resumes.
    """
    cfg.validate()
    parent, rd = _child_dir(parent_path, out, cfg.settings(), cfg)
    acfg = _audit_cfg(audit_cfg, cfg)
    splits = parent.splits()
    dataset = _split(splits, acfg.split)
    frozen_pred = _frozen_predictions(parent.model, dataset, acfg)
    return _reprogram_into(parent, splits, cfg, rd, dataset, frozen_pred, acfg)


def lambda_dir_name(lam: float) -> str:
    return f"lambda_{lam:g}"


def sweep_from_run(parent_path: str | Path, cfg: ReprogramConfig, lambdas: Sequence[float], out: str | Path,
                   audit_cfg: AuditConfig | None = None) -> SweepResult:
    """`equiprune reprogram --lambda-sweep`: one reprogramming run per λ and the trade-off curve.

    `out` gets config.json (kind ``reprogram-sweep``), metrics.json (one history
    record per λ, section ``sweep``); `equiprune.api.reprogram` adds ``tradeoff.png``
    (macro-F1 against the criterion's gap with interval bars) and ``trigger.png`` (every λ's trigger);
    each λ's run folder is ``out/lambda_<λ>`` (a complete reprogram run). It
    holds no model.pt of its own: pick a λ and use its folder.
    """
    cfg.validate()
    lambdas = [float(v) for v in lambdas]
    if not lambdas:
        raise ReprogramError("give at least one λ to sweep, e.g. 0.05,0.1,0.2,0.5")
    if len(set(lambdas)) != len(lambdas):
        raise ReprogramError(f"the λ values must be distinct, got {lambdas}")
    for lam in lambdas:
        if lam < 0:
            raise ReprogramError(f"λ must be >= 0, got {lam}")
    parent, rd = _child_dir(parent_path, out, {**cfg.settings(), "lam": None}, cfg, kind="reprogram-sweep",
                            lambdas=lambdas)
    acfg = _audit_cfg(audit_cfg, cfg)
    splits = parent.splits()
    dataset = _split(splits, acfg.split)
    frozen_pred = _frozen_predictions(parent.model, dataset, acfg)
    base_audit = audit_model(parent.model, dataset, acfg)
    baseline = summarize(base_audit, None)
    rows: list[dict[str, Any]] = []
    runs: list[ReprogramRunResult] = []
    for lam in lambdas:
        c = dataclasses.replace(cfg, lam=lam)
        _, sub = _child_dir(parent, rd.path / lambda_dir_name(lam), c.settings(), c, sweep=str(rd.path.resolve()))
        r = _reprogram_into(parent, splits, c, sub, dataset, frozen_pred, acfg)
        runs.append(r)
        rows.append({**r.summary, "run": str(sub.path.resolve()), "best_epoch": r.result.best_epoch})
        rd.set_history(rows)
    crit = cfg.criterion
    rd.set_section("sweep", {"criterion": crit, "split": acfg.split, "lambdas": lambdas, "baseline": baseline,
                             "rows": rows, "settings": asdict(acfg),
                             "any_significant_reduction": any(r.get(f"{crit}_reduced") for r in rows)})
    rd.log(f"λ sweep done: {sum(bool(r.get(f'{crit}_reduced')) for r in rows)} of {len(rows)} λ values reduce "
           f"{crit} with the paired interval excluding 0", echo=cfg.progress)
    return SweepResult(rows=rows, baseline=baseline, runs=runs, run=rd, criterion=crit, split=acfg.split)


def export_reprogrammed(run_dir: str | Path, path: str | Path) -> Path:
    """Write one self-contained checkpoint (frozen model + trigger) of a reprogrammed run.

    The file has the format of `models.save_checkpoint` (loads with
    ``weights_only=True``); `load_reprogrammed(path)` returns the wrapped model,
    `models.load_checkpoint(path)` the frozen model with the trigger in
    ``extra["reprogram"]``.
    """
    rd = RunDir(run_dir, create=False)
    wrapped, arch, extra = load_reprogrammed(rd.model_path)
    return save_checkpoint(path, wrapped.model, arch, {**extra, "reprogram": wrapped.trigger.payload(
        extra["reprogram"].get("settings"))})
