"""Learning-rate range test (Smith, 2017; the fastai / Lightning "lr finder"): pick a rate before training.

A copy of the model is trained for a few hundred steps at most while the
rate grows geometrically from `start` to `end`; the smoothed loss first
falls, then blows up. The suggested rate is where the smoothed loss falls
fastest (per decade of rate) before its minimum, as Lightning's tuner picks;
when the loss hardly fell in the test (under 5%), no such stretch exists and
the rate at the minimum divided by 10 (fastai's classic rule) is used, with
`fell` telling the caller the pick is a weak one. The model passed in is not
changed.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from .runtime import make_loader, resolve_device, set_seed
from .train import TrainConfig, _optimizer


@dataclass
class LRFindConfig:
    """Settings of `find_lr`: the rate range, the number of steps, when to stop."""

    start: float = 1e-6
    end: float = 1.0
    steps: int = 100
    smoothing: float = 0.9      # exponential moving average of the loss (bias-corrected)
    diverge: float = 4.0        # stop once the smoothed loss exceeds this multiple of its minimum

    def validate(self) -> None:
        if not 0 < self.start < self.end:
            raise ValueError(f"lr range test: need 0 < start < end, got {self.start} and {self.end}")
        if self.steps < 5:
            raise ValueError(f"lr range test: steps must be >= 5, got {self.steps}")


@dataclass
class LRFindResult:
    """Rates tried, the smoothed loss at each, and the suggested rate."""

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    suggestion: float = float("nan")
    min_loss_lr: float = float("nan")
    fell: float = 0.0           # how far the smoothed loss fell below its start, as a fraction of it
    rule: str = ""              # how the suggestion was picked

    def to_dict(self) -> dict[str, Any]:
        return {"lrs": self.lrs, "losses": self.losses, "suggestion": self.suggestion,
                "min_loss_lr": self.min_loss_lr, "fell": self.fell, "rule": self.rule}


def find_lr(model: nn.Module, train_set: Any, cfg: TrainConfig, lf: LRFindConfig | None = None) -> LRFindResult:
    """Run the range test on a copy of `model` with `cfg`'s optimizer, batch size and weight decay."""
    lf = lf or LRFindConfig()
    lf.validate()
    device = resolve_device(cfg.device)
    gen = set_seed(cfg.seed)
    net = copy.deepcopy(model).to(device).train()
    opt, _ = _optimizer(net.parameters(), replace(cfg, lr=lf.start))
    loader = make_loader(train_set, cfg.batch_size, shuffle=True, drop_last=len(train_set) > cfg.batch_size,
                         generator=gen)
    criterion = nn.CrossEntropyLoss()
    ratio = (lf.end / lf.start) ** (1.0 / (lf.steps - 1))
    res = LRFindResult()
    avg, best, step = 0.0, math.inf, 0
    while step < lf.steps:
        for x, y, _, _ in loader:
            lr = lf.start * ratio ** step
            for g in opt.param_groups:
                g["lr"] = lr
            loss = criterion(net(x.to(device)), y.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            value = float(loss.detach())
            avg = lf.smoothing * avg + (1 - lf.smoothing) * value
            smoothed = avg / (1 - lf.smoothing ** (step + 1))
            step += 1
            if not math.isfinite(smoothed):
                break
            res.lrs.append(lr)
            res.losses.append(smoothed)
            best = min(best, smoothed)
            if step >= lf.steps or smoothed > lf.diverge * best:
                break
        else:
            continue
        break
    if res.losses:
        _suggest(res, lf)
    return res


def _suggest(res: LRFindResult, lf: LRFindConfig) -> None:
    """Fill `suggestion`: the steepest fall before the minimum, else one tenth of the minimum's rate."""
    losses = np.asarray(res.losses)
    i_min = int(losses.argmin())
    res.min_loss_lr = res.lrs[i_min]
    res.fell = float((losses[0] - losses[i_min]) / max(abs(losses[0]), 1e-12))
    res.rule = "one tenth of the rate at the lowest loss"
    res.suggestion = max(lf.start, res.lrs[i_min] / 10.0)
    skip = max(3, len(losses) // 10)   # the first averages are mostly the bias correction's noise
    if i_min > skip + 1 and res.fell >= 0.05:
        slope = np.gradient(losses[: i_min + 1], np.log(np.asarray(res.lrs[: i_min + 1])))
        i = skip + int(slope[skip:].argmin())
        res.suggestion = res.lrs[i]
        res.rule = "the steepest fall of the loss"
