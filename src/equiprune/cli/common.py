"""Argument groups and output helpers shared by the CLI verbs."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..engine import TrainConfig
from ..engine.selection import SELECT_ON


def count_arg(minimum: int):
    """argparse type: a whole number >= `minimum` (argparse names the option in its error)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value
    return parse


def add_train_args(parser: argparse.ArgumentParser, epochs: int, prefix: str = "",
                   title: str = "training", select_on: str | None = None) -> None:
    """Options that fill a TrainConfig. `prefix` (e.g. 'finetune-') namespaces them; `select_on` its default."""
    d = TrainConfig(select_on=select_on or TrainConfig.select_on)
    g = parser.add_argument_group(title)
    p = f"--{prefix}"
    g.add_argument(f"{p}epochs", type=count_arg(0), default=epochs,
                   help=f"passes over the training split (default {epochs})")
    g.add_argument(f"{p}batch-size", type=count_arg(1), default=d.batch_size, help=f"default {d.batch_size}")
    g.add_argument(f"{p}lr", type=float, default=None, help="learning rate (default 5e-4 for adam, 0.05 for sgd)")
    g.add_argument(f"{p}optimizer", choices=["sgd", "adam"], default=d.optimizer,
                   help="adam (default) or sgd (momentum 0.9, Nesterov)")
    g.add_argument(f"{p}schedule", choices=["cosine", "step", "none"], default=d.schedule,
                   help="learning-rate schedule (default cosine)")
    g.add_argument(f"{p}weight-decay", type=float, default=d.weight_decay, help=f"default {d.weight_decay}")
    g.add_argument(f"{p}balanced-sampler", action="store_true",
                   help="draw items with weight 1/class size, as the papers' code does")
    g.add_argument(f"{p}select-on", choices=list(SELECT_ON), default=d.select_on,
                   help=f"keep the epoch with the best validation macro-F1, accuracy, worst-group accuracy or "
                        f"worst-group AUC (MEDFAIR's minimax selection), or the last (default {d.select_on})")


def train_config_from_args(args: argparse.Namespace, prefix: str = "", seed: int = 0,
                           device: str = "auto", progress: bool = True,
                           default_lr: tuple[float, float] = (0.05, 5e-4)) -> TrainConfig:
    """TrainConfig from the options added by `add_train_args`.

    `default_lr` is (sgd, adam) for when --lr is not given; fine-tuning passes
    smaller ones (`FINETUNE_LR`).
    """
    key = prefix.replace("-", "_")
    get = lambda name: getattr(args, key + name)  # noqa: E731
    optimizer = get("optimizer")
    lr = get("lr")
    if lr is None:
        lr = default_lr[0] if optimizer == "sgd" else default_lr[1]
    return TrainConfig(epochs=get("epochs"), batch_size=get("batch_size"), lr=lr, optimizer=optimizer,
                       schedule=get("schedule"), weight_decay=get("weight_decay"),
                       balanced_sampler=get("balanced_sampler"), select_on=get("select_on"),
                       seed=seed, device=device, progress=progress)


# (sgd, adam) learning rates of fine-tuning after a cut when --finetune-lr is not given
FINETUNE_LR = (0.01, 1e-4)


def add_runtime_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("runtime")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 … (default: cuda if available)")
    g.add_argument("--quiet", action="store_true", help="no progress bars")


def add_variant_arg(group: argparse._ArgumentGroup) -> None:
    """--variant: which SNNL-Fair definition scores the channels."""
    group.add_argument("--variant", choices=["reference", "paper"], default="reference",
                       help="SNNL-Fair as in the published code (default) or Eq. 1 of the paper")


def add_score_batch_arg(group: argparse._ArgumentGroup) -> None:
    """--score-batch-size: SNNL-Fair's batch (the reference code drops the last partial batch).

    The score is a mean over batches of a within-batch quantity, so the batch
    size is part of the method; 128 is the published setting. A training split
    smaller than one batch is refused, and this is the option to pass then.
    """
    group.add_argument("--score-batch-size", type=int, default=128,
                       help="images per SNNL-Fair scoring batch (default 128, the published code's); the last "
                            "partial batch is dropped, so a training split smaller than this needs a lower value")


def done(message: str, path: Path | str | None = None) -> None:
    """Tell the user where the results are."""
    print(message if path is None else f"{message}: {path}")


def add_data_args(parser: argparse.ArgumentParser, required: bool = False, default_data: str | None = "synthderm",
                  default_image_size: int | None = 64) -> argparse._ArgumentGroup:
    """Options that fill a DataConfig (dataset, image folder, size, group coding); returns their group.

    `default_data` / `default_image_size` None leave --data / --image-size unset
    unless given (`audit --checkpoint` takes the size from the checkpoint).
    """
    from ..data import DATASETS
    from ..data.config import PRESET_HELP

    g = parser.add_argument_group("data")
    g.add_argument("--data", choices=list(DATASETS), default=None if required else default_data, required=required,
                   help="dataset: synthderm (generated, no download), fitzpatrick17k, isic2019, ham10000 or csv")
    g.add_argument("--root", default=None, help="folder with the images (every dataset but synthderm)")
    size_default = ": the model's input size" if default_image_size is None else f" {default_image_size}"
    g.add_argument("--image-size", type=int, default=default_image_size,
                   help=f"square input size in pixels (default{size_default})")
    g.add_argument("--metadata", default=None,
                   help="metadata table(s): the CSV for csv/ham10000; a folder for fitzpatrick17k/isic2019 "
                        "(default: the tables shipped with equiprune)")
    g.add_argument("--group-column", default=None,
                   help="metadata column defining the group (default: the papers' coding: Fitzpatrick "
                        "I-III vs IV-VI, ISIC gender)")
    g.add_argument("--group-map", nargs="+", metavar="VALUES=GROUP", default=None,
                   help="map the group column's values to groups 0 and 1, e.g. --group-map I,II,III=0 IV,V,VI=1 "
                        "(default: the papers' coding, else 0/1 columns as they are)")
    g.add_argument("--group-names", nargs="+", metavar="NAME", default=None,
                   help="names of group 0 and group 1 in tables and plots, e.g. --group-names light dark")
    g.add_argument("--group-source", choices=["given", "ita"], default="given",
                   help="where the group comes from: the data's group (default), or skin tone estimated from the "
                        "pixels: the median ITA over a skin mask that leaves the lesion out; group 1 (darker) "
                        "where ITA <= --ita-threshold. Images with too few skin pixels are left out and listed. "
                        "Runs made from this one (prune, compress, ...) keep it")
    g.add_argument("--ita-threshold", type=float, default=28.0, metavar="DEG",
                   help="ITA boundary of --group-source ita in degrees (default 28: between intermediate and "
                        "tan, read as Fitzpatrick I-III against IV-VI)")
    g.add_argument("--label-level", choices=["low", "mid", "high"], default="low",
                   help="fitzpatrick17k labels: 114 (low), 9 (mid) or 3 (high) classes")
    g.add_argument("--augment", choices=["auto", "paper", "light", "none", "skin-tone"], default="auto",
                   help="training augmentation, never applied to val/test: "
                        + "; ".join(f"{k} = {v}" for k, v in PRESET_HELP.items())
                        + "; auto (default) = paper for fitzpatrick17k, isic2019 and ham10000, light for "
                          "synthderm and csv (train prints the choice)")
    g.add_argument("--image-column", default="image", help="csv loader: image file column")
    g.add_argument("--label-column", default="label", help="csv loader: label column")
    g.add_argument("--split-column", default=None,
                   help="csv loader: column saying which split each row is in, with values train, val and test "
                        "(also training / valid, validation, vali, dev / testing; any case). Without it the rows "
                        "are split here 70/15/15, stratified by label x group, with --seed")
    g.add_argument("--missing-images", choices=["error", "drop"], default="error",
                   help="stop on missing image files (default) or drop those rows with a warning")
    g.add_argument("--unknown-labels", choices=["error", "drop"], default="error",
                   help="a val/test label no training row has: stop naming it (default) or drop those rows "
                        "with a warning")
    g.add_argument("--split-overlap", choices=["error", "allow"], default="error",
                   help="an image in two splits (same file or same pixels): stop listing them (default) or "
                        "keep them with a warning in the report")
    g.add_argument("--max-rows", type=int, default=None, help="keep at most N rows per split (quick runs)")
    g.add_argument("--synth-n", type=int, default=6000, help="synthderm: number of images (default 6000)")
    g.add_argument("--synth-dark-fraction", type=float, default=0.2,
                   help="synthderm: fraction of dark-skin images (default 0.2)")
    g.add_argument("--synth-dark-contrast", type=float, default=0.45,
                   help="synthderm: lesion contrast on dark skin, 1.0 = no bias (default 0.45)")
    g.add_argument("--synth-group-cue", choices=["skin", "marker"], default="skin",
                   help="synthderm: the group is skin tone (default), or the clinic, seen only through an ink "
                        "mark on clinic-B images (a positive control for SCP's premise)")
    return g


def parse_group_map(items: list[str] | None) -> dict[str, int] | None:
    """``["I,II,III=0", "IV,V,VI=1"]`` -> ``{"I": 0, "II": 0, ..., "VI": 1}`` (None stays None)."""
    if items is None:
        return None
    out: dict[str, int] = {}
    for item in items:
        values, sep, group = item.rpartition("=")
        if not sep or not values.strip() or not group.strip().isdigit():
            raise ValueError(f"--group-map takes VALUES=GROUP items such as I,II,III=0 IV,V,VI=1 "
                             f"(comma-separated column values, then = and a group number); got {item!r}")
        for value in (v.strip() for v in values.split(",")):
            if not value:
                raise ValueError(f"--group-map item {item!r} has an empty value between its commas")
            if out.get(value, int(group)) != int(group):
                raise ValueError(f"--group-map puts {value!r} in group {out[value]} and in group {int(group)}")
            out[value] = int(group)
    return out


def data_config_from_args(args: argparse.Namespace, seed: int = 0, progress: bool = True):
    """DataConfig from the options added by `add_data_args` (an unset --image-size keeps DataConfig's default)."""
    from ..data import DataConfig, SynthDermConfig

    synth = SynthDermConfig(n=args.synth_n, dark_fraction=args.synth_dark_fraction,
                            dark_contrast=args.synth_dark_contrast, group_cue=args.synth_group_cue)
    size = {} if args.image_size is None else {"image_size": args.image_size}
    return DataConfig(name=args.data, root=args.root, seed=seed, augment=args.augment,
                      label_level=args.label_level, group_column=args.group_column,
                      group_map=parse_group_map(args.group_map), group_names=args.group_names, metadata=args.metadata,
                      image_column=args.image_column, label_column=args.label_column,
                      split_column=args.split_column, missing_images=args.missing_images, max_rows=args.max_rows,
                      unknown_labels=args.unknown_labels, split_overlap=args.split_overlap,
                      progress=progress, synthderm=synth, group_source=args.group_source,
                      ita_threshold=args.ita_threshold, **size)
