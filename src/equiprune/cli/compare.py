"""`equiprune compare`: the papers' Table 1 (every pruning method on one baseline) in one command."""
from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = """\
examples:
  equiprune compare --out runs/table                         # from scratch on synthderm
  equiprune compare --run runs/base --out runs/table         # on a trained baseline
  equiprune compare --run runs/base --seeds 0 1 2 --out runs/table
  equiprune compare --methods vanilla fairprune obd --out runs/table-hessian
  equiprune compare --run runs/base --seeds 0 1 2 --against random --out runs/table   # paired, per seed
Methods: vanilla, obd, fairprune, scp, scp-fairprune (SCP on top of FairPrune),
random and l1 (channel-pruning controls), finetune (the extra training
alone) and skew (label-free skewness pruning); add mitigation methods by
name (equiprune mitigate --help), e.g.
  equiprune compare --run runs/base --methods vanilla scp finetune groupdro hsic --out runs/t
SCP's settings here are cheaper than `prune scp`'s (a table runs every method
over every seed): the command prints where they differ before it starts, and
--ratio / --max-iters / --finetune-epochs set them. Each run goes to OUT/<method>-seed<k>; running the command again
skips finished runs and resumes the others. Results: OUT/table.html,
OUT/table.md, OUT/table.csv (one row per run, FATE against the vanilla
baseline and against the parent), OUT/table_summary.csv (mean and sd per
method over seeds) and OUT/compare/ (the full comparison page).
"""


def register(sub: argparse._SubParsersAction) -> None:
    from ..api import ALL_METHODS, MITIGATION_METHODS, TABLE_METHODS, default_scp_for_table
    from .common import add_score_batch_arg
    from .prune_scp import SCP_DEFAULTS

    p = sub.add_parser("compare", help="run every fairness-pruning method and build the papers' Table 1",
                       description="Run vanilla, OBD, FairPrune, SCP, SCP-FairPrune and the controls on one "
                                   "baseline over seeds, audit every run and write one comparison table.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for every run folder and the table")
    p.add_argument("--run", default=None, help="trained baseline run folder (default: train one on synthderm)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="seeds; each method runs once per seed, and the table gives mean ± sd (default 0 1 2: "
                        "one seed cannot tell a method from its controls). Without --run, each seed also "
                        "trains its own vanilla model")
    p.add_argument("--methods", nargs="+", choices=list(ALL_METHODS), default=list(TABLE_METHODS),
                   metavar="METHOD", help="subset of: " + ", ".join(TABLE_METHODS) + " (default: these), and the "
                   "mitigation methods " + ", ".join(MITIGATION_METHODS) + " (each fine-tuned for the controls' "
                   "whole budget, --max-iters x --finetune-epochs)")
    s = p.add_argument_group("from scratch (without --run)")
    s.add_argument("--synth-n", type=int, default=3000, help="synthderm images (default 3000)")
    s.add_argument("--image-size", type=int, default=64, help="input size in pixels (default 64)")
    s.add_argument("--model", default="vgg11", help="architecture (default vgg11)")
    s.add_argument("--width", type=float, default=0.25, help="width multiplier (default 0.25)")
    s.add_argument("--epochs", type=int, default=8, help="baseline training epochs (default 8)")
    f = p.add_argument_group("FairPrune / OBD")
    f.add_argument("--pr", type=float, default=0.35, help="fraction of parameters pruned (default 0.35)")
    f.add_argument("--beta", type=float, default=0.33, help="FairPrune beta (default 0.33)")
    f.add_argument("--privileged", default=None, help="privileged group id or 'auto' (default: the dataset's)")
    f.add_argument("--estimator", choices=["fisher", "ggn", "ggn-mc", "exact"], default="fisher",
                   help="Hessian-diagonal estimator (default fisher)")
    f.add_argument("--max-samples-per-group", type=int, default=512,
                   help="images per group for the Hessians (default 512; 0 = all)")
    c = p.add_argument_group("SCP and controls")
    c.add_argument("--layer", default=None, help="conv layer to prune (default: the last conv)")
    d = default_scp_for_table()
    c.add_argument("--ratio", type=float, default=d.ratio,
                   help=f"fraction of channels cut per iteration (default {d.ratio}; prune scp: "
                        f"{SCP_DEFAULTS['ratio']})")
    c.add_argument("--max-iters", type=int, default=d.max_iters,
                   help=f"most iterations (default {d.max_iters}; prune scp: {SCP_DEFAULTS['max_iters']})")
    c.add_argument("--th-acc", type=float, default=d.th_acc,
                   help=f"macro-F1 drop that stops the loop (default {d.th_acc})")
    c.add_argument("--finetune-epochs", type=int, default=d.finetune.epochs,
                   help=f"fine-tuning epochs after each pruning step, every method (default {d.finetune.epochs}; "
                        f"prune scp: {SCP_DEFAULTS['finetune_epochs']})")
    add_score_batch_arg(c)
    a = p.add_argument_group("audit")
    a.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples per interval (default 1000)")
    a.add_argument("--no-latency", action="store_true", help="do not measure latency (faster)")
    a.add_argument("--columns", default=None, metavar="KEY,KEY,...",
                   help="an extra table of chosen numbers on the comparison page, e.g. "
                        "worst_group_auc,auc_gap,ece_gap,eodd (see `equiprune report --help`); Table 1 is unchanged")
    p.add_argument("--against", default=None, metavar="RUN_OR_METHOD",
                   help="print and show every run's paired differences (same test images, paired bootstrap "
                        "intervals) against this method of the table, same seed (e.g. --against random), or "
                        "against a run folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    """TableConfig from the parsed options."""
    from dataclasses import replace

    from ..data import DataConfig, SynthDermConfig
    from ..methods.audit import AuditConfig
    from ..api import TableConfig, default_finetune_for_table
    from ..methods.train import ModelConfig
    from .prune_fairprune import _privileged

    progress = not args.quiet
    ft = replace(default_finetune_for_table(), epochs=args.finetune_epochs, progress=progress)
    d = TableConfig()
    return TableConfig(
        seeds=tuple(args.seeds), methods=tuple(args.methods),
        fairprune=replace(d.fairprune, pr=args.pr, beta=args.beta, privileged=_privileged(args.privileged),
                          estimator=args.estimator, max_samples_per_group=args.max_samples_per_group or None,
                          finetune=ft if ft.epochs > 0 else None, progress=progress),
        scp=replace(d.scp, layer=args.layer, ratio=args.ratio, max_iters=args.max_iters, th_acc=args.th_acc,
                    finetune=ft, progress=progress, score_batch_size=args.score_batch_size),
        audit=AuditConfig(n_boot=args.n_boot, latency=not args.no_latency),
        data=DataConfig(name="synthderm", image_size=args.image_size, seed=0, progress=progress,
                        synthderm=SynthDermConfig(n=args.synth_n)),
        model=ModelConfig(name=args.model, width=args.width),
        train=replace(d.train, epochs=args.epochs, progress=progress),
        columns=tuple(c.strip() for c in args.columns.split(",") if c.strip()) if args.columns else None,
        progress=progress)


def scp_settings_difference(args: argparse.Namespace) -> str:
    """One line naming the SCP settings in which this table differs from `prune scp`'s defaults."""
    from .prune_scp import SCP_DEFAULTS

    given = {"ratio": args.ratio, "max_iters": args.max_iters, "finetune_epochs": args.finetune_epochs,
             "th_acc": args.th_acc}
    diff = [f"--{k.replace('_', '-')} {given[k]} (prune scp: {v})" for k, v in SCP_DEFAULTS.items() if given[k] != v]
    never = "it never stops on a small fairness gain (prune scp: --th-fair 0)"
    if not diff:
        return f"SCP and its controls in this table use prune scp's ratio, iterations and fine-tuning; {never}"
    return "SCP and its controls in this table: " + ", ".join(diff) + f"; {never}"


def run(args: argparse.Namespace) -> int:
    from .. import api

    print(scp_settings_difference(args))
    if args.against and args.against not in args.methods and not Path(args.against).is_dir():
        raise ValueError(f"--against {args.against!r} is neither a run folder nor one of --methods "
                         f"({', '.join(args.methods)})")
    result = api.compare(args.out, config_from_args(args), base_run=args.run, against=args.against)
    print(f"{len(result.runs)} runs ({len(result.ran)} run now, {len(result.skipped)} already finished)")
    print(api.against_text(result.against, args.against), end="")
    for line in result.premise:
        print(line)
    for note in result.notes:
        print(f"note: {note}")
    print(f"table: {result.html_path}")
    print(f"       {result.md_path}")
    print(f"csv:   {result.csv_path} (per run), {result.summary_csv_path} (per method)")
    return 0
