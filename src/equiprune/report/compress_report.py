"""Rendering of compression studies: the sweep's table (CSV, Markdown) and curves, the order study's tables.

The methods (`methods.compress.sweep.run_compress_sweep`, `.order.order_study`)
compute and store the evidence in the run folder; these functions draw it.
`equiprune.api.compress` runs both, so `equiprune compress` writes the same files as before.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..data.atomic import atomic_write, atomic_write_text
from ..engine import RunDir
from ..metrics import format_float
from ..methods.compress.order import ARM_LABELS, OrderStudyResult
from ..methods.compress.sweep import SweepResult, sweep_table


def _ci(row: pd.Series, k: str) -> str:
    return f"{format_float(row[k])} [{format_float(row[k + '_lo'], 3)}, {format_float(row[k + '_hi'], 3)}]"


def table_markdown(table: pd.DataFrame, group_names: list[str], title: str) -> str:
    """The sweep table as Markdown, widened gaps marked with ▲."""
    g0, g1 = (group_names + ["group 0", "group 1"])[:2] if len(group_names) < 2 else group_names[:2]
    head = ["point", "size MB", "× size", "latency ms", "MMACs", "non-zero params", f"F1 {g0}", f"F1 {g1}",
            "macro-F1", "Eodd", "Eopp1", "ΔEodd vs uncompressed", "ΔEopp1 vs uncompressed", "FATE(Eodd)",
            "gaps widened"]
    lines = [f"# {title}", "",
             "Intervals are 95% bootstrap intervals (stratified by group); Δ columns are paired-bootstrap "
             "differences compressed − uncompressed on the same resamples. ▲ marks a gap whose paired interval "
             "lies entirely above 0 (significantly less fair than the uncompressed model); ▼F1 marks a "
             "significant macro-F1 drop.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in table.iterrows():
        wid = set(filter(None, str(r["widened"]).split(",")))

        def mark(k: str, text: str) -> str:
            return f"{text} ▲" if k in wid else text

        d = lambda k: "" if not np.isfinite(r[f"d_{k}"]) else \
            f"{r[f'd_{k}']:+.4f} [{r[f'd_{k}_lo']:+.3f}, {r[f'd_{k}_hi']:+.3f}]"  # noqa: E731
        cells = [str(r["point"]), format_float(r["size_mb"], 3), format_float(r["size_ratio"], 3), format_float(r["latency_ms"], 2),
                 format_float(r["mmacs"], 2), f"{int(r['nonzero_params']):,}" if np.isfinite(r["nonzero_params"]) else "–",
                 _ci(r, "f1_g0"), _ci(r, "f1_g1"), _ci(r, "f1") + (" ▼F1" if r["f1_drop_significant"] else ""),
                 mark("eodd", _ci(r, "eodd")), mark("eopp1", _ci(r, "eopp1")),
                 mark("eodd", d("eodd")), mark("eopp1", d("eopp1")), format_float(r["fate_eodd"]),
                 ", ".join(sorted(wid)) or ("–" if r["point"] != "uncompressed" else "")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _curves_png(table: pd.DataFrame, x_col: str, x_label: str, group_names: list[str], title: str, path: Path) -> None:
    from matplotlib.figure import Figure

    colours = ("#E69F00", "#0072B2")
    base = table.iloc[0]
    pts = table.iloc[1:].copy()
    pts = pts[np.isfinite(pts[x_col].astype(float))].sort_values(x_col)
    fig = Figure(figsize=(13, 3.8))
    axes = fig.subplots(1, 3)
    panels = [("eodd", "Eodd (lower is fairer)"), ("eopp1", "Eopp1 (lower is fairer)")]
    for ax, (k, label) in zip(axes[:2], panels):
        x, y = pts[x_col].to_numpy(float), pts[k].to_numpy(float)
        lo, hi = pts[f"{k}_lo"].to_numpy(float), pts[f"{k}_hi"].to_numpy(float)
        ax.fill_between(x, lo, hi, color="#999999", alpha=0.3, lw=0, label="95% interval")
        ax.plot(x, y, "o-", color="#333333", label="compressed")
        wid = np.array([k in str(w).split(",") for w in pts["widened"]], dtype=bool)
        if wid.any():
            ax.plot(x[wid], y[wid], "o", ms=11, mfc="none", mec="#D55E00", mew=2, label="gap widened (paired)")
        ax.axhspan(base[f"{k}_lo"], base[f"{k}_hi"], color="#56B4E9", alpha=0.15, lw=0)
        ax.axhline(base[k], color="#56B4E9", ls="--", label="uncompressed")
        if np.isfinite(float(base[x_col])):
            ax.plot([base[x_col]], [base[k]], "*", ms=12, color="#56B4E9")
        for xi, yi, name in zip(x, y, pts["point"]):
            ax.annotate(str(name), (xi, yi), textcoords="offset points", xytext=(3, 4), fontsize=7)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel(x_label)
    ax = axes[2]
    for j, col in enumerate(("f1_g0", "f1_g1")):
        x, y = pts[x_col].to_numpy(float), pts[col].to_numpy(float)
        ax.fill_between(x, pts[f"{col}_lo"].to_numpy(float), pts[f"{col}_hi"].to_numpy(float),
                        color=colours[j], alpha=0.2, lw=0)
        ax.plot(x, y, "o-", color=colours[j], label=f"F1 {group_names[j] if j < len(group_names) else j}")
        ax.axhline(base[col], color=colours[j], ls="--", lw=1)
        if np.isfinite(float(base[x_col])):
            ax.plot([base[x_col]], [base[col]], "*", ms=12, color=colours[j])
    ax.set_title("per-group macro-F1 (star, dashed: uncompressed)", fontsize=10)
    ax.set_xlabel(x_label)
    for a in axes:
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    fig.suptitle(title, fontsize=11, y=1.03)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight", facecolor="white"))


def write_outputs(rd: RunDir, records: list[dict[str, Any]], uncompressed: dict[str, Any], group_names: list[str],
                  method: str) -> tuple[pd.DataFrame, Path, Path, list[Path]]:
    """Table (CSV + Markdown) and the two curve PNGs of a sweep folder."""
    table = sweep_table(records, uncompressed)
    csv = rd.file("sweep_table.csv")
    atomic_write(csv, lambda tmp: table.to_csv(tmp, index=False))
    md = rd.file("sweep_table.md")
    atomic_write_text(md, table_markdown(table, group_names, f"Fairness under compression: {method}"))
    plots = []
    # Unstructured pruning leaves tensors dense (same size on disk): its compression shows in
    # the non-zero parameter count, hence the third plot.
    for x_col, x_label, stem in (("size_mb", "size on disk (MB)", "fairness_vs_size"),
                                 ("latency_ms", "CPU latency (ms, batch 1)", "fairness_vs_latency"),
                                 ("nonzero_params", "non-zero parameters", "fairness_vs_nonzero_params")):
        if np.isfinite(table[x_col].to_numpy(float)[1:]).any():
            p = rd.path / "plots" / f"{stem}.png"
            _curves_png(table, x_col, x_label, group_names, f"{method}: fairness vs {x_label}", p)
            plots.append(p)
    return table, csv, md, plots


def order_markdown(table: pd.DataFrame, comparison: dict[str, dict[str, Any]], method: str) -> str:
    """The order study as Markdown: every model, then the direct comparison of the two orders."""
    lines = [f"# Order study: {method} and SCP", "",
             "Δ columns: paired bootstrap against the uncompressed model; ▲ a gap that widened significantly.", "",
             "| point | model | size MB | latency ms | macro-F1 | F1 g0 | F1 g1 | Eodd | Eopp1 | ΔEodd | ΔF1 | "
             "FATE(Eodd) | widened |", "|" + "---|" * 13]
    for _, r in table.iterrows():
        lines.append("| " + " | ".join([
            str(r["point"]), ARM_LABELS.get(r["arm"], r["arm"]), format_float(r["size_mb"], 3), format_float(r["latency_ms"], 2),
            format_float(r["f1"]), format_float(r["f1_g0"]), format_float(r["f1_g1"]),
            format_float(r["eodd"]) + (" ▲" if "eodd" in str(r["widened"]).split(",") else ""),
            format_float(r["eopp1"]), format_float(r["d_eodd"]), format_float(r["d_f1"]), format_float(r["fate_eodd"]), str(r["widened"] or "")]) + " |")
    lines += ["", "## SCP → compress minus compress → SCP (paired bootstrap, 95% intervals)", "",
              "| point | ΔEodd | ΔEopp1 | ΔF1 | verdict |", "|---|---|---|---|---|"]
    for label, comp in comparison.items():
        e = comp["eodd"]
        verdict = ("mitigating first is fairer" if e["hi"] < 0 else
                   "compressing first is fairer" if e["lo"] > 0 else "no significant difference in Eodd")
        cell = lambda k: f"{comp[k]['estimate']:+.4f} [{comp[k]['lo']:+.3f}, {comp[k]['hi']:+.3f}]"  # noqa: E731
        lines.append(f"| {label} | {cell('eodd')} | {cell('eopp1')} | {cell('f1')} | {verdict} |")
    return "\n".join(lines) + "\n"


def write_sweep_outputs(result: SweepResult) -> SweepResult:
    """Write a sweep folder's table and plots and name them in its ``sweep`` section; `result` gains their paths."""
    if result.run is None:
        raise ValueError("the sweep has no run folder to write its table and plots to")
    table, csv, md, plots = write_outputs(result.run, result.records, result.uncompressed,
                                          result.group_names or ["group 0", "group 1"], result.method)
    rd = result.run
    rd.set_section("sweep", {**(rd.read_metrics().get("sweep") or {}), "table_csv": csv.name, "table_md": md.name,
                             "plots": [str(p.relative_to(rd.path)) for p in plots]})
    result.table, result.table_csv, result.table_md, result.plots = table, csv, md, plots
    return result


def write_order_outputs(result: OrderStudyResult) -> OrderStudyResult:
    """Write an order study's ``order_table.csv`` and ``order_table.md``; `result` gains their paths."""
    if result.run is None:
        raise ValueError("the order study has no run folder to write its tables to")
    result.table_csv = result.run.file("order_table.csv")
    result.table.to_csv(result.table_csv, index=False)
    result.table_md = result.run.file("order_table.md")
    atomic_write_text(result.table_md, order_markdown(result.table, result.comparison, result.method))
    return result
