"""MFD: fair feature distillation from the start model, by MMD conditioned on class and group.

Source: Jung, Lee, Park & Moon, "Fair Feature Distillation for Visual
Recognition", CVPR 2021, Eq. 3-5: the student's penultimate features of
every (class c, group g) cell are pulled, in maximum mean discrepancy, to
the teacher's features of class c over all groups:
Σ_c Σ_g MMD²(teacher | y=c ; student | y=c, g), added to the cross-entropy
with weight λ (here: times ½, as the SCP/FME code's MMDLoss does).
Gaussian kernel exp(-||a-b||² / (2 σ_base σ_avg)), σ_avg the batch's
mean squared teacher-student distance (that code's bandwidth); the biased
MMD² estimate mean K_TT + mean K_SS - 2 mean K_TS.

The teacher is the start model (the `--run` model, frozen), so MFD runs only
through `mitigate`, not `train --method`.

Group at inference: NOT needed.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ...models import feed_groups
from .base import FeatureTap, MethodSpec, Mitigation, MitigationConfig, num_groups_of


@dataclass
class MFDConfig(MitigationConfig):
    lam: float = 1.0
    sigma: float = 1.0

    HELP = {"lam": "weight λ of the MMD term (default 1.0)",
            "sigma": "kernel bandwidth multiplier σ_base (default 1.0)"}

    def validate(self) -> None:
        super().validate()
        self.check("lam", self.lam, self.lam >= 0, ">= 0")
        self.check("sigma", self.sigma, self.sigma > 0, "> 0")


def rbf(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return torch.exp(-torch.cdist(a, b).pow(2) / scale)


def mfd_mmd(student: torch.Tensor, teacher: torch.Tensor, y: torch.Tensor, g: torch.Tensor, num_classes: int,
            num_groups: int, sigma: float = 1.0) -> torch.Tensor:
    """½ Σ_c Σ_g MMD²(teacher[y=c], student[y=c, g]) with the bandwidth of the SCP/FME code."""
    teacher = teacher.detach()
    scale = (2 * sigma * torch.cdist(teacher, student).pow(2).mean()).detach().clamp(min=1e-12)
    total = student.new_zeros(())
    for c in range(num_classes):
        t = teacher[y == c]
        if len(t) == 0:
            continue
        k_tt = rbf(t, t, scale).mean()
        for k in range(num_groups):
            s = student[(y == c) & (g == k)]
            if len(s) == 0:
                continue
            total = total + k_tt + rbf(s, s, scale).mean() - 2 * rbf(t, s, scale).mean()
    return 0.5 * total


class MFD(Mitigation):
    def __init__(self, model: nn.Module, num_classes: int, num_groups: int, lam: float, sigma: float) -> None:
        self.teacher = copy.deepcopy(model).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.tap, self.teacher_tap = FeatureTap(model), FeatureTap(self.teacher)
        self.num_classes, self.num_groups, self.lam, self.sigma = num_classes, num_groups, lam, sigma

    def setup(self, model: nn.Module, device: torch.device) -> None:
        self.teacher.to(device)

    def loss(self, net, x, y, g):
        logits = self.forward(net, x, g)
        student = self.tap.take().float()
        with torch.no_grad(), feed_groups(self.teacher, g):
            self.teacher(x)
        teacher = self.teacher_tap.take().float()
        mmd = mfd_mmd(student, teacher, y, g, self.num_classes, self.num_groups, self.sigma)
        return F.cross_entropy(logits, y) + self.lam * mmd, logits

    def finish(self, model: nn.Module, splits: Any) -> dict[str, Any]:
        self.tap.remove()
        self.teacher_tap.remove()
        return {"feature_layer": self.tap.layer, "teacher": "the start model"}


def build(model: nn.Module, splits: Any, cfg: MFDConfig) -> Mitigation:
    return MFD(model, splits.num_classes, num_groups_of(splits), cfg.lam, cfg.sigma)


SPECS = (MethodSpec(name="mfd", label="MFD", config=MFDConfig, build=build, group_at_inference=False,
                    needs_parent=True,
                    summary="distil the start model's features by MMD per class and group (weight --lam)",
                    source="Jung et al., CVPR 2021, Eq. 3-5"),)
