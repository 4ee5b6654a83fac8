"""Knowledge distillation into a narrower student, with an optional group-weighted variant.

The student is `build_model(same name, num_classes, width * width_factor)`,
randomly initialised, trained with `engine.fit` on

    loss = alpha * T^2 * KL(p_t || p_s) + (1 - alpha) * CE(s, y),
    p_t = softmax(t / T), p_s = softmax(s / T),

the standard (Hinton et al.) distillation loss: the teacher's softened
distribution is the target, which is what the usual shorthand
"KL(softmax(s/T) || softmax(t/T))" in papers denotes. T^2 keeps the gradient
scale of the soft term independent of T.

Fairness-aware variant (the "fairness treatment during compression"): the
per-sample distillation term is multiplied by a weight of the sample's group,
either the inverse group frequency or a given vector (normalised so that the
mean weight over the training set is 1). `weight_ce=True` weights the
cross-entropy term the same way.

The teacher runs inside a wrapper module next to the student, so `engine.fit`
(which hands `loss_fn` only logits, labels and groups) can be used as is: the
wrapper's forward stores the teacher logits of the current batch for the loss.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...engine import RunDir, TrainConfig, fit
from ...models import build_model, input_size
from .base import CompressError, CompressResult, copy_model, group_weights, measure_cost


@dataclass
class DistillConfig:
    """Settings of `distill`.

    `width_factor`: student width = teacher width x this factor, in (0, 1].
    `temperature` T > 0, `alpha` in [0, 1] (weight of the distillation term).
    `group_weights`: "none", "inverse" (inverse group frequency in the
    training split) or one weight per group, e.g. [1.0, 3.0].
    """

    width_factor: float = 0.5
    temperature: float = 4.0
    alpha: float = 0.9
    group_weights: str | list[float] = "none"
    weight_ce: bool = False
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=10))
    latency: bool = True

    def validate(self) -> None:
        if not 0 < self.width_factor <= 1:
            raise CompressError(f"width_factor must be in (0, 1], got {self.width_factor}")
        if self.temperature <= 0:
            raise CompressError(f"temperature must be > 0, got {self.temperature}")
        if not 0 <= self.alpha <= 1:
            raise CompressError(f"alpha must be in [0, 1], got {self.alpha}")
        if isinstance(self.group_weights, str) and self.group_weights not in ("none", "inverse"):
            raise CompressError(f"group_weights must be 'none', 'inverse' or a list of numbers, "
                                f"got {self.group_weights!r}")


class _TeacherStudent(nn.Module):
    """Runs the frozen teacher beside the student during training; returns the student's logits."""

    def __init__(self, student: nn.Module, teacher: nn.Module) -> None:
        super().__init__()
        self.student = student
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.teacher_logits: torch.Tensor | None = None

    def train(self, mode: bool = True) -> "_TeacherStudent":
        # The teacher stays in eval mode: no dropout, no BatchNorm statistic updates.
        self.training = mode
        self.student.train(mode)
        self.teacher.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                self.teacher_logits = self.teacher(x)
        return self.student(x)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                      temperature: float, alpha: float, sample_weights: torch.Tensor | None = None,
                      weight_ce: bool = False) -> torch.Tensor:
    """alpha * T^2 * KL(p_t || p_s) + (1 - alpha) * CE, per-sample weights on the KL term (and CE)."""
    t = float(temperature)
    log_ps = F.log_softmax(student_logits.float() / t, dim=1)
    log_pt = F.log_softmax(teacher_logits.float() / t, dim=1)
    kl = (log_pt.exp() * (log_pt - log_ps)).sum(dim=1)
    ce = F.cross_entropy(student_logits.float(), labels, reduction="none")
    if sample_weights is not None:
        kl = kl * sample_weights
        if weight_ce:
            ce = ce * sample_weights
    return alpha * t * t * kl.mean() + (1.0 - alpha) * ce.mean()


def student_arch(arch: dict[str, Any], width_factor: float) -> dict[str, Any]:
    """The student's build_model recipe: the teacher's with width multiplied by `width_factor`."""
    missing = [k for k in ("name", "num_classes", "width") if k not in arch]
    if missing:
        raise CompressError(f"the teacher's arch recipe lacks {missing}; distillation needs the "
                            "build_model arguments (open the teacher from its run folder)")
    return {**arch, "width": float(arch["width"]) * float(width_factor)}


def distill(teacher: nn.Module, splits: Any, cfg: DistillConfig | None = None,
            run_dir: str | Path | RunDir | None = None, arch: dict[str, Any] | None = None,
            image_size: int | None = None) -> CompressResult:
    """Train a narrower student of the teacher's architecture by (optionally group-weighted) distillation.

    `arch` is the teacher's build_model recipe (name, num_classes, width,
    image_size); with `run_dir` the training resumes after an interruption.
    """
    cfg = cfg or DistillConfig()
    cfg.validate()
    if splits is None:
        raise CompressError("distillation trains a student: pass the data splits")
    if arch is None:
        raise CompressError("distillation needs the teacher's arch recipe (build_model arguments)")
    size = image_size or input_size(arch, teacher, splits)
    s_arch = student_arch({**arch, "image_size": size}, cfg.width_factor)
    torch.manual_seed(cfg.train.seed)  # the student's initial weights belong to the seed too
    student = build_model(**{k: s_arch[k] for k in ("name", "num_classes", "width", "image_size")})
    weights = group_weights(splits.train.groups, cfg.group_weights)
    wrapper = _TeacherStudent(student, copy_model(teacher))

    on_device: dict[torch.device, torch.Tensor] = {}

    def loss_fn(logits: torch.Tensor, y: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        w = None
        if weights is not None:  # copied to the device once, not per batch
            w = on_device.setdefault(logits.device, weights.to(logits.device))[g]
        return distillation_loss(logits, wrapper.teacher_logits, y, cfg.temperature, cfg.alpha, w, cfg.weight_ce)

    res = fit(wrapper, splits, cfg.train, run_dir=run_dir, state_name="distill_state.pt",
              params=student.parameters(), loss_fn=loss_fn)
    student = res.model.student.cpu().eval()
    cost = measure_cost(student, size, latency=cfg.latency)
    details = {"width_factor": cfg.width_factor, "student_width": s_arch["width"], "temperature": cfg.temperature,
               "alpha": cfg.alpha, "group_weights": cfg.group_weights,
               "group_weight_values": weights.tolist() if weights is not None else None,
               "weight_ce": cfg.weight_ce, "epochs": cfg.train.epochs, "best_epoch": res.best_epoch,
               "history": res.history}
    technique = "distill-fair" if weights is not None else "distill"
    return CompressResult(model=student, technique=technique, param=cfg.width_factor, cost=cost,
                          details=details, arch=s_arch)
