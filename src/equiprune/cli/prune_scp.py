"""`equiprune prune scp`: Sensitive Channel Pruning and its controls."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..metrics import FAIR_CRITERIA
from .common import FINETUNE_LR, add_runtime_args, add_train_args, add_score_batch_arg, add_variant_arg, done, train_config_from_args

EPILOG = """\
examples:
  equiprune prune scp --run runs/base --out runs/scp
  equiprune prune scp --run runs/base --layer features.18 --ratio 0.02 --max-iters 5 --out runs/scp
  equiprune prune scp --run runs/fairprune --out runs/scp-fairprune     # SCP on top of FairPrune
  equiprune prune scp --run runs/base --scorer random --out runs/random # a control
Each iteration scores the layer's channels, cuts the lowest, fine-tunes and
validates; the model kept is the iteration with the best validation FATE
(--select-on val_worst_group_acc / val_worst_group_auc: the best worst
group, MEDFAIR's minimax selection).
Stopping the command and running it again resumes where it stopped.
"""


#: prune scp's loop defaults; `compare` prints where its SCP settings differ from these.
SCP_DEFAULTS = {"ratio": 0.02, "max_iters": 5, "finetune_epochs": 2, "th_acc": 0.05}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scp", help="Sensitive Channel Pruning (SNNL-Fair scores) and its controls",
                       description="Cut the channels whose feature maps best separate the sensitive groups.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="run folder holding the model to prune")
    p.add_argument("--out", required=True, help="new run folder for the pruned model")
    g = p.add_argument_group("pruning")
    g.add_argument("--layer", default=None, help="module path of the conv layer (default: the last conv)")
    g.add_argument("--ratio", type=float, default=SCP_DEFAULTS["ratio"],
                   help=f"fraction of channels cut per iteration (default {SCP_DEFAULTS['ratio']})")
    g.add_argument("--n", type=int, default=None, help="cut exactly N channels per iteration instead of --ratio")
    g.add_argument("--max-iters", type=int, default=SCP_DEFAULTS["max_iters"],
                   help=f"most iterations (default {SCP_DEFAULTS['max_iters']})")
    g.add_argument("--th-acc", type=float, default=SCP_DEFAULTS["th_acc"],
                   help=f"stop once validation macro-F1 is this far below the start model "
                        f"(default {SCP_DEFAULTS['th_acc']})")
    g.add_argument("--th-fair", type=float, default=0.0,
                   help="stop once an iteration improves the gap by less than this (default 0.0)")
    g.add_argument("--fair-metric", choices=FAIR_CRITERIA, default="eodd",
                   help="the gap for stopping and FATE (default eodd)")
    g.add_argument("--select-on", choices=["val_fate", "val_worst_group_acc", "val_worst_group_auc"],
                   default="val_fate", help="keep the iteration with the best validation FATE (default) or, as "
                                            "MEDFAIR selects, the best worst-group accuracy or AUC")
    add_variant_arg(g)
    add_score_batch_arg(g)
    g.add_argument("--scorer", choices=["snnl", "random", "l1", "none"], default="snnl",
                   help="snnl (SCP), or a control: random, l1 (magnitude), none (fine-tune only)")
    g.add_argument("--surgery", choices=["remove", "mask"], default="remove",
                   help="remove channels physically (default) or mask weights as the published code does")
    g.add_argument("--null-draws", type=int, default=4,
                   help="premise check: also score the start model with the groups shuffled this many times, "
                        "to count the channels that separate the groups beyond chance (default 4; 0: off)")
    add_train_args(p, epochs=SCP_DEFAULTS["finetune_epochs"], prefix="finetune-", title="fine-tuning after each cut")
    add_runtime_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import api
    from ..methods.scp import SCPConfig
    from ..scoring import null_check_text

    ft = train_config_from_args(args, prefix="finetune-", seed=args.seed, device=args.device,
                                progress=not args.quiet, default_lr=FINETUNE_LR)
    cfg = SCPConfig(layer=args.layer, ratio=args.ratio, n=args.n, max_iters=args.max_iters, th_acc=args.th_acc,
                    th_fair=args.th_fair, fair_metric=args.fair_metric, surgery=args.surgery, finetune=ft,
                    seed=args.seed, progress=not args.quiet, scorer=args.scorer, variant=args.variant,
                    null_draws=args.null_draws, select_on=args.select_on,
                    score_batch_size=args.score_batch_size)
    result = api.prune_scp(args.run, cfg, args.out)
    loop = result.loop
    if result.null:
        print(f"premise check: {null_check_text(result.null)}")
        print(f"whether cutting these channels moves the gap at all, before fine-tuning: equiprune prune "
              f"cut-response --run {args.run} --layer {loop.layer} --out {Path(args.out)}-cuts")
    print(f"kept iteration {loop.best_iter}: {loop.channels_removed} channels cut from {loop.layer} "
          f"({loop.stop_reason})")
    done("run folder", args.out)
    print(f"next: equiprune audit --run {args.out}")
    return 0
