"""SWA and SWAD: the average of the weights along the fine-tuning trajectory.

Sources: Izmailov et al., "Averaging Weights Leads to Wider Optima", UAI 2018
(SWA: one snapshot per epoch, averaged, Eq. 2: w ← (w·n + w_i)/(n+1), then
the batch-norm statistics recomputed); Cha et al., "SWAD", NeurIPS 2021
(dense averaging: a snapshot after every step). MEDFAIR (Zong et al., ICLR
2023) found SWAD its best method for worst-group results on Fitzpatrick-17k.
Simplification: SWAD's window is [start, end of training] in steps, not
chosen from the validation loss as Cha et al.'s Algorithm 1 does.

The kept model is the average whatever `select_on` says (the average is the
method). Group at inference: NOT needed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ...engine import make_loader
from .base import MethodSpec, Mitigation, MitigationConfig


@dataclass
class SWAConfig(MitigationConfig):
    start: float = 0.5           # fraction of the epochs trained before averaging begins

    HELP = {"start": "fraction of the epochs trained before averaging begins (default 0.5)"}

    def validate(self) -> None:
        super().validate()
        self.check("start", self.start, 0 <= self.start < 1, "in [0, 1)")


@dataclass
class SWADConfig(SWAConfig):
    pass


class WeightAverage(Mitigation):
    def __init__(self, start_epoch: int, dense: bool) -> None:
        self.start_epoch, self.dense = start_epoch, dense
        self.avg: dict[str, torch.Tensor] = {}
        self.n, self.epochs_done = 0, 0

    def _add(self, model: nn.Module) -> None:
        self.n += 1
        for k, p in model.named_parameters():
            v = p.detach().float()
            self.avg[k] = v.clone() if k not in self.avg else self.avg[k] + (v - self.avg[k]) / self.n

    def after_step(self, model: nn.Module) -> None:
        if self.dense and self.epochs_done >= self.start_epoch:
            self._add(model)

    def end_epoch(self, model: nn.Module, epoch: int) -> None:
        self.epochs_done = epoch + 1
        if not self.dense and self.epochs_done > self.start_epoch:
            self._add(model)

    def state_dict(self) -> dict[str, Any]:
        return {"avg": {k: v.cpu() for k, v in self.avg.items()}, "n": self.n, "epochs_done": self.epochs_done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.avg, self.n, self.epochs_done = dict(state["avg"]), int(state["n"]), int(state["epochs_done"])

    def finish(self, model: nn.Module, splits: Any) -> dict[str, Any]:
        if not self.n:
            return {"snapshots": 0}
        with torch.no_grad():
            for k, p in model.named_parameters():
                p.copy_(self.avg[k].to(p.device, p.dtype))
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
            device = next(model.parameters()).device
            loader = make_loader(splits.train.with_transform(splits.test.transform), 128)
            torch.optim.swa_utils.update_bn(((x.to(device),) for x, *_ in loader), model)
        return {"snapshots": self.n, "dense": self.dense, "start_epoch": self.start_epoch}


def _start(cfg: SWAConfig) -> int:
    return int(cfg.start * cfg.finetune.epochs)


def build_swa(model: nn.Module, splits: Any, cfg: SWAConfig) -> Mitigation:
    return WeightAverage(_start(cfg), dense=False)


def build_swad(model: nn.Module, splits: Any, cfg: SWADConfig) -> Mitigation:
    return WeightAverage(_start(cfg), dense=True)


SPECS = (
    MethodSpec(name="swa", label="SWA", config=SWAConfig, build=build_swa, group_at_inference=False,
               summary="average of one weight snapshot per epoch after --start", source="Izmailov et al., UAI 2018, Eq. 2",
               reads_groups=False),
    MethodSpec(name="swad", label="SWAD", config=SWADConfig, build=build_swad, group_at_inference=False,
               summary="dense average: a weight snapshot after every step after --start",
               source="Cha et al., NeurIPS 2021 (window simplified); MEDFAIR's best on Fitzpatrick-17k",
               reads_groups=False),
)
