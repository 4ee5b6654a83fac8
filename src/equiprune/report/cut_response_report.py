"""The cut-response page: gap, macro-F1 and per-group accuracy against channels cut, by how they were chosen.

Everything is read from the ``cut_response`` section of a run folder's
metrics.json (written by `methods.cut_response`), so the page can be rebuilt
without evaluating anything again.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..engine import RunDir
from ..metrics import GAP_LABELS
from ..methods.cut_response import CHOICE_LABELS, CHOICES, SECTION, cut_response_findings
from .html import Image, Section, write_page
from .plots import GROUP_COLOURS, figure_png
from .tables import frame_to_html, frame_to_markdown

_COLOURS = {"snnl": "#D55E00", "snnl_high": "#009E73", "l1": "#CC79A7", "random": "#555555"}


def _series(rows: list[Mapping[str, Any]], choice: str, key: str) -> tuple[list[int], np.ndarray, np.ndarray,
                                                                            np.ndarray]:
    """k, mean, min and max of `key` over the cuts of one choice (k = 0: the uncut model)."""
    ks = sorted({r["k"] for r in rows if r["choice"] == choice})
    base = [r[key] for r in rows if r["k"] == 0]
    ks_all = ([0] if base else []) + ks
    vals = [base if k == 0 else [r[key] for r in rows if r["choice"] == choice and r["k"] == k] for k in ks_all]
    return (ks_all, np.array([np.mean(v) for v in vals]), np.array([np.min(v) for v in vals]),
            np.array([np.max(v) for v in vals]))


def _choices(rows: list[Mapping[str, Any]]) -> list[str]:
    present = {r["choice"] for r in rows}
    return [c for c in CHOICES if c in present]


def cut_response_png(section: Mapping[str, Any]) -> bytes:
    """Three panels: the gap, macro-F1, and each group's accuracy (SCP's cut against random) against k."""
    rows = list(section["rows"])
    metric = section.get("fair_metric", "eodd")
    split = section.get("split", "val")
    fig = Figure(figsize=(13, 3.6))
    axes = [fig.add_subplot(1, 3, i + 1) for i in range(3)]
    for ax, key, label in ((axes[0], metric, f"{split} {GAP_LABELS.get(metric, metric)}"),
                           (axes[1], "f1", f"{split} macro-F1")):
        for c in _choices(rows):
            ks, mean, lo, hi = _series(rows, c, key)
            if c == "random":
                ax.fill_between(ks, lo, hi, color=_COLOURS[c], alpha=0.15, lw=0)
            ax.plot(ks, mean, "o-", ms=3, color=_COLOURS[c],
                    label=CHOICE_LABELS[c] + (" (mean; band: all draws)" if c == "random" else ""))
        ax.set_ylabel(label)
    names = list(section.get("group_names") or ["group 0", "group 1"])
    for g, name in enumerate(names[:2]):
        for c, style in (("snnl", "-"), ("random", ":")):
            if c not in _choices(rows):
                continue
            ks, mean, _, _ = _series(rows, c, f"acc_g{g}")
            axes[2].plot(ks, mean, style, marker="o", ms=3, color=GROUP_COLOURS[g % 2],
                         label=f"{name}, {CHOICE_LABELS[c]}")
    axes[2].set_ylabel(f"{split} accuracy per group")
    for ax in axes:
        ax.set_xlabel(f"channels cut from {section.get('layer')} (of {section.get('channels')}), no fine-tuning")
        ax.grid(alpha=0.3)
        ax.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    return figure_png(fig)


def cut_response_frame(section: Mapping[str, Any]) -> pd.DataFrame:
    """One row per (channels cut, choice): the gap, macro-F1 and per-group accuracy (random: mean over draws)."""
    rows = pd.DataFrame(section["rows"])
    metric = section.get("fair_metric", "eodd")
    cols = [metric, "f1"] + [c for c in ("acc_g0", "acc_g1") if c in rows]
    table = rows.groupby(["k", "choice"], sort=False)[cols].mean().reset_index()
    table["draws"] = rows.groupby(["k", "choice"], sort=False).size().to_numpy()
    table["choice"] = table["choice"].map(lambda c: CHOICE_LABELS.get(c, "uncut model"))
    names = list(section.get("group_names") or [])
    rename = {metric: GAP_LABELS.get(metric, metric), "f1": "macro-F1", "k": "channels cut"}
    rename.update({f"acc_g{g}": f"accuracy {n}" for g, n in enumerate(names[:2])})
    return table.rename(columns=rename).round(4).set_index("channels cut")


def _section(run_path: str | Path) -> dict[str, Any]:
    rd = RunDir(run_path, create=False)
    section = rd.read_metrics().get(SECTION)
    if not section or not section.get("rows"):
        raise ValueError(f"{rd.path} holds no cut response (metrics.json has no '{SECTION}' section)")
    return section


def cut_response_plot_section(run_path: str | Path) -> Section:
    """The plot of a cut-response run folder as a page section (its report and the demo's page show it)."""
    section = _section(run_path)
    return Section(f"Cut response of {section.get('layer')}: gap, macro-F1 and group accuracy against channels cut",
                   "Each cut is made on a copy of the model and evaluated with no fine-tuning, so extra training "
                   "cannot be the cause of any change. The random cuts show how much an arbitrary choice of the "
                   "same number of channels moves the numbers.",
                   images=[Image("gap, macro-F1 and per-group accuracy against channels cut",
                                 cut_response_png(section), "cut-response")])


def write_cut_response_report(run_path: str | Path) -> Path:
    """Write report.html / report.md (+ plots/) of a cut-response run folder; returns the HTML path."""
    rd = RunDir(run_path, create=False)
    section = _section(run_path)
    findings = section.get("findings") or cut_response_findings(section)
    table = cut_response_frame(section)
    sections = [
        Section("Findings", "\n\n".join(findings) or "Too few cuts to compare."),
        cut_response_plot_section(run_path),
        Section("Every cut", html=frame_to_html(table), markdown=frame_to_markdown(table)),
    ]
    html_path, _ = write_page(rd.path, "report", f"Cut response of {section.get('layer')}", sections,
                              subtitle=f"model: {rd.read_config().get('parent', '?')}")
    return html_path
