"""The one hook by which a training method changes `fit`: a `TrainPlugin`.

`fit` owns everything every method shares (data order, optimizer, schedule,
DDP, mixed precision, per-epoch checkpoints, resume, model selection). A
method that trains differently (a fairness loss, a resampler, an adversary, a
weight average) subclasses `TrainPlugin` and overrides only what it changes;
the defaults reproduce plain cross-entropy training exactly. Nothing else in
the loop is method-specific, so a new method is one new module with no edit
to `fit` (docs/DESIGN.md, "How to add a mitigation method").
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..models.groups import feed_groups


class TrainPlugin:
    """What a method may change in `fit`. Every hook has a plain-training default.

    - `setup(model, device)`: move the method's own modules to the device.
    - `train_data(train_set)`: the training split as the method sees it (its
      own augmentation); the validation split is never touched.
    - `sample_weights(train_set)`: per-item sampling weights (with replacement),
      or None for the usual shuffled pass.
    - `parameters()`: trainable tensors outside the model (an adversary head);
      they join the model's optimizer and are averaged by hand under DDP.
    - `loss(net, x, y, g)`: the batch's training loss and the logits used for
      the running training accuracy. `net` may be the DDP wrapper.
    - `after_step(model)` / `end_epoch(model, epoch)`: after each optimizer step
      / each epoch (weight averaging).
    - `state_dict()` / `load_state_dict(d)`: anything the method carries across
      steps (GroupDRO's weights, an adversary, a running average), saved in the
      per-epoch training state so an interrupted run resumes exactly.
    """

    def setup(self, model: nn.Module, device: torch.device) -> None:
        """Called once `model` is on `device`, before the optimizer is built: move own modules there."""
        return None

    def train_data(self, train_set: Any) -> Any:
        """The training split `fit` draws batches from (default: as given; a method may change its transform)."""
        return train_set

    def sample_weights(self, train_set: Any) -> np.ndarray | None:
        return None

    def parameters(self) -> list[nn.Parameter]:
        return []

    def forward(self, net: nn.Module, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """`net(x)`, with the groups fed to any group-conditioned module of the model."""
        with feed_groups(net, g):
            return net(x)

    def loss(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor, g: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.forward(net, x, g)
        return F.cross_entropy(logits, y), logits

    def after_step(self, model: nn.Module) -> None:
        return None

    def end_epoch(self, model: nn.Module, epoch: int) -> None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


class LossFnPlugin(TrainPlugin):
    """`fit(loss_fn=...)`: a loss of `(logits, labels, groups)` in place of the cross-entropy."""

    def __init__(self, loss_fn: Any, label_smoothing: float = 0.0) -> None:
        self.loss_fn = loss_fn
        self.label_smoothing = label_smoothing

    def loss(self, net, x, y, g):
        logits = self.forward(net, x, g)
        if self.loss_fn is None:
            return F.cross_entropy(logits, y, label_smoothing=self.label_smoothing), logits
        return self.loss_fn(logits, y, g), logits
