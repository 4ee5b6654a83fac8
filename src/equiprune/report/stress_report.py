"""The stress-groups page: post/pre ratio curves per metric (the thesis's Fig. 4.6 form), KS tests, every run.

Everything is read from the ``stress_groups`` section of the folder's
metrics.json (written by `methods.stress_groups`), so the page can be rebuilt
without running anything again.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import pandas as pd
from matplotlib.figure import Figure

from ..engine import RunDir
from ..methods.stress_groups import REPORTED, SECTION, stress_findings
from .html import Image, Section, write_page
from .plots import figure_png
from .tables import frame_to_html, frame_to_markdown

_LABELS = {"eodd": "Eodd", "eopp1": "Eopp1", "f1": "macro-F1"}
_COLOURS = {"random": "#555555", "adversarial": "#D55E00"}


def stress_png(section: Mapping[str, Any]) -> bytes:
    """One panel per metric: post/pre ratio (mean over seeds) against the fraction of groups the attacker set."""
    flips = [100 * f for f in section.get("flips") or []]
    fig = Figure(figsize=(4.2 * len(REPORTED), 3.4))
    for i, metric in enumerate(REPORTED):
        ax = fig.add_subplot(1, len(REPORTED), i + 1)
        for attack, per in (section.get("ratios") or {}).items():
            ys = [float("nan") if v is None else v for v in per.get(metric, [])]
            ax.plot(flips, ys, "o-", ms=3, color=_COLOURS.get(attack, "#0072B2"), label=f"{attack} attack")
        ax.axhline(1.0, color="#999999", lw=0.8)
        ax.set_xlabel("training groups set by the attacker (%)")
        ax.set_ylabel(f"test {_LABELS[metric]}: post / pre")
        ax.grid(alpha=0.3)
        ax.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    return figure_png(fig)


def stress_frame(section: Mapping[str, Any]) -> pd.DataFrame:
    """One row per run: attack, ρ, seed, groups flipped, clean-test Eodd / Eopp1 / macro-F1."""
    rows = [{"attack": r["attack"], "flip": r["flip"], "seed": r["seed"], "flipped": r["flipped"],
             **{_LABELS[m]: round(r["test"][m], 4) for m in REPORTED}} for r in section.get("records") or []]
    return pd.DataFrame(rows).set_index("attack") if rows else pd.DataFrame()


def write_stress_report(run_path: str | Path) -> Path:
    """Write report.html / report.md of a stress-groups folder; returns the HTML path."""
    rd = RunDir(run_path, create=False)
    section = rd.read_metrics().get(SECTION)
    if not section or not section.get("records"):
        raise ValueError(f"{rd.path} holds no stress test (metrics.json has no '{SECTION}' section)")
    findings = section.get("findings") or stress_findings(section)
    table = stress_frame(section)
    method = section.get("method", "?") + (f" with consensus over {section['consensus']} resamples"
                                           if section.get("consensus") else "")
    sections = [
        Section("Findings", "\n\n".join(findings) or "Too few runs to compare."),
        Section("Post/pre ratios", "The method ran with a fraction of the training split's groups set by the "
                "attacker and was judged on the clean test split; 1.0 = the clean run's value (mean over seeds). "
                "A robust method stays near 1 for the gaps.",
                images=[Image("test Eodd, Eopp1 and macro-F1 after / before the attack", stress_png(section),
                              "stress-ratios")]),
        Section("Every run", html=frame_to_html(table), markdown=frame_to_markdown(table)),
    ]
    html_path, _ = write_page(rd.path, "report", f"Group-label stress test of {method}", sections,
                              subtitle=f"model: {rd.read_config().get('parent', '?')}")
    return html_path
