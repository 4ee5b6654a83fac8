"""FairAdaBN: per-group batch normalisation plus a statistical-parity term on the predicted probabilities.

Source: Xu, Zhao, Quan, Yao & Zhou, "FairAdaBN: Mitigating Unfairness with
Adaptive Batch Normalization and Its Application to Dermatological Disease
Classification", MICCAI 2023 (arXiv 2303.08325), Sec. 2: every batch-norm
layer gets its own statistics and affine parameters per sensitive group
(the convolutions are shared), and the loss adds α · L_SP, the statistical
parity between the groups' mean predicted class probabilities, here
L_SP = Σ_c |mean_{g=0} p_c(x) - mean_{g=1} p_c(x)| over the batch (our
reading of the paper's L_SP; not checked against its code). Each per-group
layer starts as a copy of the trained layer.

Needs a model with batch norm (vgg11_bn, resnet18); the default vgg11 has
none, and the method says so instead of inventing layers.

Group at inference: NEEDED (each item is normalised with its group's statistics).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ...models import GroupBatchNorm2d, replace_module
from .base import MethodSpec, Mitigation, MitigationConfig, num_groups_of


@dataclass
class FairAdaBNConfig(MitigationConfig):
    alpha: float = 1.0

    HELP = {"alpha": "weight α of the statistical-parity term on predicted probabilities (default 1.0)"}

    def validate(self) -> None:
        super().validate()
        self.check("alpha", self.alpha, self.alpha >= 0, ">= 0")


def parity_loss(logits: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Σ_c |mean p_c over group 0 - mean p_c over group 1| (0 when a group is absent from the batch)."""
    p = F.softmax(logits.float(), dim=1)
    if not bool((g == 0).any()) or not bool((g == 1).any()):
        return p.new_zeros(())
    return (p[g == 0].mean(0) - p[g == 1].mean(0)).abs().sum()


class FairAdaBN(Mitigation):
    def __init__(self, alpha: float, layers: list[str]) -> None:
        self.alpha, self.layers = alpha, layers

    def loss(self, net, x, y, g):
        logits = self.forward(net, x, g)
        return F.cross_entropy(logits, y) + self.alpha * parity_loss(logits, g), logits

    def finish(self, model: nn.Module, splits: Any) -> dict[str, Any]:
        return {"group_batchnorm_layers": self.layers}


def check_model(model: nn.Module) -> None:
    """ValueError unless `model` has batch-norm layers (plain or already per-group)."""
    if not any(isinstance(m, (nn.BatchNorm2d, GroupBatchNorm2d)) for m in model.modules()):
        raise ValueError("FairAdaBN needs a model with batch-norm layers (vgg11_bn, resnet18); this model has none. "
                         "Train a baseline with --model vgg11_bn or resnet18 first.")


def build(model: nn.Module, splits: Any, cfg: FairAdaBNConfig) -> Mitigation:
    check_model(model)
    names = [n for n, m in model.named_modules() if type(m) is nn.BatchNorm2d]
    done = [n for n, m in model.named_modules() if isinstance(m, GroupBatchNorm2d)]
    for n in names:
        replace_module(model, n, GroupBatchNorm2d.from_batchnorm(model.get_submodule(n), num_groups_of(splits)))
    return FairAdaBN(cfg.alpha, names or done)


SPECS = (MethodSpec(name="fairadabn", label="FairAdaBN", config=FairAdaBNConfig, build=build,
                    group_at_inference=True, check=check_model,
                    summary="per-group batch-norm statistics and affine parameters + statistical-parity loss "
                            "(needs a model with batch norm)",
                    source="Xu et al., MICCAI 2023, Sec. 2"),)
