"""Skin-tone colour augmentation as a mitigation: fine-tune on images whose skin is moved to other ITA categories.

Source: the skin-colour augmentation of the dermequity package (its
best-reported mitigation) and the idea of CIRCLe (Pakzad et al., ECCV
Workshops 2022: the same lesion shown on other skin tones), without CIRCLe's
generative model: `data.skin_tone.SkinToneAugment` shifts the L*/b* of the
skin pixels (the skin mask of `data.skin_tone`, lesion and artefacts left out)
to the centre of another of the six ITA categories, ±4°, with probability
`p`; the lesion pixels are kept as they are. The loss is the plain
cross-entropy, so the method differs from `plain` only in what the training
images look like.

Group at inference: NOT needed, and the group labels are not read in
training either (the skin tone is changed from the pixels), so noisy or
attacked group labels cannot touch it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn
from torchvision.transforms import v2

from ...data.skin_tone import SkinToneAugment
from .base import MethodSpec, Mitigation, MitigationConfig


@dataclass
class SkinToneConfig(MitigationConfig):
    """Fine-tuning with the skin moved to another ITA category in a share `p` of the training images."""

    p: float = 0.5

    HELP = {"p": "share of training images whose skin is moved to another ITA category (default 0.5)"}

    def validate(self) -> None:
        super().validate()
        self.check("p", self.p, 0.0 < self.p <= 1.0, "in (0, 1]")


class SkinToneAugmentation(Mitigation):
    """Changes only the training split's transform (`TrainPlugin.train_data`); loss and sampling stay plain."""

    def __init__(self, p: float) -> None:
        self.p = p
        self.already = False

    def train_data(self, train_set: Any) -> Any:
        transform = getattr(train_set, "transform", None)
        # A model trained with `--augment skin-tone` already has it in its training transform: not applied twice.
        self.already = "SkinToneAugment" in repr(transform)
        if self.already:
            return train_set
        shift = SkinToneAugment(p=self.p)  # on the stored uint8 image, before the split's crop, flips, normalising
        return train_set.with_transform(v2.Compose([shift, transform]) if transform is not None else shift)

    def finish(self, model: nn.Module, splits: Any) -> dict[str, Any]:
        return {"p": self.p, "already_in_train_transform": self.already}


def build(model: nn.Module, splits: Any, cfg: SkinToneConfig) -> Mitigation:
    return SkinToneAugmentation(cfg.p)


SPECS = (MethodSpec(name="skin-tone", label="Skin-tone augmentation", config=SkinToneConfig, build=build,
                    group_at_inference=False, reads_groups=False,
                    summary="fine-tune with the skin of a share of the images moved to other ITA categories "
                            "(lesion kept)",
                    source="dermequity's skin-colour augmentation; CIRCLe (Pakzad et al. 2022) without the GAN"),)
