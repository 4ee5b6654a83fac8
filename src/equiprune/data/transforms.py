"""Augmentation presets on uint8 image tensors (torchvision.transforms.v2).

Every transform takes a uint8 ``C x H x W`` tensor (as stored in the caches)
and returns a float32 tensor, normalised with the ImageNet mean/std unless
``normalize=False``.

Presets (``augment``):

* ``"paper"``: the training augmentation of the reference code (the ISIC 2019
  / Fitzpatrick-17k pipeline of the fairness-pruning papers): Resize to
  ``resize_size`` (256/224 of the input in the papers) -> RandomCrop ->
  horizontal + vertical flips -> RandomAffine (rotation up to 180 degrees,
  scale 0.8-1.2, shear 10; nearest or bilinear chosen at random) ->
  ColorJitter (brightness 32/255, saturation 0.5) -> AutoAugment (ImageNet
  policy) -> cutout of one square of side 16/224 of the input
  (``RandomErasing`` with value 0, i.e. black as in the reference) ->
  normalise. Differences from the reference: the reference also picks
  bicubic for the affine (not available for tensors), its cutout square may
  be cut by the border while ``RandomErasing`` keeps it inside, and the
  reference does not normalise (mean 0, std 1): pass ``normalize=False`` for that.
* ``"light"`` (synthderm default): flips + a small random crop (from the
  stored ``resize_size`` if it is larger than ``image_size``, else from a
  reflect-padded image).
* ``"none"``: the test transform.
* ``"skin-tone"``: ``light`` after, with probability 0.5, moving the skin of
  the image to another ITA category with the lesion kept
  (:class:`equiprune.data.skin_tone.SkinToneAugment`).

Test transform: Resize(resize_size) -> CenterCrop(image_size) -> normalise.
"""
from __future__ import annotations

from typing import Callable

import torch
from torchvision.transforms import v2

from .errors import DataError

__all__ = [
    "build_transforms", "test_transform", "train_transform", "TestTransform", "LightAugment",
    "PRESETS", "IMAGENET_MEAN", "IMAGENET_STD",
]

PRESETS: tuple[str, ...] = ("paper", "light", "none", "skin-tone")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class _ToFloat:
    """uint8 -> float32 in [0, 1], then ImageNet normalisation (optional)."""

    def __init__(self, normalize: bool) -> None:
        self.normalize = normalize
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        img = img.to(torch.float32).div_(255.0) if img.dtype == torch.uint8 else img.to(torch.float32)
        if self.normalize:
            img = (img - self.mean) / self.std
        return img


class TestTransform:
    """Resize (shorter side to ``resize_size``, skipped when already square at that size) +
    centre crop + normalise; a few tensor ops, no v2 dispatch per call."""

    def __init__(self, image_size: int, resize_size: int, normalize: bool) -> None:
        self.image_size, self.resize_size = image_size, resize_size
        self.finish = _ToFloat(normalize)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if tuple(img.shape[-2:]) != (self.resize_size, self.resize_size):
            img = v2.functional.resize(img, [self.resize_size], antialias=True)
        h, w = img.shape[-2:]
        s = self.image_size
        top, left = int(round((h - s) / 2.0)), int(round((w - s) / 2.0))
        return self.finish(img[..., top : top + s, left : left + s])

    def __repr__(self) -> str:
        return f"TestTransform(image_size={self.image_size}, resize_size={self.resize_size}, normalize={self.finish.normalize})"


def _reflect(idx: torch.Tensor, n: int) -> torch.Tensor:
    """Indices reflected into [0, n) without repeating the edge (numpy/torch "reflect")."""
    idx = idx.abs()
    return torch.where(idx >= n, 2 * (n - 1) - idx, idx)


class LightAugment(TestTransform):
    """The ``light`` preset: random crop (from the stored size, or from a
    reflect-padded image when stored at the input size) + random horizontal
    and vertical flips + normalise."""

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if tuple(img.shape[-2:]) != (self.resize_size, self.resize_size):
            img = v2.functional.resize(img, [self.resize_size], antialias=True)
        s = self.image_size
        img = self.finish(img)
        h, w = img.shape[-2:]
        r = torch.randint(0, 1 << 30, (4,))
        if h == s and w == s:
            # Crop from a reflect-padded image, done as one row and one column
            # gather: F.pad(mode="reflect") enters an OpenMP region even for a
            # 64x64 image and costs ~100x more on a busy machine.
            pad = max(1, s // 16)
            rows = _reflect(torch.arange(s) + int(r[0]) % (2 * pad + 1) - pad, h)
            cols = _reflect(torch.arange(s) + int(r[1]) % (2 * pad + 1) - pad, w)
        else:
            top, left = int(r[0]) % (h - s + 1), int(r[1]) % (w - s + 1)
            rows, cols = torch.arange(top, top + s), torch.arange(left, left + s)
        if int(r[2]) & 1:
            cols = cols.flip(0)
        if int(r[3]) & 1:
            rows = rows.flip(0)
        return img.index_select(-2, rows).index_select(-1, cols)

    def __repr__(self) -> str:
        return "Light" + super().__repr__().replace("TestTransform", "Augment")


def _finish(normalize: bool) -> list:
    out: list = [v2.ToDtype(torch.float32, scale=True)]
    if normalize:
        out.append(v2.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD))
    return out


def test_transform(image_size: int, resize_size: int | None = None, normalize: bool = True) -> Callable:
    """Resize (shorter side to ``resize_size``) + centre crop ``image_size`` + normalise."""
    resize_size = resize_size or image_size
    if resize_size < image_size:
        raise DataError(f"resize_size {resize_size} must be >= image_size {image_size}")
    return TestTransform(image_size, resize_size, normalize)


def train_transform(
    preset: str, image_size: int, resize_size: int | None = None, normalize: bool = True
) -> Callable:
    """The training transform of ``preset`` (``"paper"``, ``"light"`` or ``"none"``)."""
    resize_size = resize_size or image_size
    if preset == "none":
        return test_transform(image_size, resize_size, normalize)
    if preset == "light":
        return LightAugment(image_size, resize_size, normalize)
    if preset == "skin-tone":  # the light preset after moving the skin to another ITA category (lesion kept)
        from .skin_tone import SkinToneAugment
        return v2.Compose([SkinToneAugment(p=0.5), LightAugment(image_size, resize_size, normalize)])
    if preset == "paper":
        affine = dict(degrees=180, scale=(0.8, 1.2), shear=10)
        side = 16.0 / 224.0  # cutout side relative to the input, as 16 px at 224 in the reference
        finish = _finish(normalize)
        return v2.Compose(
            [
                v2.Resize(resize_size, antialias=True),
                v2.RandomCrop(image_size),
                v2.RandomHorizontalFlip(),
                v2.RandomVerticalFlip(),
                v2.RandomChoice(
                    [
                        v2.RandomAffine(**affine, interpolation=v2.InterpolationMode.NEAREST),
                        v2.RandomAffine(**affine, interpolation=v2.InterpolationMode.BILINEAR),
                    ]
                ),
                v2.ColorJitter(brightness=32.0 / 255.0, saturation=0.5),
                v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET),
                finish[0],
                # erase before normalising so the square is black, as the reference's cutout
                v2.RandomErasing(p=1.0, scale=(side**2, side**2), ratio=(1.0, 1.0), value=0),
                *finish[1:],
            ]
        )
    raise DataError(f"unknown augmentation preset {preset!r}; choose one of {list(PRESETS)}")


def build_transforms(
    preset: str, image_size: int, resize_size: int | None = None, normalize: bool = True
) -> tuple[Callable, Callable]:
    """``(train_transform, test_transform)`` for a preset."""
    return (
        train_transform(preset, image_size, resize_size, normalize),
        test_transform(image_size, resize_size, normalize),
    )
