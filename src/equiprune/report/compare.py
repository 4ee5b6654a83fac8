"""One comparison page over several run folders (compare.html, compare.md, compare.csv).

One row per run in the papers' Table 1 layout, FATE of each run against its own
baseline, the best value per column marked. Runs that share a method (same
``kind`` and settings apart from seeds, or the same name given by the user)
are also summarised as mean ± standard deviation over the runs.
"""
from __future__ import annotations

import json
import math
import os
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..engine import RunDir, RunError
from ..metrics.numbers import float_or_nan as _f  # one rule for stored numbers
from ..methods.audit import AuditConfig, audit_run, audit_section_name
from . import plots
from .html import Image, Section, write_page, write_run_report
from .scores import DEFAULT_SCORE_COLUMNS, check_columns, columns_table, tradeoff_findings
from .tables import (
    TABLE1_COLUMNS,
    Cell,
    Table1,
    TableRow,
    cost_frame,
    frame_to_html,
    frame_to_markdown,
    make_table1,
    row_from_audit,
)

__all__ = ["RunEntry", "ComparisonResult", "compare_runs", "method_key"]

# Settings that change how a run was executed, not what it computed.
_IGNORED_KEYS = {"seed", "device", "progress", "num_workers", "quiet", "amp"}


@dataclass
class RunEntry:
    """One compared run: where it is, its row name, its method group and its audit."""

    path: Path
    name: str
    group: str
    kind: str
    audit: dict[str, Any]
    config: dict[str, Any]
    audited_now: bool


@dataclass
class ComparisonResult:
    """What compare_runs wrote and the tables behind it.

    ``table``: one row per run. ``summary``: one row per method group, mean ± sd
    over its runs (None when every group has a single run). ``audited``: runs
    that had no audit of the split and were audited on the fly.
    """

    table: Table1
    summary: Table1 | None
    runs: list[RunEntry]
    html_path: Path
    md_path: Path
    csv_path: Path
    summary_csv_path: Path | None
    audited: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: paired differences of every run against `compare_runs(against=...)` (None without it)
    against: pd.DataFrame | None = None


def _strip(d: Any) -> Any:
    if isinstance(d, Mapping):
        return {k: _strip(v) for k, v in sorted(d.items()) if k not in _IGNORED_KEYS}
    if isinstance(d, list):
        return [_strip(v) for v in d]
    return d


def method_key(config: Mapping[str, Any]) -> str:
    """Identity of a run's method: kind, settings, architecture and data, seeds left out."""
    parts = {k: _strip(config.get(k)) for k in ("kind", "settings", "train", "arch", "data")}
    return json.dumps(parts, sort_keys=True, default=str)


def _default_out(paths: Sequence[Path]) -> Path:
    parents = {p.resolve().parent for p in paths}
    if len(parents) == 1:
        return parents.pop() / "compare"
    try:
        return Path(os.path.commonpath([str(p) for p in parents])) / "compare"
    except ValueError:
        return Path("compare")


def _load(path: Path, cfg: AuditConfig, notes: list[str]) -> tuple[dict[str, Any], dict[str, Any], bool]:
    rd = RunDir(path, create=False)
    config = rd.read_config()
    section = audit_section_name(cfg.split)
    audit = rd.read_metrics().get(section)
    if audit:
        return config, audit, False
    result = audit_run(path, cfg)
    write_run_report(path, split=cfg.split)
    notes.append(f"{path} had no audit of the {cfg.split} split: audited it now (n_boot={cfg.n_boot}, "
                 f"seed={cfg.seed}); its metrics.json and report.html were written.")
    return config, result.to_dict(), True


def _unique_names(names: list[str], paths: list[Path]) -> list[str]:
    out = list(names)
    for i, n in enumerate(names):
        if names.count(n) > 1:
            out[i] = f"{n} ({paths[i].name})"
    if len(set(out)) < len(out):  # same folder names under different parents
        out = [f"{n} #{i + 1}" if out.count(n) > 1 else n for i, n in enumerate(out)]
    return out


def _group_labels(entries: list[tuple[str, str, str]]) -> dict[str, str]:
    """Label per method key: the kind, made unique by the first differing setting."""
    labels: dict[str, str] = {}
    for key, kind, name in entries:
        labels.setdefault(key, kind or name)
    counts: dict[str, int] = {}
    for key, lab in list(labels.items()):
        counts[lab] = counts.get(lab, 0) + 1
    seen: dict[str, int] = {}
    for key, lab in list(labels.items()):
        if counts[lab] > 1:
            seen[lab] = seen.get(lab, 0) + 1
            labels[key] = f"{lab} (setting {seen[lab]})"
    return labels


def _aggregate(rows: list[TableRow]) -> dict[str, Cell]:
    cells: dict[str, Cell] = {}
    for col in TABLE1_COLUMNS:
        vals = np.array([r.cells[col.key].estimate for r in rows if col.key in r.cells], dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        if vals.size == 0:
            continue
        if vals.size == 1:
            cells[col.key] = next(r.cells[col.key] for r in rows if col.key in r.cells
                                  and math.isfinite(r.cells[col.key].estimate))
        else:
            cells[col.key] = Cell(float(vals.mean()), sd=float(vals.std(ddof=1)), n=int(vals.size))
    return cells


def _explain(table: Table1, summary: Table1 | None) -> str:
    est = table.estimate
    paras = []

    def best(key: str, sense: int) -> tuple[str, float] | None:
        """(who, value): who names the run, or says how many runs share the best value as printed."""
        v = est[key].to_numpy(dtype=float)
        if not np.isfinite(v).any():
            return None
        i = int(np.nanargmax(v) if sense > 0 else np.nanargmin(v))
        tied = [table.names[j] for j in range(len(v)) if np.isfinite(v[j]) and round(v[j], 3) == round(v[i], 3)]
        if len(tied) == 1:
            return str(tied[0]), float(v[i])
        shown = ", ".join(map(str, tied[:3])) + (", ..." if len(tied) > 3 else "")
        return f"{len(tied)} runs tie: {shown}", float(v[i])

    parts = []
    b = best("f1_avg", 1)
    if b:
        parts.append(f"the highest mean macro F1 of the two groups is {b[1]:.3f} ({b[0]})")
    b = best("eodd", -1)
    if b:
        parts.append(f"the smallest Eodd is {b[1]:.3f} ({b[0]})")
    fates = est["fate_eodd"].to_numpy(dtype=float)
    fin = fates[np.isfinite(fates)]
    if fin.size and np.all(np.round(fin, 3) == 0):
        parts.append(f"every run with a FATE has FATE(Eodd) {0:+.3f}: {'it equals' if fin.size == 1 else 'they equal'} "
                     "its baseline (same macro F1 and Eodd), so no method changed the model's fairness here")
    else:
        b = best("fate_eodd", 1)
        if b:
            parts.append(f"the best FATE(Eodd) against its baseline is {b[1]:+.3f} ({b[0]})")
    if parts:
        paras.append("Across the runs, " + "; ".join(parts) + ".")
    paras.append("Each run's FATE is measured against the baseline its chain started from, on the same images; "
                 "a positive FATE means the relative fairness gain outweighs the relative change in macro F1. "
                 "Overlapping intervals mean the difference between two runs may be resampling noise.")
    if summary is not None:
        multi = [n for n, k in zip(summary.names, summary.n.max(axis=1)) if k > 1]
        paras.append(f"Methods with several runs ({', '.join(multi)}: same name, or same settings apart from "
                     "seeds) are also summarised as mean ± standard deviation over their runs; that spread is "
                     "training noise, which the per-run intervals do not include.")
    return "\n\n".join(paras)


def compare_runs(run_dirs: Sequence[str | Path], out_dir: str | Path | None = None,
                 names: Sequence[str] | None = None, cfg: AuditConfig | None = None,
                 notes: Sequence[str] = (), findings: Sequence[str] = (),
                 extra_sections: Sequence[Section] = (), columns: Sequence[str] | None = None,
                 against: str | None = None) -> ComparisonResult:
    """Build compare.html / compare.md / compare.csv over several run folders.

    Args:
        run_dirs: run folders; each is read from its metrics.json audit section,
            or audited now (``audit_run`` with `cfg`) if it has none for the split.
        out_dir: where to write; default ``compare/`` beside the runs.
        names: display names, one per run; runs given the same name are summarised
            together (mean ± sd). By default, the folder names, and runs are grouped
            by ``kind`` and settings with seeds left out.
        cfg: AuditConfig of on-the-fly audits (its split also selects stored audits).
        notes: sentences the caller wants on the page (e.g. how a study was cut down).
        findings: what a study concluded, in sentences; shown first, before the tables.
        extra_sections: the study's own evidence (e.g. a plot), shown after the findings.
        columns: metric keys for an extra table of chosen columns (paper numbers,
            FATE, or threshold-free/calibration numbers such as worst_group_auc,
            ece_gap; see `report.scores.column_choices`), also written to
            compare_columns.csv. Table 1 keeps the papers' columns.
        against: a run folder or a method name among the runs: every run's paired
            differences against it (same seed for a method), shown first (`report.against`).
    """
    if columns is not None:
        try:
            columns = check_columns(columns)
        except ValueError as exc:
            raise RunError(str(exc)) from exc
    cfg = cfg or AuditConfig()
    paths = [Path(p) for p in run_dirs]
    if not paths:
        raise RunError("give at least one run folder to compare.")
    missing = [str(p) for p in paths if not p.is_dir()]
    if missing:
        raise RunError(f"run folder(s) not found: {', '.join(missing)}.")
    if names is not None and len(names) != len(paths):
        raise RunError(f"--names has {len(names)} names for {len(paths)} runs; give one name per run.")
    notes: list[str] = list(notes)
    loaded = []
    audited = []
    for p in paths:
        config, audit, now = _load(p, cfg, notes)
        loaded.append((config, audit, now))
        if now:
            audited.append(p)

    row_names = _unique_names([names[i] if names else p.name for i, p in enumerate(paths)], paths)
    keys = [(n if names else method_key(c)) for n, (c, _, _) in zip(names or [None] * len(paths), loaded)]
    labels = ({k: k for k in keys} if names else
              _group_labels([(k, str(c.get("kind", "")), p.name) for k, (c, _, _), p in zip(keys, loaded, paths)]))
    entries = [RunEntry(p, n, labels[k], str(c.get("kind", "?")), a, c, now)
               for p, n, k, (c, a, now) in zip(paths, row_names, keys, loaded)]

    group_names = (list(entries[0].audit.get("group_names") or []) + ["g0", "g1"])[:2]
    for e in entries[1:]:
        if (list(e.audit.get("group_names") or []) + ["g0", "g1"])[:2] != group_names:
            notes.append(f"{e.path} names its groups {e.audit.get('group_names')}, not {group_names}; "
                         "the columns follow the first run.")
    splits = {e.audit.get("split") for e in entries}
    if len(splits) > 1:
        notes.append(f"the runs were audited on different splits ({sorted(map(str, splits))}).")

    rows = [row_from_audit(e.name, e.audit) for e in entries]
    table = make_table1(rows, group_names)
    by_group: OrderedDict[str, list[int]] = OrderedDict()
    for i, e in enumerate(entries):
        by_group.setdefault(e.group, []).append(i)
    summary = None
    if any(len(v) > 1 for v in by_group.values()):
        summary = make_table1([TableRow(g, _aggregate([rows[i] for i in idx])) for g, idx in by_group.items()],
                              group_names)

    out = Path(out_dir) if out_dir is not None else _default_out(paths)
    out.mkdir(parents=True, exist_ok=True)
    against_frame = None
    if against:
        from .against import against_text, paired_against, resolve_against
        against_frame, skipped = paired_against(resolve_against(paths, against), cfg.split, cfg.n_boot, cfg.seed,
                                                cfg.alpha)
        notes.extend(skipped)
    sections = _sections(entries, table, summary, group_names, notes)
    sections[3:3] = _score_sections(entries, columns, out)
    findings = list(findings)
    for e in entries:  # a run that narrows Eodd while widening the AUC or ECE gap is called out
        base = Path(str((e.audit.get("baseline") or {}).get("path") or "its baseline")).name
        findings += [line for line in tradeoff_findings(e.audit, e.name, base) if line not in findings]
    sections[:0] = list(extra_sections)
    if against_frame is not None:
        sections.insert(0, Section(f"Paired differences against {against}", text=against_text(against, cfg.alpha),
                                   html=frame_to_html(against_frame), markdown=frame_to_markdown(against_frame)))
    if findings:
        sections.insert(0, Section("Findings", text="\n\n".join(findings)))
    title = f"equiprune comparison of {len(entries)} runs"
    coding = next((e.audit.get("group_coding") for e in entries if e.audit.get("group_coding")), "")
    subtitle = (f"Split: {', '.join(sorted(map(str, splits)))}. Estimates with bootstrap intervals; best per column "
                "in bold." + (f" {str(coding)[:1].upper()}{str(coding)[1:]}." if coding else ""))
    html_path, md_path = write_page(out, "compare", title, sections, subtitle)

    extra = pd.DataFrame({
        "run_dir": [str(e.path.resolve()) for e in entries],
        "method_group": [e.group for e in entries],
        "kind": [e.kind for e in entries],
        "split": [e.audit.get("split") for e in entries],
        "audited_now": [e.audited_now for e in entries],
        **{f"cost_{k}": [_f((e.audit.get("cost") or {}).get(k)) for e in entries]
           for k in ("macs", "params", "nonzero_params", "size_bytes", "latency_ms")},
    })
    csv_path = out / "compare.csv"
    table.to_csv(csv_path, extra=extra)
    summary_csv = None
    if summary is not None:
        summary_csv = out / "compare_summary.csv"
        summary.to_csv(summary_csv)
    return ComparisonResult(table=table, summary=summary, runs=entries, html_path=html_path, md_path=md_path,
                            csv_path=csv_path, summary_csv_path=summary_csv, audited=audited, notes=notes,
                            against=against_frame)


def _score_sections(entries: list[RunEntry], columns: Sequence[str] | None, out: Path) -> list[Section]:
    """The chosen columns (`columns`), else MEDFAIR's worst-group and calibration columns when runs have them."""
    rows = [(e.name, e.audit) for e in entries]
    if columns:
        html, md, numbers = columns_table(rows, columns)
        numbers.to_csv(out / "compare_columns.csv", index=False, float_format="%.10g")
        return [Section("Selected columns", text="The columns chosen with --columns, with bootstrap intervals; best "
                        "per column in bold. Numbers also in compare_columns.csv.", html=html, markdown=md)]
    if not any(e.audit.get("scores") for e in entries):
        return []
    html, md, _ = columns_table(rows, DEFAULT_SCORE_COLUMNS)
    return [Section("Threshold-free and calibration (worst group)", text="MEDFAIR's numbers per run: worst-group "
                    "accuracy and AUC, the AUC and ECE gaps between the groups, the largest FNR gap (underdiagnosis) "
                    "over classes, and Eodd at specificity 0.8 (docs/GROUP_SCORES.md). Other columns: "
                    "`equiprune report --columns ...`.", html=html, markdown=md)]


def _iv3(audit: Mapping[str, Any], key: str) -> tuple[float, float, float]:
    iv = (audit.get("intervals") or {}).get(key) or {}
    est = iv.get("estimate", (audit.get("metrics") or {}).get(key))
    return _f(est), _f(iv.get("lo")), _f(iv.get("hi"))


def _seed_label(entry: RunEntry, entries: list[RunEntry]) -> str:
    """The seed of a run for the trade-off plot's markers: ``seed 1`` from its folder name, else its place in its group."""
    m = re.search(r"seed[_-]?(\d+)$", entry.path.name)
    if m:
        return f"seed {m.group(1)}"
    same = [e for e in entries if e.group == entry.group]
    return f"run {same.index(entry) + 1}" if len(same) > 1 else ""


def _sections(entries: list[RunEntry], table: Table1, summary: Table1 | None, group_names: list[str],
              notes: list[str]) -> list[Section]:
    runs = pd.DataFrame({
        "method group": [e.group for e in entries],
        "kind": [e.kind for e in entries],
        "folder": [str(e.path) for e in entries],
        "baseline": [Path(str((e.audit.get("baseline") or {}).get("path") or "")).name or "—" for e in entries],
        "audit": ["audited now" if e.audited_now else "from metrics.json" for e in entries],
    }, index=pd.Index([e.name for e in entries], name="run"))
    sections = [Section("Runs", html=frame_to_html(runs), markdown=frame_to_markdown(runs)),
                Section("What this means", text=_explain(table, summary)),
                Section("Table 1: one row per run", html=table.to_html(), markdown=table.to_markdown())]
    if summary is not None:
        sections.append(Section("Mean ± spread over seeds", text="One row per method group: mean and standard "
                                "deviation over its runs (n = number of runs); single runs keep their interval.",
                                html=summary.to_html(), markdown=summary.to_markdown()))
    costs = {e.name: e.audit.get("cost") for e in entries if e.audit.get("cost")}
    if costs:
        cf = cost_frame(costs)
        sections.append(Section("Cost", html=frame_to_html(cf), markdown=frame_to_markdown(cf)))
    points = [{"name": e.name, "group": e.group, "seed": _seed_label(e, entries), "f1": _iv3(e.audit, "f1"),
               "gap": _iv3(e.audit, "eodd")} for e in entries]
    bars = [{"name": e.name, "g0": _iv3(e.audit, "f1_g0"), "g1": _iv3(e.audit, "f1_g1")} for e in entries]
    sections.append(Section("Plots", images=[
        Image("Macro F1 against Eodd per run, with bootstrap intervals", plots.tradeoff_png(points), "tradeoff"),
        Image("Macro F1 of each group per run", plots.grouped_runs_png(bars, group_names), "f1-by-group"),
    ]))
    if notes:
        sections.append(Section("Notes", text="\n\n".join(notes)))
    return sections
