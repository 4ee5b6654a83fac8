"""The demo's baseline, which several benchmarks study (imported by the bench_*.py scripts next to it)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

# bench_demo.py's baseline first, then the one `make demo` writes.
DEMO_BASELINES = ("runs/bench-demo/baseline", "runs/demo/baseline")


def demo_baseline(run: str | None = None) -> Path | None:
    """`run`, or else the demo's baseline; None, after saying what to do, when it holds no trained model."""
    if run is None:
        found = [p for p in DEMO_BASELINES if (Path(p) / "model.pt").exists()]
        run = found[0] if found else DEMO_BASELINES[-1]
    if not (Path(run) / "model.pt").exists():
        print(f"error: {run} holds no trained model; run `make demo` (or benchmarks/bench_demo.py) first, "
              "or pass --run RUN_DIR", file=sys.stderr)
        return None
    return Path(run)


def parse_run_args(doc: str | None, draws: int) -> argparse.Namespace | None:
    """`--run` (default: the demo's baseline, resolved and checked) and `--draws`; None when there is no model."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default=None, help="run folder (default: the demo's baseline)")
    ap.add_argument("--draws", type=int, default=draws)
    args = ap.parse_args()
    run_dir = demo_baseline(args.run)
    if run_dir is None:
        return None
    args.run = str(run_dir)
    return args
