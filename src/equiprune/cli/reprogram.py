"""`equiprune reprogram`: Fairness Reprogramming of the (frozen) model of any run folder."""
from __future__ import annotations

import argparse

from ..methods.reprogram.core import CRITERIA, ReprogramConfig
from .common import add_runtime_args, done

REPROGRAM_DEFAULTS = ReprogramConfig()

EPILOG = """\
examples:
  equiprune reprogram --run runs/base --trigger border --criterion eodd --lambda 0.2 --out runs/repro
  equiprune reprogram --run runs/base --trigger patch --size 12 --location bottom_right --out runs/patch
  equiprune reprogram --run runs/base --lambda-sweep 0.05,0.1,0.2,0.5 --out runs/repro-sweep
  equiprune reprogram --run runs/scp --out runs/scp-repro             # on top of a pruned model
  equiprune reprogram --run runs/base --paper-settings --out runs/repro-paper   # the paper's recipe
The model is never changed: a learned trigger (a frame laid over the image's
border, or a patch) is applied to every input, trained so that an adversary
cannot recover the sensitive group from the model's output while the task
loss stays low. By default the frame starts at zero, i.e. as the frozen model
itself, and the epoch kept is the one with the best validation FATE, epoch 0
(no trigger) included: when no trigger beats the frozen model on validation,
the run says so and keeps the frozen model. --paper-settings gives the
paper's recipe instead (a frame around the shrunk image, random start, Adam
1e-4, best worst-cell validation accuracy kept), which on synthderm made the
model worse (see benchmarks/bench_reprogram.py). The run folder's model.pt
applies the trigger automatically. The result is audited against the frozen
model (paired bootstrap on the --split split). Stopping the command and
running it again resumes where it stopped.
"""


def _lambdas(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--lambda-sweep takes numbers separated by commas, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("--lambda-sweep needs at least one value, e.g. 0.05,0.1,0.2,0.5")
    return values


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reprogram", help="fairness reprogramming: learn an input trigger for a frozen model",
                       description="Learn a fairness trigger (border or patch) for the frozen model of a run.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="run folder holding the model to reprogram (any kind)")
    p.add_argument("--out", required=True, help="new run folder (for a sweep: a folder with one run per λ)")
    g = p.add_argument_group("trigger")
    g.add_argument("--trigger", choices=["border", "patch"], default="border",
                   help="a frame around the image (default) or a square patch")
    g.add_argument("--size", type=int, default=None,
                   help="frame width / patch side in pixels (default: the paper's proportions, "
                        "20 px / 30 px at 224 px)")
    g.add_argument("--location", default="top_left",
                   choices=["top_left", "top_right", "bottom_left", "bottom_right", "center"],
                   help="patch position (default top_left)")
    g.add_argument("--shrink", action=argparse.BooleanOptionalAction, default=None,
                   help="border: shrink the image inside the frame (the paper) or lay the frame over the "
                        "image's outer pixels (--no-shrink, default)")
    g.add_argument("--init", choices=["uniform", "zero"], default=None,
                   help="initial trigger: zero (default: an overlaid frame then changes nothing) or tanh of "
                        "U(-1,1) values (uniform, the paper)")
    g.add_argument("--paper-settings", action="store_true",
                   help="the paper's recipe: --shrink --init uniform --lr-trigger 1e-4 --select-on val_min_acc "
                        "(options given explicitly still win)")
    o = p.add_argument_group("objective and training")
    o.add_argument("--criterion", choices=CRITERIA, default="eodd",
                   help="equalized odds (the adversary also sees the true label; default) or demographic parity")
    lam = o.add_mutually_exclusive_group()
    lam.add_argument("--lambda", dest="lam", type=float, default=0.5,
                     help="weight of the adversary's gradient in the trigger update (default 0.5)")
    lam.add_argument("--lambda-sweep", type=_lambdas, default=None, metavar="L1,L2,...",
                     help="one run per λ and the accuracy–fairness trade-off plot, e.g. 0.05,0.1,0.2,0.5")
    o.add_argument("--epochs", type=int, default=10, help="passes over the training data (default 10)")
    o.add_argument("--batch-size", type=int, default=64, help="default 64")
    o.add_argument("--lr-trigger", type=float, default=None,
                   help=f"Adam learning rate of the trigger (default {REPROGRAM_DEFAULTS.lr_trigger:g}; the paper: 1e-4)")
    o.add_argument("--lr-adv", type=float, default=0.05, help="Adam learning rate of the adversary (default 0.05)")
    o.add_argument("--train-fraction", type=float, default=1.0,
                   help="use this fraction of the training split (data efficiency; default 1.0)")
    o.add_argument("--select-on", choices=["last", "val_min_acc", "val_fate"], default=None,
                   help="which epoch's trigger to keep: the best validation FATE against the frozen model, "
                        "epoch 0 = no trigger included (val_fate, default), the best worst-cell validation "
                        "accuracy (val_min_acc, the paper's rule) or the last")
    o.add_argument("--adversary-logits", action="store_true",
                   help="also give the adversary the raw logits (the reference's --adversary-with-logits)")
    p.add_argument("--export", default=None, metavar="FILE",
                   help="also write the reprogrammed model (frozen model + trigger) as one checkpoint FILE "
                        "(single λ only)")
    a = p.add_argument_group("audit against the frozen model")
    a.add_argument("--split", choices=["test", "val"], default="test", help="split to audit on (default test)")
    a.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    add_runtime_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import api
    from ..methods.audit import AuditConfig
    from ..methods.reprogram import ReprogramConfig, describe_row

    given = {k: v for k, v in (("shrink", args.shrink), ("init", args.init), ("lr_trigger", args.lr_trigger),
                               ("select_on", args.select_on)) if v is not None}
    make = ReprogramConfig.paper if args.paper_settings else ReprogramConfig
    cfg = make(trigger=args.trigger, size=args.size, location=args.location,
               criterion=args.criterion, lam=args.lam, epochs=args.epochs, batch_size=args.batch_size,
               lr_adv=args.lr_adv, train_fraction=args.train_fraction,
               adversary_logits=args.adversary_logits, seed=args.seed,
               device=args.device, progress=not args.quiet, **given)
    acfg = AuditConfig(split=args.split, n_boot=args.n_boot, seed=args.seed, device=args.device, latency=False)
    crit = args.criterion
    res = api.reprogram(args.run, cfg, args.out, lambdas=args.lambda_sweep, audit_cfg=acfg, export=args.export)
    if args.lambda_sweep is None:
        s = res.summary
        if res.result.kept_frozen:
            print(f"no trigger beat the frozen model on validation FATE({crit}): kept the frozen model "
                  "(the run's model.pt holds no trigger)")
        print(f"{args.split}: {describe_row(s, crit)}")
        done("run folder", args.out)
        print(f"trigger image: {res.run.file('trigger.png')}")
        if res.exported:
            done("exported model (frozen model + trigger)", res.exported)
        print(f"next: equiprune audit --run {args.out}")
        return 0
    sweep = res
    b = sweep.baseline
    print(f"frozen model ({args.split}): {describe_row(b, crit)}")
    for r in sweep.rows:
        print(f"λ={r['lam']:<6g} {describe_row(r, crit)}")
    n_sig = sum(bool(r.get(f"{crit}_reduced")) for r in sweep.rows)
    print(f"{n_sig} of {len(sweep.rows)} λ values reduce {crit} with the paired 95% interval excluding 0")
    done("sweep folder", args.out)
    print(f"trade-off plot: {sweep.plot}")
    return 0
