"""`equiprune train`: train a baseline classifier into a run folder."""
from __future__ import annotations

import argparse

from .common import (add_data_args, add_runtime_args, add_train_args, data_config_from_args, done,
                     train_config_from_args)

EPILOG = """\
examples:
  equiprune train --data synthderm --model vgg11 --width 0.25 --out runs/base
  equiprune train --data fitzpatrick17k --root ~/data/fitzpatrick17k/images --model vgg11 \\
                  --image-size 128 --epochs 30 --balanced-sampler --out runs/fitz-vgg11
  equiprune train --data isic2019 --root ~/data/ISIC_2019_Training_Input --model resnet18 --out runs/isic
The run folder gets config.json, metrics.json (one record per epoch), model.pt
and log.txt. Interrupt it at any time: the same command continues from the
last finished epoch.
"""


def register(sub: argparse._SubParsersAction) -> None:
    from ..models import MODEL_NAMES

    p = sub.add_parser("train", help="train a baseline model on a dataset", epilog=EPILOG,
                       description="Train a classifier and write a run folder that other verbs read with --run.",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="run folder to create (or resume)")
    m = p.add_argument_group("model")
    m.add_argument("--model", choices=list(MODEL_NAMES), default="vgg11", help="architecture (default vgg11)")
    m.add_argument("--width", type=float, default=0.25,
                   help="channel-width multiplier; 1.0 = torchvision's size, 0.25 suits CPUs (default 0.25)")
    mg = p.add_argument_group("mitigation (optional)")
    mg.add_argument("--method", default=None, metavar="METHOD",
                    help="train with a bias-mitigation method (see `equiprune mitigate --help`), e.g. groupdro")
    mg.add_argument("--method-opt", nargs="+", default=[], metavar="KEY=VALUE",
                    help="the method's own settings, e.g. --method-opt eta=0.05 (names as in "
                         "`equiprune mitigate METHOD --help`, with _ for -)")
    add_data_args(p)
    add_train_args(p, epochs=5)
    add_runtime_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..api import train

    data = data_config_from_args(args, seed=args.seed, progress=not args.quiet)
    cfg = train_config_from_args(args, seed=args.seed, device=args.device, progress=not args.quiet)
    result = train(data, args.model, args.width, cfg, args.out, method=_method_config(args))
    t = result.test
    print(f"test accuracy {t['acc']:.3f} ({result.group_names[0]}: {t['acc_g0']:.3f}, "
          f"{result.group_names[1]}: {t['acc_g1']:.3f}); macro-F1 {t['f1']:.3f}; Eodd {t['eodd']:.3f}")
    done("run folder", args.out)
    print(f"next: equiprune audit --run {args.out}")
    return 0


def _method_config(args: argparse.Namespace):
    """The mitigation config of --method / --method-opt, or None."""
    if args.method is None:
        if args.method_opt:
            raise ValueError("--method-opt needs --method")
        return None
    from ..methods.mitigate import get_method
    from ..methods.mitigate.base import config_from_options

    options = {}
    for item in args.method_opt:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--method-opt takes KEY=VALUE items, got {item!r}")
        options[key.strip().replace("-", "_")] = value.strip()
    return config_from_options(get_method(args.method).config, options, seed=args.seed, progress=not args.quiet)
