"""Plots of SkewPrune's premise check (PNG bytes, matplotlib Agg, no pyplot state).

Everything is read from a SkewPrune run folder's metrics.json (sections
``skewness``, ``skewprune``, ``cost``), so plots can be rebuilt without
recomputing anything:

* `skew_histogram_png` -- the aggregated skewness of every component (conv
  filters / patch-embedding components; attention heads in a second panel),
  the threshold marked, the cut side shaded.
* `skew_vs_snnl_png` -- per component, skewness against its SNNL-Fair score
  (low SNNL = the component separates the sensitive groups), one colour per
  layer, the Spearman rank correlation in each panel's title. A positive
  correlation supports the premise (negatively skewed components are the
  group-separating ones) on the data at hand.
* `skew_figures(run)` -> [(caption, png)], `skew_section(run)` -> a report
  `Section`, and `save_skew_plots(run)` which stores that section in the run
  folder (PNGs under plots/) so every later report of the run shows it.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from ..engine import RunDir, read_json
from ..metrics import format_float
from ..scoring.skewness import spearman
from .html import SECTIONS_FILE, Image, Section, add_report_section
from .plots import NEUTRAL, figure_png

__all__ = ["skew_histogram_png", "skew_vs_snnl_png", "skew_figures", "skew_section", "save_skew_plots",
           "SECTION_TITLE"]

SECTION_TITLE = "SkewPrune: skewness and the premise check"
_CUT = "#D55E00"    # Okabe-Ito vermillion: the cut side
_KEEP = "#009E73"   # Okabe-Ito green: kept
_LAYER_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")


def _arr(values: Sequence[Any] | None) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in (values or [])], dtype=float)


def _panels(section: Mapping[str, Any]) -> list[tuple[str, dict[str, np.ndarray], dict[str, np.ndarray]]]:
    """(panel title, layer -> skewness, layer -> SNNL) for components and for heads."""
    out = []
    channels = {k: _arr(v) for k, v in (section.get("channels") or {}).items()}
    snnl_c = {k: _arr(v) for k, v in (section.get("snnl_channels") or {}).items()}
    if channels:
        title = "patch-embedding components" if list(channels) == ["conv_proj"] else "conv filters"
        out.append((title, channels, snnl_c))
    heads = {k: _arr(v) for k, v in (section.get("heads") or {}).items()}
    snnl_h = {k: _arr(v) for k, v in (section.get("snnl_heads") or {}).items()}
    if heads:
        out.append(("attention heads", heads, snnl_h))
    return out


def _short(name: str) -> str:
    return name.replace("encoder.layers.encoder_layer_", "block ").replace(".self_attention", "")


def skew_histogram_png(section: Mapping[str, Any], title: str | None = None) -> bytes:
    """Histogram of aggregated skewness (the metrics.json ``skewness`` section), threshold marked."""
    panels = _panels(section)
    if not panels:
        raise ValueError("the skewness section has no channel or head scores to plot")
    threshold = float(section.get("threshold", 0.0) or 0.0)
    fig = Figure(figsize=(4.6 * len(panels), 3.4))
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (name, skew, _) in zip(axes, panels):
        values = np.concatenate(list(skew.values())) if skew else np.array([])
        finite = values[np.isfinite(values)]
        n_nan = int(np.isnan(values).sum())
        if finite.size:
            lo, hi = min(float(finite.min()), threshold), max(float(finite.max()), threshold)
            n_bins = max(8, min(60, int(np.sqrt(finite.size)) * 2))
            width = max(hi - lo, 1e-6) / n_bins
            # The threshold is a bin edge, so no bar mixes cut and kept components.
            first = math.floor((lo - threshold) / width) - 1
            last = math.ceil((hi - threshold) / width) + 1
            bins = threshold + width * np.arange(first, last + 1)
            ax.hist(finite[finite <= threshold], bins=bins, color=_CUT, alpha=0.85, label="cut (≤ threshold)")
            ax.hist(finite[finite > threshold], bins=bins, color=_KEEP, alpha=0.85, label="kept")
        ax.axvline(threshold, color=NEUTRAL, linestyle="--", linewidth=1)
        cut = int((~(values > threshold)).sum())
        extra = f", {n_nan} constant" if n_nan else ""
        ax.set_title(f"{name}: {cut} of {values.size} at/below {threshold:g}{extra}", fontsize=9)
        ax.set_xlabel("median skewness over images" if section.get("aggregate", "median") == "median"
                      else "mean skewness over images")
        ax.set_ylabel("components")
        ax.legend(fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return figure_png(fig)


def skew_vs_snnl_png(section: Mapping[str, Any], title: str | None = None) -> bytes:
    """Scatter of skewness against SNNL-Fair per component, Spearman rank correlation in the titles."""
    panels = [(n, s, q) for n, s, q in _panels(section) if q]
    if not panels:
        raise ValueError("the skewness section has no SNNL-Fair scores (the premise check was skipped)")
    threshold = float(section.get("threshold", 0.0) or 0.0)
    fig = Figure(figsize=(4.8 * len(panels), 3.8))
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (name, skew, snnl) in zip(axes, panels):
        xs, ys = [], []
        layers = [k for k in skew if k in snnl]
        per_layer = []
        for i, layer in enumerate(layers):
            x, y = skew[layer], snnl[layer]
            xs.append(x)
            ys.append(y)
            r = spearman(x, y)
            per_layer.append(r)
            # Per-layer ρ in the legend for conv layers (a block has too few heads for one).
            label = None
            if len(layers) <= len(_LAYER_COLOURS):
                label = _short(layer) if name == "attention heads" else f"{_short(layer)} (ρ {r:+.2f})"
            ax.scatter(x, y, s=10, alpha=0.7, color=_LAYER_COLOURS[i % len(_LAYER_COLOURS)], label=label,
                       edgecolors="none")
        rho = spearman(np.concatenate(xs), np.concatenate(ys)) if xs else math.nan
        ax.axvline(threshold, color=NEUTRAL, linestyle="--", linewidth=1)
        head = f"{name}: Spearman ρ = {rho:+.3f}"
        finite = [r for r in per_layer if math.isfinite(r)]
        if name != "attention heads" and len(finite) > 1:
            # Pooling mixes layers whose SNNL levels differ; the per-layer values are the cleaner reading.
            head += f" pooled, median per layer {float(np.median(finite)):+.3f}"
        ax.set_title(head, fontsize=9)
        ax.set_xlabel("skewness (≤ threshold: cut)")
        ax.set_ylabel("SNNL-Fair (low: separates groups)")
        if layers and len(layers) <= len(_LAYER_COLOURS):
            ax.legend(fontsize=7, frameon=False, markerscale=1.5)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return figure_png(fig)


def _metrics(run_path: str | Path) -> dict[str, Any]:
    f = Path(run_path) / RunDir.METRICS
    if not f.exists():
        raise ValueError(f"{run_path} has no {RunDir.METRICS}; is it a SkewPrune run folder?")
    return read_json(f)


def skew_figures(run_path: str | Path) -> list[tuple[str, bytes]]:
    """(caption, PNG) of a SkewPrune run: the histogram, and the SNNL scatter when it was computed."""
    section = _metrics(run_path).get("skewness")
    if not section:
        return []
    out = [("Aggregated skewness of every scored component; the dashed line is the threshold, "
            "components at or below it were cut.", skew_histogram_png(section))]
    if section.get("snnl_channels") or section.get("snnl_heads"):
        out.append(("Premise check: skewness against SNNL-Fair (computed with the group labels, which "
                    "SkewPrune itself never uses). A positive rank correlation means negatively skewed "
                    "components are the ones that separate the groups.", skew_vs_snnl_png(section)))
    return out


def _change(reduction_pct: Any) -> str:
    """A reduction in percent as a signed change (-30.0% = 30% fewer)."""
    try:
        v = float(reduction_pct)
    except (TypeError, ValueError):
        return "n/a"
    return f"{-v:+.1f}%" if math.isfinite(v) else "n/a"


def _section_text(metrics: Mapping[str, Any]) -> str:
    sp = metrics.get("skewprune") or {}
    counts = sp.get("counts") or {}
    red = (metrics.get("cost") or {}).get("reduction_pct") or {}
    lines = []
    if counts.get("kind") == "vit":
        lines.append(f"Cut {counts.get('patch_components_removed')} of {counts.get('embed_dim_before')} "
                     f"patch-embedding components and {counts.get('heads_removed')} of "
                     f"{counts.get('heads_before')} attention heads (fine-tuning: freeze={sp.get('freeze')}).")
    elif counts:
        lines.append(f"Cut {counts.get('filters_removed')} of {counts.get('filters_before')} conv filters "
                     f"(fine-tuning: freeze={sp.get('freeze')}).")
    if red:
        lines.append(f"Change against the input model: MACs {_change(red.get('macs'))}, parameters "
                     f"{_change(red.get('params'))}, latency {_change(red.get('latency_ms'))} (measured "
                     "latency is only meaningful on an otherwise idle machine).")
    premise = (metrics.get("skewness") or {}).get("premise") or {}
    for name, p in premise.items():
        rho = p.get("spearman")
        rho_s = f"{rho:+.3f}" if isinstance(rho, (int, float)) else "n/a"
        lines.append(f"Premise check, {_short(name)}: Spearman(skewness, SNNL-Fair) = {rho_s} over "
                     f"{p.get('n')} components; mean SNNL-Fair of the cut ones "
                     f"{format_float(p.get('snnl_mean_below'), missing='n/a')} vs kept "
                     f"{format_float(p.get('snnl_mean_above'), missing='n/a')}.")
    if len(premise) > 2:
        lines.append("The pooled correlation mixes layers whose SNNL-Fair levels differ; the per-layer values "
                     "are the cleaner reading.")
    if premise:
        lines.append("SkewPrune assumes negatively skewed components carry skin (tone) rather than lesion "
                     "information. If that holds here, they separate the groups, i.e. have LOW SNNL-Fair, "
                     "and the correlation is positive. A correlation near zero or negative means the premise "
                     "is not supported on these data.")
    return "\n\n".join(lines)


def skew_section(run_path: str | Path) -> Section | None:
    """The report section of a SkewPrune run (None if the run has no skewness section)."""
    metrics = _metrics(run_path)
    if not metrics.get("skewness"):
        return None
    return Section(SECTION_TITLE, _section_text(metrics),
                   images=[Image(c, png, f"skew-{i}") for i, (c, png) in enumerate(skew_figures(run_path))])


def save_skew_plots(run_path: str | Path) -> list[Path]:
    """Store the SkewPrune section (text + PNGs under plots/) in the run folder; returns the PNG paths."""
    section = skew_section(run_path)
    if section is None:
        return []
    add_report_section(run_path, section.title, text=section.text,
                       images=[(im.caption, im.png) for im in section.images])
    stored = read_json(Path(run_path) / SECTIONS_FILE)
    files = next((s.get("images", []) for s in stored if s.get("title") == SECTION_TITLE), [])
    return [Path(run_path) / im["file"] for im in files]
