"""Audit a run folder (or a bare checkpoint) and write its report in one call (what `equiprune audit` runs)."""
from __future__ import annotations

from pathlib import Path

from ..data import DataConfig
from ..methods.audit import AuditConfig, AuditResult, audit_run
from ..methods.checkpoint_audit import StateDictArch, checkpoint_run
from .html import write_run_report


def audit_and_report(run_path: str | Path, cfg: AuditConfig | None = None,
                     baseline_run: str | Path | None = None) -> AuditResult:
    """`audit_run`, then report.html / report.md (with plots) in the run folder."""
    cfg = cfg or AuditConfig()
    result = audit_run(run_path, cfg, baseline_run=baseline_run)
    result.report_html, result.report_md = write_run_report(run_path, split=cfg.split)
    return result


def audit_checkpoint_and_report(checkpoint: str | Path, data: DataConfig, out: str | Path,
                                cfg: AuditConfig | None = None, image_size: int | None = None,
                                baseline_run: str | Path | None = None, plain: StateDictArch | None = None
                                ) -> AuditResult:
    """`equiprune audit --checkpoint`: make `out` the checkpoint's run folder (see `checkpoint_run`), audit it."""
    rd = checkpoint_run(checkpoint, data, out, image_size=image_size, plain=plain)
    return audit_and_report(rd.path, cfg, baseline_run=baseline_run)
