"""`equiprune prune cut-response`: does cutting SNNL-chosen channels move the gap more than other cuts?"""
from __future__ import annotations

import argparse

from ..metrics import GAP_METRICS
from .common import add_score_batch_arg, add_variant_arg, done

EPILOG = """\
examples:
  equiprune prune cut-response --run runs/base --out runs/base-cuts
  equiprune prune cut-response --run runs/base --layer features.15 --fractions 0.05 0.1 0.2 0.4 0.6 \\
                               --draws 10 --out runs/base-cuts-15
For each fraction it cuts that many channels of the layer from a copy of the
model, chosen by lowest SNNL-Fair (what SCP cuts), highest SNNL-Fair, smallest
L1 norm and at random (--draws draws), and evaluates every cut model with no
fine-tuning. If SCP's choice narrows the gap no more than random cuts do, an
SCP run cannot owe its result to the channels it picked; if cutting them costs
the worse-served group the most accuracy, those channels serve that group.
Run it before `prune scp` to choose the layer; it evaluates on the validation
split, so the test split stays untouched. No model is kept.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cut-response", help="SCP's premise tested: the gap after cuts chosen by SNNL, L1 or at "
                                            "random, before any fine-tuning",
                       description="Cut k channels of one layer, chosen several ways, and measure the group gap "
                                   "with no fine-tuning.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="run folder holding the model")
    p.add_argument("--out", required=True, help="new folder for the results (report.html, metrics.json)")
    g = p.add_argument_group("cuts")
    g.add_argument("--layer", default=None, help="module path of the conv layer (default: the last conv)")
    g.add_argument("--fractions", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.4],
                   help="fractions of the layer's channels to cut, one cut each (default 0.05 0.1 0.2 0.4)")
    g.add_argument("--draws", type=int, default=5, help="random cuts per fraction (default 5)")
    g.add_argument("--split", choices=["val", "test"], default="val",
                   help="where the cut models are evaluated (default val, keeping test untouched)")
    g.add_argument("--fair-metric", choices=GAP_METRICS, default="eodd",
                   help="the gap the findings compare (default eodd)")
    add_variant_arg(g)
    add_score_batch_arg(g)
    r = p.add_argument_group("runtime")
    r.add_argument("--seed", type=int, default=0, help="seed of the random cuts (default 0)")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import api
    from ..methods.cut_response import CutResponseConfig

    cfg = CutResponseConfig(layer=args.layer, fractions=tuple(args.fractions), random_draws=args.draws,
                            split=args.split, fair_metric=args.fair_metric, variant=args.variant, seed=args.seed,
                            score_batch_size=args.score_batch_size,
                            progress=not args.quiet)
    result = api.cut_response(args.run, cfg, args.out)
    for line in result.findings():
        print(line)
    done("report", f"{args.out}/report.html")
    return 0
