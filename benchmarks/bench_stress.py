"""stress-groups on a toy baseline: SCP, SCP with consensus, and structured FairPrune under random and RACOS flips.

Trains (or reuses) the toy baseline of `bench_planted.py --quick` (synthderm
n=1500, 32 px, VGG-11 ×0.125, 4 epochs), then runs `equiprune stress-groups`
for each method with the flips, seeds and RACOS budget below, and writes the
post/pre ratios, KS tests and findings to benchmarks/results/stress_groups.json
and .md (one report.html per method under --out).

    python benchmarks/bench_stress.py                 # flips 0 0.1 0.3, seeds 0 1 2, budget 10
    python benchmarks/bench_stress.py --quick         # flips 0 0.3, seeds 0 1, budget 4 (a check of the script)
    python benchmarks/bench_stress.py --run runs/bench-demo/baseline --flips 0 0.05 0.1 0.15 0.2 0.3 --budget 20
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from bench_planted import baseline

from equiprune import api
from equiprune.methods.stress_groups import StressConfig, stress_findings

VARIANTS = {"scp": dict(method="scp"), "scp-consensus": dict(method="scp", consensus=3, tau=0.67),
            "fairprune": dict(method="fairprune")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--run", default=None, help="baseline run folder (default: the toy baseline, trained if missing)")
    ap.add_argument("--flips", type=float, nargs="+", default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=None)
    ap.add_argument("--budget", type=int, default=None)
    ap.add_argument("--methods", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--out", default="runs/bench-stress")
    args = ap.parse_args()
    flips = tuple(args.flips or ((0.0, 0.3) if args.quick else (0.0, 0.1, 0.3)))
    seeds = tuple(args.seeds or ((0, 1) if args.quick else (0, 1, 2)))
    budget = args.budget or (4 if args.quick else 10)
    out = Path(args.out + ("-quick" if args.quick else ""))
    run = Path(args.run) if args.run else baseline(Path("runs/bench-planted-quick"), quick=True)
    t0 = time.perf_counter()
    res_dir = Path(__file__).parent / "results"
    stem = "stress_groups_quick" if args.quick else "stress_groups"
    path = res_dir / f"{stem}.json"
    # Methods may run in separate processes (--methods X): each adds its own entry to the results file.
    stored = json.loads(path.read_text()) if path.exists() else {}
    results = stored.get("methods", {}) if stored.get("meta", {}).get("flips") == list(flips) else {}
    for name in args.methods:
        cfg = StressConfig(flips=flips, seeds=seeds, budget=budget, blocks=16, max_iters=2, finetune_epochs=1,
                           progress=False, **VARIANTS[name])
        t = time.perf_counter()
        section = api.stress_groups(run, cfg, out / name).to_dict()
        fresh = json.loads(path.read_text()).get("methods", {}) if path.exists() else {}
        results = {**fresh, **results, name: {**section, "findings": stress_findings(section),
                                              "seconds": time.perf_counter() - t}}
    seconds = time.perf_counter() - t0
    meta = {"quick": args.quick, "run": str(run), "flips": list(flips), "seeds": list(seeds), "budget": budget,
            "seconds": seconds, "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
            "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__}
    path.write_text(json.dumps({"meta": meta, "methods": results}, indent=2) + "\n")
    lines = []
    for name, section in results.items():
        lines += [f"## {name} ({section['seconds'] / 60:.0f} min)", "", *[f"- {f}" for f in section["findings"]], "",
                  "| attack | metric | " + " | ".join(f"ρ={f:g}" for f in flips) + " |",
                  "|---|---|" + "---|" * len(flips)]
        for attack, per in section["ratios"].items():
            for metric, row in per.items():
                lines.append(f"| {attack} | {metric} post/pre | "
                             + " | ".join("–" if v is None else f"{v:.2f}" for v in row) + " |")
        lines += ["", "Clean runs (ρ = 0), test: " + "; ".join(
            f"seed {r['seed']}: Eodd {r['test']['eodd']:.3f}, macro-F1 {r['test']['f1']:.3f}"
            for r in section["records"] if r["flip"] == 0) + ".", ""]
    head = [f"# stress-groups ({'quick' if args.quick else 'toy baseline'}): flips {', '.join(map(str, flips))}; "
            f"seeds {', '.join(map(str, seeds))}; RACOS budget {budget}", "",
            f"{meta['machine']}, {meta['date']} (loaded shared host); baseline {run}. Every method: 5% of the "
            "last conv layer per iteration, 2 iterations, 1 fine-tuning epoch (Adam 1e-4); groups of the training "
            "split corrupted, validation and test clean; post/pre = mean over seeds / mean of the clean runs.", ""]
    (res_dir / f"{stem}.md").write_text("\n".join(head + lines) + "\n")
    print("\n".join(head + lines))


if __name__ == "__main__":
    main()
