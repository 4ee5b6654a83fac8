"""`equiprune compress`: how quantization, pruning, distillation and low rank change fairness."""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import FINETUNE_LR, add_runtime_args, add_train_args, done, train_config_from_args


METHODS = ("quant", "prune-local", "prune-global", "prune-structured", "distill", "lowrank")

EPILOG = """\
sweep values by method:
  quant             modes: dynamic, static, qat            (default dynamic,static)
  prune-local       sparsity per layer                      (default 0.1,0.3,0.5,0.7,0.9)
  prune-global      sparsity over all layers                (default 0.1,0.3,0.5,0.7,0.9)
  prune-structured  fraction of channels removed            (default 0.1,0.2,0.3,0.5,0.7)
  distill           student width factor                    (default 0.75,0.5,0.25)
  lowrank           energy kept (or --lowrank-by rank_ratio|rank) (default 0.99,0.95,0.9,0.8,0.6)

examples:
  equiprune compress --run runs/base --method prune-global --sweep 0.1,0.3,0.5,0.7,0.9 --out runs/cmp-prune
  equiprune compress --run runs/base --method quant --sweep dynamic,static --out runs/cmp-quant
  equiprune compress --run runs/base --method distill --sweep 0.5 --group-weights inverse --out runs/kd-fair
  equiprune compress --run runs/base --method prune-structured --sweep 0.3 --order-study --out runs/order
Writes RUN_DIR/sweep_table.{md,csv}, RUN_DIR/plots/fairness_vs_{size,latency,nonzero_params}.png and a run
folder per point (RUN_DIR/points/<value>, auditable with `equiprune audit --run`).
Stopping the command and running it again resumes at the first unfinished point.
"""


def _sweep_values(text: str | None) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()] if text else []


def _group_weights(text: str) -> str | list[float]:
    if text in ("none", "inverse"):
        return text
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--group-weights takes none, inverse or numbers such as 1,3; got {text!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compress", help="sweep a compression technique and audit fairness at every point",
                       description="Compress the model of a run folder at several strengths (int8 quantization, "
                                   "magnitude or channel pruning, distillation, low-rank factorisation), audit "
                                   "every point against the uncompressed model with paired bootstrap intervals, "
                                   "and plot fairness against size and latency.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, metavar="BASELINE_RUN", help="run folder holding the model to compress")
    p.add_argument("--method", required=True, choices=METHODS, help="the compression technique")
    p.add_argument("--sweep", default=None, metavar="V1,V2,...", help="comma-separated values (see below)")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="new run folder for the sweep")
    q = p.add_argument_group("quantization")
    q.add_argument("--backend", choices=["x86", "fbgemm", "qnnpack", "onednn"], default="x86",
                   help="int8 kernels (default x86)")
    q.add_argument("--calibration-size", type=int, default=256,
                   help="training images calibrating static/qat quantization (default 256)")
    add_train_args(p, epochs=1, prefix="qat-", title="quantization-aware fine-tuning (sweep value qat)")
    g = p.add_argument_group("pruning and low rank")
    g.add_argument("--global-pruning", action="store_true",
                   help="prune-structured: rank channels over the whole network instead of per layer")
    g.add_argument("--skip-final", action="store_true",
                   help="prune-local/global: leave the output layer dense")
    g.add_argument("--lowrank-by", choices=["energy", "rank_ratio", "rank"], default="energy",
                   help="what a lowrank sweep value means (default energy kept)")
    add_train_args(p, epochs=0, prefix="finetune-", title="fine-tuning after pruning / factoring (default none)")
    d = p.add_argument_group("distillation")
    d.add_argument("--temperature", type=float, default=4.0, help="softmax temperature T (default 4)")
    d.add_argument("--alpha", type=float, default=0.9, help="weight of the distillation term (default 0.9)")
    d.add_argument("--group-weights", type=_group_weights, default="none",
                   help="weight the per-sample distillation loss by group: none (default), inverse "
                        "(inverse group frequency) or one weight per group, e.g. 1,3")
    d.add_argument("--weight-ce", action="store_true", help="weight the cross-entropy term by group too")
    add_train_args(p, epochs=10, prefix="distill-", title="student training")
    a = p.add_argument_group("audit")
    a.add_argument("--split", choices=["test", "val", "train"], default="test", help="split audited (default test)")
    a.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    a.add_argument("--no-latency", action="store_true", help="skip the latency measurements")
    o = p.add_argument_group("order study (compress-then-SCP versus SCP-then-compress)")
    o.add_argument("--order-study", action="store_true",
                   help="at each sweep value, compare SCP on the compressed model with compressing the SCP model "
                        "(SCP fine-tunes after its cuts; give --finetune-epochs so that the compressed SCP model "
                        "is fine-tuned too)")
    o.add_argument("--scp-ratio", type=float, default=0.02, help="SCP: channels cut per iteration (default 0.02)")
    o.add_argument("--scp-max-iters", type=int, default=5, help="SCP: most iterations (default 5)")
    o.add_argument("--scp-epochs", type=int, default=2, help="SCP: fine-tuning epochs per iteration (default 2)")
    add_runtime_args(p)
    p.set_defaults(func=run)


def _config(args: argparse.Namespace):
    from ..methods.audit import AuditConfig
    from ..methods.compress.sweep import CompressConfig

    progress = not args.quiet
    tc = lambda prefix, lr=(0.05, 1e-3): train_config_from_args(  # noqa: E731
        args, prefix=prefix, seed=args.seed, device=args.device, progress=progress, default_lr=lr)
    finetune, qat, distill = tc("finetune-", FINETUNE_LR), tc("qat-", (1e-3, 1e-5)), tc("distill-")
    return CompressConfig(
        method=args.method, sweep=_sweep_values(args.sweep), finetune=finetune, backend=args.backend,
        calibration_size=args.calibration_size, calibration_seed=args.seed, qat=qat, skip_final=args.skip_final,
        structured_global=args.global_pruning, lowrank_by=args.lowrank_by, temperature=args.temperature,
        alpha=args.alpha, group_weights=args.group_weights, weight_ce=args.weight_ce, distill=distill,
        audit=AuditConfig(split=args.split, n_boot=args.n_boot, seed=args.seed, latency=False, device=args.device,
                          progress=False),
        latency=not args.no_latency, progress=progress)


def run(args: argparse.Namespace) -> int:
    cfg = _config(args)
    from .. import api

    if args.order_study:
        from ..methods.prune_loop import default_finetune
        from ..methods.scp import SCPConfig

        ft = default_finetune()
        ft.epochs, ft.seed, ft.device, ft.progress = args.scp_epochs, args.seed, args.device, not args.quiet
        scp = SCPConfig(ratio=args.scp_ratio, max_iters=args.scp_max_iters, finetune=ft, seed=args.seed,
                        progress=not args.quiet)
        study = api.compress_order(args.run, cfg, scp, args.out)
        print(study.table_md.read_text() if study.table_md else "")
        done("order-study table", study.table_md)
        done("run folder", args.out)
        return 0
    result = api.compress(args.run, cfg, args.out)
    widened = [r["point"] for r in result.records if r["widened"]]
    print(f"{len(result.records)} points audited; a fairness gap widened significantly at: "
          f"{', '.join(widened) if widened else 'none'}")
    done("table", result.table_md)
    for p in result.plots:
        done("plot", p)
    done("points", Path(args.out) / "points")
    print(f"next: equiprune audit --run {Path(args.out) / 'points' / result.records[-1]['point']}")
    return 0
