"""Fairness reprogramming's recipes on one synthderm VGG-11 baseline: the paper's against equiprune's defaults.

Each recipe trains a border trigger for the same frozen baseline and is
audited on the test split against it (paired bootstrap, 1000 resamples):

  * `paper`: `ReprogramConfig.paper()`: a frame around the shrunk image, the
    trigger drawn from tanh(U(-1, 1)), Adam 1e-4, the epoch with the best
    worst-cell validation accuracy kept (the reference's rule);
  * `default-lr<x>`: equiprune's defaults: a frame laid over the image that
    starts at zero (the frozen model itself), the epoch with the best
    validation FATE kept, epoch 0 (no trigger) included, at two trigger rates.

    python benchmarks/bench_reprogram.py [--quick] [--run RUN_DIR]

Without --run a baseline is trained here (synthderm 3,000 images, 32 px,
VGG-11 x0.25, 8 epochs; --quick: 1,500 images, 4 epochs) into
runs/bench-reprogram/base. Writes benchmarks/results/reprogram[_quick].md/.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from equiprune import api
from equiprune.data import DataConfig, SynthDermConfig
from equiprune.engine import TrainConfig
from equiprune.methods.audit import AuditConfig
from equiprune.methods.reprogram import ReprogramConfig, reprogram_from_run

RESULTS = Path(__file__).parent / "results"


def recipes(epochs: int) -> dict[str, ReprogramConfig]:
    common = dict(epochs=epochs, lam=0.5, criterion="eodd", progress=False)
    return {"paper": ReprogramConfig.paper(**common),
            "default-lr1e-4": ReprogramConfig(lr_trigger=1e-4, **common),
            "default-lr1e-3": ReprogramConfig(lr_trigger=1e-3, **common)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--run", default=None, help="baseline run folder (default: train one here)")
    ap.add_argument("--epochs", type=int, default=None, help="reprogramming epochs (default 10; quick 4)")
    args = ap.parse_args()
    root = Path("runs/bench-reprogram" + ("-quick" if args.quick else ""))
    base = Path(args.run) if args.run else root / "base"
    t0 = time.time()
    if args.run is None:
        n, ep = (1500, 4) if args.quick else (3000, 8)
        api.train(DataConfig(name="synthderm", image_size=32, synthderm=SynthDermConfig(n=n), progress=False),
                  "vgg11", 0.25, TrainConfig(epochs=ep, progress=False), base)
    epochs = args.epochs or (4 if args.quick else 10)
    rows = []
    for name, cfg in recipes(epochs).items():
        t = time.time()
        res = reprogram_from_run(base, cfg, root / name, audit_cfg=AuditConfig(n_boot=1000, latency=False,
                                                                               progress=False))
        a = res.audit
        p_f1, p_e = a.paired["f1"], a.paired["eodd"]
        rows.append({"recipe": name, "kept_epoch": res.result.best_epoch, "kept_frozen": res.result.kept_frozen,
                     "frozen_f1": p_f1["estimate_a"], "f1": p_f1["estimate_b"],
                     "f1_change": [p_f1["estimate"], p_f1["lo"], p_f1["hi"]],
                     "frozen_eodd": p_e["estimate_a"], "eodd": p_e["estimate_b"],
                     "eodd_change": [p_e["estimate"], p_e["lo"], p_e["hi"]],
                     "val_fate_by_epoch": [r.get("val_fate") for r in res.result.history[1:]],
                     "seconds": round(time.time() - t, 1)})
        print(name, rows[-1])
    meta = {"machine": f"{platform.machine()} {platform.processor() or ''}, 2 shared CPU cores (busy host)",
            "date": time.strftime("%Y-%m-%d"), "baseline": str(base), "epochs": epochs, "quick": args.quick,
            "total_seconds": round(time.time() - t0, 1)}
    stem = "reprogram" + ("_quick" if args.quick else "")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    iv = lambda v: f"{v[0]:+.3f} [{v[1]:+.3f}, {v[2]:+.3f}]"  # noqa: E731
    lines = [f"# Fairness reprogramming recipes ({meta['date']}, {meta['machine']})", "",
             f"Baseline {base}; border trigger, λ 0.5, Eodd criterion, {epochs} epochs; test split, paired "
             "bootstrap (1000 resamples) against the frozen model.", "",
             "| recipe | kept epoch | test macro-F1 (frozen → kept) | F1 change | test Eodd (frozen → kept) | "
             "Eodd change |", "|---|---|---|---|---|---|"]
    for r in rows:
        kept = "0 (frozen model kept)" if r["kept_frozen"] else str(r["kept_epoch"])
        lines.append(f"| {r['recipe']} | {kept} | {r['frozen_f1']:.3f} → {r['f1']:.3f} | {iv(r['f1_change'])} | "
                     f"{r['frozen_eodd']:.3f} → {r['eodd']:.3f} | {iv(r['eodd_change'])} |")
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
