"""Magnitude pruning: unstructured (per layer or global) and structured L1 channel pruning.

Unstructured pruning zeroes the smallest-|w| weights with torch.nn.utils.prune
(`l1_unstructured` per layer, or `global_unstructured` over all layers at once)
and makes the zeros permanent (`prune.remove`) after the optional
fine-tuning, during which the masks keep the pruned weights at zero. The
tensors stay dense: size on disk and latency do not change, the number of
non-zero parameters does.

Structured pruning removes whole output channels physically with
Torch-Pruning (`MetaPruner`, `MagnitudeImportance(p=1)`: the L1 norm of every
coupled group of weights), never touching the classifier's output layer, so
the pruned model is smaller and faster and saves with `save_checkpoint`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

from ...engine import RunDir, TrainConfig
from ...models import example_input, input_size
from .base import CompressError, CompressResult, copy_model, final_linear_name, finetune, measure_cost, \
    model_device

SCOPES = ("local", "global")


@dataclass
class MagnitudeConfig:
    """Settings of `magnitude_prune`.

    `sparsity`: fraction of the prunable weights set to zero, in [0, 1).
    `scope`: "local" (that fraction of every layer) or "global" (that fraction
    of all prunable weights together, smallest magnitudes first).
    Prunable weights: every Conv2d and Linear weight and the attention input
    projections (`in_proj_weight`); `skip_final` leaves the output layer dense.
    """

    sparsity: float = 0.5
    scope: str = "local"
    skip_final: bool = False
    finetune: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=0, lr=0.01))
    latency: bool = True

    def validate(self) -> None:
        if not 0 <= self.sparsity < 1:
            raise CompressError(f"sparsity must be in [0, 1), got {self.sparsity}")
        if self.scope not in SCOPES:
            raise CompressError(f"scope must be 'local' or 'global', got {self.scope!r}")


@dataclass
class StructuredConfig:
    """Settings of `structured_prune`.

    `ratio`: fraction of the output channels removed (per layer, or over the
    whole network with `global_pruning`), in [0, 1).
    """

    ratio: float = 0.5
    global_pruning: bool = False
    round_to: int | None = None
    finetune: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=0, lr=0.01))
    latency: bool = True

    def validate(self) -> None:
        if not 0 <= self.ratio < 1:
            raise CompressError(f"ratio must be in [0, 1), got {self.ratio}")


def prunable_weights(model: nn.Module, skip_final: bool = False) -> list[tuple[str, nn.Module, str]]:
    """(module path, module, parameter name) of every weight magnitude pruning may zero."""
    final = final_linear_name(model) if skip_final else None
    out: list[tuple[str, nn.Module, str]] = []
    for name, m in model.named_modules():
        if name == final:
            continue
        if isinstance(m, (nn.Conv2d, nn.Linear)) and isinstance(getattr(m, "weight", None), torch.Tensor):
            out.append((name, m, "weight"))
        elif isinstance(m, nn.MultiheadAttention) and isinstance(getattr(m, "in_proj_weight", None), torch.Tensor):
            out.append((name, m, "in_proj_weight"))
    return out


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold every torch.nn.utils.prune mask into its weight (plain Parameters again)."""
    for m in model.modules():
        names = [h._tensor_name for h in m._forward_pre_hooks.values() if isinstance(h, prune.BasePruningMethod)]
        for name in names:
            prune.remove(m, name)
    return model


def sparsity_of(model: nn.Module, skip_final: bool = False) -> dict[str, float]:
    """Fraction of zeros of every prunable weight, and overall under the key ''."""
    zeros = total = 0
    out: dict[str, float] = {}
    for name, m, p in prunable_weights(model, skip_final):
        w = getattr(m, p)
        z, n = int((w == 0).sum()), w.numel()
        out[f"{name}.{p}"] = z / n
        zeros, total = zeros + z, total + n
    out[""] = zeros / max(total, 1)
    return out


def magnitude_prune(model: nn.Module, splits: Any = None, cfg: MagnitudeConfig | None = None,
                    run_dir: str | Path | RunDir | None = None, arch: dict[str, Any] | None = None,
                    image_size: int | None = None) -> CompressResult:
    """Zero the smallest-magnitude weights (local or global), fine-tune with masks, make permanent."""
    cfg = cfg or MagnitudeConfig()
    cfg.validate()
    size = image_size or input_size(arch, model, splits)
    new_model = copy_model(model)
    targets = prunable_weights(new_model, cfg.skip_final)
    if not targets:
        raise CompressError("the model has no Conv2d/Linear weights to prune")
    if cfg.sparsity > 0:
        if cfg.scope == "local":
            for _, m, p in targets:
                prune.l1_unstructured(m, p, amount=cfg.sparsity)
        else:
            prune.global_unstructured([(m, p) for _, m, p in targets], pruning_method=prune.L1Unstructured,
                                      amount=cfg.sparsity)
    # The reparametrisation (weight = weight_orig * weight_mask) keeps the zeros through fine-tuning.
    new_model, history = finetune(new_model, splits, cfg.finetune, run_dir)
    make_permanent(new_model)
    per_layer = sparsity_of(new_model, cfg.skip_final)
    cost = measure_cost(new_model, size, latency=cfg.latency)
    details = {"scope": cfg.scope, "sparsity": cfg.sparsity, "achieved_sparsity": per_layer.pop(""),
               "layer_sparsity": per_layer, "skip_final": cfg.skip_final,
               "finetune_epochs": cfg.finetune.epochs, "finetune_history": history}
    return CompressResult(model=new_model, technique=f"prune-{cfg.scope}", param=cfg.sparsity, cost=cost,
                          details=details, arch=dict(arch) if arch else None)


def conv_channels(model: nn.Module) -> dict[str, int]:
    """Output channels of every Conv2d, by module path."""
    return {n: int(m.out_channels) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def structured_prune(model: nn.Module, splits: Any = None, cfg: StructuredConfig | None = None,
                     run_dir: str | Path | RunDir | None = None, arch: dict[str, Any] | None = None,
                     image_size: int | None = None) -> CompressResult:
    """Remove the lowest-L1 output channels physically (Torch-Pruning), then optionally fine-tune."""
    import torch_pruning as tp

    cfg = cfg or StructuredConfig()
    cfg.validate()
    size = image_size or input_size(arch, model, splits)
    new_model = copy_model(model)
    if any(isinstance(m, nn.MultiheadAttention) for m in new_model.modules()):
        raise CompressError("structured channel pruning supports the CNNs (vgg, resnet); for a ViT use "
                            "unstructured pruning (prune-local / prune-global) or head pruning")
    before = conv_channels(new_model)
    params_before = sum(p.numel() for p in new_model.parameters())
    if cfg.ratio > 0:
        final = new_model.get_submodule(final_linear_name(new_model))
        example = example_input(size, device=model_device(new_model))
        with torch.enable_grad():
            pruner = tp.pruner.MetaPruner(
                new_model, example, importance=tp.importance.MagnitudeImportance(p=1),
                pruning_ratio=cfg.ratio, global_pruning=cfg.global_pruning, ignored_layers=[final],
                round_to=cfg.round_to)
            pruner.step()
        new_model.eval()
    after = conv_channels(new_model)
    new_model, history = finetune(new_model, splits, cfg.finetune, run_dir)
    cost = measure_cost(new_model, size, latency=cfg.latency)
    details = {"ratio": cfg.ratio, "global_pruning": cfg.global_pruning,
               "channels": {n: [before[n], after.get(n, 0)] for n in before},
               "params_before": params_before, "params_after": sum(p.numel() for p in new_model.parameters()),
               "finetune_epochs": cfg.finetune.epochs, "finetune_history": history}
    return CompressResult(model=new_model, technique="prune-structured", param=cfg.ratio, cost=cost,
                          details=details, arch=dict(arch) if arch else None)
