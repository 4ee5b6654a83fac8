"""GroupDRO: minimise the loss of the worst group x class cell, with online cell weights.

Source: Sagawa, Koh, Hashimoto & Liang, "Distributionally Robust Neural
Networks", ICLR 2020, Algorithm 1: after each batch the weight of cell c
becomes q_c ← q_c · exp(η · L_c) (L_c: the batch's mean loss on cell c),
q is renormalised to sum 1, and the model minimises Σ_c q_c L_c. The
cells here are group x class (as MEDFAIR's GroupDRO does for sensitive
groups, refined by class). Cells absent from a batch keep their weight
before renormalisation (L_c = 0). Under torchrun the cell losses are summed
over ranks first, so every rank holds the same q.

Group at inference: NOT needed (the model is unchanged; only the loss differs).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ...engine.distributed import all_reduce_sum, is_distributed
from .base import MethodSpec, Mitigation, MitigationConfig, cell_index, num_groups_of


@dataclass
class GroupDROConfig(MitigationConfig):
    eta: float = 0.01            # step size of the cell weights (MEDFAIR's default)

    HELP = {"eta": "step size η of the online cell weights q_c <- q_c exp(η L_c) (default 0.01)"}

    def validate(self) -> None:
        super().validate()
        self.check("eta", self.eta, self.eta > 0, "> 0")


def cell_losses(losses: torch.Tensor, cells: torch.Tensor, num_cells: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss per cell and items per cell of one batch (0 for empty cells)."""
    sums = torch.zeros(num_cells, device=losses.device, dtype=losses.dtype).index_add(0, cells, losses)
    counts = torch.bincount(cells, minlength=num_cells).to(losses.dtype)
    return sums / counts.clamp(min=1), counts


def update_weights(q: torch.Tensor, cell_loss: torch.Tensor, eta: float) -> torch.Tensor:
    """One exponentiated-gradient step of Sagawa et al.'s Algorithm 1."""
    q = q * torch.exp(eta * cell_loss)
    return q / q.sum()


class GroupDRO(Mitigation):
    def __init__(self, num_cells: int, num_classes: int, eta: float) -> None:
        self.num_cells, self.num_classes, self.eta = num_cells, num_classes, eta
        self.q = torch.full((num_cells,), 1.0 / num_cells)

    def setup(self, model: nn.Module, device: torch.device) -> None:
        self.q = self.q.to(device)

    def loss(self, net, x, y, g):
        logits = self.forward(net, x, g)
        losses = F.cross_entropy(logits.float(), y, reduction="none")
        cells = cell_index(y, g, self.num_classes)
        if is_distributed():  # one q on every rank: the step uses the whole global batch
            sums = all_reduce_sum(torch.zeros(self.num_cells, device=losses.device).index_add(
                0, cells, losses.detach()))
            counts = all_reduce_sum(torch.bincount(cells, minlength=self.num_cells).float())
            step_loss = sums / counts.clamp(min=1)
        else:
            step_loss = None
        per_cell, _ = cell_losses(losses, cells, self.num_cells)
        self.q = update_weights(self.q, (step_loss if step_loss is not None else per_cell).detach(), self.eta)
        return (self.q * per_cell).sum(), logits

    def state_dict(self) -> dict[str, Any]:
        return {"q": self.q.detach().cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "q" in state:
            self.q = state["q"].to(self.q.device)

    def finish(self, model: nn.Module, splits: Any) -> dict[str, Any]:
        return {"cell_weights": self.q.cpu().tolist(), "cells": "g * num_classes + y"}


def build(model: nn.Module, splits: Any, cfg: GroupDROConfig) -> Mitigation:
    c = splits.num_classes
    return GroupDRO(c * num_groups_of(splits), c, cfg.eta)


SPECS = (MethodSpec(name="groupdro", label="GroupDRO", config=GroupDROConfig, build=build, group_at_inference=False,
                    summary="online weights on the worst group x class cells (step size --eta)",
                    source="Sagawa et al., ICLR 2020, Algorithm 1"),)
