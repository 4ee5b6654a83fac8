"""stress-groups on a toy baseline: SCP, SCP with consensus, structured FairPrune and two mitigations.

Trains (or reuses) the toy baseline of `bench_planted.py --quick` (synthderm
n=1500, 32 px, VGG-11 ×0.125, 4 epochs), then runs `equiprune stress-groups`
for each method with the flips, seeds and RACOS budget below, and writes the
post/pre ratios, KS tests and findings to benchmarks/results/stress_groups.json
and .md (one report.html per method under --out, curves copied next to the
results). Each method keeps its own flips and seeds in the results, so a method
can be run again (more seeds) without touching the others' rows. For FairPrune
it also measures how much the structured channel saliency depends on the
groups at all (clean against fully random and against swapped groups).

    python benchmarks/bench_stress.py                 # flips 0 0.1 0.3, seeds 0 1 2, budget 10
    python benchmarks/bench_stress.py --quick         # flips 0 0.3, seeds 0 1, budget 4 (a check of the script)
    python benchmarks/bench_stress.py --methods groupdro reweight --flips 0 0.1 0.2 0.3 --seeds 0 1 2 3 4
    python benchmarks/bench_stress.py --run runs/bench-demo/baseline --flips 0 0.05 0.1 0.15 0.2 0.3 --budget 20
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

import torch
from bench_planted import baseline

from equiprune import api
from equiprune.methods.stress_groups import StressConfig, stress_findings

VARIANTS = {"scp": dict(method="scp"), "scp-consensus": dict(method="scp", consensus=3, tau=0.67),
            "fairprune": dict(method="fairprune"), "groupdro": dict(method="groupdro"),
            "reweight": dict(method="reweight")}


def fairprune_group_sensitivity(run: Path, k: int = 3) -> dict:
    """Does structured FairPrune's channel ranking depend on the groups? Clean vs fully random vs swapped groups.

    Spearman correlation of the per-channel saliencies of the last conv layer,
    the k lowest channels of each (what one iteration cuts) and the number of
    channels whose saliency is exactly zero (dead channels: zero whatever the
    groups).
    """
    import numpy as np
    from scipy.stats import spearmanr

    from equiprune.methods.fairprune import FairPruneConfig, hessian_scorer
    from equiprune.methods.runs import open_run
    from equiprune.methods.scp import scoring_dataset
    from equiprune.methods.stress_groups import _Corrupted
    from equiprune.models import last_conv_name

    parent = open_run(run)
    splits, model = parent.splits(), parent.model
    layer = last_conv_name(model)
    g = splits.train.groups
    variants = {"clean": g, "random": np.random.default_rng(1).integers(0, 2, len(g)), "swapped": 1 - g}
    scores = {name: hessian_scorer(FairPruneConfig(structured=True, progress=False),
                                   scoring_dataset(_Corrupted(splits, groups), "train"), 0, 1)(model, layer)
              for name, groups in variants.items()}
    return {"layer": layer, "channels": int(len(scores["clean"])), "k": k,
            "lowest": {n: [int(i) for i in np.argsort(v)[:k]] for n, v in scores.items()},
            "spearman_vs_clean": {n: float(spearmanr(scores["clean"], v).statistic) for n, v in scores.items()
                                  if n != "clean"},
            "zero_saliency_channels": int(np.sum(np.abs(scores["clean"]) < 1e-9))}


def combined_curves(results: dict, path: Path) -> None:
    """One panel per metric: post/pre against ρ, a colour per method, solid = random, dashed = adversarial."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from equiprune.methods.stress_groups import REPORTED
    fig = Figure(figsize=(4.2 * len(REPORTED), 3.6))
    # A method run again under a suffixed key (more seeds) is drawn once, from its latest entry.
    results = {n: v for n, v in results.items() if not any(k.startswith(n + " ") for k in results)}
    palette = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]
    colours = {n: palette[i % len(palette)] for i, n in enumerate(results)}
    for i, metric in enumerate(REPORTED):
        ax = fig.add_subplot(1, len(REPORTED), i + 1)
        for name, section in results.items():
            xs = [100 * f for f in section["flips"]]
            for attack, style in (("random", "-"), ("adversarial", "--")):
                ys = [float("nan") if v is None else v for v in section["ratios"].get(attack, {}).get(metric, [])]
                if ys:
                    ax.plot(xs, ys, style, marker="o", ms=3, color=colours[name], label=f"{name}, {attack}")
        ax.axhline(1.0, color="#999999", lw=0.8)
        ax.set_xlabel("training groups set by the attacker (%)")
        ax.set_ylabel(f"test {metric}: post / pre (mean over seeds)")
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(frameon=False, fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plain_reference(run: Path, seeds: tuple, epochs: int) -> dict:
    """Plain fine-tuning (no groups read) for a mitigation's budget: where fully scrambled groups would lead it."""
    from dataclasses import replace

    from equiprune.engine import evaluate
    from equiprune.methods.mitigate import run_mitigation
    from equiprune.methods.mitigate.base import default_mitigation_train
    from equiprune.methods.mitigate.plain import PlainConfig
    from equiprune.methods.runs import open_run

    parent = open_run(run)
    splits = parent.splits()
    out = {}
    for seed in seeds:
        cfg = PlainConfig(finetune=replace(default_mitigation_train(), epochs=epochs, progress=False), seed=seed,
                          progress=False)
        test, _ = evaluate(run_mitigation(open_run(run).model, splits, cfg).model, splits.test)
        out[str(seed)] = {m: float(test[m]) for m in ("eodd", "eopp1", "f1")}
    return out


def paired_change(records: list, attack: str, flip: float, metric: str) -> dict | None:
    """Mean over seeds of (corrupted − clean run of the same seed) with a 95% t-interval (scipy)."""
    import numpy as np
    from scipy import stats

    clean = {r["seed"]: r["test"][metric] for r in records if r["flip"] == 0}
    d = np.array([r["test"][metric] - clean[r["seed"]] for r in records
                  if r["attack"] == attack and r["flip"] == flip and r["seed"] in clean])
    if len(d) < 2:
        return None
    half = float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)))
    return {"mean": float(d.mean()), "low": float(d.mean() - half), "high": float(d.mean() + half), "n": len(d)}


def _table(name: str, section: dict) -> list[str]:
    flips = section["flips"]
    scored = ("; RACOS scores the full run's model" if section.get("attacker") == "full"
              else "; RACOS scores the cheap proxy")
    lines = [f"## {name} (seeds {', '.join(map(str, section['seeds']))}; RACOS budget {section['budget']}{scored})", "",
             *[f"- {f}" for f in section["findings"]], "",
             "| attack | metric | " + " | ".join(f"ρ={f:g}" for f in flips) + " |", "|---|---|" + "---|" * len(flips)]
    for attack, per in section["ratios"].items():
        for metric, row in per.items():
            lines.append(f"| {attack} | {metric} post/pre | "
                         + " | ".join("–" if v is None else f"{v:.2f}" for v in row) + " |")
    top = max(flips)
    for attack in section["ratios"]:
        parts = []
        for metric in ("eodd", "f1"):
            c = paired_change(section["records"], attack, top, metric)
            if c:
                parts.append(f"{metric} {c['mean']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}]")
        if parts:
            lines.append(f"| {attack} | paired change at ρ={top:g} (95% t-interval over seeds) | "
                         + "; ".join(parts) + " |" + " |" * (len(flips) - 1))
    ks = section.get("ks") or {}
    if ks:
        lines += ["", "KS test random vs adversarial (D, p): " + "; ".join(
            f"ρ={flip}: " + ", ".join(f"{m} {v['statistic']:.2f}/{v['pvalue']:.2f}" for m, v in d.items())
            for flip, d in ks.items()) + "."]
    if section.get("plain_reference"):
        ref = section["plain_reference"]
        lines += ["", "Plain fine-tuning for the same budget (reads no groups: where fully scrambled groups would "
                  "lead), test: " + "; ".join(f"seed {k}: Eodd {v['eodd']:.3f}, macro-F1 {v['f1']:.3f}"
                                              for k, v in ref.items()) + "."]
    lines += ["", "Clean runs (ρ = 0), test: " + "; ".join(
        f"seed {r['seed']}: Eodd {r['test']['eodd']:.3f}, macro-F1 {r['test']['f1']:.3f}"
        for r in section["records"] if r["flip"] == 0) + ".", ""]
    if section.get("curves"):
        lines += [f"![{name}: post/pre ratios]({section['curves']})", ""]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--run", default=None, help="baseline run folder (default: the toy baseline, trained if missing)")
    ap.add_argument("--flips", type=float, nargs="+", default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=None)
    ap.add_argument("--budget", type=int, default=None)
    ap.add_argument("--methods", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--out", default="runs/bench-stress")
    ap.add_argument("--suffix", default="", help="results key = method + this (keeps an earlier entry of the method)")
    ap.add_argument("--attacker", choices=["cheap", "full"], default="cheap",
                    help="what RACOS scores: the cheap proxy (default) or the full run's model (budget x one run)")
    ap.add_argument("--stem", default=None,
                    help="results file name (default stress_groups[_quick]); give another baseline its own page, "
                         "e.g. --run runs/bench-mitigations/default/baseline --stem stress_groups_real")
    args = ap.parse_args()
    load = os.getloadavg()[0]
    flips = tuple(args.flips or ((0.0, 0.3) if args.quick else (0.0, 0.1, 0.3)))
    seeds = tuple(args.seeds or ((0, 1) if args.quick else (0, 1, 2)))
    budget = args.budget or (4 if args.quick else 10)
    # A run with other flips or seeds gets its own folder (a run folder resumes only its own settings).
    tag = "" if (flips, seeds) == ((0.0, 0.1, 0.3), (0, 1, 2)) else "-f" + "_".join(f"{f:g}" for f in flips) + \
        "-s" + "_".join(map(str, seeds))
    out = Path(args.out + ("-quick" if args.quick else "") + tag)
    run = Path(args.run) if args.run else baseline(Path("runs/bench-planted-quick"), quick=True)
    res_dir = Path(__file__).parent / "results"
    stem = args.stem or ("stress_groups_quick" if args.quick else "stress_groups")
    path = res_dir / f"{stem}.json"
    extra: dict = {}
    for name in args.methods:
        cfg = StressConfig(flips=flips, seeds=seeds, budget=budget, blocks=16, max_iters=2, finetune_epochs=1,
                           attacker=args.attacker, progress=False, **VARIANTS[name])
        t = time.perf_counter()
        section = api.stress_groups(run, cfg, out / name).to_dict()
        slug = "-".join("".join(c if c.isalnum() else " " for c in args.suffix).split())
        curves = res_dir / f"{stem}_{name}{'-' + slug if slug else ''}.png"
        shutil.copyfile(out / name / "plots" / "stress-ratios.png", curves)
        entry = {**section, "findings": stress_findings(section), "seconds": time.perf_counter() - t,
                 "seeds": list(seeds), "budget": budget, "folder": str(out / name), "curves": curves.name,
                 "date": time.strftime("%Y-%m-%d"), "baseline": str(run), "load_at_start": load,
                 "attacker": args.attacker}
        if cfg.method not in ("scp", "fairprune"):
            entry["plain_reference"] = plain_reference(run, seeds, cfg.max_iters * cfg.finetune_epochs)
        if name == "fairprune":
            entry["group_sensitivity"] = extra["fairprune"] = fairprune_group_sensitivity(run)
        # Methods may run in separate processes: re-read the file and replace only this method's entry.
        stored = json.loads(path.read_text()) if path.exists() else {}
        results = {**stored.get("methods", {}), name + args.suffix: entry}
        meta = {"quick": args.quick, "run": str(run), "machine": f"{platform.machine()}, "
                f"{torch.get_num_threads()} threads", "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__}
        path.write_text(json.dumps({"meta": meta, "methods": results}, indent=2) + "\n")
    results = json.loads(path.read_text())["methods"]
    title = "quick" if args.quick else ("toy baseline" if not args.run else f"baseline {run}")
    head = [f"# stress-groups ({title})", "",
            f"{meta['machine']}, {meta['date']} (1-minute load average {load:.1f} at the start of the last "
            "invocation; the toy page's earlier entries ran on a loaded shared host); baseline "
            f"{run}. Every method: its 2 iterations "
            "of 5% of the last conv layer with 1 fine-tuning epoch each (Adam 1e-4), or, for a mitigation, 2 epochs "
            "of fine-tuning; groups of the training split corrupted (validation and test clean); RACOS over 16 "
            "blocks of the attack set; post/pre = mean over seeds / mean of the clean runs. Each method lists its "
            "own seeds and flips.", ""]
    combined_curves(results, res_dir / f"{stem}_all.png")
    lines = [f"![post/pre ratios of every method]({stem}_all.png)", ""]
    lines += [line for name, section in results.items() for line in _table(name, section)]
    sens = (results.get("fairprune") or {}).get("group_sensitivity")
    if sens:
        lines += ["## Does FairPrune's structured cut read the groups?", "",
                  f"Per-channel saliency of {sens['layer']} ({sens['channels']} channels) with the true training "
                  f"groups, fully random groups and swapped groups: Spearman against the true groups "
                  + ", ".join(f"{n} {v:.2f}" for n, v in sens["spearman_vs_clean"].items())
                  + f"; the {sens['k']} lowest channels (one iteration's cut): "
                  + ", ".join(f"{n} {v}" for n, v in sens["lowest"].items())
                  + f"; {sens['zero_saliency_channels']} channels have saliency 0 with any groups.", ""]
    (res_dir / f"{stem}.md").write_text("\n".join(head + lines) + "\n")
    print("\n".join(head + lines))


if __name__ == "__main__":
    main()
