"""Plain fine-tuning with the cross-entropy: the like-for-like control of every mitigation method.

Same runner, same budget, same data order and selection as the methods,
nothing changed in the loss, sampler or model, so "method − plain" isolates
what the method adds beyond the extra training itself. (`prune scp --scorer
none` is the pruning loop's control; its iteration selection may return the
start model unchanged, which this control never does.)

Source: none (empirical risk minimisation). Group at inference: NOT needed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from .base import MethodSpec, Mitigation, MitigationConfig


@dataclass
class PlainConfig(MitigationConfig):
    pass


def build(model: nn.Module, splits: Any, cfg: PlainConfig) -> Mitigation:
    return Mitigation()


SPECS = (MethodSpec(name="plain", label="Plain fine-tuning", config=PlainConfig, build=build,
                    group_at_inference=False, summary="the control: cross-entropy fine-tuning for the same budget",
                    source="ERM (no mitigation)", reads_groups=False),)
