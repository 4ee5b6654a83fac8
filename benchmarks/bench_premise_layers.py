"""Where does a trained model keep the skin groups? The SCP premise check at every conv layer.

Sensitive Channel Pruning assumes a few channels carry the sensitive attribute.
For each conv layer of a run's model this scores every channel with SNNL-Fair
and with the groups shuffled (`snnl_null_check`, 4 draws) and counts the
channels that separate the groups beyond chance (below the 1% quantile of the
shuffled scores). Writes benchmarks/results/premise_layers.json and .md.

    python benchmarks/bench_premise_layers.py [--run RUN_DIR]

The default run is the demo's baseline: runs/bench-demo/baseline (from
bench_demo.py) or else runs/demo/baseline (from `make demo`).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from demo_run import parse_run_args
from equiprune.methods.runs import open_run
from equiprune.data import scoring_dataset
from equiprune.scoring import snnl_null_check


def main() -> int:
    args = parse_run_args(__doc__, draws=4)
    if args is None:
        return 2
    run = open_run(args.run)
    data = scoring_dataset(run.splits(), "train")
    rows = []
    for name, module in run.model.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            check = snnl_null_check(run.model, name, data, progress=False, draws=args.draws)
            rows.append({"layer": name, "channels": module.out_channels, "separating": check.separating,
                         "expected_by_chance": check.expected, "lowest_score": float(check.scores.min()),
                         "chance_threshold": check.threshold, "chance_mean": float(check.null_scores.mean())})
            print(f"{name}: {check.separating} of {module.out_channels} channels beyond chance", flush=True)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "premise_layers.json").write_text(json.dumps({"run": str(args.run), "layers": rows}, indent=2) + "\n")
    lines = [f"# SCP premise check at every conv layer of {args.run}", "",
             "| layer | channels | separating beyond chance | lowest SNNL-Fair | 1% quantile of shuffled | "
             "mean shuffled |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['layer']} | {r['channels']} | {r['separating']} | {r['lowest_score']:.3f} | "
              f"{r['chance_threshold']:.3f} | {r['chance_mean']:.3f} |" for r in rows]
    (out / "premise_layers.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
