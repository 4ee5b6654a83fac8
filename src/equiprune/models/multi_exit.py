"""Multi-exit networks: internal classifiers after each stage of a CNN, and confidence-thresholded early exit.

The architecture follows the Fair Multi-Exit code (Chiu et al., MICCAI 2023,
github.com/chiuhaohao/Fair-Multi-Exit-Framework, model.py): an exit after
each stage of the backbone (ResNet-18: after layer1..layer4; VGG-11: after
the 2nd..5th max-pooling, torchvision's features.5/10/15/20), each exit
being conv 3x3 (64) → adaptive average pool → conv 3x3 (32) → global average
pool → linear, with no non-linearity between (as in that code), plus the
backbone's own classifier as the final exit. Two changes make it run at
equiprune's small sizes: the convs are padded (at 16-64 px the last stage's
map is 1x1 or 2x2, too small for the code's unpadded 3x3), and the first
pool is 4x4 (the code resizes every stage map to 64x64 at 224 px); the exit
widths follow the model's width multiplier.

Early exit (the code's eval_me.early_exit_confidence_resnet): an item leaves
at the first internal exit whose top softmax probability is at least the
threshold θ (default 0.8, the code's `confidence_threshold`); an item no
internal exit is confident about takes the final exit. The rule needs no
group. Here every exit is computed for the whole batch and each item's
prediction is taken from its exit, so the predictions are those of early
exit (not its speed-up).

How it plugs in without changing the backbone's forward or module names:
`ExitHeads` is a child module `exits` of the backbone; forward hooks keep the
stage outputs, and a forward hook on the backbone replaces its output by the
early-exit prediction. So `model(x)` (and with it every verb that predicts:
audit, report, compare) applies the exit rule, the backbone's layer names
stay as they were (SCP on an FME run cuts the same `features.18`), and the
checkpoint is an ordinary state dict: `ExitHeads` is a registered module
type that the loader rebuilds and then re-wires with `relink`. It is a side
branch (`side_branch`), so `last_conv_name` and `final_linear_name` keep
meaning the backbone's last conv and classifier.
"""
from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .checkpoint import register_module_type
from .zoo import ModelError, example_input, input_size

DEFAULT_THRESHOLD = 0.8   # the FME code's me_resnet18 / me_vgg11 `confidence_threshold`
EXIT_POOL = 4             # spatial size of the exits' first pooling (the code's 64 at 224 px)


def exit_points(model: nn.Module) -> list[str]:
    """Module paths after which the internal classifiers sit: ResNet's stages, VGG's 2nd..last max-pooling."""
    names = dict(model.named_children())
    if all(f"layer{i}" in names for i in range(1, 5)):
        return [f"layer{i}" for i in range(1, 5)]
    features = names.get("features")
    if isinstance(features, nn.Sequential):
        pools = [f"features.{n}" for n, m in features.named_children() if isinstance(m, nn.MaxPool2d)]
        if len(pools) >= 2:
            return pools[1:]
    raise ModelError("a multi-exit network needs a VGG or ResNet backbone (stages to attach exits to); "
                     f"this model is a {type(model).__name__}")


def _branch(channels: int, hidden: tuple[int, int], pool: int, num_classes: int) -> nn.Sequential:
    h1, h2 = hidden
    return nn.Sequential(nn.Conv2d(channels, h1, 3, padding=1), nn.AdaptiveAvgPool2d(pool),
                         nn.Conv2d(h1, h2, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(h2, num_classes))


def early_exit(logits: list[Tensor], threshold: float) -> tuple[Tensor, Tensor]:
    """Each item's logits from its exit, and the exit index (the last entry of `logits` is the final exit).

    Exit k < E-1 is taken by an item when max softmax(logits[k]) >= threshold
    and no earlier exit was; an item no internal exit is confident about takes
    the final exit E-1.
    """
    stacked = torch.stack(logits, dim=1)                          # B x E x C
    conf = F.softmax(stacked.detach().float(), dim=-1).amax(-1)   # B x E
    confident = conf[:, :-1] >= threshold
    last = torch.full_like(confident[:, 0], len(logits) - 1, dtype=torch.long)
    index = torch.where(confident.any(1), confident.float().argmax(1), last)
    return stacked[torch.arange(stacked.shape[0], device=stacked.device), index], index


def _ours(hook: Any) -> bool:
    owner = getattr(getattr(hook, "func", hook), "__self__", None)
    return isinstance(owner, ExitHeads)


@register_module_type
class ExitHeads(nn.Module):
    """The internal classifiers of a multi-exit network and its early-exit rule (see the module docstring).

    After a forward pass `last_logits` holds every exit's logits (internal
    ones first, the final exit last), `last_features` each internal exit's
    pooled first-conv feature (what FME's fairness term is computed on) and
    `last_index` each item's exit. They are transient: not saved, not copied.
    """

    needs_group = False
    side_branch = True
    _TRANSIENT = ("_stage", "last_logits", "last_features", "last_index")

    def __init__(self, points: list[str], channels: list[int], num_classes: int, hidden: tuple[int, int] = (64, 32),
                 pool: int = EXIT_POOL, threshold: float = DEFAULT_THRESHOLD) -> None:
        super().__init__()
        if len(points) != len(channels):
            raise ModelError(f"{len(points)} exit points but {len(channels)} channel counts")
        self.points, self.channels = list(points), [int(c) for c in channels]
        self.num_classes, self.hidden, self.pool = int(num_classes), (int(hidden[0]), int(hidden[1])), int(pool)
        self.threshold = float(threshold)
        self.branches = nn.ModuleList([_branch(c, self.hidden, self.pool, self.num_classes) for c in self.channels])
        self._clear()

    @property
    def num_exits(self) -> int:
        """Internal exits plus the final one."""
        return len(self.points) + 1

    def _clear(self) -> None:
        self._stage: list[Tensor | None] = [None] * len(self.points)
        self.last_logits: list[Tensor] | None = None
        self.last_features: list[Tensor] | None = None
        self.last_index: Tensor | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for k in self._TRANSIENT:
            state.pop(k, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._clear()

    # -------------------------------------------------------------- wiring

    def relink(self, root: nn.Module) -> None:
        """(Re)install the hooks on `root` (the backbone that holds this module as `exits`); idempotent."""
        targets = [root] + [root.get_submodule(p) for p in self.points]
        for module in targets:
            for key in [k for k, h in module._forward_hooks.items() if _ours(h)]:
                del module._forward_hooks[key]
        for i, p in enumerate(self.points):
            root.get_submodule(p).register_forward_hook(partial(self._keep, i))
        root.register_forward_hook(self._select)

    def _keep(self, i: int, _module: nn.Module, _inputs: tuple, output: Tensor) -> None:
        self._stage[i] = output

    def _select(self, _root: nn.Module, _inputs: tuple, final: Tensor) -> Tensor:
        logits, features = [], []
        for i, branch in enumerate(self.branches):
            stage = self._stage[i]
            if stage is None:
                raise ModelError(f"exit point {self.points[i]} did not run in this forward pass")
            f = branch[1](branch[0](stage))
            features.append(f.flatten(1))
            logits.append(branch[2:](f))
        logits.append(final)
        out, index = early_exit(logits, self.threshold)
        self._stage = [None] * len(self.points)
        self.last_logits, self.last_features, self.last_index = logits, features, index.detach()
        return out

    def take(self) -> tuple[list[Tensor], list[Tensor]]:
        """Every exit's logits and the internal exits' features of the last forward pass (then forgotten)."""
        if self.last_logits is None or self.last_features is None:
            raise RuntimeError("no forward pass of the multi-exit model since the last take()")
        out = (self.last_logits, self.last_features)
        self.last_logits = self.last_features = None
        return out

    # -------------------------------------------------------------- checkpoint

    def structure_attrs(self) -> dict[str, Any]:
        return {"exit_points": list(self.points), "exit_channels": list(self.channels),
                "exit_classes": self.num_classes, "exit_hidden": list(self.hidden), "exit_pool": self.pool,
                "exit_threshold": self.threshold}

    @classmethod
    def from_structure(cls, attrs: dict[str, Any]) -> "ExitHeads":
        return cls(list(attrs["exit_points"]), list(attrs["exit_channels"]), int(attrs["exit_classes"]),
                   tuple(attrs["exit_hidden"]), int(attrs["exit_pool"]), float(attrs["exit_threshold"]))


def exit_heads(model: nn.Module) -> ExitHeads | None:
    """The `ExitHeads` of a multi-exit model (None for a single-exit one)."""
    heads = getattr(model, "exits", None)
    return heads if isinstance(heads, ExitHeads) else None


def attach_exits(model: nn.Module, num_classes: int, threshold: float = DEFAULT_THRESHOLD,
                 image_size: int | None = None) -> ExitHeads:
    """Make `model` (a VGG or ResNet of `equiprune.models`) multi-exit in place; returns its `ExitHeads`.

    An already multi-exit model keeps its exits (and gets `threshold`). The exits'
    widths follow the backbone's width multiplier (its first conv has 64 x width
    channels); their input channels are read off a forward pass.
    """
    heads = exit_heads(model)
    if heads is not None:
        heads.threshold = float(threshold)
        return heads
    points = exit_points(model)
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    width = first.out_channels / 64.0
    hidden = (max(4, int(round(64 * width))), max(4, int(round(32 * width))))
    seen: dict[str, int] = {}
    handles = [model.get_submodule(p).register_forward_hook(
        lambda _m, _i, out, p=p: seen.__setitem__(p, int(out.shape[1]))) for p in points]
    param = next(model.parameters())
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example_input(image_size or input_size(None, model), device=param.device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    heads = ExitHeads(points, [seen[p] for p in points], num_classes, hidden, EXIT_POOL, threshold)
    model.exits = heads.to(param.device)
    heads.relink(model)
    return heads
