"""Which training recipe gets VGG-11 ×0.25 (no batch norm) reliably past its plateau on synthderm?

Trains `equiprune` baselines (Python API, one run folder each) with the given
TrainConfig overrides over seeds and prints, per run, wall time, validation
accuracy per epoch and the test numbers. The runs behind the README's recipe
note are in benchmarks/results/recipe_runs.txt.

    python benchmarks/bench_recipe.py N EPOCHS TAG '{"lr": 5e-4}' 0,1,2 [--work runs/bench-recipe]
"""
from __future__ import annotations

import argparse
import json
import time

from equiprune import api
from equiprune.data import DataConfig, SynthDermConfig
from equiprune.engine import TrainConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("n", type=int, help="synthderm images")
    ap.add_argument("epochs", type=int)
    ap.add_argument("tag", help="name of this recipe in the output")
    ap.add_argument("overrides", help='TrainConfig fields as JSON, e.g. \'{"lr": 5e-4, "batch_size": 32}\'')
    ap.add_argument("seeds", help="comma-separated training seeds")
    ap.add_argument("--work", default="runs/bench-recipe")
    args = ap.parse_args()
    for seed in (int(s) for s in args.seeds.split(",")):
        data = DataConfig(name="synthderm", image_size=64, seed=0, progress=False,
                          synthderm=SynthDermConfig(n=args.n))
        cfg = TrainConfig(epochs=args.epochs, progress=False, seed=seed, **json.loads(args.overrides))
        t0 = time.perf_counter()
        r = api.train(data, "vgg11", 0.25, cfg, f"{args.work}/{args.tag}-n{args.n}-s{seed}")
        t = r.test
        print(args.tag, "seed", seed, f"{time.perf_counter() - t0:.0f}s", "val_acc",
              [round(h["val_acc"], 3) for h in r.fit.history],
              f"test acc {t['acc']:.3f} f1 {t['f1']:.3f} g0 {t['acc_g0']:.3f} g1 {t['acc_g1']:.3f} "
              f"eodd {t['eodd']:.3f}", flush=True)


if __name__ == "__main__":
    main()
