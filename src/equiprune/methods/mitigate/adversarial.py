"""Adversarial debiasing: a group classifier on the penultimate features, which the backbone learns to defeat.

Sources (the SCP paper's comparison rows, Kong et al. MICCAI 2024, Tables 1-2):

- ``advref`` (gradient reversal; Ganin & Lempitsky, ICML 2015, Eq. 9-13, the
  reversal layer R_λ: identity forward, gradient times -λ backward): the
  adversary minimises its cross-entropy on the group, and through the
  reversal the backbone maximises it. Loss: CE(y) + CE_adv(adv(R_λ(f)), g).
- ``advconf`` (confusion target; Alvi et al., ECCV-W 2018, Eq. 2-4, and Tzeng
  et al., ICCV 2015, Eq. 5): the adversary is trained on detached features
  to predict the group; the backbone is trained so that the adversary's
  output is uniform, loss CE(y) + CE_adv(adv(f.detach()), g) +
  λ · CE(adv(f), uniform), with the adversary's weights held fixed in the
  last term.

The adversary (`hidden` units, one hidden layer) exists only during
training; it is saved in the resume state, not in model.pt.

Group at inference: NOT needed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from .base import FeatureTap, MethodSpec, Mitigation, MitigationConfig, num_groups_of


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, lam: float) -> torch.Tensor:
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.lam * grad, None


def grad_reverse(x: torch.Tensor, lam: float = 1.0) -> torch.Tensor:
    """Identity forward; the gradient flowing back is multiplied by -λ."""
    return _Reverse.apply(x, lam)


@dataclass
class AdvRefConfig(MitigationConfig):
    lam: float = 1.0             # weight of the adversarial term
    hidden: int = 64             # adversary's hidden units

    HELP = {"lam": "weight λ of the adversarial term (default 1.0)",
            "hidden": "hidden units of the group adversary (default 64)"}

    def validate(self) -> None:
        super().validate()
        self.check("lam", self.lam, self.lam >= 0, ">= 0")
        self.check("hidden", self.hidden, self.hidden >= 1, ">= 1")


@dataclass
class AdvConfConfig(AdvRefConfig):
    pass


class Adversarial(Mitigation):
    def __init__(self, model: nn.Module, num_groups: int, lam: float, hidden: int, mode: str) -> None:
        self.tap = FeatureTap(model)
        self.lam, self.mode, self.num_groups = lam, mode, num_groups
        self.adversary = nn.Sequential(nn.Linear(self.tap.in_features, hidden), nn.ReLU(), nn.Linear(hidden, num_groups))

    def setup(self, model: nn.Module, device: torch.device) -> None:
        self.adversary.to(device)

    def parameters(self) -> list[nn.Parameter]:
        return list(self.adversary.parameters())

    def loss(self, net, x, y, g):
        logits = self.forward(net, x, g)
        f = self.tap.take().float()
        task = F.cross_entropy(logits, y)
        if self.mode == "reversal":
            return task + F.cross_entropy(self.adversary(grad_reverse(f, self.lam)), g), logits
        adv = F.cross_entropy(self.adversary(f.detach()), g)
        frozen = {k: v.detach() for k, v in self.adversary.named_parameters()}
        confusion = -F.log_softmax(functional_call(self.adversary, frozen, (f,)), dim=1).mean(dim=1).mean()
        return task + adv + self.lam * confusion, logits

    def state_dict(self) -> dict[str, Any]:
        return {"adversary": {k: v.detach().cpu() for k, v in self.adversary.state_dict().items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "adversary" in state:
            self.adversary.load_state_dict(state["adversary"])

    def finish(self, model: nn.Module, splits: Any) -> dict[str, Any]:
        self.tap.remove()
        return {"mode": self.mode, "feature_layer": self.tap.layer}


def build_advref(model: nn.Module, splits: Any, cfg: AdvRefConfig) -> Mitigation:
    return Adversarial(model, num_groups_of(splits), cfg.lam, cfg.hidden, "reversal")


def build_advconf(model: nn.Module, splits: Any, cfg: AdvConfConfig) -> Mitigation:
    return Adversarial(model, num_groups_of(splits), cfg.lam, cfg.hidden, "confusion")


SPECS = (
    MethodSpec(name="advconf", label="AdvConf", config=AdvConfConfig, build=build_advconf, group_at_inference=False,
               summary="group adversary on the penultimate features; backbone pushed to a uniform (confused) output",
               source="Alvi et al., ECCV-W 2018, Eq. 2-4; SCP paper's AdvConf row"),
    MethodSpec(name="advref", label="AdvRef", config=AdvRefConfig, build=build_advref, group_at_inference=False,
               summary="group adversary trained through a gradient-reversal layer (weight --lam)",
               source="Ganin & Lempitsky, ICML 2015, Eq. 9-13; SCP paper's AdvRef row"),
)
