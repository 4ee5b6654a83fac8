"""`equiprune train`: train a baseline classifier into a run folder."""
from __future__ import annotations

import argparse

from ..methods.recipes import RECIPES
from .common import (add_data_args, add_runtime_args, add_train_args, count_arg, data_config_from_args, done,
                     train_config_from_args)

EPILOG = """\
examples:
  equiprune train --data synthderm --model vgg11 --width 0.25 --out runs/base
  equiprune train --data fitzpatrick17k --root ~/data/fitzpatrick17k/images --model vgg11 \\
                  --image-size 128 --epochs 30 --balanced-sampler --out runs/fitz-vgg11
  equiprune train --data isic2019 --root ~/data/ISIC_2019_Training_Input --model resnet18 --out runs/isic
  equiprune train --data isic2019 --root DIR --model resnet18 --width 1 --weights imagenet \
                  --freeze-epochs 2 --head-lr 0.01 --out runs/isic-pre    # 224 px, the weights' preprocessing
  equiprune train --data fitzpatrick17k --root DIR --model vgg11 --width 1 --weights my_vgg11.pth --out runs/f
  equiprune train --recipe scp-fitzpatrick17k --root DIR --out runs/scp-base   # the paper's settings
  equiprune train --recipe scp-isic2019 --print-config                     # what the recipe sets, and why
The run folder gets config.json, metrics.json (one record per epoch), model.pt
and log.txt. Interrupt it at any time: the same command continues from the
last finished epoch.
"""


def register(sub: argparse._SubParsersAction) -> None:
    from ..models import MODEL_NAMES

    p = sub.add_parser("train", help="train a baseline model on a dataset", epilog=EPILOG,
                       description="Train a classifier and write a run folder that other verbs read with --run.",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=None, help="run folder to create (or resume); required unless --print-config")
    m = p.add_argument_group("model")
    m.add_argument("--model", choices=list(MODEL_NAMES), default="vgg11", help="architecture (default vgg11)")
    m.add_argument("--width", type=float, default=0.25,
                   help="channel-width multiplier; 1.0 = torchvision's size, 0.25 suits CPUs (default 0.25; "
                        "1.0 with --weights)")
    m.add_argument("--weights", default=None, metavar="none|imagenet|PATH",
                   help="start from random weights (none, the default), torchvision's ImageNet weights (imagenet: "
                        "width 1.0, the weights' resize/crop/normalisation unless --image-size is given; the head "
                        "is replaced for the dataset's classes) or a torchvision-format state dict file (PATH)")
    m.add_argument("--freeze-epochs", type=count_arg(0), default=0, metavar="N",
                   help="train only the classifier head for the first N epochs (default 0)")
    m.add_argument("--head-lr", type=float, default=None, metavar="LR",
                   help="learning rate of the classifier head (default: --lr)")
    m.add_argument("--compile", action="store_true",
                   help="torch.compile the training forward (a GPU speed-up for long runs; slow to start)")
    m.add_argument("--recipe", default=None, metavar="NAME",
                   help="a paper's settings as defaults (" + ", ".join(RECIPES) + "); any option given "
                        "explicitly wins. docs/RECIPES.md cites every value")
    m.add_argument("--print-config", action="store_true",
                   help="print the resolved settings and where each comes from, then exit")
    mg = p.add_argument_group("mitigation (optional)")
    mg.add_argument("--method", default=None, metavar="METHOD",
                    help="train with a bias-mitigation method (see `equiprune mitigate --help`), e.g. groupdro")
    mg.add_argument("--method-opt", nargs="+", default=[], metavar="KEY=VALUE",
                    help="the method's own settings, e.g. --method-opt eta=0.05 (names as in "
                         "`equiprune mitigate METHOD --help`, with _ for -)")
    add_data_args(p)
    add_train_args(p, epochs=5)
    p.add_argument("--find-lr", action="store_true",
                   help="pick the learning rate with a range test first (as the fastai / Lightning tuners): "
                        "100 steps at rates growing from 1e-6 to 1 on a copy of the model; the rate where the "
                        "smoothed loss falls fastest replaces --lr (curve in RUN/lr_find.json)")
    add_runtime_args(p)
    p.set_defaults(func=run, recipe_defaults=recipe_defaults(p))


def recipe_defaults(p: argparse.ArgumentParser) -> dict:
    """Each option a recipe may set: its normal default. The parser's default becomes None ("not given")."""
    from ..methods.recipes import DATA_KEYS, MODEL_KEYS, TRAIN_KEYS

    dests = {a.dest for a in p._actions}
    keys = [k for k in (*DATA_KEYS, *MODEL_KEYS, *TRAIN_KEYS) if k in dests]
    defaults = {k: p.get_default(k) for k in keys}
    defaults["weights"] = "none"
    p.set_defaults(**{k: None for k in keys})
    return defaults


def _resolve(args: argparse.Namespace):
    """(DataConfig, ModelConfig, TrainConfig, printable settings) from the options, the recipe and the defaults."""
    from dataclasses import fields, replace

    from ..engine import TrainConfig
    from ..methods.recipes import format_settings, get_recipe, resolve_settings
    from ..methods.train import ModelConfig

    recipe = get_recipe(args.recipe) if args.recipe else None
    defaults = dict(args.recipe_defaults)
    given = {k: getattr(args, k) for k in defaults}
    resolved = resolve_settings(recipe, given, defaults)
    if resolved["width"][1] == "default" and resolved["weights"][0] not in (None, "none"):
        resolved["width"] = (1.0, "torchvision's size, as --weights is given")
    for key, (value, _) in resolved.items():
        if key in defaults:
            setattr(args, key, value)
    data = data_config_from_args(args, seed=args.seed, progress=not args.quiet)
    data = replace(data, **{k: resolved[k][0] for k in ("normalize", "resize_factor") if k in resolved})
    cfg = train_config_from_args(args, seed=args.seed, device=args.device, progress=not args.quiet)
    extra = {f.name: resolved[f.name][0] for f in fields(TrainConfig)
             if f.name in resolved and f.name not in defaults}
    cfg = replace(cfg, freeze_epochs=args.freeze_epochs, head_lr=args.head_lr, compile=args.compile, **extra)
    # An explicit or recipe input size wins over the ImageNet weights' own preprocessing.
    size_set = resolved.get("image_size", (None, "default"))[1] != "default"
    model = ModelConfig(name=args.model, width=args.width, weights=args.weights, weights_preprocessing=not size_set)
    if model.weights == "imagenet" and model.weights_preprocessing:
        from ..methods.train import with_weights_preprocessing
        data = with_weights_preprocessing(data, model.name)
        resolved["image_size"] = (data.image_size, "the ImageNet weights' preprocessing")
    resolved["lr"] = (cfg.lr, resolved["lr"][1])
    resolved.update({"freeze_epochs": (cfg.freeze_epochs, "command line" if cfg.freeze_epochs else "default"),
                     "head_lr": (cfg.head_lr, "command line" if cfg.head_lr is not None else "default")})
    return data, model, cfg, format_settings(resolved, recipe)


def run(args: argparse.Namespace) -> int:
    from ..api import train

    data, model, cfg, text = _resolve(args)
    if args.print_config:
        print(text)
        return 0
    if not args.out:
        raise ValueError("train needs --out RUN_DIR, the run folder to write (or --print-config to only show "
                         "the settings)")
    method = _method_config(args)
    if method is not None and model.weights != "none":
        raise ValueError("--weights is not combined with --method yet: a mitigation method trains from random "
                         "weights; leave out one of them.")
    result = train(data, model.name, model.width, cfg, args.out, method=method, weights=model.weights,
                   weights_preprocessing=model.weights_preprocessing, find_lr=args.find_lr)
    t = result.test
    print(f"test accuracy {t['acc']:.3f} ({result.group_names[0]}: {t['acc_g0']:.3f}, "
          f"{result.group_names[1]}: {t['acc_g1']:.3f}); macro-F1 {t['f1']:.3f}; Eodd {t['eodd']:.3f}")
    for w in result.warnings:
        print(f"warning: {w}")
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
