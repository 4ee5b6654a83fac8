"""Low-rank approximation: truncated SVD of Linear and Conv2d layers.

A Linear layer W (out x in) becomes two Linear layers, W ~ (U_r S_r^1/2)(S_r^1/2 V_r^T):
`first` (in -> r, no bias) then `second` (r -> out, the original bias). A k x k
convolution is factored through the SVD of its weight reshaped to
out x (in*k*k): `first` is a k x k convolution with r output channels (same
stride, padding, dilation), `second` a 1 x 1 convolution r -> out. With r equal
to the full rank min(out, in*k*k) the factored layer computes the same function
up to rounding. The square root of the singular values is split between the two
factors so that both have the same scale (fine-tuning then behaves better than
with all of S on one side).

The rank of each layer is chosen by the energy kept (the smallest r with
sum_{i<=r} s_i^2 >= energy * sum_i s_i^2), by a fraction of the full rank, or as
an absolute rank. A layer whose factorisation would not have fewer parameters
than the original is left alone unless `only_if_smaller=False`.

The factor modules are registered with `models.register_module_type`, so a
factored model saves and reloads through `save_checkpoint`/`load_checkpoint`
(import `equiprune.methods.compress` before loading, which registers them).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from ...engine import RunDir, TrainConfig
from ...models import input_size, register_module_type
from .base import CompressError, CompressResult, copy_model, final_linear_name, finetune, measure_cost

RANK_RULES = ("energy", "rank_ratio", "rank")


@register_module_type
class LowRankLinear(nn.Module):
    """`second(first(x))`: a rank-r factorisation of a Linear layer."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True) -> None:
        super().__init__()
        self.first = nn.Linear(in_features, rank, bias=False)
        self.second = nn.Linear(rank, out_features, bias=bias)

    @property
    def rank(self) -> int:
        return int(self.first.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))

    def structure_attrs(self) -> dict[str, Any]:
        # Read from the children so that later channel surgery cannot make them stale.
        return {"lr_in": int(self.first.in_features), "lr_out": int(self.second.out_features),
                "lr_rank": int(self.first.out_features), "lr_bias": self.second.bias is not None}

    @classmethod
    def from_structure(cls, attrs: dict[str, Any]) -> "LowRankLinear":
        return cls(attrs["lr_in"], attrs["lr_out"], attrs["lr_rank"], bool(attrs["lr_bias"]))


@register_module_type
class LowRankConv2d(nn.Module):
    """`second(first(x))`: a k x k conv with r outputs followed by a 1 x 1 conv r -> out."""

    def __init__(self, in_channels: int, out_channels: int, rank: int, kernel_size: tuple[int, int],
                 stride: tuple[int, int] = (1, 1), padding: tuple[int, int] | str = (0, 0),
                 dilation: tuple[int, int] = (1, 1), bias: bool = True, padding_mode: str = "zeros") -> None:
        super().__init__()
        self.first = nn.Conv2d(in_channels, rank, tuple(kernel_size), stride=tuple(stride),
                               padding=padding if isinstance(padding, str) else tuple(padding),
                               dilation=tuple(dilation), bias=False, padding_mode=padding_mode)
        self.second = nn.Conv2d(rank, out_channels, 1, bias=bias)

    @property
    def rank(self) -> int:
        return int(self.first.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))

    def structure_attrs(self) -> dict[str, Any]:
        f = self.first
        return {"lr_in": int(f.in_channels), "lr_out": int(self.second.out_channels), "lr_rank": int(f.out_channels),
                "lr_kernel": [int(v) for v in f.kernel_size], "lr_stride": [int(v) for v in f.stride],
                "lr_padding": f.padding if isinstance(f.padding, str) else [int(v) for v in f.padding],
                "lr_dilation": [int(v) for v in f.dilation], "lr_bias": self.second.bias is not None,
                "lr_padding_mode": str(f.padding_mode)}

    @classmethod
    def from_structure(cls, attrs: dict[str, Any]) -> "LowRankConv2d":
        return cls(attrs["lr_in"], attrs["lr_out"], attrs["lr_rank"], attrs["lr_kernel"], attrs["lr_stride"],
                   attrs["lr_padding"], attrs["lr_dilation"], bool(attrs["lr_bias"]), attrs["lr_padding_mode"])


@dataclass
class LowRankConfig:
    """Settings of `low_rank`.

    `by`: "energy" (`value` = fraction of the squared singular values kept, in
    (0, 1]), "rank_ratio" (`value` = fraction of each layer's full rank kept, in
    (0, 1]) or "rank" (`value` = the rank itself, capped at the full rank).
    `layers`: module paths to factor (default: every Linear and non-grouped
    Conv2d except the classifier's output layer when `skip_final`).
    """

    by: str = "energy"
    value: float = 0.9
    layers: list[str] | None = None
    skip_final: bool = True
    only_if_smaller: bool = True
    finetune: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=0, lr=0.01))
    latency: bool = True

    def validate(self) -> None:
        if self.by not in RANK_RULES:
            raise CompressError(f"by must be one of {', '.join(RANK_RULES)}, got {self.by!r}")
        if self.by in ("energy", "rank_ratio") and not 0 < self.value <= 1:
            raise CompressError(f"with by={self.by!r} the value must be in (0, 1], got {self.value}")
        if self.by == "rank" and (self.value < 1 or int(self.value) != self.value):
            raise CompressError(f"with by='rank' the value must be a whole number >= 1, got {self.value}")


def _weight_matrix(module: nn.Module) -> torch.Tensor:
    return module.weight.detach().reshape(module.weight.shape[0], -1).double()


@contextlib.contextmanager
def _lapack_threads(numel: int) -> Iterator[None]:
    """One thread for small matrices: LAPACK's thread start-up costs more than the
    work there, and on a busy machine it can take a hundred times longer."""
    before = torch.get_num_threads()
    small = numel < 1_000_000 and before > 1
    if small:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if small:
            torch.set_num_threads(before)


def layer_svd(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin SVD (float64) of a layer's weight reshaped to out x (in*k*k)."""
    w = _weight_matrix(module)
    with _lapack_threads(w.numel()):
        return torch.linalg.svd(w, full_matrices=False)


def choose_rank(singular_values: torch.Tensor, by: str, value: float) -> int:
    """Rank kept for one layer given its singular values (descending)."""
    full = int(singular_values.numel())
    if by == "rank":
        return max(1, min(int(value), full))
    if by == "rank_ratio":
        return max(1, min(full, int(math.ceil(value * full - 1e-9))))
    energy = singular_values.double() ** 2
    total = float(energy.sum())
    if total == 0.0:
        return 1
    cum = torch.cumsum(energy, 0) / total
    # Tolerance so that value=1.0 (or 0.9 hitting a boundary exactly) is not lost to rounding.
    return max(1, min(full, int(torch.searchsorted(cum, torch.tensor(value - 1e-12, dtype=cum.dtype))) + 1))


def factorize(module: nn.Module, rank: int,
              svd: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> LowRankLinear | LowRankConv2d:
    """The rank-`rank` SVD factorisation of a Linear or (non-grouped) Conv2d layer.

    `svd` may pass a precomputed `layer_svd(module)`.
    """
    if isinstance(module, nn.Conv2d):
        if module.groups != 1:
            raise CompressError("grouped or depthwise convolutions cannot be factored by SVD here")
        out_c, in_c, kh, kw = module.weight.shape
        new: LowRankLinear | LowRankConv2d = LowRankConv2d(
            in_c, out_c, rank, (kh, kw), module.stride, module.padding, module.dilation,
            module.bias is not None, module.padding_mode)
    elif isinstance(module, nn.Linear):
        new = LowRankLinear(module.in_features, module.out_features, rank, module.bias is not None)
    else:
        raise CompressError(f"only Linear and Conv2d layers can be factored, not {type(module).__name__}")
    full = min(module.weight.shape[0], module.weight[0].numel())
    if not 1 <= rank <= full:
        raise CompressError(f"rank must be between 1 and the full rank {full}, got {rank}")
    u, s, vh = svd if svd is not None else layer_svd(module)
    root = s[:rank].sqrt()
    first = (root[:, None] * vh[:rank]).to(module.weight.dtype)
    second = (u[:, :rank] * root[None, :]).to(module.weight.dtype)
    with torch.no_grad():
        new.first.weight.copy_(first.reshape(new.first.weight.shape))
        new.second.weight.copy_(second.reshape(new.second.weight.shape))
        if module.bias is not None:
            new.second.bias.copy_(module.bias.detach())
    return new.to(module.weight.device).train(module.training)


def factorable_layers(model: nn.Module, skip_final: bool = True) -> list[str]:
    """Module paths `low_rank` factors by default."""
    final = final_linear_name(model) if skip_final else None
    out = []
    for name, m in model.named_modules():
        if name == final:
            continue
        if (type(m) is nn.Linear) or (type(m) is nn.Conv2d and m.groups == 1):
            out.append(name)
    return out


def _params_of(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def low_rank(model: nn.Module, splits: Any = None, cfg: LowRankConfig | None = None,
             run_dir: str | Path | RunDir | None = None, arch: dict[str, Any] | None = None,
             image_size: int | None = None) -> CompressResult:
    """Replace layers by truncated-SVD factorisations (optionally fine-tune); returns a new model.

    `splits` is only needed for fine-tuning (`cfg.finetune.epochs > 0`).
    """
    cfg = cfg or LowRankConfig()
    cfg.validate()
    size = image_size or input_size(arch, model, splits)
    new_model = copy_model(model)
    names = cfg.layers if cfg.layers is not None else factorable_layers(new_model, cfg.skip_final)
    layers: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    params_before = _params_of(new_model)
    for name in names:
        try:
            module = new_model.get_submodule(name)
        except AttributeError:
            raise CompressError(f"model has no layer {name!r} to factor") from None
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
            raise CompressError(f"layer {name!r} is a {type(module).__name__}; only Linear and Conv2d can be factored")
        if isinstance(module, nn.Conv2d) and module.groups != 1:
            skipped[name] = "grouped convolution"
            continue
        svd = layer_svd(module)
        s = svd[1]
        rank = choose_rank(s, cfg.by, cfg.value)
        new = factorize(module, rank, svd)
        kept = float((s[:rank] ** 2).sum() / (s ** 2).sum()) if float((s ** 2).sum()) > 0 else 1.0
        if cfg.only_if_smaller and _params_of(new) >= _params_of(module):
            skipped[name] = f"rank {rank} of {s.numel()} would not reduce parameters"
            continue
        parent_name, _, child = name.rpartition(".")
        setattr(new_model.get_submodule(parent_name) if parent_name else new_model, child, new)
        layers[name] = {"rank": rank, "full_rank": int(s.numel()), "energy_kept": kept,
                        "params_before": _params_of(module), "params_after": _params_of(new)}
    new_model, history = finetune(new_model, splits, cfg.finetune, run_dir)
    cost = measure_cost(new_model, size, latency=cfg.latency)
    details = {"by": cfg.by, "value": cfg.value, "layers": layers, "skipped": skipped,
               "params_before": params_before, "params_after": _params_of(new_model),
               "finetune_epochs": cfg.finetune.epochs, "finetune_history": history}
    return CompressResult(model=new_model, technique=f"lowrank-{cfg.by}", param=cfg.value, cost=cost,
                          details=details, arch=dict(arch) if arch else None)
