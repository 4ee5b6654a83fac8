"""The papers' training recipes as named presets for `equiprune train --recipe NAME`.

Each value says where it comes from: a file and line of the published code
(SCP: github.com/Kqp1227/Sensitive-Channel-Pruning at 04a6104; FME, whose
training code SCP's baselines come from: github.com/chiuhaohao/Fair-Multi-Exit-Framework
at 6f606cc), a line of the paper, or, where neither says, "equiprune" and why.
docs/RECIPES.md is the same table in prose, with what the code and the paper
disagree on.

A recipe is only defaults: `resolve_settings` lets every explicitly given
option win, and records for each setting whether it came from the command
line, the recipe or equiprune's default, which `--print-config` prints.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["RECIPES", "Recipe", "RecipeError", "Setting", "get_recipe", "resolve_settings", "format_settings"]

SCP = "SCP"   # Kqp1227/Sensitive-Channel-Pruning @ 04a61041
FME = "FME"   # chiuhaohao/Fair-Multi-Exit-Framework @ 6f606cc9


class RecipeError(ValueError):
    """An unknown recipe name."""


@dataclass(frozen=True)
class Setting:
    """One value of a recipe and where the published work sets it."""

    value: Any
    source: str


@dataclass(frozen=True)
class Recipe:
    """A named set of training settings. Keys are `equiprune train` option names (dest form)."""

    name: str
    summary: str
    settings: dict[str, Setting]
    notes: tuple[str, ...] = field(default_factory=tuple)


# Settings shared by the SCP/FME baselines (both datasets): FME's train_cnn.py trains every baseline.
_FME_TRAINING = {
    "optimizer": Setting("sgd", f"{FME} train_cnn.py:146 (optim.SGD)"),
    "momentum": Setting(0.9, f"{FME} train_cnn.py:146 (momentum=0.9)"),
    "nesterov": Setting(True, f"{FME} train_cnn.py:146 (nesterov=True)"),
    "weight_decay": Setting(1e-5, f"{FME} train_cnn.py:146 (weight_decay=1e-5)"),
    "lr": Setting(0.01, f"{FME} train.sh:1,3 (--lr 0.01); train_cnn.py:112 default"),
    "batch_size": Setting(128, f"{FME} train.sh:1,3 (--batch_size 128)"),
    "epochs": Setting(200, f"{FME} train.sh:1,3 (--epochs 200; its loop range(1, epochs), "
                           "train_cnn.py:55, runs 199)"),
    "schedule": Setting("step", f"{FME} train_cnn.py:147 (StepLR)"),
    "step_size": Setting(100, f"{FME} train_cnn.py:147 (step_size=100)"),
    "gamma": Setting(0.1, f"{FME} train_cnn.py:147 (gamma=0.1)"),
    "balanced_sampler": Setting(True, f"{FME} data.py:47-53,144 (WeightedRandomSampler, weight 1/class count)"),
    "select_on": Setting("last", f"{FME} train_cnn.py:100-101 (saves every 5th epoch; no selection on "
                                 "validation)"),
    "augment": Setting("paper", f"{SCP} data_augmentation_1.py:17-27 (flips, rotation 180, scale 0.8-1.2, "
                                "shear 10, AutoAugment, cutout 16)"),
    "normalize": Setting(False, f"{SCP} data_augmentation_1.py:10-11 (mean 0, std 1: no normalisation)"),
    "resize_factor": Setting(1.0, f"{SCP} data.py:117-118,172-174 (Resize and crop to the same size)"),
    "label_level": Setting("low", f"{SCP} data.py:165 (label_level='low'); train.sh class_num 114 / 8"),
    "width": Setting(1.0, "torchvision's full size (model.py:61,71)"),
}

RECIPES: dict[str, Recipe] = {
    "scp-fitzpatrick17k": Recipe(
        name="scp-fitzpatrick17k",
        summary="Sensitive Channel Pruning's Fitzpatrick-17k baseline: VGG-11 (batch norm, random init), "
                "224 px, SGD 0.01, 200 epochs",
        settings={
            "data": Setting("fitzpatrick17k", f"{FME} train.sh:3 (--dataset fitzpatrick17k)"),
            "model": Setting("vgg11_bn", f"{SCP} model.py:71 / {FME} model.py:71 (the 'vgg11' class builds "
                                         "models.vgg11_bn())"),
            "weights": Setting("none", f"{SCP} model.py:71 (models.vgg11_bn() without pretrained weights)"),
            "image_size": Setting(224, f"{SCP} data.py:134,169-170 (input_size=224; the paper says 128, "
                                       "seeds/000 line 79)"),
            **_FME_TRAINING,
        },
        notes=("The published code's 'vgg11' is torchvision's vgg11_bn built without ImageNet weights; use "
               "--model vgg11 --weights imagenet for the plain, pretrained VGG-11 the paper's text suggests.",
               "SCP scores and cuts features.18 (train_cnn.py:213); in vgg11_bn that is the 6th conv layer.")),
    "scp-isic2019": Recipe(
        name="scp-isic2019",
        summary="Sensitive Channel Pruning's ISIC 2019 baseline: ResNet-18 from ImageNet weights, 128 px, "
                "SGD 0.01, 200 epochs",
        settings={
            "data": Setting("isic2019", f"{FME} train.sh:1 (--dataset isic2019)"),
            "model": Setting("resnet18", f"{FME} train.sh:1 (--model resnet18); model.py:58-63"),
            "weights": Setting("imagenet", f"{FME} model.py:59,61 (models.resnet18(pretrained=True)); head "
                                           "replaced at model.py:62-63"),
            "image_size": Setting(128, f"{SCP} data.py:105,108,117-118 (input_size=128); paper seeds/000 "
                                       "line 79 (128x128)"),
            **_FME_TRAINING,
        },
        notes=("The ImageNet weights are fed 128-px images without ImageNet normalisation, as in the published "
               "code; --image-size 224 gives the weights' own preprocessing size.",)),
    "skew-isic2019": Recipe(
        name="skew-isic2019",
        summary="Skewness pruning's ISIC 2019 setting (arXiv 2509.00745): VGG-11 or ViT-B/16 from ImageNet "
                "weights at 224 px; training values the paper does not state are FME's",
        settings={
            "data": Setting("isic2019", "paper, seeds/001 line 35 (evaluated on ISIC2019)"),
            "model": Setting("vgg11", "paper, seeds/001 line 35 (VGG11; ViT-B16 with --model vit_b_16)"),
            "weights": Setting("imagenet", "equiprune: the paper does not say; no code is published, and "
                                           "ViT-B/16 is not trained from scratch on 25k images"),
            "image_size": Setting(224, "equiprune: the ImageNet weights' own crop (ViT-B/16's position "
                                       "embedding is for 224 px); not stated in the paper"),
            "resize_factor": Setting(256 / 224, "equiprune: torchvision's weight transforms (resize 256, "
                                                "crop 224)"),
            "normalize": Setting(True, "equiprune: the ImageNet weights' mean/std"),
            **{k: Setting(v.value, f"borrowed from {v.source}: not stated in the paper")
               for k, v in _FME_TRAINING.items()
               if k not in ("normalize", "resize_factor", "augment")},
            "augment": Setting("paper", "equiprune: the dermatology augmentation of the SCP/FME code; the "
                                        "paper does not say"),
        },
        notes=("Only the dataset and the two architectures are stated by the paper (the text equiprune has is a "
               "summary, seeds/001); no code is public. Every other value is marked with where it was borrowed "
               "from.",)),
}

#: Where settings live: `DataConfig`, `ModelConfig` or `TrainConfig` fields.
DATA_KEYS = ("data", "image_size", "augment", "normalize", "resize_factor", "label_level")
MODEL_KEYS = ("model", "width", "weights")
TRAIN_KEYS = ("epochs", "batch_size", "lr", "optimizer", "momentum", "nesterov", "weight_decay", "schedule",
              "step_size", "gamma", "balanced_sampler", "select_on", "freeze_epochs", "head_lr")


def get_recipe(name: str) -> Recipe:
    """The recipe called `name`, or RecipeError listing the known ones."""
    if name not in RECIPES:
        raise RecipeError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return RECIPES[name]


def resolve_settings(recipe: Recipe | None, given: dict[str, Any],
                     defaults: dict[str, Any]) -> dict[str, tuple[Any, str]]:
    """Each setting's value and origin: given (not None) > recipe > default.

    Returns ``{key: (value, origin)}`` with origin ``"command line"``,
    ``"recipe NAME: SOURCE"`` or ``"default"``, for every key in `given`,
    `defaults` or the recipe.
    """
    keys = list(dict.fromkeys([*defaults, *given, *(recipe.settings if recipe else {})]))
    out: dict[str, tuple[Any, str]] = {}
    for key in keys:
        if given.get(key) is not None:
            out[key] = (given[key], "command line")
        elif recipe is not None and key in recipe.settings:
            s = recipe.settings[key]
            out[key] = (s.value, f"recipe {recipe.name}: {s.source}")
        else:
            out[key] = (defaults.get(key), "default")
    return out


def format_settings(resolved: dict[str, tuple[Any, str]], recipe: Recipe | None) -> str:
    """The resolved settings as aligned text lines (what `train --print-config` prints)."""
    lines = [f"recipe {recipe.name}: {recipe.summary}" if recipe else "no recipe (equiprune's defaults)"]
    for title, keys in (("data", DATA_KEYS), ("model", MODEL_KEYS), ("training", TRAIN_KEYS)):
        lines.append(f"{title}:")
        for key in keys:
            if key in resolved:
                value, origin = resolved[key]
                shown = f"{value:.6g}" if isinstance(value, float) else str(value)
                lines.append(f"  {key:<17}{shown:<16}{origin}")
    for note in recipe.notes if recipe else ():
        lines.append(f"note: {note}")
    return "\n".join(lines)
