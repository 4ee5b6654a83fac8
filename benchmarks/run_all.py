"""Run every benchmark in turn (`make bench`); each writes its JSON/CSV into benchmarks/results/.

The quick ones run by default; `--all` adds the long ones: the comparison table (20+ minutes on
2 cores), the demo over three seeds (about 10 minutes) and the SCP premise
check at every layer of the demo's baseline, and the cut response (with and without
the contrast bias; trains one more baseline) at the last layer and at every conv layer, and
the demo's positive control (synthderm marker mode, about 8 minutes).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
QUICK = ["bench_throughput.py", "bench_pruned_latency.py", "bench_snnl.py", "bench_group_scores.py",
         "bench_summarize.py"]
LONG = ["bench_table.py", "bench_demo.py", "bench_premise_layers.py", "bench_cut_response.py", "bench_cut_layers.py",
        ["bench_demo.py", "--positive-control", "--out", "runs/bench-positive-control"],
        ["bench_spillover.py", "--quick"], ["bench_deep_cluster.py", "--quick"]]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--all", action="store_true", help="also run the multi-seed comparison table and demo")
    args = ap.parse_args()
    failed = []
    for entry in QUICK + (LONG if args.all else []):
        script, *more = [entry] if isinstance(entry, str) else entry
        name = " ".join([script, *more])
        print(f"== {name}", flush=True)
        if subprocess.run([sys.executable, str(HERE / script), *more]).returncode:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
