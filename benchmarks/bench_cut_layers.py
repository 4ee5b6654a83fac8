"""Is there a layer where SCP's choice of channels narrows the gap? The cut response at every conv layer.

For each conv layer of the demo's baseline, `equiprune prune cut-response`
cuts 10%, 20% and 40% of its channels with no fine-tuning (lowest / highest
SNNL-Fair, L1, 5 random draws) and evaluates on the validation split. The
summary puts SCP's cut against the random ones per layer. A layer where SCP's
cut is below every random cut would be where `prune scp --layer` could work.

    python benchmarks/bench_cut_layers.py [--run RUN_DIR]

Writes benchmarks/results/cut_layers.md/.json; run folders go to
runs/bench-cut/layers/ (an interrupted run resumes).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from demo_run import parse_run_args
from equiprune import api
from equiprune.methods.cut_response import CutResponseConfig
from equiprune.methods.runs import open_run
from equiprune.models import conv_layer_names

FRACTIONS = (0.1, 0.2, 0.4)


def main() -> int:
    args = parse_run_args(__doc__, draws=5)
    if args is None:
        return 2
    t0 = time.time()
    layers = conv_layer_names(open_run(args.run).model)
    rows, findings = [], {}
    for layer in layers:
        cfg = CutResponseConfig(layer=layer, fractions=FRACTIONS, random_draws=args.draws, progress=False)
        res = api.cut_response(args.run, cfg, Path("runs/bench-cut/layers") / layer)
        base = res.uncut()
        k = res.cuts()[-1]
        (scp,) = res.at("snnl", k)
        (high,) = res.at("snnl_high", k)
        rand = res.at("random", k)
        below = sum(res.at("snnl", c)[0]["eodd"] < min(r["eodd"] for r in res.at("random", c)) for c in res.cuts())
        above = sum(res.at("snnl", c)[0]["eodd"] > max(r["eodd"] for r in res.at("random", c)) for c in res.cuts())
        rows.append({"layer": layer, "channels": res.channels, "cut": k, "eodd_uncut": base["eodd"],
                     "eodd_scp": scp["eodd"], "eodd_random_mean": float(np.mean([r["eodd"] for r in rand])),
                     "eodd_random_min": min(r["eodd"] for r in rand), "eodd_highest_snnl": high["eodd"],
                     "dark_acc_loss_scp": base["acc_g1"] - scp["acc_g1"],
                     "light_acc_loss_scp": base["acc_g0"] - scp["acc_g0"],
                     "scp_below_all_random": int(below), "scp_above_all_random": int(above),
                     "sizes": len(res.cuts())})
        findings[layer] = res.findings()
        print(f"{layer}: SCP below every random cut at {below}, above at {above} of {len(res.cuts())} sizes; "
              f"at {k}: Eodd {scp['eodd']:.3f} vs random mean {rows[-1]['eodd_random_mean']:.3f}", flush=True)
    seconds = round(time.time() - t0, 1)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "cut_layers.json").write_text(json.dumps({"run": args.run, "fractions": FRACTIONS, "draws": args.draws,
                                                     "seconds": seconds, "layers": rows, "findings": findings},
                                                    indent=2) + "\n")
    lines = [f"# Cut response at every conv layer of {args.run}", "",
             f"Cuts of {', '.join(f'{100 * f:g}%' for f in FRACTIONS)} with no fine-tuning, validation split, "
             f"{args.draws} random draws per size; {seconds} s on 2 shared CPU cores. Eodd and accuracy losses "
             "are at the largest cut.", "",
             "| layer | channels | SCP below / above every random cut (of sizes) | Eodd uncut | Eodd SCP cut | "
             "Eodd random (mean; min) | Eodd highest-SNNL cut | accuracy lost by SCP's cut: dark / light |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['layer']} | {r['channels']} | {r['scp_below_all_random']} / {r['scp_above_all_random']} "
              f"(of {r['sizes']}) | {r['eodd_uncut']:.3f} | {r['eodd_scp']:.3f} | {r['eodd_random_mean']:.3f}; "
              f"{r['eodd_random_min']:.3f} | {r['eodd_highest_snnl']:.3f} | {r['dark_acc_loss_scp']:.3f} / "
              f"{r['light_acc_loss_scp']:.3f} |" for r in rows]
    (out / "cut_layers.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
