"""`equiprune summarize`: a small review set with the groups in proportion (thesis §3.2)."""
from __future__ import annotations

import argparse

from .common import done
from .influence import _group_map

EPILOG = """\
examples:
  equiprune summarize --run runs/base --split test --k 30 --out runs/review-set
  equiprune summarize --features emb.csv --group-column skin --k 50 --out runs/review

Picks exactly K items, every group's count within one of K times its share in
the whole, as central as possible within the data's K k-means clusters (a
mixed-integer program, scipy HiGHS); the rows go to summary.csv. SumBal (1 =
every group has the same share in the set as in the whole; the worst group is
named) is given for it, for the thesis's FVS-LP baseline and for a random set.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("summarize", help="K representative images with the groups in proportion (a review set)",
                       description="A fair summary of an image set or feature table (thesis §3.2: SumBal, FVS-LP).",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", metavar="RUN_DIR", help="a run folder: its model's penultimate features")
    src.add_argument("--features", metavar="TABLE", help="a feature table (.csv or .npz)")
    p.add_argument("--split", choices=["train", "val", "test"], default="test", help="with --run (default test)")
    p.add_argument("--group-column", default="group")
    p.add_argument("--label-column", default="label")
    p.add_argument("--group-map", type=_group_map, default=None, metavar="V=0,W=1")
    p.add_argument("--k", type=int, required=True, help="size of the set")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, metavar="DIR")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import api
    from ..cluster import PointSource
    source = PointSource(run=args.run, features=args.features, split=args.split, label_column=args.label_column,
                         group_column=args.group_column, group_map=args.group_map, seed=args.seed)
    s = api.summarize(source, args.k, args.out, seed=args.seed)
    for row in s["table"]:
        print(f"{row['method']:36s} SumBal {row['sumbal']:.3f}  (worst group: {row['violating group']})")
    done("chosen rows", f"{args.out}/summary.csv")
    done("report", f"{args.out}/report.html")
    return 0
