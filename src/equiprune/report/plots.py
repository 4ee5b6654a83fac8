"""PNG plots of audits and run histories (matplotlib Agg, no display, no pyplot state).

Every function takes plain dicts (an ``audit`` section of metrics.json, a
history list) and returns PNG bytes, so reports can be rebuilt from run
folders without recomputing anything. Figures are made with
``matplotlib.figure.Figure`` directly: no global backend switch, no pyplot
figure registry that could leak memory in long sessions.
"""
from __future__ import annotations

import io
import math
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from ..metrics import FATE_CRITERIA, GAP_LABELS, GAP_METRICS
from ..metrics.numbers import float_or_nan as _f  # one rule for stored numbers

__all__ = [
    "group_bars_png",
    "confusion_png",
    "history_png",
    "multigroup_png",
    "tradeoff_png",
    "grouped_runs_png",
    "figure_png",
]

# Colour-blind-safe pair for the two groups (Okabe-Ito orange / blue) and a neutral.
GROUP_COLOURS = ("#E69F00", "#0072B2")
NEUTRAL = "#555555"
_DPI = 100


def figure_png(fig: Figure) -> bytes:
    """Render a Figure to PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, bbox_inches="tight", facecolor="white")
    return buf.getvalue()


def _iv(audit: Mapping[str, Any], key: str) -> tuple[float, float, float]:
    iv = (audit.get("intervals") or {}).get(key)
    if iv is None:
        return _f((audit.get("metrics") or {}).get(key)), math.nan, math.nan
    return _f(iv.get("estimate")), _f(iv.get("lo")), _f(iv.get("hi"))


def _yerr(est: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Whisker lengths below/above; 0 where the interval is unknown (percentile
    intervals need not contain the estimate, so lengths are clipped at 0)."""
    below = np.where(np.isfinite(lo), np.clip(est - lo, 0, None), 0.0)
    above = np.where(np.isfinite(hi), np.clip(hi - est, 0, None), 0.0)
    return np.vstack([below, above])


def _group_names(audit: Mapping[str, Any]) -> list[str]:
    return (list(audit.get("group_names") or []) + ["group 0", "group 1"])[:2]


def group_bars_png(audit: Mapping[str, Any], title: str | None = None) -> bytes:
    """Per-group precision/recall/F1 and the Eopp0/Eopp1/Eodd gaps, with interval whiskers."""
    g = _group_names(audit)
    level = int(round(100 * (1 - _f((audit.get("settings") or {}).get("alpha", 0.05)))))
    fig = Figure(figsize=(9.0, 3.6))
    ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    labels = ["Precision", "Recall", "F1"]
    x = np.arange(len(labels))
    width = 0.38
    for j, (suffix, colour) in enumerate(zip(("g0", "g1"), GROUP_COLOURS)):
        vals = np.array([_iv(audit, f"{b}_{suffix}") for b in ("precision", "recall", "f1")])
        ax1.bar(x + (j - 0.5) * width, vals[:, 0], width, color=colour, label=g[j],
                yerr=_yerr(vals[:, 0], vals[:, 1], vals[:, 2]), capsize=3, ecolor="#222222")
    ax1.set_xticks(x, labels)
    ax1.set_ylim(0, 1.18)  # headroom for the legend above the bars
    ax1.set_yticks(np.linspace(0, 1, 6))
    ax1.set_ylabel("macro score")
    ax1.set_title("Accuracy by group")
    ax1.legend(loc="upper left", ncol=2, fontsize=8, frameon=False)

    gaps = list(FATE_CRITERIA)
    vals = np.array([_iv(audit, k) for k in gaps])
    xg = np.arange(len(gaps))
    base = (audit.get("baseline") or {}).get("metrics") if audit.get("baseline") else None
    bw = 0.38 if base else 0.6
    ax2.bar(xg - (bw / 2 if base else 0), vals[:, 0], bw, color=NEUTRAL, label="this model",
            yerr=_yerr(vals[:, 0], vals[:, 1], vals[:, 2]), capsize=3, ecolor="#222222")
    if base:
        ax2.bar(xg + bw / 2, [_f(base.get(k)) for k in gaps], bw, color="white", edgecolor=NEUTRAL,
                hatch="//", label="baseline")
        ax2.legend(fontsize=8, frameon=False)
    ax2.set_xticks(xg, [GAP_LABELS[k] for k in gaps])
    ax2.set_title("Fairness gaps (lower is fairer)")
    top = np.nanmax(np.r_[vals[:, 2], vals[:, 0], [0.05]])
    ax2.set_ylim(0, max(0.05, 1.15 * top))
    fig.suptitle(title or f"Whiskers: {level}% bootstrap intervals", fontsize=10)
    fig.tight_layout()
    return figure_png(fig)


def confusion_png(audit: Mapping[str, Any]) -> bytes:
    """One row-normalised confusion matrix per group (rows: true class, columns: predicted)."""
    conf = audit.get("confusion") or {}
    counts = np.asarray(conf.get("counts", []), dtype=np.float64)
    if counts.ndim != 3 or counts.shape[0] != 2:
        raise ValueError("the audit has no per-group confusion matrices (confusion.counts of shape 2xCxC).")
    labels = list(conf.get("labels") or [str(i) for i in range(counts.shape[1])])
    c = counts.shape[1]
    g = _group_names(audit)
    size = max(3.2, 0.55 * c + 1.8)
    fig = Figure(figsize=(2 * size + 0.8, size))
    axes = fig.subplots(1, 2)
    im = None
    for k, ax in enumerate(axes):
        rows = counts[k].sum(1, keepdims=True)
        norm = np.divide(counts[k], rows, out=np.zeros_like(counts[k]), where=rows > 0)
        im = ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
        for i in range(c):
            for j in range(c):
                ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.6 else "black")
        ax.set_xticks(range(c), labels, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(c), labels if k == 0 else [""] * c, fontsize=8)
        ax.set_xlabel("predicted")
        if k == 0:
            ax.set_ylabel("true")
        ax.set_title(f"{g[k]} (n={int(counts[k].sum())})", fontsize=10)
    if im is not None:
        fig.colorbar(im, ax=list(axes), fraction=0.025, pad=0.02, label="share of the true class")
    return figure_png(fig)


_X_KEYS = ("iteration", "iter", "epoch", "step", "round")


def history_png(history: Sequence[Mapping[str, Any]], title: str = "Training history") -> bytes | None:
    """Loss, validation F1 and validation gaps against epoch/iteration; None if nothing to plot."""
    recs = [r for r in history if isinstance(r, Mapping)]
    if not recs:
        return None
    xkey = next((k for k in _X_KEYS if all(k in r for r in recs)), None)
    x = np.array([_f(r[xkey]) for r in recs]) if xkey else np.arange(1, len(recs) + 1, dtype=float)
    keys = sorted({k for r in recs for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
                  - set(_X_KEYS))

    def series(pred: Any) -> list[str]:
        return [k for k in keys if pred(k.lower())]

    panels = [
        ("loss", series(lambda k: "loss" in k)),
        ("accuracy / F1", series(lambda k: ("f1" in k or k.endswith("acc")) and "loss" not in k)),
        ("fairness gap", series(lambda k: any(s in k for s in GAP_METRICS) and "fate" not in k)),
        ("FATE", series(lambda k: "fate" in k)),
    ]
    panels = [(t, ks) for t, ks in panels if ks]
    if not panels:
        return None
    fig = Figure(figsize=(3.4 * len(panels), 3.0))
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (t, ks) in zip(axes, panels):
        for k in ks[:6]:
            y = np.array([_f(r.get(k)) for r in recs])
            if np.isfinite(y).any():
                ax.plot(x, y, marker="o", markersize=3, label=k)
        ax.set_title(t, fontsize=10)
        ax.set_xlabel(xkey or "record")
        ax.legend(fontsize=7, frameon=False)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return figure_png(fig)


def multigroup_png(audit: Mapping[str, Any]) -> bytes | None:
    """Per-group accuracy and macro F1 of a multi-group audit (bars annotated with n)."""
    mg = audit.get("multigroup")
    if not mg or not mg.get("table"):
        return None
    table = mg["table"]
    names = [str(r.get("name")) for r in table]
    x = np.arange(len(names))
    fig = Figure(figsize=(max(5.0, 0.8 * len(names) + 2), 3.4))
    ax = fig.subplots()
    ax.bar(x - 0.2, [_f(r.get("accuracy")) for r in table], 0.4, color=GROUP_COLOURS[1], label="accuracy")
    ax.bar(x + 0.2, [_f(r.get("f1")) for r in table], 0.4, color=GROUP_COLOURS[0], label="macro F1")
    for i, r in enumerate(table):
        ax.text(i, 1.03, f"n={int(_f(r.get('n')))}", ha="center", fontsize=7)
    ax.set_xticks(x, names, rotation=30 if len(names) > 5 else 0, ha="right" if len(names) > 5 else "center",
                  fontsize=8)
    ax.set_ylim(0, 1.25)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_title(f"By {mg.get('column')}", fontsize=10)
    ax.legend(fontsize=8, frameon=False, loc="upper left", ncol=2)
    fig.tight_layout()
    return figure_png(fig)


#: Marker per seed (or per run inside a method group) in the trade-off plot.
SEED_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def tradeoff_styles(points: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Any], dict[str, str]]:
    """(colour per method group, marker per seed) of the trade-off plot: one colour per method, up to 20."""
    import matplotlib

    groups = list(dict.fromkeys(str(p.get("group", p["name"])) for p in points))
    seeds = list(dict.fromkeys(str(p.get("seed", "")) for p in points))
    cmap, n = ("tab10", 10) if len(groups) <= 10 else ("tab20", 20)
    colours = {g: matplotlib.colormaps[cmap](i % n) for i, g in enumerate(groups)}
    return colours, {sd: SEED_MARKERS[i % len(SEED_MARKERS)] for i, sd in enumerate(seeds)}


def tradeoff_png(points: Sequence[Mapping[str, Any]], fc: str = "eodd") -> bytes:
    """Macro F1 against a fairness gap, one point per run with both intervals.

    ``points``: dicts with ``name`` and ``f1``/``gap`` as (estimate, lo, hi),
    optionally ``group`` (the method: one colour each) and ``seed`` (a marker
    each). The legend sits outside the axes, so it covers no point or bar.
    """
    from matplotlib.lines import Line2D

    colours, markers = tradeoff_styles(points)
    groups, seeds = list(colours), list(markers)
    fig = Figure(figsize=(8.2, 4.2))
    ax = fig.subplots()
    for p in points:
        f1 = np.array(p["f1"], dtype=float)
        gap = np.array(p["gap"], dtype=float)
        g, sd = str(p.get("group", p["name"])), str(p.get("seed", ""))
        ax.errorbar(gap[0], f1[0], xerr=_yerr(gap[:1], gap[1:2], gap[2:3]), yerr=_yerr(f1[:1], f1[1:2], f1[2:3]),
                    fmt=markers[sd], capsize=3, color=colours[g], markersize=6, alpha=0.9)
    ax.set_xlabel(f"{fc.capitalize()} (lower is fairer)")
    ax.set_ylabel("macro F1 (higher is better)")
    ax.set_title("Accuracy against fairness; best is top left", fontsize=10)
    ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=colours[g], marker="o", linestyle="", label=g) for g in groups]
    if len(seeds) > 1:
        handles += [Line2D([], [], color="#555555", marker=markers[sd], linestyle="", label=sd) for sd in seeds]
    ax.legend(handles=handles, fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              borderaxespad=0.0)
    fig.tight_layout()
    return figure_png(fig)


def grouped_runs_png(rows: Sequence[Mapping[str, Any]], group_names: Sequence[str], metric: str = "F1") -> bytes:
    """Per-group score of several runs side by side with whiskers.

    ``rows``: dicts with ``name``, ``g0`` and ``g1`` as (estimate, lo, hi).
    """
    names = [str(r["name"]) for r in rows]
    x = np.arange(len(names))
    fig = Figure(figsize=(max(5.0, 1.1 * len(names) + 2), 3.6))
    ax = fig.subplots()
    for j, (key, colour) in enumerate(zip(("g0", "g1"), GROUP_COLOURS)):
        v = np.array([r[key] for r in rows], dtype=float).reshape(len(rows), 3)
        ax.bar(x + (j - 0.5) * 0.38, v[:, 0], 0.38, color=colour, label=str(group_names[j]),
               yerr=_yerr(v[:, 0], v[:, 1], v[:, 2]), capsize=3, ecolor="#222222")
    ax.set_xticks(x, names, rotation=20 if len(names) > 3 else 0, ha="right" if len(names) > 3 else "center",
                  fontsize=8)
    ax.set_ylim(0, 1.18)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel(f"macro {metric}")
    ax.set_title(f"{metric} by group and run", fontsize=10)
    ax.legend(fontsize=8, frameon=False, loc="upper left", ncol=2)
    fig.tight_layout()
    return figure_png(fig)
