"""`equiprune prune fairprune` and `equiprune prune obd`: Hessian-saliency pruning."""
from __future__ import annotations

import argparse

from ..metrics import FAIR_CRITERIA
from .common import FINETUNE_LR, add_runtime_args, add_train_args, done, train_config_from_args

EPILOG_FAIRPRUNE = """\
examples:
  equiprune prune fairprune --run runs/base --out runs/fairprune              # pr 0.35, beta 0.33
  equiprune prune fairprune --run runs/base --privileged 1 --estimator ggn --out runs/fp-ggn
  equiprune prune fairprune --run runs/base --iters 5 --out runs/fp-iter      # 7% per iteration
  equiprune prune fairprune --run runs/base --structured --pr 0.1 --out runs/fp-channels
  equiprune prune scp --run runs/fairprune --out runs/scp-fairprune          # SCP on top
Saliency S = 1/2 theta^2 (H_unprivileged - beta H_privileged); the fraction pr
of parameters with the smallest S is set to zero (kept at zero while
fine-tuning). The privileged group defaults to the papers' choice for the
dataset (Fitzpatrick-17k: dark skin = 1; ISIC 2019: female = 0; synthderm:
light skin = 0), else the group with the higher validation accuracy.
Stopping the command and running it again resumes where it stopped.
"""

EPILOG_OBD = """\
examples:
  equiprune prune obd --run runs/base --out runs/obd                          # pr 0.35
  equiprune prune obd --run runs/base --structured --pr 0.1 --out runs/obd-channels
Optimal Brain Damage: S = 1/2 theta^2 H with one Hessian over all data; the
fairness-blind counterpart of FairPrune.
"""


def _add_common(p: argparse.ArgumentParser, fair: bool) -> None:
    p.add_argument("--run", required=True, help="run folder holding the model to prune")
    p.add_argument("--out", required=True, help="new run folder for the pruned model")
    g = p.add_argument_group("pruning")
    g.add_argument("--pr", type=float, default=0.35,
                   help="fraction pruned: of the scored parameters, or with --structured of the layer's "
                        "channels (default 0.35, the papers' value)")
    if fair:
        g.add_argument("--beta", type=float, default=0.33,
                       help="weight of the privileged group's curvature (default 0.33, the papers' value)")
        g.add_argument("--privileged", default=None,
                       help="privileged group id (0 or 1) or 'auto' (higher validation accuracy); "
                            "default: the papers' choice for the dataset")
    g.add_argument("--estimator", choices=["fisher", "ggn", "ggn-mc", "exact"], default="fisher",
                   help="Hessian-diagonal estimator (default fisher; ggn = exact Gauss-Newton diagonal)")
    g.add_argument("--params", choices=["weights", "all"], default="weights",
                   help="score conv/linear weights (default) or every parameter")
    g.add_argument("--scope", choices=["global", "layer"], default="global",
                   help="one threshold over all layers (default) or the same fraction in every layer")
    g.add_argument("--max-samples-per-group", type=int, default=512,
                   help="images per group for the Hessian (default 512; 0 = all)")
    g.add_argument("--score-split", choices=["train", "val"], default="train",
                   help="split the Hessians are computed on (default train)")
    g.add_argument("--structured", action="store_true",
                   help="prune whole output channels of one conv layer (physically removed) instead of parameters")
    g.add_argument("--layer", default=None, help="--structured: module path of the conv layer (default: the last conv)")
    it = p.add_argument_group("iterations")
    it.add_argument("--iters", type=int, default=1,
                    help="1 = one-shot as in the paper (default); k > 1 prunes pr/k more per iteration")
    it.add_argument("--select", choices=["last", "best"], default=None,
                    help="model kept: the last iteration or the best validation FATE "
                         "(default: last when one-shot, best when iterative)")
    it.add_argument("--th-acc", type=float, default=0.05,
                    help="iterative: stop once validation macro-F1 is this far below the start model (default 0.05)")
    it.add_argument("--th-fair", type=float, default=0.0,
                    help="iterative: stop once an iteration improves the gap by less than this (default 0.0)")
    it.add_argument("--fair-metric", choices=FAIR_CRITERIA, default="eodd",
                    help="the gap for stopping and FATE (default eodd)")
    add_train_args(p, epochs=2, prefix="finetune-", title="fine-tuning after each pruning step (0 epochs = none)")
    add_runtime_args(p)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `fairprune` and `obd` sub-verbs of `equiprune prune`."""
    p = sub.add_parser("fairprune", help="FairPrune: prune what the privileged group needs more than the other",
                       description="FairPrune (Wu et al., MICCAI 2022): Hessian-saliency pruning that narrows the "
                                   "accuracy gap between groups.",
                       epilog=EPILOG_FAIRPRUNE, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(p, fair=True)
    p.set_defaults(func=run, method_name="fairprune")
    q = sub.add_parser("obd", help="Optimal Brain Damage: Hessian-saliency pruning, fairness-blind control",
                       description="Optimal Brain Damage (LeCun et al., 1989) with one Hessian over all data.",
                       epilog=EPILOG_OBD, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(q, fair=False)
    q.set_defaults(func=run, method_name="obd")


def _privileged(value: str | None) -> int | str | None:
    if value is None or value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"--privileged must be a group id such as 0 or 1, or 'auto'; got {value!r}") from None


def config_from_args(args: argparse.Namespace):
    """FairPruneConfig from the parsed options of either sub-verb."""
    from ..methods.fairprune import FairPruneConfig

    ft = train_config_from_args(args, prefix="finetune-", seed=args.seed, device=args.device,
                                progress=not args.quiet, default_lr=FINETUNE_LR)
    fair = args.method_name == "fairprune"
    return FairPruneConfig(
        method=args.method_name, pr=args.pr, beta=args.beta if fair else 0.0,
        estimator=args.estimator, privileged=_privileged(args.privileged) if fair else None, params=args.params,
        structured=args.structured, layer=args.layer, scope=args.scope,
        max_samples_per_group=args.max_samples_per_group or None, score_split=args.score_split,
        iters=args.iters, select=args.select, th_acc=args.th_acc, th_fair=args.th_fair,
        fair_metric=args.fair_metric, finetune=ft if ft.epochs > 0 else None, seed=args.seed,
        progress=not args.quiet)


def run(args: argparse.Namespace) -> int:
    from .. import api

    cfg = config_from_args(args)
    result = api.prune_fairprune(args.run, cfg, args.out)
    if cfg.method == "fairprune":
        print(f"privileged group {result.privileged}, unprivileged {result.unprivileged} "
              f"({result.privileged_reason})")
    if cfg.structured:
        print(f"kept iteration {result.best_iter}: {result.channels_removed} channels removed from "
              f"{result.layer} ({result.stop_reason})")
    else:
        print(f"kept iteration {result.best_iter}: {sum(result.pruned.values())} of {result.scored_elements} "
              f"scored parameters are zero ({result.sparsity:.1%}; {result.stop_reason})")
    done("run folder", args.out)
    print(f"next: equiprune audit --run {args.out}")
    return 0
