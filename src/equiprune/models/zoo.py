"""Build torchvision classifiers by name, randomly initialised, with a width multiplier.

The width multiplier scales every hidden channel count (conv filters, the VGG
classifier's hidden units, ViT's embedding and MLP sizes) so that the papers'
architectures can be trained on a CPU. `width=1.0` gives torchvision's exact
architecture (apart from the pooling size, see `_vgg`).
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn
from torchvision.models import resnet as tv_resnet
from torchvision.models import vgg as tv_vgg
from torchvision.models import vision_transformer as tv_vit


class ModelError(ValueError):
    """A model name, layer path or checkpoint does not fit."""


def _scale(channels: int, width: float, minimum: int = 4) -> int:
    return max(minimum, int(round(channels * width)))


class _ScaledVGG(tv_vgg.VGG):
    """torchvision's VGG (same module names and forward) built without its 224-px classifier.

    torchvision's constructor always allocates a 25088x4096 layer first; at CPU
    widths that alone took seconds, so the modules are set up here directly.
    """

    def __init__(self, features: nn.Module, spatial: int, last: int, hidden: int, num_classes: int) -> None:
        nn.Module.__init__(self)
        self.features = features
        # torchvision pools to 7x7 for 224 px input; at small sizes that would only
        # replicate a 2x2 map into 49 copies, so pool to the map's natural size.
        self.avgpool = nn.AdaptiveAvgPool2d((spatial, spatial))
        self.classifier = nn.Sequential(
            nn.Linear(last * spatial * spatial, hidden), nn.ReLU(True), nn.Dropout(0.5),
            nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(0.5),
            nn.Linear(hidden, num_classes),
        )
        for m in self.modules():  # torchvision's VGG initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)


def _vgg(cfg_key: str, batch_norm: bool, num_classes: int, width: float, image_size: int) -> nn.Module:
    cfg = [v if v == "M" else _scale(int(v), width) for v in tv_vgg.cfgs[cfg_key]]
    spatial = max(1, min(7, image_size // 32))
    last = [v for v in cfg if v != "M"][-1]
    return _ScaledVGG(tv_vgg.make_layers(cfg, batch_norm=batch_norm), spatial, last,
                      _scale(4096, width, minimum=16), num_classes)


class _ScaledResNet(tv_resnet.ResNet):
    """torchvision's ResNet with every stage's width multiplied by `width`."""

    def __init__(self, layers: list[int], num_classes: int, width: float) -> None:
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.dilation = 1
        self.groups = 1
        self.base_width = 64
        stem = _scale(64, width)
        self.inplanes = stem
        self.conv1 = nn.Conv2d(3, stem, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        planes = [_scale(c, width) for c in (64, 128, 256, 512)]
        self.layer1 = self._make_layer(tv_resnet.BasicBlock, planes[0], layers[0])
        self.layer2 = self._make_layer(tv_resnet.BasicBlock, planes[1], layers[1], stride=2)
        self.layer3 = self._make_layer(tv_resnet.BasicBlock, planes[2], layers[2], stride=2)
        self.layer4 = self._make_layer(tv_resnet.BasicBlock, planes[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(planes[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


def _resnet18(num_classes: int, width: float, image_size: int) -> nn.Module:
    return _ScaledResNet([2, 2, 2, 2], num_classes, width)


def _vit(patch: int, layers: int, heads: int, hidden: int, mlp: int, num_classes: int,
         width: float, image_size: int) -> nn.Module:
    hidden_w = max(heads, int(round(hidden * width / heads)) * heads)
    if image_size % patch:
        raise ModelError(f"image_size {image_size} is not a multiple of the ViT patch size {patch}")
    return tv_vit.VisionTransformer(
        image_size=image_size, patch_size=patch, num_layers=layers, num_heads=heads,
        hidden_dim=hidden_w, mlp_dim=_scale(mlp, width), num_classes=num_classes,
    )


_BUILDERS: dict[str, Callable[[int, float, int], nn.Module]] = {
    "vgg11": lambda c, w, s: _vgg("A", False, c, w, s),
    "vgg11_bn": lambda c, w, s: _vgg("A", True, c, w, s),
    "resnet18": _resnet18,
    # torchvision's ViT-B/16: patch 16, 12 layers, 12 heads, 768 hidden, 3072 MLP.
    "vit_b_16": lambda c, w, s: _vit(16, 12, 12, 768, 3072, c, w, s),
    # A CPU-size ViT for tests and demos: patch 8, 4 layers, 3 heads, 192 hidden.
    "vit_tiny": lambda c, w, s: _vit(8, 4, 3, 192, 768, c, w, s),
}

MODEL_NAMES: tuple[str, ...] = tuple(_BUILDERS)


# The input size of a model built without one, and the last resort of `input_size`.
DEFAULT_IMAGE_SIZE = 64


def build_model(name: str, num_classes: int, width: float = 1.0, image_size: int = DEFAULT_IMAGE_SIZE) -> nn.Module:
    """Build a randomly initialised classifier (no weight downloads).

    `width` multiplies hidden channel counts; `image_size` is the square input
    size the model will see (it sets VGG's pooling and ViT's patch grid).
    """
    if name not in _BUILDERS:
        raise ModelError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    if num_classes < 2:
        raise ModelError(f"num_classes must be at least 2, got {num_classes}")
    if not 0 < width <= 4:
        raise ModelError(f"width must be in (0, 4], got {width}")
    return _BUILDERS[name](num_classes, float(width), int(image_size))


def get_module(model: nn.Module, path: str) -> nn.Module:
    """The submodule at a module path such as ``features.18`` or ``layer4.1.conv2``."""
    try:
        return model.get_submodule(path)
    except AttributeError:
        convs = conv_layer_names(model)
        hint = f" Conv layers of this model: {', '.join(convs[-6:])}" if convs else ""
        raise ModelError(f"model has no layer {path!r}.{hint}") from None


def main_path_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """`named_modules()` without the subtrees of side branches (modules with ``side_branch = True``).

    A multi-exit network's internal classifiers (`models.multi_exit.ExitHeads`)
    are such a branch: its convs and linears are not "the last conv layer" a
    pruning method cuts by default, nor "the classifier's last linear layer"
    a method taps for the penultimate feature.
    """
    out: list[tuple[str, nn.Module]] = []
    skip: list[str] = []
    for name, module in model.named_modules():
        if any(name == s or name.startswith(s + ".") for s in skip):
            continue
        if getattr(module, "side_branch", False):
            skip.append(name)
            continue
        out.append((name, module))
    return out


def conv_layer_names(model: nn.Module) -> list[str]:
    """Module paths of every Conv2d on the model's main path (not in a side branch), in definition order."""
    return [n for n, m in main_path_modules(model) if isinstance(m, nn.Conv2d)]


def last_conv_name(model: nn.Module) -> str:
    """Module path of the last Conv2d (the default layer of Sensitive Channel Pruning)."""
    convs = conv_layer_names(model)
    if not convs:
        raise ModelError("model has no convolution layer to prune")
    return convs[-1]


def input_size(arch: dict[str, Any] | None = None, model: nn.Module | None = None, data: Any = None,
               default: int = DEFAULT_IMAGE_SIZE) -> int:
    """The square input size a model is traced, costed and fed at: one rule for every method.

    A model that fixes its size says it (a ViT's patch grid, ``model.image_size``);
    else the build recipe `arch` (config.json's ``arch``, a checkpoint's arch)
    records it; else an item of `data` (a DataSplits: its test, val or train
    split; or one dataset) shows it; else `default` (`DEFAULT_IMAGE_SIZE`, the
    size `build_model` uses when given none). A run folder's size is
    `equiprune.methods.runs.LoadedRun.image_size`.
    """
    fixed = getattr(model, "image_size", None) if model is not None else None
    if isinstance(fixed, int) and fixed > 0:
        return fixed
    if arch and arch.get("image_size"):
        return int(arch["image_size"])
    if data is not None:
        parts = [getattr(data, name, None) for name in ("test", "val", "train")]
        for ds in [p for p in parts if p is not None] or [data]:
            if hasattr(ds, "__len__") and len(ds):
                return int(ds[0][0].shape[-1])
    return int(default)


def example_input(image_size: int, batch: int = 1, device: torch.device | str = "cpu") -> torch.Tensor:
    """A random input batch of the right shape, for tracing and cost counting."""
    return torch.randn(batch, 3, image_size, image_size, device=device)
