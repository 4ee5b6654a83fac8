"""`equiprune report`: one comparison page over several run folders."""
from __future__ import annotations

import argparse

from .common import done

EPILOG = """\
examples:
  equiprune report runs/base runs/scp runs/fairprune
  equiprune report runs/base runs/scp-s0 runs/scp-s1 runs/scp-s2 --out runs/compare
  equiprune report runs/a runs/b runs/c --names baseline,scp,scp     # same name: mean ± sd
  equiprune report runs/base runs/scp --columns worst_group_auc,auc_gap,ece_gap,eodd,fate_eodd
  equiprune report runs/table/*-seed* --against random                # SCP - random per seed, paired
Writes compare.html (self-contained), compare.md, compare.csv (and
compare_summary.csv when runs share a method). Runs with no audit of the
split are audited first, exactly as `equiprune audit --run RUN` would.
Runs that differ only by seed are grouped and summarised as mean ± sd.
Table 1 keeps the papers' columns; runs audited with the threshold-free and
calibration numbers also get MEDFAIR's worst-group table (worst-group
accuracy and AUC, AUC and ECE gaps, largest FNR gap, Eodd at specificity
0.8). --columns picks the columns of an extra table (and of the terminal
summary) from any audited number: paper metrics (eodd, f1_avg, acc_g0, ...),
fate_eodd, and auc, worst_group_auc, auc_gap, acc, worst_group_acc, acc_gap,
ece, worst_group_ece, ece_gap, nll, worst_group_nll, nll_gap, fnr_gap,
fpr_gap, eodd_at_spec (docs/GROUP_SCORES.md).
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="compare several runs on one page (Table 1 with FATE, plots)",
                       description="Build a comparison page over run folders: one row per run in the papers' "
                                   "Table 1 layout with intervals, FATE against each run's baseline, cost, plots.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders to compare")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default: compare/ next to the runs)")
    p.add_argument("--names", default=None, help="comma-separated display names, one per run")
    p.add_argument("--columns", default=None, metavar="KEY,KEY,...",
                   help="comma-separated columns of an extra table and of the terminal summary, e.g. "
                        "worst_group_auc,ece_gap,eodd (default: the papers' F1 Avg., Eodd, FATE(Eodd))")
    p.add_argument("--against", default=None, metavar="RUN_OR_METHOD",
                   help="print and show the paired differences (same test images, paired bootstrap intervals) of "
                        "every run against this run folder, or against this method among the runs, same seed: "
                        "--against random sets scp-seed0 against random-seed0")
    g = p.add_argument_group("audits of runs not audited yet")
    g.add_argument("--split", choices=["test", "val", "train"], default="test", help="split (default test)")
    g.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    g.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    g.add_argument("--device", default="auto", help="cpu, cuda, ... (default: cuda if available)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import api
    from ..methods.audit import AuditConfig

    names = [n.strip() for n in args.names.split(",")] if args.names else None
    cfg = AuditConfig(split=args.split, n_boot=args.n_boot, seed=args.seed, device=args.device)
    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns is not None else None
    res = api.report(args.runs, out=args.out, names=names, columns=columns, cfg=cfg, against=args.against)
    print(api.report_text(res, columns, args.against))
    for p in res.audited:
        print(f"audited on the fly: {p}")
    for note in res.notes:
        if "audited it now" not in note:
            print(f"note: {note}")
    done("table", res.csv_path)
    if columns:
        done("columns", res.csv_path.with_name("compare_columns.csv"))
    done("report", res.html_path)
    return 0
