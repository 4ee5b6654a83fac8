"""Modules that read each item's group, and how the group reaches them.

Some mitigation methods give the model per-group parts: FairAdaBN's
per-group batch norm, the post-processing's per-group decision offsets.
A classifier's `forward(x)` has no room for the group, so the group is fed
beside the call::

    with feed_groups(model, groups):
        logits = model(x)

`engine.predict` and `engine.fit` do this for every batch, so every verb
that predicts applies the per-group parts. A group-conditioned module called
without groups raises `GroupInputError` rather than guess: a silent default
would give wrong predictions. Each module here is registered with the
checkpoint loader, so model.pt files holding them load with
``weights_only=True`` like any pruned model.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch import nn
from torch.nn import functional as F

from .checkpoint import register_module_type
from .zoo import ModelError, main_path_modules


class GroupInputError(ModelError):
    """A group-conditioned model was called without the items' groups."""


class GroupConditioned:
    """Mixin of modules that need each item's group (`needs_group`) and receive it via `feed_groups`."""

    needs_group = True
    _groups: torch.Tensor | None = None

    def current_groups(self, batch: int) -> torch.Tensor:
        g = self._groups
        if g is None:
            raise GroupInputError(
                f"this model has a {type(self).__name__} (per-group parameters) and needs each item's group at "
                "inference; predict it with equiprune.engine.predict, or call it inside "
                "equiprune.models.feed_groups(model, groups)")
        if g.shape[0] != batch:
            raise GroupInputError(f"{type(self).__name__} got {g.shape[0]} groups for a batch of {batch}")
        return g


def group_modules(model: nn.Module) -> list[nn.Module]:
    """Every module of `model` that needs the group."""
    return [m for m in model.modules() if getattr(m, "needs_group", False)]


def takes_group(model: nn.Module) -> bool:
    """Whether `model` needs each item's group at inference."""
    return bool(group_modules(model))


@contextmanager
def feed_groups(model: nn.Module, groups: torch.Tensor | None) -> Iterator[None]:
    """Give every group-conditioned module of `model` the batch's groups for the calls in the block."""
    mods = group_modules(model)
    if not mods or groups is None:
        yield
        return
    for m in mods:
        m._groups = groups.long()
    try:
        yield
    finally:
        for m in mods:
            m._groups = None


def final_linear_name(model: nn.Module) -> str:
    """Module path of the classifier's last linear layer (its input is the penultimate feature)."""
    names = [n for n, m in main_path_modules(model) if isinstance(m, nn.Linear)]
    if not names:
        raise ModelError("model has no linear classifier layer")
    return names[-1]


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


@register_module_type
class GroupOffsetLinear(GroupConditioned, nn.Linear):
    """A linear classifier layer plus a per-group, per-class offset added to its logits.

    The offsets (buffer `offsets`, groups x classes) are fitted after training
    (`methods.mitigate.postprocess`); zeros leave the layer's output unchanged.
    """

    def __init__(self, in_features: int, out_features: int, num_groups: int, bias: bool = True) -> None:
        nn.Linear.__init__(self, in_features, out_features, bias=bias)
        self.register_buffer("offsets", torch.zeros(num_groups, out_features))

    @classmethod
    def from_linear(cls, linear: nn.Linear, num_groups: int) -> "GroupOffsetLinear":
        new = cls(linear.in_features, linear.out_features, num_groups, bias=linear.bias is not None)
        new.load_state_dict(linear.state_dict(), strict=False)
        return new.to(linear.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.current_groups(x.shape[0])
        return F.linear(x, self.weight, self.bias) + self.offsets[g]

    def structure_attrs(self) -> dict[str, Any]:
        return {"num_groups": int(self.offsets.shape[0]), "bias": self.bias is not None}

    @classmethod
    def from_structure(cls, attrs: dict[str, Any]) -> "GroupOffsetLinear":
        return cls(attrs["in_features"], attrs["out_features"], attrs["num_groups"], bool(attrs["bias"]))


@register_module_type
class DomainHeads(nn.Module):
    """One linear head per group on a shared feature (Wang et al., CVPR 2020, domain-independent training).

    `forward` returns the sum of the heads' logits, the group-free inference
    rule of the paper (its Eq. for "sum of scores"), so the model needs no
    group at inference. The per-group logits of the last call stay in
    `last_per_group` (batch x groups x classes) for the training loss,
    which uses each item's own group head.
    """

    needs_group = False

    def __init__(self, in_features: int, out_features: int, num_groups: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features, self.num_groups = in_features, out_features, num_groups
        self.heads = nn.Linear(in_features, out_features * num_groups, bias=bias)
        self.last_per_group: torch.Tensor | None = None

    @classmethod
    def from_linear(cls, linear: nn.Linear, num_groups: int) -> "DomainHeads":
        """Every head starts as a copy of `linear` (fine-tuning keeps the trained classifier as the start)."""
        new = cls(linear.in_features, linear.out_features, num_groups, bias=linear.bias is not None)
        with torch.no_grad():
            new.heads.weight.copy_(linear.weight.repeat(num_groups, 1) / num_groups)
            if linear.bias is not None:
                new.heads.bias.copy_(linear.bias.repeat(num_groups) / num_groups)
        return new.to(linear.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        per_group = self.heads(x).view(x.shape[0], self.num_groups, self.out_features)
        self.last_per_group = per_group
        return per_group.sum(dim=1)

    def structure_attrs(self) -> dict[str, Any]:
        return {"dh_in": self.in_features, "dh_out": self.out_features, "dh_groups": self.num_groups,
                "dh_bias": self.heads.bias is not None}

    @classmethod
    def from_structure(cls, attrs: dict[str, Any]) -> "DomainHeads":
        return cls(attrs["dh_in"], attrs["dh_out"], attrs["dh_groups"], bool(attrs["dh_bias"]))


@register_module_type
class GroupBatchNorm2d(GroupConditioned, nn.Module):
    """Batch norm with its own statistics and affine parameters per group (FairAdaBN's adaptive BN).

    Each item is normalised by its group's `BatchNorm2d` (`bns[g]`): in
    training with the batch statistics of its group's items only, in eval with
    its group's running statistics. The convolutions around it stay shared.
    """

    def __init__(self, num_features: int, num_groups: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        nn.Module.__init__(self)
        self.num_features, self.num_groups = num_features, num_groups
        self.bns = nn.ModuleList([nn.BatchNorm2d(num_features, eps=eps, momentum=momentum)
                                  for _ in range(num_groups)])

    @classmethod
    def from_batchnorm(cls, bn: nn.BatchNorm2d, num_groups: int) -> "GroupBatchNorm2d":
        """Every group starts from the trained layer's statistics and affine parameters."""
        new = cls(bn.num_features, num_groups, eps=bn.eps, momentum=bn.momentum if bn.momentum is not None else 0.1)
        for b in new.bns:
            b.load_state_dict(bn.state_dict())
        return new.to(bn.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.current_groups(x.shape[0])
        out = torch.empty_like(x)
        for k in range(self.num_groups):
            sel = g == k
            if bool(sel.any()):
                out[sel] = self.bns[k](x[sel])
        return out

    def structure_attrs(self) -> dict[str, Any]:
        b = self.bns[0]
        return {"gbn_features": self.num_features, "gbn_groups": self.num_groups, "gbn_eps": float(b.eps),
                "gbn_momentum": float(b.momentum if b.momentum is not None else 0.1)}

    @classmethod
    def from_structure(cls, attrs: dict[str, Any]) -> "GroupBatchNorm2d":
        return cls(attrs["gbn_features"], attrs["gbn_groups"], attrs["gbn_eps"], attrs["gbn_momentum"])
