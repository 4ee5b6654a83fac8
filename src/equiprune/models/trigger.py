"""The fairness trigger and the reprogrammed (trigger + frozen model) module.

It lives with the models, not with the method that trains it
(`equiprune.methods.reprogram`): a reprogrammed run's model.pt is the frozen
model with the trigger's payload in its `extra`, and every verb that opens a
run folder (`methods.runs.open_run`) must put the trigger back in front of it
without depending on the reprogramming method.

The trigger lives in PIXEL space. Our datasets hand the model ImageNet-
normalised tensors (``(pixel - mean) / std``); the wrapper maps its input back
to pixels, applies the trigger there, and normalises again before the frozen
model. This keeps the reference code's semantics, where images are in [0, 1]
and the trigger values ``tanh(W)`` lie in [-1, 1] in the same units, the frame
around a shrunk image is black (pixel 0), and the saved trigger can be shown as
an image directly. A trigger trained in normalised space would instead have an
amplitude that differs per channel by 1/std.

Geometry (``size`` is the trigger's thickness, as the reference README
describes it):

- ``border``: a frame ``size`` pixels wide. With ``shrink`` (the reference's
  "repro" method) the image is first resized to ``image_size - 2*size`` and
  padded with black, so nothing of the image is covered; the trigger is ADDED
  to the frame (on black padding this is the trigger value itself). Without
  ``shrink`` the trigger is added to the image's own outer pixels.
  (The reference code passes its ``--reprogram-size`` as the size of the shrunk
  image, not the frame width its README describes; here it is the width.)
- ``patch``: a ``size``×``size`` square at a corner or the centre whose pixels
  are REPLACED by the trigger values (the reference's "rpatch"). The reference
  places its non-top-left corners one pixel inward (``large - 1 - size``); here
  corners are exact.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import load_checkpoint

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TRIGGER_KINDS = ("border", "patch")
TRIGGER_INITS = ("uniform", "zero")
PATCH_LOCATIONS = ("top_left", "top_right", "bottom_left", "bottom_right", "center")
PAYLOAD_FORMAT = 1


class ReprogramError(ValueError):
    """Bad reprogramming settings or a checkpoint without a trigger."""


def find_normalization(transform: Any) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """(mean, std) of the first Normalize-like step inside `transform`, or None.

    Looks through Compose-like objects (a ``transforms`` list) and any object
    with ``mean`` and ``std`` attributes, so it works with torchvision and with
    the data package's own transforms.
    """
    seen: set[int] = set()
    stack: list[Any] = [transform]
    while stack:
        t = stack.pop(0)
        if t is None or id(t) in seen:
            continue
        seen.add(id(t))
        mean, std = getattr(t, "mean", None), getattr(t, "std", None)
        if mean is not None and std is not None and not callable(mean) and not callable(std):
            m = torch.as_tensor(mean, dtype=torch.float64).flatten().tolist()
            s = torch.as_tensor(std, dtype=torch.float64).flatten().tolist()
            return tuple(m), tuple(s)
        inner = getattr(t, "transforms", None)
        if isinstance(inner, (list, tuple)):
            stack[:0] = list(inner)
        elif isinstance(t, (list, tuple)):
            stack[:0] = list(t)
    return None


def _region_mask(kind: str, image_size: int, size: int, location: str) -> torch.Tensor:
    mask = torch.zeros(1, image_size, image_size)
    if kind == "border":
        mask[:] = 1.0
        mask[:, size:image_size - size, size:image_size - size] = 0.0
        return mask
    last = image_size - size
    r0, c0 = {"top_left": (0, 0), "top_right": (0, last), "bottom_left": (last, 0),
              "bottom_right": (last, last), "center": (last // 2, last // 2)}[location]
    mask[:, r0:r0 + size, c0:c0 + size] = 1.0
    return mask


def check_geometry(kind: str, image_size: int, size: int, location: str = "top_left") -> None:
    """Raise ReprogramError unless the trigger fits the image."""
    if kind not in TRIGGER_KINDS:
        raise ReprogramError(f"trigger must be one of {TRIGGER_KINDS}, got {kind!r}")
    if image_size < 4:
        raise ReprogramError(f"image_size must be at least 4 pixels, got {image_size}")
    if kind == "border" and not 1 <= size < image_size / 2 - 1:
        raise ReprogramError(
            f"a border of width {size} does not fit a {image_size}px image: choose 1 <= size < "
            f"{image_size / 2 - 1:g} (the image inside the frame keeps at least 3 px)")
    if kind == "patch":
        if location not in PATCH_LOCATIONS:
            raise ReprogramError(f"patch location must be one of {PATCH_LOCATIONS}, got {location!r}")
        if not 1 <= size or 2 * size >= image_size:
            raise ReprogramError(
                f"a {size}px patch does not fit a {image_size}px image: choose 1 <= size < {image_size / 2:g}")


def default_size(kind: str, image_size: int) -> int:
    """The reference's proportions: a 20 px frame or a 30 px patch on 224 px images."""
    frac = 20 / 224 if kind == "border" else 30 / 224
    return max(1, int(round(image_size * frac)))


class Trigger(nn.Module):
    """A learned border frame or patch applied in pixel space to normalised images."""

    def __init__(self, kind: str = "border", image_size: int = 64, size: int | None = None,
                 location: str = "top_left", shrink: bool = True, mean: Iterable[float] = IMAGENET_MEAN,
                 std: Iterable[float] = IMAGENET_STD, channels: int = 3,
                 generator: torch.Generator | None = None, init: str = "uniform") -> None:
        super().__init__()
        size = default_size(kind, image_size) if size is None else int(size)
        check_geometry(kind, int(image_size), size, location)
        mean_t = torch.as_tensor(list(mean), dtype=torch.float32).view(-1, 1, 1)
        std_t = torch.as_tensor(list(std), dtype=torch.float32).view(-1, 1, 1)
        if mean_t.shape[0] not in (1, channels) or std_t.shape != mean_t.shape:
            raise ReprogramError(f"mean/std must have 1 or {channels} values each, got {mean_t.numel()} "
                                 f"and {std_t.numel()}")
        if bool((std_t <= 0).any()):
            raise ReprogramError("every std value must be positive")
        self.kind, self.image_size, self.size = kind, int(image_size), size
        self.location, self.shrink, self.channels = location, bool(shrink), int(channels)
        if init not in TRIGGER_INITS:
            raise ReprogramError(f"init must be one of {TRIGGER_INITS}, got {init!r}")
        # As in the reference: W ~ U(-1, 1), the trigger values are tanh(W).
        # "zero" (an extension) starts from tanh(0) = 0: an overlaid border
        # changes nothing, a shrinking frame or a patch starts black.
        w = torch.zeros(channels, self.image_size, self.image_size)
        if init == "uniform":
            w.uniform_(-1.0, 1.0, generator=generator)
        self.weight = nn.Parameter(w)
        self.register_buffer("mask", _region_mask(kind, self.image_size, size, location), persistent=False)
        self.register_buffer("mean", mean_t, persistent=False)
        self.register_buffer("std", std_t, persistent=False)

    def extra_repr(self) -> str:
        return (f"kind={self.kind}, image_size={self.image_size}, size={self.size}, "
                f"location={self.location}, shrink={self.shrink}")

    @property
    def inner_size(self) -> int:
        """Side of the image inside a shrinking frame."""
        return self.image_size - 2 * self.size

    def pattern(self) -> torch.Tensor:
        """Trigger values in pixel units (C×H×W), zero outside the trigger region."""
        return torch.tanh(self.weight) * self.mask

    def apply_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Apply the trigger to images in pixel space (N×C×H×W)."""
        if pixels.shape[-2:] != (self.image_size, self.image_size):
            raise ReprogramError(f"the trigger was made for {self.image_size}px images but got "
                                 f"{tuple(pixels.shape[-2:])}; rebuild it with the data's image_size")
        if self.kind == "border":
            if self.shrink:
                inner = F.interpolate(pixels, size=(self.inner_size, self.inner_size), mode="bilinear",
                                      align_corners=False, antialias=True)
                pixels = F.pad(inner, (self.size,) * 4, value=0.0)
            return pixels + self.pattern()
        return pixels * (1 - self.mask) + self.pattern()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images in, normalised triggered images out."""
        return (self.apply_pixels(x * self.std + self.mean) - self.mean) / self.std

    # serialisation -------------------------------------------------------
    def payload(self, settings: dict[str, Any] | None = None) -> dict[str, Any]:
        """Everything needed to rebuild the trigger (tensors and plain types only)."""
        return {"format": PAYLOAD_FORMAT, "kind": self.kind, "image_size": self.image_size, "size": self.size,
                "location": self.location, "shrink": self.shrink, "channels": self.channels,
                "mean": [float(v) for v in self.mean.flatten().tolist()],
                "std": [float(v) for v in self.std.flatten().tolist()],
                "weight": self.weight.detach().cpu().clone(), "settings": dict(settings or {})}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> "Trigger":
        """Rebuild a trigger saved by `payload`."""
        missing = [k for k in ("kind", "image_size", "size", "weight") if k not in payload]
        if missing:
            raise ReprogramError(f"trigger record lacks {missing}; was it written by equiprune reprogram?")
        t = cls(kind=payload["kind"], image_size=int(payload["image_size"]), size=int(payload["size"]),
                location=payload.get("location", "top_left"), shrink=bool(payload.get("shrink", True)),
                mean=payload.get("mean", IMAGENET_MEAN), std=payload.get("std", IMAGENET_STD),
                channels=int(payload.get("channels", 3)))
        with torch.no_grad():
            t.weight.copy_(payload["weight"])
        return t


class ReprogrammedModel(nn.Module):
    """A frozen classifier behind a fairness trigger: ``model(trigger(x))``.

    The wrapped model is kept in eval mode and its parameters do not require
    gradients, so it behaves the same whatever mode the wrapper is put in.
    """

    def __init__(self, trigger: Trigger, model: nn.Module) -> None:
        super().__init__()
        self.trigger = trigger
        self.model = model
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.model.eval()

    def train(self, mode: bool = True) -> "ReprogrammedModel":
        self.training = mode
        self.trigger.train(mode)
        self.model.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.trigger(x))


def wrap_with_trigger(model: nn.Module, payload: dict[str, Any]) -> ReprogrammedModel:
    """The model of a reprogrammed checkpoint: `model` (as loaded) behind the saved trigger."""
    trigger = Trigger.from_payload(payload)
    dev = next(model.parameters()).device
    return ReprogrammedModel(trigger.to(dev), model)


def apply_reprogram_extra(model: nn.Module, extra: dict[str, Any]) -> nn.Module:
    """`model` wrapped with the trigger recorded in a checkpoint's `extra`, if any."""
    payload = (extra or {}).get("reprogram")
    return wrap_with_trigger(model, payload) if payload else model


def load_reprogrammed(path: str | Path, map_location: str | torch.device = "cpu"
                      ) -> tuple[ReprogrammedModel, dict[str, Any], dict[str, Any]]:
    """Load a reprogrammed checkpoint (a run's model.pt or an export): (wrapped model, arch, extra)."""
    model, arch, extra = load_checkpoint(path, map_location=map_location)
    if not extra.get("reprogram"):
        raise ReprogramError(f"{path} holds no trigger; it is not the model of an `equiprune reprogram` run")
    return wrap_with_trigger(model, extra["reprogram"]), arch, extra
