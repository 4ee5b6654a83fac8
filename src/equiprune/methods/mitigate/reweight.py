"""Group-balanced loss reweighting and resampling over group x class cells.

Source: the resampling baseline of MEDFAIR (Zong et al., ICLR 2023, Sec. 4:
"resampling" draws each sensitive subgroup equally often) and the
reweighing of Kamiran & Calders (KAIS 2012, Sec. 4.2: weight
P(g) P(y) / P(g, y)); cited by the SCP paper as [13]. Here the unit is the
group x class cell: ``target="balanced"`` gives every non-empty cell the same
total weight (weight ∝ 1 / cell size, `base.cell_weights`),
``target="independent"`` is Kamiran & Calders' weight.

- `reweight`: every item's cross-entropy is multiplied by its weight
  (the data order stays a plain shuffle);
- `resample`: items are drawn with replacement with probability ∝ weight,
  and the loss is the plain cross-entropy.

Group at inference: NOT needed (the model is unchanged; only training differs).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .base import MethodSpec, Mitigation, MitigationConfig, cell_index, cell_weights, num_groups_of


@dataclass
class ReweightConfig(MitigationConfig):
    """Loss reweighting: each item's loss times its cell weight."""

    target: str = "balanced"     # balanced (equal cells) | independent (Kamiran & Calders)

    HELP = {"target": "balanced: every group x class cell weighs the same (default); independent: Kamiran & "
                      "Calders' P(g)P(y)/P(g,y)"}

    def validate(self) -> None:
        super().validate()
        if self.target not in ("balanced", "independent"):
            raise ValueError(f"target must be 'balanced' or 'independent', got {self.target!r}")


@dataclass
class ResampleConfig(ReweightConfig):
    """Resampling: items drawn with probability proportional to their cell weight."""


class CellReweighting(Mitigation):
    """Per-item weights over the training split, used as loss weights or as sampling weights.

    Every item of a cell has the same weight, so the loss looks the weight up
    by the batch's cells (``g * C + y``) and needs no item index.
    """

    def __init__(self, splits: Any, target: str, resample: bool) -> None:
        train = splits.train
        c, k = splits.num_classes, num_groups_of(splits)
        self.weights = cell_weights(train.labels, train.groups, c, k, target)
        self.resample, self.num_classes = resample, c
        by_cell = np.zeros(c * k)
        by_cell[np.asarray(train.groups, dtype=np.int64) * c + np.asarray(train.labels, dtype=np.int64)] = self.weights
        self.by_cell = torch.as_tensor(by_cell, dtype=torch.float32)

    def sample_weights(self, train_set: Any) -> np.ndarray | None:
        return self.weights if self.resample else None

    def setup(self, model: nn.Module, device: torch.device) -> None:
        self.by_cell = self.by_cell.to(device)

    def loss(self, net, x, y, g):
        logits = self.forward(net, x, g)
        if self.resample:
            return F.cross_entropy(logits, y), logits
        w = self.by_cell[cell_index(y, g, self.num_classes)]
        return (F.cross_entropy(logits, y, reduction="none") * w).mean(), logits

    def finish(self, model: nn.Module, splits: Any) -> dict[str, Any]:
        return {"cell_weights": self.by_cell.cpu().tolist(), "resample": self.resample}


def build_reweight(model: nn.Module, splits: Any, cfg: ReweightConfig) -> Mitigation:
    return CellReweighting(splits, cfg.target, resample=False)


def build_resample(model: nn.Module, splits: Any, cfg: ResampleConfig) -> Mitigation:
    return CellReweighting(splits, cfg.target, resample=True)


SPECS = (
    MethodSpec(name="reweight", label="Reweighting (cells)", config=ReweightConfig, build=build_reweight,
               group_at_inference=False, summary="loss weights that balance the group x class cells",
               source="Kamiran & Calders, KAIS 2012, Sec. 4.2; MEDFAIR (Zong et al., ICLR 2023)"),
    MethodSpec(name="resample", label="Resampling (cells)", config=ResampleConfig, build=build_resample,
               group_at_inference=False, summary="draw the group x class cells equally often",
               source="MEDFAIR (Zong et al., ICLR 2023), resampling baseline"),
)
