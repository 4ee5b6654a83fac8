"""What `audit` and `report` print in the terminal: the same numbers as their pages, as plain text.

Rendering lives in `report/`; the CLI prints these strings through `api`
and formats nothing itself.
"""
from __future__ import annotations

from typing import Any, Sequence

from .html import format_paired_terminal
from .scores import audit_cell, column_choices, format_scores_terminal
from .tables import format_terminal


def audit_summary(result: Any) -> str:
    """An `AuditResult` as the terminal shows it: warnings first, Table 1, the group scores, FATE, notes."""
    audit = result.to_dict()
    lines = [f"WARNING: {w}" for w in result.warnings]   # first: they change how every number below reads
    lines.append(format_terminal(audit))
    scores = format_scores_terminal(audit)
    if scores:
        lines.append(scores)
    if result.baseline_path:
        lines.append(f"\nFATE and paired differences against the baseline {result.baseline_path}")
        paired = format_paired_terminal(audit)
        if paired:
            lines.append(paired)
    elif not result.fate:
        lines.append("\nno baseline: FATE is left out (give one with --baseline RUN_DIR)")
    if result.multigroup:
        gaps = {r["metric"]: r for r in result.multigroup["gaps"]}
        if "eodd" in gaps:
            r = gaps["eodd"]
            lines.append(f"by {result.multigroup['column']}: worst pairwise Eodd {r['gap']:.3f} "
                         f"({r['name_a']} vs {r['name_b']})")
    lines += [f"note: {note}" for note in result.notes]
    return "\n".join(lines)


def comparison_summary(res: Any, columns: Sequence[str] | None) -> str:
    """A `ComparisonResult`'s runs, one line each: the chosen `columns` or the papers' F1 Avg., Eodd, FATE."""
    width = max(len(n) for n in res.table.names)
    if not columns:
        lines = [f"{'run'.ljust(width)}  {'F1 Avg.':>7}  {'Eodd':>6}  {'FATE(Eodd)':>10}"]
        for name in res.table.names:
            e = res.table.estimate.loc[name]
            e = e.iloc[0] if hasattr(e, "ndim") and e.ndim == 2 else e
            fate = f"{e['fate_eodd']:+.3f}" if e["fate_eodd"] == e["fate_eodd"] else "—"
            lines.append(f"{name.ljust(width)}  {e['f1_avg']:7.3f}  {e['eodd']:6.3f}  {fate:>10}")
        return "\n".join(lines)
    labels = column_choices()
    heads = [labels[c][0] for c in columns]
    widths = [max(len(h), 6) for h in heads]
    lines = [f"{'run'.ljust(width)}  " + "  ".join(h.rjust(w) for h, w in zip(heads, widths))]
    for e in res.runs:
        cells = [audit_cell(e.audit, c) for c in columns]
        vals = [f"{c.estimate:.3f}" if c is not None and c.estimate == c.estimate else "—" for c in cells]
        lines.append(f"{e.name.ljust(width)}  " + "  ".join(v.rjust(w) for v, w in zip(vals, widths)))
    return "\n".join(lines)


def against_summary(frame: Any, against: str | None) -> str:
    """The paired differences of `compare_runs(against=...)` ("" when none were asked for)."""
    if frame is None:
        return ""
    body = frame.to_string() if len(frame) else "(no pair of runs predicted on the same images)"
    return (f"\npaired differences against {against} (run minus it, same test images, paired bootstrap "
            f"intervals):\n{body}\n")
