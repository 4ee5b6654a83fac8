"""Domain-independent training: one classifier head per group on a shared backbone.

Source: Wang, Qinami, Karakozis, Genova, Nair, Hata & Russakovsky, "Towards
Fairness in Visual Recognition: Effective Strategies for Bias Mitigation",
CVPR 2020, Sec. 4.4 ("domain independent training"): the last layer gives
one set of class scores per group; training applies the softmax to the
item's own group's scores only; inference sums the scores over the groups
(its Eq. 8, ŷ = argmax_y Σ_d s(y, d)), so the group is never read at test
time.

The classifier's last linear layer is replaced by `models.DomainHeads`, each
head starting as the trained layer divided by the number of groups, so the
summed output of the start model is exactly the parent's.

Group at inference: NOT needed (the heads are summed).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ...models import DomainHeads, final_linear_name, replace_module
from .base import MethodSpec, Mitigation, MitigationConfig, num_groups_of


@dataclass
class DomainIndependentConfig(MitigationConfig):
    pass


class DomainIndependent(Mitigation):
    def __init__(self, heads: DomainHeads) -> None:
        self.heads = heads

    def loss(self, net, x, y, g):
        logits = self.forward(net, x, g)
        per_group = self.heads.last_per_group
        own = per_group[torch.arange(len(y), device=y.device), g]   # each item's own group head
        return F.cross_entropy(own, y), logits

    def finish(self, model: nn.Module, splits: Any) -> dict[str, Any]:
        self.heads.last_per_group = None
        return {"heads": self.heads.num_groups, "inference": "sum of the heads' logits"}


def build(model: nn.Module, splits: Any, cfg: DomainIndependentConfig) -> Mitigation:
    name = final_linear_name(model)
    module = model.get_submodule(name)
    parent = name.rpartition(".")[0]
    owner = model.get_submodule(parent) if parent else model
    if isinstance(owner, DomainHeads):  # already domain-independent: keep training its heads
        return DomainIndependent(owner)
    heads = DomainHeads.from_linear(module, num_groups_of(splits))
    replace_module(model, name, heads)
    return DomainIndependent(heads)


SPECS = (MethodSpec(name="domain-independent", label="Domain-independent", config=DomainIndependentConfig,
                    build=build, group_at_inference=False,
                    summary="one classifier head per group, trained on its own group; inference sums the heads",
                    source="Wang et al., CVPR 2020, Sec. 4.4, Eq. 8"),)
