"""The Python API: one function per CLI verb, composing methods and reports.

The CLI calls exactly these functions, so anything the command line does can
be scripted::

    from equiprune import api
    from equiprune.data import DataConfig
    base = api.train(DataConfig(name="synthderm"), "vgg11", 0.25, TrainConfig(epochs=8), "runs/base")
    api.prune_scp("runs/base", SCPConfig(), "runs/scp")
    api.report(["runs/base", "runs/scp"])
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from .data import DataConfig
from .engine import TrainConfig
from .methods.audit import AuditConfig, AuditResult, audit_run
from .methods.cut_response import CutResponseConfig, CutResponseResult, cut_response_from_run
from .methods.scp import SCPConfig, SCPResult, scp_from_run
from .methods.train import ModelConfig, TrainRunResult, train_from_config
from .pipelines.demo import DemoConfig, DemoResult, demo
from .pipelines.table import (ALL_METHODS, MITIGATION_METHODS, TABLE_METHODS, TableConfig,  # noqa: F401 (for the CLI)
                              default_finetune_for_table, default_scp_for_table)
from .report import ComparisonResult, compare_runs, write_run_report
from .report import terminal as _terminal

if TYPE_CHECKING:
    from .methods.fairprune import FairPruneConfig, FairPruneResult
    from .methods.skewprune import SkewPruneConfig, SkewPruneResult
    from .pipelines.table import TableResult
    from .influence import InfluenceConfig, TrimConfig
    from .methods.compress.order import OrderStudyResult
    from .methods.compress.sweep import CompressConfig, SweepResult
    from .influence import Source as InfluenceSource
    from .methods.mitigate import MitigationConfig, MitigationResult
    from .methods.reprogram import ReprogramConfig
    from .methods.stress_groups import StressConfig, StressResult


def train(data: DataConfig, model: str = "vgg11", width: float = 0.25, cfg: TrainConfig | None = None,
          out: str | Path = "runs/base", method: "MitigationConfig | None" = None, weights: str = "none",
          weights_preprocessing: bool = True, find_lr: bool = False) -> TrainRunResult:
    """`equiprune train`: build data and model, train, write the run folder (resumable).

    `method` (`train --method`): train from scratch with a mitigation method;
    `cfg` replaces its training budget. `weights` is ``"none"``, ``"imagenet"``
    (width 1.0; with `weights_preprocessing` the data's input size and resize
    become the weights' own) or the path of a torchvision-format state dict
    (see `equiprune.models.weights`). `find_lr`: a learning-rate range test on
    the untrained model picks ``cfg.lr`` (plain training only).
    """
    model_cfg = ModelConfig(name=model, width=width, weights=weights, weights_preprocessing=weights_preprocessing)
    if method is not None:
        from dataclasses import replace

        from .methods.mitigate import train_with_method
        return train_with_method(data, model_cfg, replace(method, finetune=cfg or TrainConfig()), out)
    return train_from_config(data, model_cfg, cfg or TrainConfig(), out, find_lr=find_lr)


def mitigate(run: str | Path, cfg: "MitigationConfig", out: str | Path) -> "MitigationResult":
    """`equiprune mitigate`: fine-tune the model of `run` with a mitigation method into `out` (resumable)."""
    from .methods.mitigate import mitigate_from_run
    return mitigate_from_run(run, cfg, out)


def prune_scp(run: str | Path, cfg: SCPConfig, out: str | Path) -> SCPResult:
    """`equiprune prune scp`: Sensitive Channel Pruning (or a control) into a new run folder, with its plots."""
    from .report.prune_plots import save_prune_plots
    result = scp_from_run(run, cfg, out)
    save_prune_plots(out)
    return result


def prune_fairprune(run: str | Path, cfg: "FairPruneConfig", out: str | Path) -> "FairPruneResult":
    """`equiprune prune fairprune` (and `prune obd`, by ``cfg.method``): Hessian-saliency pruning into a new run."""
    from .methods.fairprune import fairprune_from_run
    return fairprune_from_run(run, cfg, out)


def prune_obd(run: str | Path, cfg: "FairPruneConfig | None", out: str | Path) -> "FairPruneResult":
    """`equiprune prune obd`: Optimal Brain Damage (FairPrune's recipe, one Hessian, no β) into a new run."""
    from .methods.fairprune import obd_from_run
    return obd_from_run(run, cfg, out)


def prune_skew(run: str | Path, cfg: "SkewPruneConfig", out: str | Path) -> tuple["SkewPruneResult", list[Path]]:
    """`equiprune prune skew`: SkewPrune into a new run folder; returns the result and its premise plots."""
    from .methods.skewprune import skewprune_from_run
    from .report.skew_plots import save_skew_plots
    result = skewprune_from_run(run, cfg, out)
    return result, list(save_skew_plots(out) or [])


def compare(out: str | Path, cfg: "TableConfig", base_run: str | Path | None = None,
            against: str | None = None) -> "TableResult":
    """`equiprune compare`: every method over several seeds from one vanilla run, and the seed table.

    `against`: a method of the table (same seed) or a run folder; every run's paired differences against it.
    """
    from .pipelines.table import run_table
    return run_table(out, cfg, base_run=base_run, against=against)


def cut_response(run: str | Path, cfg: CutResponseConfig, out: str | Path) -> CutResponseResult:
    """`equiprune prune cut-response`: the gap after cuts chosen by SNNL-Fair, L1 or at random, no fine-tuning.

    Writes `out`/metrics.json and `out`/report.html; resumes when run again.
    """
    from .engine import on_main
    from .report.cut_response_report import write_cut_response_report
    result = cut_response_from_run(run, cfg, out)
    on_main(write_cut_response_report, out)  # one writer under torchrun
    return result


def compress(run: str | Path, cfg: "CompressConfig", out: str | Path) -> "SweepResult":
    """`equiprune compress`: a sweep of one compression technique, every point audited against the input model.

    Writes `out` (a run folder with one run folder per point), its
    sweep_table.csv/.md and the fairness-vs-cost plots.
    """
    from .methods.compress.sweep import compress_from_run
    from .report.compress_report import write_sweep_outputs
    return write_sweep_outputs(compress_from_run(run, cfg, out))


def compress_order(run: str | Path, cfg: "CompressConfig", scp: SCPConfig, out: str | Path) -> "OrderStudyResult":
    """`equiprune compress --order-study`: compress-then-SCP against SCP-then-compress at every sweep value.

    Writes `out` (one run folder per model) and its order_table.csv/.md.
    """
    from .methods.compress.order import order_study_from_run
    from .report.compress_report import write_order_outputs
    return write_order_outputs(order_study_from_run(run, cfg, scp, out))


def stress_groups(run: str | Path, cfg: "StressConfig", out: str | Path) -> "StressResult":
    """`equiprune stress-groups`: a fairness method with corrupted training groups, judged on clean test data.

    Writes `out`/metrics.json and `out`/report.html (post/pre ratio curves, KS tests); resumes when run again.
    """
    from .engine import on_main
    from .methods.stress_groups import stress_groups_from_run
    from .report.stress_report import write_stress_report
    result = stress_groups_from_run(run, cfg, out)
    on_main(write_stress_report, out)
    return result


def audit(run: str | Path, cfg: AuditConfig | None = None, baseline: str | Path | None = None) -> AuditResult:
    """`equiprune audit`: metrics with intervals, FATE against the baseline, report.html / report.md with plots.

    `methods.audit.audit_run` writes the audit section and the predictions;
    the report is `report.write_run_report`'s (its paths on the result).
    """
    cfg = cfg or AuditConfig()
    result = audit_run(run, cfg, baseline_run=baseline)
    result.report_html, result.report_md = write_run_report(run, split=cfg.split)
    return result


def audit_checkpoint(checkpoint: str | Path, data: DataConfig, out: str | Path, cfg: AuditConfig | None = None,
                     image_size: int | None = None, baseline: str | Path | None = None,
                     arch: str | None = None, num_classes: int | None = None, width: float = 1.0) -> AuditResult:
    """`equiprune audit --checkpoint`: audit a bare model.pt on `data`; `out` becomes its run folder.

    The images are fed at the checkpoint's recorded input size unless
    `image_size` is given (``data.image_size`` is replaced either way). With
    `arch` the file is a plain torchvision state dict of that architecture
    (`num_classes` default: its head's rows; input size default 224).
    """
    from .methods.checkpoint_audit import StateDictArch, checkpoint_run
    plain = StateDictArch(arch, num_classes, width) if arch else None
    rd = checkpoint_run(checkpoint, data, out, image_size=image_size, plain=plain, baseline_run=baseline)
    return audit(rd.path, cfg, baseline=baseline)


def report(runs: Sequence[str | Path], out: str | Path | None = None,
           names: Sequence[str] | None = None, columns: Sequence[str] | None = None,
           cfg: AuditConfig | None = None, against: str | None = None) -> ComparisonResult:
    """`equiprune report`: one comparison page over several run folders (`columns`: an extra table of chosen numbers).

    A run without an audit of ``cfg.split`` is audited first (with `cfg`). `against`: a run folder or a
    method among the runs (same seed); every run's paired differences against it, printed and on the page.
    """
    return compare_runs(runs, out_dir=out, names=names, cfg=cfg, columns=columns, against=against)


def reprogram(run: str | Path, cfg: "ReprogramConfig", out: str | Path, lambdas: Sequence[float] | None = None,
              audit_cfg: AuditConfig | None = None, export: str | Path | None = None):
    """`equiprune reprogram`: a fairness trigger for the frozen model of a run (a λ sweep with `lambdas`).

    Writes the run folder with its trigger.png; a sweep also tradeoff.png and
    one run folder per λ. `export`: also write the reprogrammed model as one
    checkpoint file (single λ only). Returns a `ReprogramRunResult` (a
    `SweepResult` with `lambdas`).
    """
    from .methods.reprogram import ReprogramError, export_reprogrammed, reprogram_from_run, sweep_from_run
    from .report.reprogram_plots import write_reprogram_pictures, write_sweep_pictures
    if lambdas is not None:
        if export:
            raise ReprogramError("--export works with a single --lambda; export one λ of a sweep with "
                                 "`equiprune reprogram` on that λ, or export_reprogrammed(OUT/lambda_<λ>, FILE)")
        result = sweep_from_run(run, cfg, lambdas, out, audit_cfg=audit_cfg)
        write_sweep_pictures(result)
        return result
    result = reprogram_from_run(run, cfg, out, audit_cfg=audit_cfg)
    write_reprogram_pictures(result)
    if export:
        result.exported = export_reprogrammed(out, export)
    return result


def influence(source: "InfluenceSource", cfg: "InfluenceConfig | None" = None, out: str | Path = "runs/influence"):
    """`equiprune influence`: per-sample influence on utility, fairness and robustness, with report.html.

    `source` names a run folder (its model's penultimate features) or a feature table.
    Returns (FeatureTable, InfluenceResult).
    """
    from .engine import on_main
    from .influence import InfluenceConfig, influence_to_folder
    from .report.influence_report import write_influence_report
    table, result = influence_to_folder(source, cfg or InfluenceConfig(), out)
    on_main(write_influence_report, out)
    return table, result


def trim(source: "InfluenceSource", cfg: "TrimConfig | None" = None, out: str | Path = "runs/trim",
         influence_cfg: "InfluenceConfig | None" = None, progress: bool = True, finetune=None):
    """`equiprune trim`: influence-based data trimming at several budgets against its controls.

    With `finetune` (a FinetuneSpec; run sources only) the run's model is also
    fine-tuned without the trimmed images, into subfolders of `out`.
    """
    from .engine import on_main
    from .influence import InfluenceConfig, TrimConfig, trim_to_folder
    from .report.influence_report import write_trim_report
    cfg = cfg or TrimConfig()
    icfg = influence_cfg or InfluenceConfig(impacts=tuple(dict.fromkeys((cfg.impact, "utility"))))
    result = trim_to_folder(source, cfg, icfg, out, progress=progress, finetune=finetune)
    on_main(write_trim_report, out)
    return result


def trim_findings(rows, impact: str) -> str:
    """The trim verdict sentences (influence trimming against the random range per budget)."""
    from .report.influence_report import trim_findings as findings
    return findings(rows, impact)


def influence_apps(scenario: str, out: str | Path, **kwargs):
    """`equiprune influence-apps`: trimming in the thesis's scenarios (poisoning, evasion, online, active)."""
    from .engine import on_main
    from .influence.apps import run_app
    from .report.influence_report import write_apps_report
    result = run_app(scenario, out, **kwargs)
    on_main(write_apps_report, out)
    return result


def cluster(job: str, source, out: str | Path, **kwargs):
    """`equiprune cluster JOB`: fit (vanilla and fair algorithms, CFC), metrics, attack, attack-spillover,
    attack-deep, transfer, antidote; summarize; report.html.

    `source` is a `cluster.PointSource` (a `cluster.deep_data.ImageSource` for attack-deep and transfer); kwargs are the job's settings (see `cluster.folders`).
    """
    from .cluster import deep_folders, folders
    from .engine import on_main
    from .report.cluster_report import write_cluster_report
    jobs = {"fit": folders.fit_to_folder, "metrics": folders.score_to_folder,
            "attack": folders.attack_to_folder, "antidote": folders.antidote_to_folder,
            "attack-spillover": folders.spillover_to_folder, "summarize": folders.summarize_to_folder,
            "attack-deep": deep_folders.deep_attack_to_folder, "transfer": deep_folders.transfer_to_folder}
    if job not in jobs:
        raise ValueError(f"unknown cluster job {job!r}; choose from {', '.join(jobs)}")
    result = jobs[job](source, out=out, **kwargs)
    on_main(write_cluster_report, out)
    return result


def summarize(source, k: int, out: str | Path, seed: int = 0):
    """`equiprune summarize`: k representative items with the groups in proportion (thesis §3.2), report.html."""
    return cluster("summarize", source, out, k=k, seed=seed)


__all__ = ["DemoConfig", "DemoResult", "audit", "audit_checkpoint", "cluster", "compare", "compress",
           "compress_order", "cut_response", "demo", "influence", "influence_apps", "mitigate", "prune_fairprune",
           "prune_obd", "prune_scp", "prune_skew", "report", "reprogram", "stress_groups", "summarize", "train", "trim"]




# ---------------------------------------------------------------- terminal text (the CLI prints these)
def audit_text(result: AuditResult) -> str:
    """What `equiprune audit` prints for `result`: warnings, Table 1, group scores, FATE, notes."""
    return _terminal.audit_summary(result)


def report_text(result: ComparisonResult, columns: Sequence[str] | None = None, against: str | None = None) -> str:
    """What `equiprune report` prints: one line per run (the chosen `columns` or the papers' three), then the
    paired differences against `against` where asked."""
    paired = against_text(result.against, against)
    return _terminal.comparison_summary(result, columns) + ("\n" + paired if paired else "")


def against_text(frame, against: str | None) -> str:
    """The paired differences of a comparison against a run or method ("" when none were asked for)."""
    return _terminal.against_summary(frame, against)
