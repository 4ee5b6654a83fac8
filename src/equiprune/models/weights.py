"""Start a model from ImageNet weights or from a user's torchvision-format state dict.

The papers behind equiprune fine-tune ImageNet-pretrained torchvision
backbones, and users arrive with models trained elsewhere. Both come as a
torchvision state dict: the same key names as `build_model` produces at
width 1.0 (``features.0.weight``, ``layer4.1.conv2.weight``,
``heads.head.weight``), because the zoo keeps torchvision's module names.

* ``imagenet`` resolves the architecture's torchvision weight enum, fetches
  the file through torch hub (its cache is ``$TORCH_HOME/hub/checkpoints``,
  so a file put there by hand is used offline) and reports the weights' own
  preprocessing (`Preprocessing`).
* a path is read with ``torch.load(weights_only=True)`` (no code is ever
  unpickled), unwrapped from ``state_dict`` / ``model`` entries and stripped
  of DataParallel's ``module.`` prefix.

`load_pretrained` then copies the tensors into the model. The classifier head
(the last ``nn.Linear``) is kept fresh when its shape differs (1000 ImageNet
classes against the dataset's K); any other difference is an error naming the
first differing keys and their shapes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .zoo import ModelError

__all__ = ["IMAGENET_WEIGHTS", "LoadReport", "Preprocessing", "WeightsError", "head_name", "imagenet_preprocessing",
           "imagenet_state_dict", "load_pretrained", "read_state_dict", "resolve_weights"]

#: Architecture -> torchvision weight enum and member used for ``--weights imagenet``
#: (the 224-px ImageNet-1k weights; ViT's SWAG weights expect 384 px and are not offered).
IMAGENET_WEIGHTS: dict[str, tuple[str, str]] = {
    "vgg11": ("VGG11_Weights", "IMAGENET1K_V1"),
    "vgg11_bn": ("VGG11_BN_Weights", "IMAGENET1K_V1"),
    "resnet18": ("ResNet18_Weights", "IMAGENET1K_V1"),
    "vit_b_16": ("ViT_B_16_Weights", "IMAGENET1K_V1"),
}


class WeightsError(ModelError):
    """Pretrained weights cannot be found, read, or do not fit the model."""


@dataclass(frozen=True)
class Preprocessing:
    """The input pipeline a set of weights was trained with (torchvision's `transforms()`)."""

    image_size: int                 # centre-crop side fed to the network
    resize_size: int                # shorter side before the crop
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str

    @property
    def resize_factor(self) -> float:
        """`DataConfig.resize_factor`: stored side / input side (256/224 for torchvision's weights)."""
        return self.resize_size / self.image_size


@dataclass
class LoadReport:
    """What `load_pretrained` did: the source, and which keys it left at their fresh values."""

    source: str
    loaded: int = 0
    head_replaced: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "loaded": self.loaded, "head_replaced": list(self.head_replaced)}


def _weights_enum(name: str):
    from torchvision import models as tvm

    if name not in IMAGENET_WEIGHTS:
        raise WeightsError(f"--weights imagenet is available for {', '.join(IMAGENET_WEIGHTS)}, not {name!r}; "
                           "train it from scratch (--weights none) or give a state dict file (--weights PATH).")
    enum_name, member = IMAGENET_WEIGHTS[name]
    return getattr(getattr(tvm, enum_name), member)


def imagenet_preprocessing(name: str) -> Preprocessing:
    """The resize, crop and mean/std of `name`'s ImageNet weights (read from torchvision, no download)."""
    t = _weights_enum(name).transforms()
    return Preprocessing(image_size=int(t.crop_size[0]), resize_size=int(t.resize_size[0]),
                         mean=tuple(float(v) for v in t.mean), std=tuple(float(v) for v in t.std),
                         interpolation=str(t.interpolation.value))


def hub_checkpoint_dir() -> Path:
    """Where torch hub looks for downloaded weights: ``$TORCH_HOME/hub/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def imagenet_state_dict(name: str, progress: bool = True) -> dict[str, torch.Tensor]:
    """The ImageNet state dict of `name`, from torch hub's cache or downloaded into it.

    A failed download (no network, a proxy, a truncated file) becomes one
    WeightsError that names the file, its URL and the folder to put it in.
    """
    weights = _weights_enum(name)
    filename = weights.url.rsplit("/", 1)[-1]
    folder = hub_checkpoint_dir()
    try:
        return dict(weights.get_state_dict(progress=progress, check_hash=False))
    except Exception as exc:  # URLError, OSError, HTTPError, RuntimeError from a truncated file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(
            f"could not load the ImageNet weights of {name} ({weights}): {reason}. This machine may be offline. "
            f"Download {filename} from {weights.url} on a machine with internet access and put it in {folder} "
            f"(torch hub's checkpoints folder; set TORCH_HOME to use another place, the file then goes in "
            f"$TORCH_HOME/hub/checkpoints), then run the same command again. Or start from a state dict file "
            f"with --weights PATH.") from None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A torchvision-format state dict from `path`, read with ``weights_only=True``.

    Accepts a bare state dict, one under a ``state_dict`` or ``model`` entry
    (training-loop checkpoints; an equiprune model.pt has its weights under
    ``state_dict``), and keys prefixed with ``module.`` (DataParallel /
    DistributedDataParallel).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist; give a torchvision-format state dict "
                           "(torch.save(model.state_dict(), PATH)), 'imagenet' or 'none'.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for pickled modules, RuntimeError for other files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(
            f"{path} cannot be read as a plain state dict with torch.load(weights_only=True): {first}. "
            "If it is a whole pickled model (torch.save(model)), re-save only its weights where it was made: "
            "torch.save(model.state_dict(), PATH). equiprune never unpickles code from a file.") from None
    for key in ("state_dict", "model"):
        if isinstance(payload, Mapping) and isinstance(payload.get(key), Mapping):
            payload = payload[key]
            break
    if not isinstance(payload, Mapping) or not payload:
        raise WeightsError(f"{path} holds no state dict (expected a dict of tensors, or one under "
                           f"'state_dict' or 'model'; found {type(payload).__name__}).")
    tensors = {str(k): v for k, v in payload.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise WeightsError(f"{path} holds a dict without tensors; it is not a state dict.")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors


def head_name(model: nn.Module) -> str:
    """Module path of the classifier head: the last ``nn.Linear`` (``classifier.6``, ``fc``, ``heads.head``).

    Side branches (a multi-exit network's internal classifiers) are not the head.
    """
    from .zoo import main_path_modules
    linears = [n for n, m in main_path_modules(model) if isinstance(m, nn.Linear)]
    if not linears:
        raise ModelError("model has no Linear layer to serve as its classifier head")
    return linears[-1]


def _shape(t: torch.Tensor) -> str:
    return "x".join(map(str, t.shape)) or "scalar"


def load_pretrained(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str,
                    replace_head: bool = True) -> LoadReport:
    """Copy `state_dict` into `model`; with `replace_head`, the head is kept fresh when its shape differs.

    Raises WeightsError naming the first keys whose shapes differ, and the
    first missing and unexpected keys, when anything besides the head does
    not fit (another architecture, another width, another input size for VGG).
    """
    own = model.state_dict()
    head = head_name(model) + "."
    replaced = sorted(k for k in own if replace_head and k.startswith(head) and k in state_dict
                      and state_dict[k].shape != own[k].shape)
    wrong = [k for k in own if k in state_dict and state_dict[k].shape != own[k].shape and k not in replaced]
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    if wrong or missing or unexpected:
        parts = []
        if wrong:
            parts.append(f"{len(wrong)} shape mismatch(es): " + "; ".join(
                f"{k} is {_shape(state_dict[k])} in the file, {_shape(own[k])} in the model" for k in wrong[:3]))
        if missing:
            parts.append(f"{len(missing)} key(s) missing from the file, first {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"{len(unexpected)} key(s) the model does not have, first {', '.join(unexpected[:3])}")
        raise WeightsError(
            f"the weights from {source} do not fit this model: " + "; ".join(parts) + ". Is it the same "
            "architecture (--model / --arch) at the same width (--width)"
            + (" and, for VGG, an input size of at least 224 px (its first classifier layer is sized for a 7x7 "
               "map)" if any(k.startswith("classifier.0") for k in wrong) else "") + "?")
    merged = {k: (own[k] if k in replaced else state_dict[k].to(own[k].dtype)) for k in own}
    model.load_state_dict(merged)
    return LoadReport(source=source, loaded=len(own) - len(replaced), head_replaced=replaced)


def resolve_weights(spec: str | None, name: str, width: float) -> tuple[dict[str, torch.Tensor] | None, str]:
    """``none`` -> (None, "none"); ``imagenet`` / a path -> (state dict, description).

    ImageNet weights exist for torchvision's size only, so another `width` is
    refused before anything is downloaded.
    """
    if spec is None or spec == "none":
        return None, "none"
    if spec == "imagenet":
        if float(width) != 1.0:
            raise WeightsError(f"--weights imagenet needs --width 1.0 (torchvision's {name}); got --width {width:g}. "
                               "Narrower models have no pretrained weights: train them from scratch.")
        return imagenet_state_dict(name), f"imagenet ({_weights_enum(name)})"
    return read_state_dict(spec), str(Path(spec).resolve())
