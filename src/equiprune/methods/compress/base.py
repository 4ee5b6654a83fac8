"""What every compressor shares: the result type, errors, cost measurement, fine-tuning."""
from __future__ import annotations

import contextlib
import copy
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from ...engine import RunDir, TrainConfig, fit
from ...models import ModelCost, count_macs_params, measure_latency, model_cost, serialized_size


class CompressError(ValueError):
    """A compression setting or input that cannot work (the message says what to change)."""


@dataclass
class CompressResult:
    """A compressed model and what it costs.

    `param` is the setting that was swept (sparsity, channel ratio, energy or
    rank kept, width factor, or the quantization mode); `arch` is the
    `build_model` recipe the model must be saved with (distillation changes the
    width); `details` holds technique-specific facts (layers touched, ranks,
    calibration indices, ...) and is stored in the checkpoint's `extra`.
    """

    model: nn.Module
    technique: str
    param: float | str
    cost: ModelCost
    details: dict[str, Any] = field(default_factory=dict)
    arch: dict[str, Any] | None = None

    @property
    def ratio(self) -> float | str:
        """Alias of `param` (the compression ratio for the pruning techniques)."""
        return self.param

    def summary(self) -> dict[str, Any]:
        """JSON-able summary (no model)."""
        return {"technique": self.technique, "param": self.param, "cost": self.cost.to_dict(),
                "details": self.details, "arch": self.arch}


def final_linear_name(model: nn.Module) -> str:
    """Module path of the classifier's output layer: the last nn.Linear in definition order."""
    names = [n for n, m in model.named_modules() if type(m) is nn.Linear]
    if not names:
        raise CompressError("the model has no nn.Linear output layer; equiprune models end in one")
    return names[-1]


def model_device(model: nn.Module) -> torch.device:
    """Device of the first parameter or buffer (CPU for parameter-free quantized models)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def measure_cost(model: nn.Module, image_size: int, latency: bool = True,
                 reference: nn.Module | None = None) -> ModelCost:
    """ModelCost of `model`; with `reference` (the float model a quantized one came from),
    MACs and parameter counts come from the reference while size and latency are measured
    on `model` itself (the FLOP counter cannot trace quantized kernels)."""
    if reference is None:
        return model_cost(model, image_size, latency=latency)
    macs, params = count_macs_params(reference, image_size)
    nonzero = int(sum(int((p != 0).sum()) for p in reference.parameters()))
    return ModelCost(macs=macs, params=params, nonzero_params=nonzero, size_bytes=serialized_size(model),
                     latency_ms=measure_latency(model, image_size) if latency else None)


def copy_model(model: nn.Module) -> nn.Module:
    """An independent copy on the CPU in eval mode (compressors never modify their input)."""
    return copy.deepcopy(model).cpu().eval()


def finetune(model: nn.Module, splits: Any, cfg: TrainConfig | None, run_dir: str | Path | RunDir | None,
             state_name: str = "finetune_state.pt") -> tuple[nn.Module, list[dict[str, Any]]]:
    """Fine-tune with `engine.fit` when `cfg.epochs > 0` (resumable through `run_dir`)."""
    if cfg is None or cfg.epochs <= 0:
        return model, []
    if splits is None:
        raise CompressError("fine-tuning needs data: pass `splits`, or set the fine-tuning epochs to 0")
    res = fit(model, splits, cfg, run_dir=run_dir, state_name=state_name)
    return res.model.cpu().eval(), res.history


def group_weights(groups: np.ndarray, spec: str | list[float] | tuple[float, ...] | None) -> torch.Tensor | None:
    """Per-group loss weights: None, inverse group frequency, or a given vector.

    Weights are scaled so that their mean over the training items is 1, so the
    weighted loss keeps the scale of the unweighted one.
    """
    if spec is None or spec == "none":
        return None
    groups = np.asarray(groups, dtype=np.int64)
    if groups.size == 0:
        raise CompressError("cannot derive group weights from an empty training set")
    counts = np.bincount(groups)
    if isinstance(spec, str):
        if spec != "inverse":
            raise CompressError(f"group weights must be 'none', 'inverse' or a list of numbers, got {spec!r}")
        w = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
    else:
        w = np.asarray(list(spec), dtype=np.float64)
        if len(w) < len(counts):
            raise CompressError(f"{len(w)} group weights given but the data has {len(counts)} groups; "
                                "give one weight per group")
        if (w < 0).any() or not np.isfinite(w).all():
            raise CompressError(f"group weights must be finite and >= 0, got {list(w)}")
        counts = np.pad(counts, (0, len(w) - len(counts)))
    mean = float((w * counts).sum() / counts.sum())
    if mean <= 0:
        raise CompressError("the group weights give every training item weight 0")
    return torch.as_tensor(w / mean, dtype=torch.float32)


@contextlib.contextmanager
def quiet_quantization() -> Iterator[None]:
    """Silence torch.ao.quantization's deprecation and observer warnings.

    torch.ao.quantization is deprecated in favour of torchao, and its observers
    warn about `reduce_range`; neither is actionable for an equiprune user.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.ao(\.|$)")
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.ao(\.|$)")
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.ao(\.|$)")
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated.*")
        yield
