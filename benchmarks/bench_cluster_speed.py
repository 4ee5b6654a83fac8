"""Wall time of every clustering call on 2,000 points x 64 features (issue 19's speed target: under a second).

The attack and antidote loops call an algorithm 10-50 times, so one call's
time decides whether they are usable. Data: scikit-learn's 8x8 digits with
an inverted copy (2,000 of the 3,594 images, 64 features, standardised),
k = 10, two groups. Each algorithm is timed ``--repeats`` times (median
reported) with the 1-minute load average before and after, since the host
is shared. CFC is timed once (its 400-epoch training is not meant for the
loops; the attack benchmark uses fewer epochs) with its peak resident memory
against ``cfc.memory_bytes``.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_cluster_speed.py [--repeats 3] [--skip-cfc]

Writes benchmarks/results/cluster_speed.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from equiprune.cluster import ALGORITHMS, CFCConfig, cfc
from equiprune.cluster.cfc import memory_bytes

RESULTS = Path(__file__).parent / "results"


def data(n: int = 2000):
    from sklearn.datasets import load_digits
    d = load_digits()
    X = np.vstack([d.data, d.data.max() - d.data]).astype(float)
    g = np.r_[np.zeros(len(d.data), int), np.ones(len(d.data), int)]
    idx = np.random.default_rng(0).choice(len(X), n, replace=False)
    X = X[idx]
    return (X - X.mean(0)) / np.where(X.std(0) > 0, X.std(0), 1), g[idx]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--skip-cfc", action="store_true")
    ap.add_argument("--cfc-epochs", type=int, default=400)
    args = ap.parse_args()
    X, g = data(args.n)
    rows = []
    names = [a for a in ALGORITHMS if a != "cfc"]
    for name in names:
        ALGORITHMS[name](X, g, 10, 0)                      # warm-up (imports, BLAS)
        load0 = os.getloadavg()[0]
        times, cpu = [], []
        for r in range(args.repeats):
            t, c = time.perf_counter(), time.process_time()
            ALGORITHMS[name](X, g, 10, r)
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        rows.append({"algorithm": name, "seconds_median": float(np.median(times)), "seconds": times,
                     "cpu_median": float(np.median(cpu)),
                     "load_before": load0, "load_after": os.getloadavg()[0]})
        print(rows[-1], flush=True)
    if not args.skip_cfc:
        load0 = os.getloadavg()[0]
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t, c = time.perf_counter(), time.process_time()
        cfc(X, g, 10, 0, CFCConfig(epochs=args.cfc_epochs, hidden=36))
        took, cpu = time.perf_counter() - t, time.process_time() - c
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        rows.append({"algorithm": f"cfc ({args.cfc_epochs} epochs)", "seconds_median": took, "seconds": [took], "cpu_median": cpu,
                     "load_before": load0, "load_after": os.getloadavg()[0],
                     "peak_rss_growth_mb": (rss - rss0) / 1024, "memory_bytes_estimate_mb": memory_bytes(len(X)) / 2 ** 20})
        print(rows[-1], flush=True)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = {"date": stamp, "machine": platform.machine(), "cpus": os.cpu_count(), "n": len(X), "d": X.shape[1],
           "threads": os.environ.get("OMP_NUM_THREADS"), "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cluster_speed.json").write_text(json.dumps(out, indent=1))
    lines = [f"# One clustering call on {len(X)} points x {X.shape[1]} features, k = 10 ({stamp})", "",
             f"{platform.machine()}, {os.cpu_count()} cores shared with other jobs, OMP_NUM_THREADS="
             f"{out['threads']}, `nice -n 10`; median of {args.repeats} calls after a warm-up. The load average "
             "(1 min) is the host's: above 2 the call shared its cores, and its wall time overstates an idle "
             "machine's. The CPU time of the process (all its threads) is what the call costs on idle cores "
             "with one thread.", "",
             "| algorithm | median wall s | all calls s | median CPU s | load before / after | CPU under 1 s |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['algorithm']} | {r['seconds_median']:.2f} | {', '.join(f'{s:.2f}' for s in r['seconds'])} "
                     f"| {r['cpu_median']:.2f} | {r['load_before']:.1f} / {r['load_after']:.1f} | "
                     f"{'yes' if r['cpu_median'] < 1 else 'no'} |")
    cf = [r for r in rows if r["algorithm"].startswith("cfc")]
    if cf:
        lines += ["", f"CFC's peak resident memory grew by {cf[0]['peak_rss_growth_mb']:.0f} MB; `cfc.memory_bytes` "
                  f"estimates {cf[0]['memory_bytes_estimate_mb']:.0f} MB for its dense n x n matrices (64 n^2 bytes)."]
    (RESULTS / "cluster_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
