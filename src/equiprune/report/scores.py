"""Rendering of the audit's threshold-free and calibration numbers: terminal block, report section, plots, findings.

Everything reads the ``scores`` section of an audit (metrics.json), written by
:mod:`equiprune.methods.audit_scores`; nothing is computed again here.
"""
from __future__ import annotations

import math
from html import escape
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..metrics import SCORE_LABELS, SCORE_METRICS, float_or_nan
from .plots import GROUP_COLOURS, figure_png
from .tables import MISSING, Cell, format_cell, frame_to_html, frame_to_markdown

__all__ = ["DEFAULT_SCORE_COLUMNS", "score_cell", "format_scores_terminal", "reliability_png", "score_sections",
           "tradeoff_findings", "largest_gap_text"]

# What the comparison page shows by default: MEDFAIR's worst-group figures and the calibration gap.
DEFAULT_SCORE_COLUMNS: tuple[str, ...] = ("worst_group_acc", "worst_group_auc", "auc_gap", "ece_gap", "fnr_gap",
                                          "eodd_at_spec")
_PER_GROUP = (("n", "n"), ("acc", "accuracy"), ("auc", "AUC"), ("ece", "ECE"), ("nll", "NLL"))


_f = float_or_nan  # one rule for stored numbers


def score_cell(block: Mapping[str, Any], key: str) -> Cell | None:
    """A Cell (estimate with interval) of one number of a scores block; None when absent."""
    iv = (block.get("intervals") or {}).get(key)
    if iv is not None:
        return Cell(_f(iv.get("estimate")), _f(iv.get("lo")), _f(iv.get("hi")))
    v = (block.get("values") or {}).get(key)
    return None if v is None else Cell(_f(v))


def _group_frame(block: Mapping[str, Any]) -> pd.DataFrame:
    rows = {}
    for gid, name, n in zip(block["group_ids"], block["group_names"], block["group_sizes"]):
        row = {"n": str(n)}
        for key, label in _PER_GROUP[1:]:
            row[label] = format_cell(score_cell(block, f"{key}_g{gid}"))
        rows[str(name)] = row
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.name = "group"
    return df


def _summary_frame(block: Mapping[str, Any]) -> pd.DataFrame:
    paired = block.get("paired") or {}
    rows = {}
    for key in SCORE_METRICS:
        row = {"value": format_cell(score_cell(block, key))}
        if paired:
            p = paired.get(key) or {}
            est = _f(p.get("estimate"))
            row["baseline"] = format_cell(score_cell(block.get("baseline") or {}, key))
            row["change"] = (f"{est:+.3f} [{_f(p.get('lo')):+.2f}, {_f(p.get('hi')):+.2f}]"
                             if math.isfinite(est) and math.isfinite(_f(p.get("lo"))) else MISSING)
            row["beyond noise"] = "yes" if p.get("excludes_zero") else "no"
        rows[SCORE_LABELS[key]] = row
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.name = "metric"
    return df


def largest_gap_text(block: Mapping[str, Any]) -> str:
    """'The largest error-rate gap is the FNR (underdiagnosis) of melanoma: 0.41 for dark vs 0.12 for light.'"""
    lg = block.get("largest_gap")
    if not lg:
        return "No FNR/FPR gap could be computed (a class is missing from every group but one)."
    if not lg["gap"] > 0:
        return "No class has a different FNR or FPR between the groups."
    what = "FNR (underdiagnosis, missed cases)" if lg["rate"] == "fnr" else "FPR (false alarms)"
    iv = score_cell(block, f"{lg['rate']}_gap_c{lg['class']}")
    ci = f" [{iv.lo:.2f}, {iv.hi:.2f}]" if iv is not None and math.isfinite(iv.lo) else ""
    return (f"The largest error-rate gap is the {what} of class {lg['class_name']}: {lg['value_hi']:.3f} for "
            f"{lg['name_hi']} against {lg['value_lo']:.3f} for {lg['name_lo']} (gap {lg['gap']:.3f}{ci}).")


def _pad(rows: list[list[str]]) -> str:
    widths = [max(len(r[j]) for r in rows) for j in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _terminal_block(block: Mapping[str, Any], title: str) -> list[str]:
    gf = _group_frame(block)
    rows = [["", *gf.columns]] + [[str(i), *map(str, r)] for i, r in zip(gf.index, gf.itertuples(index=False))]
    summary = [["worst-group accuracy", format_cell(score_cell(block, "worst_group_acc"))],
               ["worst-group AUC", format_cell(score_cell(block, "worst_group_auc"))],
               ["AUC gap", format_cell(score_cell(block, "auc_gap"))],
               ["ECE gap", format_cell(score_cell(block, "ece_gap"))],
               [f"Eodd at specificity {_f((block.get('settings') or {}).get('specificity', 0.8)):.1f}",
                format_cell(score_cell(block, "eodd_at_spec"))]]
    lines = ["", title, _pad(rows), "", _pad(summary), largest_gap_text(block)]
    lines += [f"note: {n}" for n in block.get("notes") or []]
    return lines


def format_scores_terminal(audit: Mapping[str, Any]) -> str:
    """The threshold-free and calibration numbers of an audit for a terminal ('' when it has none)."""
    sc = audit.get("scores")
    if not sc:
        return ""
    st = sc.get("settings") or {}
    lines = _terminal_block(sc["two_groups"], f"threshold-free and calibration (ECE: {st.get('n_bins', 10)} "
                                              f"{st.get('binning', 'equal')} bins)")
    bc = sc.get("by_column")
    if bc:
        lines += _terminal_block(bc, f"by {bc.get('column')}")
    return "\n".join(lines)


def reliability_png(block: Mapping[str, Any], title: str = "") -> bytes | None:
    """One reliability diagram per group: observed frequency against mean confidence per bin."""
    curves = block.get("reliability") or {}
    if not curves:
        return None
    names = list(curves)
    cols = min(3, len(names))
    rows = int(math.ceil(len(names) / cols))
    fig = Figure(figsize=(3.2 * cols, 3.1 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    binary = int(block.get("num_classes", 0)) == 2
    for i, (ax, name) in enumerate(zip(axes, names)):
        c = curves[name]
        ax.plot([0, 1], [0, 1], ls="--", color="#999999", lw=1)
        counts = np.asarray(c["count"], dtype=float)
        if len(counts):
            size = 20 + 180 * counts / counts.max()
            colour = GROUP_COLOURS[i % 2] if len(names) <= 2 else f"C{i}"
            ax.plot(c["confidence"], c["accuracy"], "-", color=colour, lw=1.2)
            ax.scatter(c["confidence"], c["accuracy"], s=size, color=colour, alpha=0.8, zorder=3)
        gid = block["group_ids"][block["group_names"].index(name)] if name in block["group_names"] else None
        ece = _f((block.get("values") or {}).get(f"ece_g{gid}")) if gid is not None else math.nan
        ax.set_title(f"{name} (n={int(counts.sum())}, ECE {ece:.3f})", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("predicted probability of the positive class" if binary else "confidence (top class)",
                      fontsize=8)
        ax.set_ylabel("observed frequency" if binary else "accuracy", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return figure_png(fig)


_EXPLAIN = ("Threshold-free and calibration numbers, as the MEDFAIR benchmark reports them (docs/GROUP_SCORES.md). "
            "AUC ranks the images by the predicted probability (0.5 = chance) and needs no threshold; ECE is the "
            "mean distance between predicted probability and observed frequency over {bins} bins (0 = calibrated); "
            "NLL is the mean negative log-likelihood. Worst-group numbers are the lowest AUC/accuracy (highest "
            "ECE/NLL) over the groups, gaps the largest minus the smallest value; FNR is the share of a class's "
            "cases the model misses (underdiagnosis). Eodd at specificity {spec:.1f} sets one threshold per model so "
            "that 80% of negatives are called negative, then compares the groups' TPR and FPR. Intervals: stratified "
            "bootstrap, the same resamples as Table 1.")


def _block_section(block: Mapping[str, Any], title: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    gf, sf = _group_frame(block), _summary_frame(block)
    text = _EXPLAIN.format(bins=f"{settings.get('n_bins', 10)} {settings.get('binning', 'equal')}",
                           spec=_f(settings.get("specificity", 0.8)))
    text += "\n\n" + largest_gap_text(block)
    notes = block.get("notes") or []
    if notes:
        text += "\n\n" + " ".join(notes)
    png = reliability_png(block)
    images = [("Reliability diagram per group: observed frequency against predicted probability per bin "
               "(marker size = images in the bin; the diagonal is perfect calibration)", png,
               f"reliability-{title}")] if png else []
    return {"title": title, "text": text, "html": frame_to_html(gf) + frame_to_html(sf),
            "markdown": frame_to_markdown(gf) + "\n" + frame_to_markdown(sf), "images": images}


def score_sections(audit: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Report sections as plain dicts (title, text, html, markdown, images as (caption, png, name)):
    the two groups, then the ``--groups`` column's groups when audited. `html.py` turns them into Sections."""
    sc = audit.get("scores")
    if not sc:
        return []
    st = sc.get("settings") or {}
    out = [_block_section(sc["two_groups"], "Threshold-free and calibration", st)]
    bc = sc.get("by_column")
    if bc:
        out.append(_block_section(bc, f"Threshold-free and calibration by {bc.get('column')}", st))
    return out


def tradeoff_findings(audit: Mapping[str, Any], name: str = "this model", baseline: str = "the baseline",
                      noise: str = "resampling noise") -> list[str]:
    """Call out a model that narrows Eodd while widening the AUC or ECE gap (paired, against its baseline).

    Eodd narrowed: its paired change is below 0. A gap widened: its paired
    change is above 0; the sentence says whether that is beyond `noise` (the
    paired interval excludes 0). `noise` names where the intervals come from:
    the audit's paired bootstrap, or e.g. "seed noise" when a benchmark hands
    in intervals over seeds in the same shape.
    """
    pe = (audit.get("paired") or {}).get("eodd") or {}
    block = (audit.get("scores") or {}).get("two_groups") or {}
    paired = block.get("paired") or {}
    de = _f(pe.get("estimate"))
    if not (math.isfinite(de) and de < 0) or not paired:
        return []
    widened = []
    for key, label in (("auc_gap", "AUC gap"), ("ece_gap", "ECE gap")):
        p = paired.get(key) or {}
        d = _f(p.get("estimate"))
        if math.isfinite(d) and d > 0:
            where = f"beyond {noise}" if p.get("excludes_zero") else f"within {noise}"
            widened.append(f"the {label} by {d:+.3f} [{_f(p.get('lo')):+.3f}, {_f(p.get('hi')):+.3f}] ({where})")
    if not widened:
        return []
    eodd_noise = "beyond noise" if pe.get("excludes_zero") else "within noise"
    return [f"{name} narrows Eodd against {baseline} ({de:+.3f} [{_f(pe.get('lo')):+.3f}, {_f(pe.get('hi')):+.3f}], "
            f"{eodd_noise}) while widening " + " and ".join(widened) + ": a smaller gap in hard decisions can hide "
            "a larger gap in ranking or calibration."]


# ------------------------------------------------------------------ selectable columns


def column_choices() -> dict[str, tuple[str, int]]:
    """Every column `report --columns` accepts: key -> (label, sense), sense +1 higher better, -1 lower, 0 neither."""
    from ..metrics import METRIC_NAMES, SCORE_SENSE
    from .tables import TABLE1_COLUMNS

    out: dict[str, tuple[str, int]] = {}
    for k in METRIC_NAMES:
        if k in ("num_classes", "n", "n_g0", "n_g1"):
            continue
        lower = k in ("eopp0", "eopp1", "eodd", "dp") or k.endswith("_diff")
        out[k] = (k, 0 if k.endswith("_signed") else (-1 if lower else 1))
    for col in TABLE1_COLUMNS:
        out[col.key] = (col.key, col.sense)
    for k, sense in SCORE_SENSE.items():
        out[k] = (SCORE_LABELS[k], sense)
    return out


def check_columns(columns: Sequence[str]) -> list[str]:
    """The columns, or ValueError naming the unknown ones and the choices."""
    choices = column_choices()
    bad = [c for c in columns if c not in choices]
    if bad:
        raise ValueError(f"unknown column(s) {', '.join(bad)}; choose from: {', '.join(choices)}.")
    if not columns:
        raise ValueError("--columns is empty; give e.g. worst_group_auc,ece_gap,eodd.")
    return list(columns)


def audit_cell(audit: Mapping[str, Any], key: str) -> Cell | None:
    """One column's cell of an audit: a paper number, a FATE, or a threshold-free/calibration number."""
    if key in SCORE_LABELS:
        return score_cell((audit.get("scores") or {}).get("two_groups") or {}, key)
    if key.startswith("fate_"):
        iv = (audit.get("fate_intervals") or {}).get(key)
        if iv:
            return Cell(_f(iv.get("estimate")), _f(iv.get("lo")), _f(iv.get("hi")))
        v = (audit.get("fate") or {}).get(key)
        return None if v is None else Cell(_f(v))
    iv = (audit.get("intervals") or {}).get(key)
    if iv:
        return Cell(_f(iv.get("estimate")), _f(iv.get("lo")), _f(iv.get("hi")))
    v = (audit.get("metrics") or {}).get(key)
    return None if v is None else Cell(_f(v))


def columns_table(rows: Sequence[tuple[str, Mapping[str, Any]]], columns: Sequence[str]
                  ) -> tuple[str, str, pd.DataFrame]:
    """(html, markdown, numbers) of one row per (name, audit) and the chosen columns; best per column in bold."""
    choices = column_choices()
    cells = [[audit_cell(a, k) for k in columns] for _, a in rows]
    est = np.array([[c.estimate if c is not None else math.nan for c in r] for r in cells], dtype=float)
    best = np.zeros_like(est, dtype=bool)
    for j, k in enumerate(columns):
        v, sense = est[:, j], choices[k][1]
        if sense and np.isfinite(v).sum() >= 2:
            target = np.nanmax(v) if sense > 0 else np.nanmin(v)
            best[:, j] = np.isfinite(v) & np.isclose(v, target, rtol=0.0, atol=1e-12)
    headers = [choices[k][0] for k in columns]
    text = [[format_cell(c) for c in r] for r in cells]
    bold = [[f"**{t}**" if b else t for t, b in zip(tr, br)] for tr, br in zip(text, best)]
    names = [n for n, _ in rows]
    md = frame_to_markdown(pd.DataFrame(bold, index=pd.Index(names, name="run"), columns=headers))
    head = "".join(f"<th>{escape(h)}</th>" for h in ["run", *headers])
    body = "".join(f'<tr><th scope="row">{escape(n)}</th>'
                   + "".join(f'<td class="best"><b>{escape(t)}</b></td>' if b else f"<td>{escape(t)}</td>"
                             for t, b in zip(tr, br)) + "</tr>" for n, tr, br in zip(names, text, best))
    html = f'<table class="plain"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    numbers = {"name": names}
    for j, k in enumerate(columns):
        numbers[k] = est[:, j]
        numbers[f"{k}_lo"] = [c.lo if c is not None else math.nan for c in (r[j] for r in cells)]
        numbers[f"{k}_hi"] = [c.hi if c is not None else math.nan for c in (r[j] for r in cells)]
    return html, md, pd.DataFrame(numbers)
