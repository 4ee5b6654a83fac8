"""FME: the fair multi-exit network (internal classifiers trained to be accurate and fair, early exit at inference).

Source: Chiu, Chung, Chen, Shi & Ho, "Toward Fairness Through Fair Multi-Exit
Framework for Dermatological Disease Diagnosis", MICCAI 2023 (arXiv
2306.14518), and its code (github.com/chiuhaohao/Fair-Multi-Exit-Framework):
an internal classifier after each stage of the backbone (`models.multi_exit`:
VGG-11 after features.5/10/15/20, ResNet-18 after layer1..layer4, plus the
backbone's classifier as the final exit), all trained jointly with the
fairness-aware loss of that code's train_hsic_me.py,

    L = Σ_i w_i [ CE(z_i, y) + λ Σ_c HSIC(f_i | y = c, one-hot group | y = c) ],

z_i the logits and f_i the feature of exit i (an internal exit's pooled
first-conv map, the final exit's penultimate feature), w_i = 1 for every
exit and λ = 0.5 as in that script (`--weights ramp` gives the code's CE/MFD
multi-exit weights 0.3, 0.45, 0.6, 0.75, 0.9); HSIC is equiprune's unbiased
estimator with Gaussian kernels and median bandwidth (`hsic.py`; the code's
RbfHSIC uses the mean squared distance of unit-normalised features instead).
At inference an item exits at the first internal classifier whose top
softmax probability reaches θ (`--threshold`, default 0.8, the code's
`confidence_threshold`), otherwise at the final exit (the code's
eval_me.early_exit_confidence_resnet). The exits are saved in model.pt, and
every verb that predicts applies the rule.

Group at inference: NOT needed (the exit rule reads only the confidences).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ...engine import predict
from ...models import attach_exits, exit_heads
from ...models.multi_exit import DEFAULT_THRESHOLD, ExitHeads
from .base import FeatureTap, MethodSpec, Mitigation, MitigationConfig, num_groups_of
from .hsic import class_conditional_hsic

RAMP = (0.3, 0.45, 0.6, 0.75, 0.9)   # the FME code's per-exit weights of train_cnn_me / train_mfd_me (VGG)


@dataclass
class FMEConfig(MitigationConfig):
    lam: float = 0.5
    threshold: float = DEFAULT_THRESHOLD
    weights: str = "equal"
    exit_lr: float = 1e-3

    HELP = {"lam": "weight λ of each exit's per-class HSIC(feature, group) term (default 0.5, the FME code's; "
                   "0 trains a plain multi-exit network)",
            "threshold": "early-exit confidence θ: an item leaves at the first internal exit whose top softmax "
                         "probability is >= θ (default 0.8, the FME code's)",
            "weights": "per-exit loss weights: equal (the code's HSIC multi-exit training), ramp (0.3 ... 0.9, its "
                       "CE/MFD multi-exit training) or a comma list, one number per exit",
            "exit_lr": "learning rate of the classifiers (the new exits and the final one; default 1e-3: at the "
                       "fine-tuning rate 1e-4 fresh exits stay near chance within the budget); 0: the training lr"}

    def validate(self) -> None:
        super().validate()
        self.check("lam", self.lam, self.lam >= 0, ">= 0")
        self.check("threshold", self.threshold, 0 < self.threshold <= 1, "in (0, 1]")
        self.check("exit_lr", self.exit_lr, self.exit_lr >= 0, ">= 0")
        exit_weights(self.weights, 5)


def with_exit_lr(train: Any, exit_lr: float) -> Any:
    """The training config with the classifiers' (exits' and final head's) learning rate `exit_lr` (0: unchanged)."""
    return replace(train, head_lr=exit_lr) if exit_lr > 0 else train


def exit_weights(spec: str, num_exits: int) -> list[float]:
    """The per-exit loss weights of `spec` (equal | ramp | comma list) for `num_exits` exits."""
    if spec == "equal":
        return [1.0] * num_exits
    if spec == "ramp":
        if num_exits != len(RAMP):
            raise ValueError(f"weights 'ramp' is the FME code's five weights; this network has {num_exits} exits")
        return list(RAMP)
    try:
        values = [float(v) for v in spec.split(",")]
    except ValueError:
        raise ValueError(f"weights must be 'equal', 'ramp' or a comma list of numbers, got {spec!r}") from None
    if len(values) != num_exits or any(v < 0 for v in values):
        raise ValueError(f"weights needs {num_exits} numbers >= 0 (one per exit), got {spec!r}")
    return values


def fme_loss(logits: list[Tensor], features: list[Tensor], y: Tensor, g: Tensor, weights: list[float], lam: float,
             num_classes: int, num_groups: int) -> Tensor:
    """Σ_i w_i [CE(z_i, y) + λ Σ_c HSIC(f_i of class c, group of class c)] over the exits (see the docstring)."""
    total = logits[0].new_zeros((), dtype=torch.float32)
    for w, z, f in zip(weights, logits, features):
        term = F.cross_entropy(z.float(), y)
        if lam > 0:
            term = term + lam * class_conditional_hsic(f.flatten(1).float(), y, g, num_classes, num_groups)
        total = total + w * term
    return total


class FME(Mitigation):
    """The multi-exit loss over every exit of `heads` (the final exit's feature by a `FeatureTap`)."""

    def __init__(self, model: nn.Module, heads: ExitHeads, num_classes: int, num_groups: int, lam: float,
                 weights: list[float], exit_lr: float = 0.0) -> None:
        self.heads, self.num_classes, self.num_groups, self.lam, self.weights = heads, num_classes, num_groups, lam, \
            weights
        self.exit_lr = exit_lr
        self.tap = FeatureTap(model) if lam > 0 else None

    def train_config(self, train: Any) -> Any:
        return with_exit_lr(train, self.exit_lr)

    def loss(self, net, x, y, g):
        out = self.forward(net, x, g)
        logits, features = self.heads.take()
        if self.tap is not None:
            features = features + [self.tap.take()]
        else:
            features = features + [logits[-1]]   # unused when λ = 0
        return fme_loss(logits, features, y, g, self.weights, self.lam, self.num_classes, self.num_groups), out

    def finish(self, model: nn.Module, splits: Any) -> dict[str, Any]:
        if self.tap is not None:
            self.tap.remove()
        return {"exits": exit_usage(model, splits.test), "threshold": self.heads.threshold,
                "exit_points": list(self.heads.points), "loss_weights": self.weights, "lam": self.lam}


def exit_usage(model: nn.Module, dataset: Any) -> dict[str, Any]:
    """Share of `dataset`'s items taking each exit, overall and per group (the exit rule's behaviour)."""
    heads = exit_heads(model)
    seen: list[Tensor] = []
    handle = model.register_forward_hook(lambda *_: seen.append(heads.last_index.cpu()))
    try:
        pred = predict(model, dataset, distributed=False)
    finally:
        handle.remove()
    index = torch.cat(seen).numpy()
    share = lambda sel: [float(np.mean(index[sel] == k)) if sel.any() else float("nan")  # noqa: E731
                         for k in range(heads.num_exits)]
    return {"share": share(np.ones(len(index), dtype=bool)),
            "share_by_group": {str(int(gr)): share(pred.groups == gr) for gr in np.unique(pred.groups)}}


def build(model: nn.Module, splits: Any, cfg: FMEConfig) -> FME:
    heads = attach_exits(model, splits.num_classes, cfg.threshold)
    return FME(model, heads, splits.num_classes, num_groups_of(splits), cfg.lam,
               exit_weights(cfg.weights, heads.num_exits), cfg.exit_lr)


def check_model(model: nn.Module) -> None:
    """ValueError unless `model` is a VGG or ResNet (stages to hang exits on)."""
    from ...models.multi_exit import exit_points
    if exit_heads(model) is None:
        exit_points(model)


SPECS = (MethodSpec(name="fme", label="FME (multi-exit)", config=FMEConfig, build=build, group_at_inference=False,
                    check=check_model,
                    summary="fair multi-exit network: an exit after each stage, each trained with CE + λ HSIC; an "
                            "item leaves at the first exit with confidence >= --threshold",
                    source="Chiu et al., MICCAI 2023; its code's train_hsic_me.py and eval_me.py"),)
