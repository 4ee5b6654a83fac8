"""Does trimming training images by Eodd influence narrow a synthderm model's gap after fine-tuning?

One synthderm baseline (the demo's data and model unless --run is given),
then `trim --run` at the budgets below with the model fine-tuned (the pruning
methods' 2-epoch budget) without the images trimmed at --finetune-budget, and
the controls: the same number of random images (seeds 0-4), the
utility-influence images, and nothing removed (fine-tune only). Every
fine-tuned model is audited on the test split; influence-trimmed against
fine-tune only and against vanilla with paired bootstrap intervals.

    python benchmarks/bench_trim.py                      # trains runs/bench-trim/base first
    python benchmarks/bench_trim.py --run runs/demo/baseline
    python benchmarks/bench_trim.py --quick              # smaller data, fewer epochs

Writes benchmarks/results/trim_synthderm.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import asdict
from datetime import date
from pathlib import Path

import numpy as np
import torch

from equiprune import api
from equiprune.data import DataConfig, SynthDermConfig
from equiprune.engine import TrainConfig
from equiprune.influence import FinetuneSpec, InfluenceConfig, Source, TrimConfig
from equiprune.methods.audit import AuditConfig
from equiprune.methods.paired_runs import paired_runs

RANDOM_SEEDS = (0, 1, 2, 3, 4)  # the five random-trimming controls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default=None, help="a trained run (default: train runs/bench-trim/base)")
    ap.add_argument("--out", default="runs/bench-trim")
    ap.add_argument("--impact", default="eodd")
    ap.add_argument("--finetune-budget", type=float, default=0.02)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    out = Path(args.out)
    base = args.run
    if base is None:
        n, epochs = (1500, 6) if args.quick else (6000, 10)
        data = DataConfig(name="synthderm", image_size=32 if args.quick else 64, seed=0, progress=False,
                          synthderm=SynthDermConfig(n=n))
        api.train(data, "vgg11", 0.25, TrainConfig(epochs=epochs, optimizer="adam", lr=1e-3, progress=False), out / "base")
        base = str(out / "base")
    budgets = (0.0, 0.01, 0.02, 0.05)
    res = api.trim(Source(run=base), TrimConfig(impact=args.impact, budgets=budgets),
                   out / "trim", InfluenceConfig(impacts=(args.impact, "utility")), progress=False,
                   finetune=FinetuneSpec(args.finetune_budget, controls=True, random_seeds=RANDOM_SEEDS))
    audit_cfg = AuditConfig(n_boot=1000)
    api.audit(base, audit_cfg)
    tests = {}
    for name, path in res.finetuned.items():
        a = api.audit(path, audit_cfg, baseline=base)
        tests[name] = {k: float(a.metrics[k]) for k in ("eodd", "eopp1", "f1", "acc")}
    main_run = res.finetuned[f"finetuned-{args.impact}"]
    paired = {}
    others = {"finetune-only": res.finetuned["finetune-only"], "vanilla": base}
    others.update({k: v for k, v in res.finetuned.items() if k.startswith("finetuned-random")})
    if "finetuned-utility" in res.finetuned:
        others["finetuned-utility"] = res.finetuned["finetuned-utility"]
    for other, path in others.items():
        p = paired_runs(path, main_run, audit_cfg)
        paired[other] = {k: asdict(p[k]) for k in ("eodd", "f1")}
    head = res.rows
    result = {"machine": f"{platform.machine()}, {torch.get_num_threads()} threads", "torch": torch.__version__,
              "seconds": time.perf_counter() - t0, "base": base, "impact": args.impact,
              "finetune_budget": args.finetune_budget, "test": tests, "paired": paired,
              "head_refits": head.to_dict("records"),
              "removed": res.removed.to_dict("records"),
              "head_agreement": res.influence.head_agreement}
    dest = Path(__file__).parent / "results"
    dest.mkdir(exist_ok=True)
    (dest / "trim_synthderm.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    rnd = [v["eodd"] for k, v in tests.items() if k.startswith("finetuned-random")]
    lines = [f"# Trimming by {args.impact} influence on synthderm, then fine-tuning "
             f"({'quick' if args.quick else 'full'} run, {date.today()})", "",
             f"{result['seconds'] / 60:.1f} min for this invocation (finished fine-tunes are resumed, not redone) on "
             f"{result['machine']} (shared host), base run `{base}`; "
             f"surrogate head agrees with the network on {res.influence.head_agreement:.1%} of validation images.",
             "", f"Fine-tuned without the images trimmed at {args.finetune_budget:.0%} of the training split, "
             "2 epochs (the pruning methods' budget):", "",
             "| model | test Eodd | test Eopp1 | macro-F1 | accuracy |", "|---|---|---|---|---|"]
    lines += [f"| {k} | {v['eodd']:.3f} | {v['eopp1']:.3f} | {v['f1']:.3f} | {v['acc']:.3f} |" for k, v in tests.items()]
    main_eodd = tests[f"finetuned-{args.impact}"]["eodd"]
    below = sum(main_eodd < r for r in rnd)
    lines += ["", f"Random trimming ({len(rnd)} seeds): Eodd {np.mean(rnd):.3f} ± {np.std(rnd, ddof=1):.3f} (sd; range "
              f"{min(rnd):.3f} to {max(rnd):.3f}); influence trimming ({main_eodd:.3f}) is below {below} of "
              f"{len(rnd)} random draws.", "",
              "Paired bootstrap (influence-trimmed minus the other, test split, 1000 resamples):", "",
              "| against | Eodd difference [95%] | macro-F1 difference [95%] |", "|---|---|---|"]
    for other, d in paired.items():
        e, f = d["eodd"], d["f1"]
        lines.append(f"| {other} | {e['estimate']:+.3f} [{e['lo']:+.3f}, {e['hi']:+.3f}] | "
                     f"{f['estimate']:+.3f} [{f['lo']:+.3f}, {f['hi']:+.3f}] |")
    excl = [o for o, d in paired.items() if d["eodd"]["hi"] < 0]
    lines += ["", "Beyond noise? " + (f"the Eodd interval excludes 0 (influence trimming lower) against {', '.join(excl)}."
                                     if excl else "no: every paired Eodd interval contains 0.")]
    (dest / "trim_synthderm.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
