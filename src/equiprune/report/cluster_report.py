"""Pages of `equiprune cluster ...`, read from the run folder's metrics.json and CSVs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..engine import RunDir
from .html import Image, Section, write_page
from .plots import NEUTRAL, figure_png
from .tables import frame_to_html, frame_to_markdown

_COLOURS = {"pre": NEUTRAL, "attack": "#D55E00", "random": "#0072B2"}


def _scores_frame(scores: dict) -> pd.DataFrame:
    return pd.DataFrame(scores).T.round(4)


def _attack_png(frame: pd.DataFrame, metric: str) -> bytes:
    fig = Figure(figsize=(5.0, 3.1))
    ax = fig.add_subplot()
    for kind in ("pre", "attack", "random"):
        part = frame[frame.setting == kind].groupby("fraction")[metric].agg(["mean", "std"]).reset_index()
        ax.errorbar(part["fraction"] * 100, part["mean"], yerr=part["std"].fillna(0), marker="o", ms=3, capsize=2,
                    color=_COLOURS[kind], label={"pre": "before the attack", "attack": "optimised flips (RACOS)",
                                                 "random": "random flips"}[kind])
    ax.set_xlabel("memberships the attacker controls (%)")
    ax.set_ylabel(f"{metric} of the other samples' clusters")
    ax.legend(fontsize=8)
    return figure_png(fig)


def _antidote_text(sec: dict) -> str:
    text = (f"{sec['n']} real points from {sec['source']}. Costs are measured on the real points only; lower is "
            "fairer. Success = a cost below alpha (the vanilla clustering's).")
    if "kkt_residuals" in sec:
        r = sec["kkt_residuals"]
        text += (" The returned sum-of-norms centres meet the KKT conditions to within: stationarity "
                 f"{r['stationarity']:.1e}, dual feasibility {r['dual_feasibility']:.1e}, prox {r['prox']:.1e}.")
    return text


def _row(*columns: str):
    """A one-row table of these fields of the section."""
    return lambda sec, rd: pd.DataFrame([{k: sec[k] for k in columns if k in sec}])


def _transfer_frame(sec: dict, rd) -> pd.DataFrame:
    b, a = sec["service_before"], sec["service_after"]
    return pd.DataFrame([{"service": sec["service"], "images": sec["images"],
                          "moved on the surrogate": sec["surrogate_changed"],
                          "moved on the service": sec["service_changed"], "transfer rate": sec["transfer_rate"],
                          **{f"{k} before": b.get(k) for k in ("nmi", "ari", "acc")},
                          **{f"{k} after": a.get(k) for k in ("nmi", "ari", "acc")}}]).round(3)


# the sections with one table each: metrics.json key, page title, heading, table (sec, rundir), text
_SUMMARIES = (
    ("cluster_antidote", lambda sec: "Antidote data for fair clustering", "Result (Table 3.1's columns)",
     _row("clustering", "fairness_cost", "alpha", "antidote_points", "ratio", "vanilla_cost", "cost"), _antidote_text),
    ("cluster_spillover", lambda sec: "Spill-over poisoning of a clustering", "Result (Table 2.1's columns)",
     _row("method", "target", "misclustered", "objective", "target_depth", "depth_quantile", "evaluations"),
     lambda sec: (f"One point (the target, row {sec['target']}) moved within COMD-depth bounds; "
                  f"{sec['misclustered']} other points of {sec['n']} changed cluster when the data were clustered "
                  "again. target_depth is the moved point's COMD depth, depth_quantile its quantile among the "
                  "data's depths (the rule keeps it above 0.1).")),
    ("deep_attack", lambda sec: "Black-box evasion attack on a deep clustering model",
     "Before and after the attack (Table 2.3's columns, Table 2.4's query count)",
     lambda sec, rd: pd.read_csv(rd.file("attack_deep.csv")).round(3),
     lambda sec: (f"{sec['n']} {sec['source']} images ({sec['classes']} classes), a DEC model (autoencoder + soft "
                  f"k-means) attacked by a generator whose perturbations have L2 norm at most {sec['eps']:g}. "
                  "queries = batched calls to the black box while training the generator (score-based: "
                  "memberships seen; decision-based: labels only). changed = share of images whose cluster moved; "
                  "clusters_after < k is the thesis's 'clustering breakdown'. The defense is adversarial "
                  "retraining, attacked with the old generator and with a new one.")),
    ("transfer", lambda sec: "Transfer of the attack to a clustering service", "Transfer (thesis §2.4's form)",
     _transfer_frame,
     lambda sec: ("Adversarial images made against a local surrogate (DEC) were sent to the service; its clusters "
                  "of the adversarial images are matched to those of the clean images before counting moves. "
                  "Transfer rate = share of the images moved on the surrogate that also moved on the service.")),
    ("summarize", lambda sec: f"A review set of {sec['k']} items with the groups in proportion",
     "SumBal of the chosen set (1 = every group in the same share as in the whole)",
     lambda sec, rd: pd.DataFrame(sec["table"]),
     lambda sec: f"{sec['n']} items from {sec['source']}. The chosen rows are in summary.csv."),
)


def write_cluster_report(run_path: str | Path) -> Path:
    rd = RunDir(run_path, create=False)
    m = rd.read_metrics()
    sections: list[Section] = []
    title = "Fairness of a clustering"
    if "cluster_fit" in m:
        sec = m["cluster_fit"]
        df = _scores_frame(sec["scores"])
        sections.append(Section("Scores", f"{sec['n']} points from {sec['source']}, k = {sec['k']}. Balance: 1 = "
                                "every cluster mirrors the data's group shares, 0 = a cluster misses a group. "
                                "Entropy grows with k. NMI, ARI and ACC need labels.",
                                html=frame_to_html(df), markdown=frame_to_markdown(df)))
    if "cluster_attack" in m:
        sec = m["cluster_attack"]
        title = f"The group-flip attack on {sec['algorithm']}"
        frame = pd.read_csv(rd.file("attack.csv"))
        rows = []
        for f, kinds in sec["post_pre"].items():
            for kind, r in kinds.items():
                rows.append({"attacked share": f, "attack": kind, **{k: round(v, 3) for k, v in r.items()
                                                                    if k in ("balance", "entropy", "nmi", "acc")}})
        ratio = pd.DataFrame(rows)
        ks = pd.DataFrame([{"attacked share": f, "metric": mname, "KS statistic": round(v["statistic"], 3),
                            "p": round(v["p_value"], 4)} for f, d in sec["ks"].items() for mname, v in d.items()])
        text = (f"{sec['n']} points from {sec['source']}, k = {sec['k']}, seeds {sec['seeds']}, RACOS budget "
                f"{sec['budget']} evaluations. The attacker changes the group memberships of a random share of the "
                "samples (G_A) to make the clusters of the others (G_D) unfair; every score is on G_D.")
        sections.append(Section("What was done", text))
        sections.append(Section("Fairness against the attacked share",
                                images=[Image(f"{mt} against the attacked share", _attack_png(frame, mt), f"attack-{mt}")
                                        for mt in ("balance", "entropy")]))
        sections.append(Section("Post/pre ratios (1 = unchanged)", html=frame_to_html(ratio),
                                markdown=frame_to_markdown(ratio)))
        sections.append(Section("Attack against random flips (Kolmogorov–Smirnov over seeds)",
                                html=frame_to_html(ks), markdown=frame_to_markdown(ks)))
    for key, page_title, heading, frame, text in _SUMMARIES:
        if key in m:
            sec = m[key]
            title = page_title(sec)
            df = frame(sec, rd)
            sections.append(Section(heading, text(sec), html=frame_to_html(df), markdown=frame_to_markdown(df)))
    html_path, _ = write_page(run_path, "report", title, sections, subtitle=str(run_path))
    return html_path
