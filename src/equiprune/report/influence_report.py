"""Pages of `equiprune influence` and `equiprune trim`, read from their run folders.

Influence: per impact function, how the training samples' influence spreads
in each group (a histogram: negative = harmful), the rules of the explanation
tree, and the most harmful samples by name. Trim: each test metric against the
trimming budget for influence trimming, utility trimming and random trimming
(mean and range over seeds), and the removed counts per group and class.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..engine import RunDir
from .html import Image, Section, write_page
from .plots import GROUP_COLOURS, NEUTRAL, figure_png
from .tables import frame_to_html, frame_to_markdown

_METRIC_LABELS = {"acc": "accuracy", "f1": "macro-F1", "eodd": "Eodd", "eopp1": "Eopp1", "eopp0": "Eopp0",
                  "dp_thesis": "DP (thesis, signed)", "robust_acc": "adversarial accuracy",
                  "worst_group_acc": "worst-group accuracy"}


def _hist_png(df: pd.DataFrame, name: str, group_names: list[str]) -> bytes:
    fig = Figure(figsize=(6.4, 2.8))
    ax = fig.add_subplot()
    col = f"influence_{name}"
    v = df[col].to_numpy()
    lim = np.quantile(np.abs(v), 0.995) or 1.0
    bins = np.linspace(-lim, lim, 41)
    for i, gname in enumerate(group_names):
        sel = df.loc[df["group"] == gname, col].clip(-lim, lim)
        if len(sel):
            ax.hist(sel, bins=bins, alpha=0.6, color=GROUP_COLOURS[i % 2], label=f"{gname} (n={len(sel)})")
    ax.axvline(0, color=NEUTRAL, lw=0.8)
    ax.set_xlabel(f"influence on {name} (negative: removing the sample lowers it)")
    ax.set_ylabel("training samples")
    ax.legend(fontsize=8)
    return figure_png(fig)


def influence_sections(run_path: str | Path, top: int = 10) -> list[Section]:
    rd = RunDir(run_path, create=False)
    sec = rd.read_metrics().get("influence")
    if not sec:
        raise ValueError(f"{run_path} has no influence results; run `equiprune influence` first")
    # names as text: a table whose groups are 0/1 would otherwise read back as numbers and match no group name
    df = pd.read_csv(rd.file("influence.csv"), dtype={"id": str, "label": str, "group": str})
    groups = [str(g) for g in sec["group_names"]]
    agree = sec.get("head_agreement")
    intro = (f"Influence of each of the {sec['n_train']} training samples on each impact function, estimated "
             f"for a logistic-regression head (L2 {sec['lam']:g}, {sec['head_params']} parameters, "
             f"{sec['solver']} Hessian solve) fitted on fixed features. The head's validation accuracy is "
             f"{sec['head_val_accuracy']:.3f}"
             + (f"; it agrees with the network's own prediction on {agree:.1%} of the validation images"
                if agree is not None else "") +
             ". Negative influence means removing the sample is predicted to lower the impact function "
             "(every one is lower-is-better: a loss or a gap), i.e. the sample is harmful to it. "
             "The estimate covers the head only: the effect of a sample on the backbone is not modelled.")
    values = pd.DataFrame({"impact function": list(sec["impact_values"]),
                           "value on validation": [f"{v:.4g}" for v in sec["impact_values"].values()],
                           "harmful samples (negative)": [sec["negative"][k] for k in sec["impact_values"]]})
    for gname in groups:
        values[f"harmful in {gname}"] = [sec["removed_by_group"][k].get(gname, 0) for k in sec["impact_values"]]
    sections = [Section("What was measured", intro, html=frame_to_html(values), markdown=frame_to_markdown(values))]
    for name in sec["impact_values"]:
        worst = df.nsmallest(top, f"influence_{name}")[["id", "label", "group", f"influence_{name}"]]
        rules = sec["rules"].get(name, [])
        text = ("Rules of a depth-3 regression tree with hierarchical shrinkage fitted to the influence on the "
                "samples' metadata, most harmful first:\n\n" + "\n\n".join(r["rule"] for r in rules[:6]))
        sections.append(Section(f"Influence on {name}", text, html=frame_to_html(worst),
                                markdown=frame_to_markdown(worst),
                                images=[Image(f"Influence on {name} by group", _hist_png(df, name, groups),
                                              f"hist-{name}")]))
    return sections


def write_influence_report(run_path: str | Path) -> Path:
    html_path, _ = write_page(run_path, "report", "Which training samples drive the metrics",
                              influence_sections(run_path), subtitle=str(run_path))
    return html_path


def _budget_png(rows: pd.DataFrame, metric: str, impact: str) -> bytes:
    fig = Figure(figsize=(5.2, 3.2))
    ax = fig.add_subplot()
    colours = {f"influence-{impact}": "#D55E00", "influence-utility": "#0072B2", "random": NEUTRAL}
    for method, part in rows.groupby("method"):
        agg = part.groupby("budget")[metric].agg(["mean", "min", "max"]).reset_index()
        c = colours.get(method, "#009E73")
        ax.plot(agg["budget"] * 100, agg["mean"], marker="o", ms=3, color=c, label=method)
        if (agg["max"] > agg["min"]).any():
            ax.fill_between(agg["budget"] * 100, agg["min"], agg["max"], color=c, alpha=0.15)
    ax.set_xlabel("training samples removed (%)")
    ax.set_ylabel(f"test {_METRIC_LABELS.get(metric, metric)}")
    ax.legend(fontsize=8)
    return figure_png(fig)


# The test-split column that answers each impact function (eop has none of its own: Eodd stands in).
_TRIM_METRIC = {"eodd": "eodd", "eopp1": "eopp1", "eopp0": "eopp0", "dp": "dp_thesis", "utility": "acc",
                "robust": "robust_acc"}


def trim_findings(rows: pd.DataFrame, impact: str, metric: str | None = None) -> str:
    """One sentence per budget > 0: influence trimming against the random range, on the impact's own test metric."""
    metric = metric or _TRIM_METRIC.get(impact, "eodd")
    if metric not in rows:
        metric = "eodd"
    lines = []
    inf = rows[rows["method"] == f"influence-{impact}"].set_index("budget")
    rnd = rows[rows["method"] == "random"].groupby("budget")[metric].agg(["min", "max"])
    for b, r in inf.iterrows():
        if b == 0 or b not in rnd.index:
            continue
        lo, hi = rnd.loc[b, "min"], rnd.loc[b, "max"]
        where = "below every" if r[metric] < lo else "above every" if r[metric] > hi else "within the range of"
        lines.append(f"At {b:.1%} ({int(r['removed'])} samples removed) test {metric} is {r[metric]:.3f}, "
                     f"{where} random trimming of the same count ({lo:.3f} to {hi:.3f}); accuracy "
                     f"{r['acc']:.3f}.")
    return "\n\n".join(lines) or "No budget above 0 was run."


def trim_sections(run_path: str | Path) -> list[Section]:
    rd = RunDir(run_path, create=False)
    sec = rd.read_metrics().get("trim")
    if not sec:
        raise ValueError(f"{run_path} has no trim results; run `equiprune trim` first")
    rows = pd.DataFrame(sec["rows"])
    impact = sec["impact"]
    intro = (f"Training samples removed in order of their influence on {impact} (thesis Algorithm 5: the most "
             "harmful first, never a sample with non-negative influence), the head refitted and measured on "
             "the test split, which influence never sees. Controls: random removal of the same number of "
             f"samples ({rows.loc[rows['method'] == 'random', 'seed'].nunique()} seeds; the band is their range) "
             "and removal by influence on the validation loss.")
    metrics = [m for m in ("eodd", "eopp1", "acc", "f1", "worst_group_acc", "robust_acc", "dp_thesis")
               if m in rows.columns]
    images = [Image(f"test {_METRIC_LABELS.get(m, m)} against the trimming budget", _budget_png(rows, m, impact),
                    f"budget-{m}") for m in metrics]
    removed = pd.DataFrame(sec["removed"])
    table = (removed.pivot_table(index=["group", "class"], columns="budget", values="removed", fill_value=0)
             if len(removed) else pd.DataFrame())
    if len(table):
        table.columns = [f"{b:.1%}" for b in table.columns]
        table = table.reset_index()
    return [Section("What was done", intro),
            Section("Findings", trim_findings(rows, impact)),
            Section("Metrics against the budget", images=images),
            Section("Removed samples by group and class",
                    "Check that trimming does not remove a group's samples out of proportion "
                    "(use --max-group-share or --mode downweight to limit it).",
                    html=frame_to_html(table) if len(table) else "", markdown=frame_to_markdown(table) if len(table) else "")]


def write_trim_report(run_path: str | Path) -> Path:
    html_path, _ = write_page(run_path, "report", "Influence-based data trimming", trim_sections(run_path),
                              subtitle=str(run_path))
    return html_path


_APP_TEXT = {
    "poisoning": "Anchoring attacks (RAA: random targets; NRAA: popular targets) add 10 % poisoned training points "
                 "that favour the advantaged group; the defense removes up to 10 % of the training points with "
                 "negative influence on DP (measured on a clean validation split) and refits. Test DP is signed "
                 "(group 1 minus group 0); the thesis's Table 4.5 is beside ours where the data set matches (its "
                 "group coding may differ in sign).",
    "evasion": "An adaptive attacker moves a share of the test points across the boundary of the model it faces "
               "(the linear attacker, gamma 1.3). The defender removes 2.5 % of the training points with negative "
               "robustness influence and refits.",
    "online": "Ten streamed batches, 35 % of each batch's labels flipped; an SGD logistic model updated per batch, "
              "with and without removing 10 % of each batch by utility influence (a surrogate fitted per batch).",
    "active": "A regression tree fitted without the label predicts the utility influence of unlabelled pool points; "
              "the highest are queried, 10 per round, against random, entropy and margin sampling (linear SVM).",
}


def _apps_png(scenario: str, summary: pd.DataFrame) -> bytes | None:
    if scenario == "poisoning":
        return None
    key, x = {"evasion": ("model", "attacked_fraction"), "online": ("model", "batch"),
              "active": ("strategy", "round")}[scenario]
    fig = Figure(figsize=(5.6, 3.2))
    ax = fig.add_subplot()
    for i, (name, part) in enumerate(summary.groupby(key, sort=False)):
        ax.errorbar(part[x], part["acc_mean"], yerr=part["acc_std"].fillna(0), marker="o", ms=3, capsize=2,
                    label=str(name), color=["#D55E00", "#0072B2", "#009E73", NEUTRAL][i % 4])
    ax.set_xlabel(x.replace("_", " "))
    ax.set_ylabel("test accuracy (mean ± sd over seeds)")
    ax.legend(fontsize=8)
    return figure_png(fig)


def write_apps_report(run_path: str | Path) -> Path:
    rd = RunDir(run_path, create=False)
    sec = rd.read_metrics()["influence_apps"]
    summary = pd.DataFrame(sec["summary"]).round(4)
    png = _apps_png(sec["scenario"], summary)
    images = [Image(f"{sec['scenario']} on {sec['data']}", png, f"apps-{sec['scenario']}")] if png else []
    sections = [Section("What was done", _APP_TEXT[sec["scenario"]]),
                Section("Results", html=frame_to_html(summary), markdown=frame_to_markdown(summary), images=images)]
    html_path, _ = write_page(run_path, "report", f"Trimming as a defense: {sec['scenario']} on {sec['data']}",
                              sections, subtitle=str(run_path))
    return html_path


def toy_png(table, removed_rows, heads: Mapping[str, Any], title: str) -> bytes:
    """The thesis toy (Fig. 4.7's form): training points by class and group, removed points, boundaries."""
    fig = Figure(figsize=(5.2, 4.0))
    ax = fig.add_subplot()
    tr = table.mask("train")
    X, y, g = table.X, table.y, table.g
    for cls, colour in ((0, "#E69F00"), (1, "#0072B2")):
        for grp, marker in ((0, "o"), (1, "x")):
            m = tr & (y == cls) & (g == grp)
            ax.scatter(X[m, 0], X[m, 1], s=14, marker=marker, color=colour, alpha=0.7,
                       label=f"class {table.classes[cls]}, {table.group_names[grp]}")
    ax.scatter(X[removed_rows, 0], X[removed_rows, 1], s=80, facecolors="none", edgecolors="#D55E00", lw=1.4,
               label="trimmed")
    xs = np.linspace(X[:, 0].min(), X[:, 0].max(), 50)
    for (name, head), style in zip(heads.items(), ("-", "--")):
        w = head.W[1] - head.W[0]                      # boundary of the standardised head, mapped back
        a, b = w[:2] / head.scale, w[2] - (w[:2] * head.mean / head.scale).sum()
        if abs(a[1]) > 1e-12:
            ax.plot(xs, -(a[0] * xs + b) / a[1], style, color=NEUTRAL, lw=1, label=f"boundary {name}")
    ax.set_ylim(X[:, 1].min() - 0.5, X[:, 1].max() + 0.5)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, loc="lower right")
    return figure_png(fig)
