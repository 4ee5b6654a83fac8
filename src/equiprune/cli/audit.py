"""`equiprune audit`: per-group metrics with intervals, FATE against the baseline, and a report."""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_data_args, data_config_from_args, done

EPILOG = """\
examples:
  equiprune audit --run runs/base
  equiprune audit --run runs/scp                         # FATE against the chain's baseline
  equiprune audit --run runs/scp --baseline runs/base --n-boot 2000
  equiprune audit --run runs/base --groups fitzpatrick   # also the six skin types
  equiprune audit --run runs/base --groups fitzpatrick,sex --split val
  equiprune audit --run runs/base --ece-binning adaptive   # calibration with equal-mass bins
  equiprune audit --checkpoint model.pt --data fitzpatrick17k --root images/ --out runs/audit-f17k
  equiprune audit --checkpoint runs/base/model.pt --data synthderm --data-seed 0 --out runs/audit-base
  equiprune audit --checkpoint resnet18_isic.pth --arch resnet18 --num-classes 8 --data isic2019 \
                  --root DIR --out runs/audit-mine    # a plain torchvision state dict trained elsewhere
With --run it writes into the run folder: the `audit` section of metrics.json
(`audit_val` / `audit_train` for the other splits), predictions_<split>.csv,
report.md and report.html (one self-contained file), and prints Table 1 with
intervals, then per-group accuracy, AUC, ECE and NLL with intervals, the
worst-group AUC/accuracy, the AUC and ECE gaps, the largest FNR/FPR gap and
Eodd at specificity 0.8 (MEDFAIR's numbers, from the same predictions; the
report adds a reliability diagram per group).
With --checkpoint (a model.pt written by equiprune) the data options say what
to audit it on (--data is required; --data-seed is the --seed of
`equiprune train` when the splits are made here) and --out becomes a run
folder: config.json (kind "audit", the checkpoint and data settings), a copy
of the checkpoint as model.pt, and the same files as above, so `equiprune
report` and every --run verb can use it. The images are fed at the size the
checkpoint was built for unless --image-size is given; a checkpoint whose
class count differs from the dataset's is refused.
With --arch the file is a plain torchvision state dict (torch.save(model.state_dict());
DataParallel's `module.` prefix and a `state_dict`/`model` entry are fine), read
without unpickling code; --num-classes defaults to its head's rows, --width to
1.0, the input size to 224. Its model.pt is then an equiprune checkpoint that
`prune`, `compress` and `reprogram --run` take like any trained run.
"""


def register(sub: argparse._SubParsersAction) -> None:
    from ..models import MODEL_NAMES

    p = sub.add_parser("audit", help="measure per-group accuracy and fairness of a model, with a report",
                       description="Score the model of a run folder on one split of its data (or a bare "
                                   "checkpoint on a dataset you name): the papers' "
                                   "per-group precision/recall/F1 and Eopp0/Eopp1/Eodd with bootstrap "
                                   "intervals, FATE and paired differences against a baseline, model cost.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", metavar="RUN_DIR", help="run folder holding model.pt and config.json")
    src.add_argument("--checkpoint", metavar="FILE",
                     help="a model.pt written by equiprune, audited on the data given by the data options")
    p.add_argument("--arch", metavar="NAME", choices=list(MODEL_NAMES), default=None,
                   help="with --checkpoint: the file is a plain torchvision state dict of this architecture "
                        f"({', '.join(MODEL_NAMES)})")
    p.add_argument("--num-classes", metavar="K", type=int, default=None,
                   help="with --arch: outputs of the head (default: read from the file's head)")
    p.add_argument("--width", type=float, default=1.0,
                   help="with --arch: width multiplier the model was built with (default 1.0, torchvision's)")
    p.add_argument("--out", metavar="RUN_DIR", default=None,
                   help="with --checkpoint: new run folder for the audit (required there)")
    p.add_argument("--split", choices=["test", "val", "train"], default="test", help="split to score (default test)")
    p.add_argument("--baseline", metavar="BASELINE_RUN", default=None,
                   help="run folder of the baseline for FATE (default: the baseline recorded in the run's "
                        "config.json, if any)")
    p.add_argument("--groups", metavar="COLUMN", default=None,
                   help="also audit by this metadata column (e.g. fitzpatrick) or two columns joined by a "
                        "comma (their intersection); the two-group paper metrics are always reported")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    p.add_argument("--alpha", type=float, default=0.05, help="1 - interval level (default 0.05: 95%% intervals)")
    p.add_argument("--fate-lambda", type=float, default=1.0, help="lambda of FATE (default 1)")
    p.add_argument("--full-classes", action="store_true",
                   help="use the dataset's class count for the class means instead of deriving it from the "
                        "data as the papers' code does (a deviation; matters only if a class is absent)")
    p.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    sc = p.add_argument_group("threshold-free and calibration numbers (MEDFAIR; docs/GROUP_SCORES.md)")
    sc.add_argument("--ece-bins", type=int, default=10, help="ECE bins (default 10)")
    sc.add_argument("--ece-binning", choices=["equal", "adaptive"], default="equal",
                    help="equal-width bins on [0, 1] (default) or adaptive equal-mass bins per group")
    sc.add_argument("--specificity", type=float, default=0.8,
                    help="specificity at which the fixed-threshold Eodd is measured (default 0.8, as MEDFAIR)")
    sc.add_argument("--no-scores", action="store_true",
                    help="leave out per-group AUC, ECE, NLL and FNR/FPR (only the papers' metrics)")
    p.add_argument("--device", default="auto", help="cpu, cuda, ... (default: cuda if available)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    g = add_data_args(p, default_data=None, default_image_size=None)
    g.title = "data (with --checkpoint only; a run folder has its own)"
    g.add_argument("--data-seed", type=int, default=0,
                   help="seed of generated data and of splits made here: the --seed the model was trained "
                        "with (default 0)")
    # Every data option's default, so `--run` can refuse the ones given in vain.
    p.set_defaults(func=run, data_defaults={a.dest: (a.option_strings[0], a.default) for a in g._group_actions})


def _check_source_args(args: argparse.Namespace) -> None:
    """Raise ValueError for option mixes that would be silently ignored."""
    given = [opt for dest, (opt, default) in args.data_defaults.items() if getattr(args, dest) != default]
    if args.run:
        extra = given + (["--out"] if args.out else []) + (["--arch"] if args.arch else [])
        if extra:
            raise ValueError(f"only with --checkpoint: {', '.join(extra)} (a run folder's data settings come from "
                             "its config.json, and its audit is written into it).")
        return
    missing = [opt for opt, value in (("--data", args.data), ("--out", args.out)) if not value]
    if missing:
        raise ValueError(f"--checkpoint needs {' and '.join(missing)}: the dataset to audit it on "
                         "(e.g. --data synthderm, or --data fitzpatrick17k --root DIR) and a new run folder.")


def run(args: argparse.Namespace) -> int:
    from .. import api
    from ..methods.audit import AuditConfig

    _check_source_args(args)
    cfg = AuditConfig(split=args.split, n_boot=args.n_boot, seed=args.seed, alpha=args.alpha,
                      fate_lambda=args.fate_lambda, groups=args.groups, full_classes=args.full_classes,
                      latency=not args.no_latency, device=args.device, progress=not args.quiet,
                      scores=not args.no_scores, ece_bins=args.ece_bins, ece_binning=args.ece_binning,
                      specificity=args.specificity)
    if args.checkpoint:
        data = data_config_from_args(args, seed=args.data_seed, progress=not args.quiet)
        result = api.audit_checkpoint(args.checkpoint, data, args.out, cfg, image_size=args.image_size,
                                      baseline=args.baseline, arch=args.arch, num_classes=args.num_classes,
                                      width=args.width)
    else:
        result = api.audit(args.run, cfg, baseline=args.baseline)
    run_dir = Path(args.run or args.out)
    print(api.audit_text(result))
    done("metrics", run_dir / "metrics.json")
    done("report", result.report_html)
    return 0
