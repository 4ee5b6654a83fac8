"""HSIC penalty: the penultimate features made independent of the group within each class.

Source: the HSIC baseline of the SCP paper (Kong et al., MICCAI 2024, its
row "HSIC [16]": Quadrianto et al., CVPR 2019) as its companion code, the
Fair Multi-Exit repository (train_hsic.py), computes it: for each class c,
the unbiased HSIC estimator (Song et al., JMLR 2012, Eq. 5) between the
features of the batch's class-c items and their one-hot groups, summed over
classes and added to the cross-entropy with weight λ (that code's default
0.5). Kernels are Gaussian with the median heuristic for the bandwidth
(σ² = median of the non-zero pairwise squared distances), on both sides.

Group at inference: NOT needed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .base import FeatureTap, MethodSpec, Mitigation, MitigationConfig, num_groups_of


@dataclass
class HSICConfig(MitigationConfig):
    lam: float = 0.5

    HELP = {"lam": "weight λ of the per-class HSIC(features, group) term (default 0.5, the FME code's)"}

    def validate(self) -> None:
        super().validate()
        self.check("lam", self.lam, self.lam >= 0, ">= 0")


def gaussian_kernel(x: torch.Tensor) -> torch.Tensor:
    """exp(-||xi - xj||² / (2σ²)), σ² the median of the non-zero pairwise squared distances (1 if none)."""
    d2 = torch.cdist(x, x).pow(2)
    positive = d2[d2 > 1e-12]
    sigma2 = positive.median().detach() if positive.numel() else torch.tensor(1.0, device=x.device)
    return torch.exp(-d2 / (2 * sigma2))


def hsic_unbiased(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """Song et al.'s unbiased HSIC of two n x n kernel matrices (n >= 4).

    With K̃, L̃ the kernels with zeroed diagonals:
    [tr(K̃L̃) + 1ᵀK̃1 · 1ᵀL̃1 / ((n-1)(n-2)) - 2/(n-2) · 1ᵀK̃L̃1] / (n(n-3)).
    """
    n = k.shape[0]
    if n < 4:
        raise ValueError(f"the unbiased HSIC needs at least 4 items, got {n}")
    eye = torch.eye(n, dtype=torch.bool, device=k.device)
    kt, lt = k.masked_fill(eye, 0), l.masked_fill(eye, 0)
    kl = kt @ lt
    return (torch.trace(kl) + kt.sum() * lt.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * kl.sum()) / (n * (n - 3))


def class_conditional_hsic(features: torch.Tensor, y: torch.Tensor, g: torch.Tensor, num_classes: int,
                           num_groups: int) -> torch.Tensor:
    """Σ_c HSIC(features of class c, one-hot group of class c); classes with < 4 items are skipped."""
    total = features.new_zeros(())
    onehot = F.one_hot(g, num_groups).float()
    for c in range(num_classes):
        mask = y == c
        if int(mask.sum()) < 4:
            continue
        total = total + hsic_unbiased(gaussian_kernel(features[mask]), gaussian_kernel(onehot[mask]))
    return total


class HSICPenalty(Mitigation):
    def __init__(self, model: nn.Module, num_classes: int, num_groups: int, lam: float) -> None:
        self.tap, self.num_classes, self.num_groups, self.lam = FeatureTap(model), num_classes, num_groups, lam

    def loss(self, net, x, y, g):
        logits = self.forward(net, x, g)
        f = self.tap.take().float()
        return F.cross_entropy(logits, y) + self.lam * class_conditional_hsic(f, y, g, self.num_classes,
                                                                             self.num_groups), logits

    def finish(self, model: nn.Module, splits: Any) -> dict[str, Any]:
        self.tap.remove()
        return {"feature_layer": self.tap.layer}


def build(model: nn.Module, splits: Any, cfg: HSICConfig) -> Mitigation:
    return HSICPenalty(model, splits.num_classes, num_groups_of(splits), cfg.lam)


SPECS = (MethodSpec(name="hsic", label="HSIC", config=HSICConfig, build=build, group_at_inference=False,
                    summary="penalise HSIC between penultimate features and group within each class (weight --lam)",
                    source="Quadrianto et al., CVPR 2019; unbiased HSIC of Song et al., JMLR 2012, Eq. 5"),)
