"""`equiprune stress-groups`: a fairness method run with noisy or attacked group labels, judged on clean data."""
from __future__ import annotations

import argparse

from .common import done

EPILOG = """\
examples:
  equiprune stress-groups --run runs/base --method scp --out runs/stress-scp
  equiprune stress-groups --run runs/base --method scp --consensus 5 --out runs/stress-scp-consensus
  equiprune stress-groups --run runs/base --method fairprune --flip 0,0.1,0.3 --attack random \\
                          --seeds 0,1,2 --out runs/stress-fairprune
  equiprune stress-groups --run runs/base --method groupdro --seeds 0,1,2,3,4 --out runs/stress-groupdro
For every fraction ρ of --flip and every seed, an attacker sets the groups of
ρ of the training items (the groups the method reads); validation and test
keep their true groups. --attack random draws the new groups at random;
adversarial lets RACOS (zoopt) choose them, with --budget evaluations of the
validation gap of the method's first cut without fine-tuning (a mitigation
method: after one epoch of it). The method then
runs in full and its model is judged on the clean test split. report.html
shows post/pre ratio curves (ρ = 0 is "pre") and a KS test random against
adversarial over seeds (with 3 seeds its p-value cannot go below 0.1; give 5
or more for a test that can reject). --method takes SCP, FairPrune and every
mitigation method whose training reads the group labels (reweight, resample,
groupdro, advconf, advref, domain-independent, hsic, fairadabn, mfd, fme, ...);
a mitigation fine-tunes for --max-iters x --finetune-epochs epochs, the
pruning methods' budget.
"""


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    from ..methods.stress_groups import METHODS

    p = sub.add_parser("stress-groups", help="run a fairness method with noisy or attacked group labels",
                       description="Flip a fraction of the training groups at random or adversarially (RACOS), "
                                   "run the method, judge it on the clean test split.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="run folder holding the model")
    p.add_argument("--out", required=True, help="new folder for the results (report.html, metrics.json)")
    p.add_argument("--method", choices=sorted(METHODS), default="scp", help="the method stressed: scp, fairprune or a group-reading mitigation method (default scp)")
    p.add_argument("--flip", type=_floats, default=(0.0, 0.05, 0.1, 0.15, 0.2, 0.3),
                   help="fractions of training groups the attacker sets (default 0,0.05,0.1,0.15,0.2,0.3)")
    p.add_argument("--attack", default="random,adversarial",
                   help="random, adversarial or both joined by a comma (default both; the KS test needs both)")
    p.add_argument("--seeds", type=_ints, default=(0, 1, 2), help="seeds (default 0,1,2)")
    p.add_argument("--budget", type=int, default=20, help="RACOS evaluations per fraction and seed (default 20)")
    p.add_argument("--attacker", choices=["cheap", "full"], default="cheap",
                   help="what RACOS scores: cheap (default: the validation gap of the method's first cut with no "
                        "fine-tuning, or of one epoch of a mitigation) or full (of the model the whole method "
                        "returns: --budget times one run, no proxy)")
    p.add_argument("--blocks", type=int, default=32,
                   help="adversarial: the attack set is flipped in this many blocks (RACOS's dimension; default 32)")
    p.add_argument("--consensus", type=int, default=0, metavar="R",
                   help="SCP: score on R bootstrap resamples and cut only channels chosen in >= --tau of them")
    p.add_argument("--tau", type=float, default=0.5, help="consensus: share of resamples (default 0.5)")
    g = p.add_argument_group("the method's loop")
    g.add_argument("--layer", default=None, help="conv layer (default: the last conv)")
    g.add_argument("--ratio", type=float, default=0.05, help="channels cut per iteration (default 0.05)")
    g.add_argument("--max-iters", type=int, default=2, help="iterations (default 2)")
    g.add_argument("--finetune-epochs", type=int, default=1, help="fine-tuning epochs per iteration (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import api
    from ..methods.stress_groups import StressConfig

    cfg = StressConfig(method=args.method, flips=args.flip, attacks=tuple(a.strip() for a in args.attack.split(",")),
                       seeds=args.seeds, budget=args.budget, blocks=args.blocks, layer=args.layer, ratio=args.ratio,
                       max_iters=args.max_iters, finetune_epochs=args.finetune_epochs, consensus=args.consensus,
                       tau=args.tau, attacker=args.attacker, progress=not args.quiet)
    result = api.stress_groups(args.run, cfg, args.out)
    for line in result.findings():
        print(line)
    done("report", f"{args.out}/report.html")
    return 0
