"""Speed and memory of influence at the ISIC 2019 shape, and memory at Fitzpatrick-17k's.

The issue's target: influence for 25,000 training images with 512-d features
and 8 classes (4,104 head parameters) in under a minute on 2 cores, features
included from a cached extraction (here: random features of that shape, since
extraction is a forward pass the run already cached). Both Hessian solvers
are timed in the same run, so their ratio is meaningful on a noisy machine;
absolute seconds depend on the host's load.

    python benchmarks/bench_influence.py            # ISIC shape, all impact functions
    python benchmarks/bench_influence.py --quick    # 5,000 samples
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from datetime import date
from pathlib import Path

import numpy as np

from equiprune.influence import FeatureTable, InfluenceConfig, compute_influence


def synthetic(n_train: int, d: int, classes: int, seed: int = 0) -> FeatureTable:
    rng = np.random.default_rng(seed)
    n = int(n_train / 0.6)
    centres = rng.normal(scale=0.6, size=(classes, d))
    y = rng.integers(0, classes, n)
    g = (rng.random(n) < 0.3).astype(int)
    X = np.maximum(centres[y] + rng.normal(size=(n, d)) + 0.3 * g[:, None], 0)  # post-ReLU-like
    split = np.where(np.arange(n) < n_train, "train", np.where(np.arange(n) < int(n * 0.8), "val", "test"))
    return FeatureTable(X, y, g, split, np.arange(n), [str(c) for c in range(classes)], ["g0", "g1"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "influence_speed.md"))
    args = ap.parse_args()
    n = 5000 if args.quick else 25000
    table = synthetic(n, 512, 8)
    rows = []
    for solver in ("dense", "cg"):
        t0, c0 = time.perf_counter(), time.process_time()
        res = compute_influence(table, InfluenceConfig(solver=solver))
        rows.append((solver, time.perf_counter() - t0, res, time.process_time() - c0))
    agree = max(float(np.max(np.abs(rows[0][2].values[k] - rows[1][2].values[k])) /
                      (np.max(np.abs(rows[0][2].values[k])) or 1)) for k in rows[0][2].values)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # 114 classes (Fitzpatrick-17k): d = 114 * 513 = 58,482 parameters
    d114 = 114 * 513
    lines = [f"# Influence speed ({date.today()}, {platform.machine()}, shared 2-core host, "
             f"{'quick' if args.quick else 'full'} run)", "",
             f"{n} training samples x 512 features x 8 classes (4,104 head parameters), all 7 impact functions, "
             "head fit included, features given (random, post-ReLU-like).", "",
             "CPU seconds (summed over threads) are less sensitive to other load on the host than wall seconds.", "",
             "| solver | wall seconds | CPU seconds | wall ratio to cg |", "|---|---|---|---|"]
    cg_t = rows[1][1]
    for solver, t, _, cpu in rows:
        lines.append(f"| {solver} | {t:.1f} | {cpu:.1f} | {t / cg_t:.2f} |")
    lines += ["", f"Largest relative difference between the solvers' influences: {agree:.1e}.",
              f"Peak resident memory of the process: {peak_mb:.0f} MB.", "",
              f"Fitzpatrick-17k (114 classes, 512 features): {d114:,} head parameters; a dense Hessian would take "
              f"{d114 ** 2 * 8 / 2 ** 30:.1f} GiB, so `auto` uses CG, whose memory is O(n x (features + classes)): "
              f"for 16,577 x 512 float64 features about {16577 * 513 * 8 / 2 ** 20:.0f} MB plus the n x 114 "
              f"probabilities ({16577 * 114 * 8 / 2 ** 20:.0f} MB)."]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(json.dumps({s: round(t, 2) for s, t, _, _ in rows}))


if __name__ == "__main__":
    main()
