"""Plots of an iterative pruning run (SCP and its controls), read from its metrics.json.

* `snnl_scores_png` -- the SNNL-Fair score of every channel of the pruned layer
  before and after, sorted, as in Fig. 1 of the Sensitive Channel Pruning paper
  (low score = the channel separates the sensitive groups).
* `iterations_png` -- validation FATE, macro-F1 and the fairness gap against
  iteration, the selected iteration marked.
* `save_prune_plots(run)` stores both as a report section of the run folder.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..engine import RunDir
from ..scoring import null_check_text
from .html import add_report_section
from .plots import figure_png

SECTION_TITLE = "Pruning iterations and SNNL-Fair scores"


def snnl_scores_png(section: dict[str, Any]) -> bytes:
    """Sorted SNNL-Fair scores of the layer's channels before and after pruning."""
    fig = Figure(figsize=(6, 3.2))
    ax = fig.add_subplot(111)
    before = np.sort(np.asarray(section["before"], dtype=float))
    null = section.get("null")
    if null:
        # What sorted scores look like when no channel knows the groups (shuffled-group scorings).
        pooled = np.asarray(null["null_scores"], dtype=float).ravel()
        chance = np.quantile(pooled, (np.arange(len(before)) + 0.5) / len(before))
        ax.plot(np.arange(len(before)), chance, color="0.6", lw=1, label="shuffled groups (chance)")
        ax.axhline(null["threshold"], color="0.6", ls=":", lw=1,
                   label=f"{100 * null['quantile']:g}% quantile of chance: {null['separating']} channel(s) below")
    ax.plot(np.arange(len(before)), before, color="#0072B2", label=f"before ({len(before)} channels)")
    if section.get("after") is not None:
        after = np.sort(np.asarray(section["after"], dtype=float))
        ax.plot(np.arange(len(after)), after, color="#D55E00", ls="--", label=f"after ({len(after)} channels)")
    ax.set_xlabel("channel (sorted by score)")
    ax.set_ylabel("SNNL-Fair score")
    ax.set_title(f"{section.get('layer', '')}: low score = separates the groups", fontsize=9)
    ax.legend(frameon=False, fontsize=8)
    return figure_png(fig)


def iterations_png(history: list[dict[str, Any]], fair_metric: str = "eodd", best_iter: int | None = None) -> bytes:
    """Validation FATE, macro-F1 and gap per iteration."""
    fig = Figure(figsize=(6, 3.2))
    ax = fig.add_subplot(111)
    it = [r["iter"] for r in history]
    fate = [np.nan if r.get("fate") is None else r["fate"] for r in history]
    ax.plot(it, fate, "o-", color="#009E73", label=f"val FATE({fair_metric})")
    ax.plot(it, [r.get("val_f1") for r in history], "s--", color="#0072B2", label="val macro-F1")
    ax.plot(it, [r.get(f"val_{fair_metric}") for r in history], "^--", color="#D55E00", label=f"val {fair_metric}")
    if best_iter is not None:
        ax.axvline(best_iter, color="grey", lw=1, ls=":", label=f"kept: iteration {best_iter}")
    ax.set_xlabel("iteration (0 = start model)")
    ax.set_xticks(it)
    ax.legend(frameon=False, fontsize=8)
    return figure_png(fig)


def save_prune_plots(run_path: str | Path) -> bool:
    """Store the pruning plots as a section of the run's report; False if the run has no loop history."""
    rd = RunDir(run_path, create=False)
    data = rd.read_metrics()
    history = [r for r in data.get("history", []) if "iter" in r]
    if not history:
        return False
    settings = rd.read_config().get("settings", {})
    fair = settings.get("fair_metric", "eodd") if isinstance(settings, dict) else "eodd"
    best = (data.get("selection") or {}).get("best_iter")
    images = [("validation metrics per iteration", iterations_png(history, fair, best))]
    if data.get("snnl_scores"):
        images.insert(0, ("SNNL-Fair score of every channel before and after", snnl_scores_png(data["snnl_scores"])))
    removed = sum(len(r.get("removed", [])) for r in history[1:(best or 0) + 1])
    text = (f"{len(history) - 1} iteration(s); kept iteration {best} ({removed} channels cut). "
            "The kept iteration has the best validation FATE; the test split was not used to choose it.")
    null = (data.get("snnl_scores") or {}).get("null")
    if null and null.get("sentence"):
        text += f" Premise check of the start model: {null_check_text(null)}."
    add_report_section(rd.path, SECTION_TITLE, text=text, images=images)
    return True
