"""Size, FLOPs and measured CPU latency of a model."""
from __future__ import annotations

import io
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .groups import feed_groups
from .zoo import example_input


@dataclass
class ModelCost:
    """What a model costs: multiply-accumulates, parameters, bytes on disk, latency."""

    macs: float
    params: int
    nonzero_params: int
    size_bytes: int
    latency_ms: float | None

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) if v is not None else float("nan") for k, v in asdict(self).items()}


def count_macs_params(model: nn.Module, image_size: int) -> tuple[float, int]:
    """Multiply-accumulate count of one forward pass and the parameter count (Torch-Pruning's counter)."""
    import torch_pruning as tp

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        # A group-conditioned model costs the same whatever the group: count it with group 0.
        with feed_groups(model, torch.zeros(1, dtype=torch.long, device=device)):
            macs, params = tp.utils.count_ops_and_params(model, example_input(image_size, device=device))
    finally:
        model.train(was_training)
    return float(macs), int(params)


def serialized_size(model: nn.Module) -> int:
    """Bytes of the model's state dict as torch.save writes it."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes


@torch.inference_mode()
def measure_latency(model: nn.Module, image_size: int, batch: int = 1, repeats: int = 30,
                    warmup: int = 5) -> float:
    """Median wall-clock milliseconds of one forward pass on the model's device."""
    device = next(iter(model.parameters()), torch.empty(0)).device
    x = example_input(image_size, batch=batch, device=device)
    was_training = model.training
    model.eval()
    with feed_groups(model, torch.zeros(batch, dtype=torch.long, device=device)):  # group-conditioned models
        for _ in range(warmup):
            model(x)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    model.train(was_training)
    times.sort()
    return 1000.0 * times[len(times) // 2]


def model_cost(model: nn.Module, image_size: int, latency: bool = True) -> ModelCost:
    """FLOPs (as MACs), parameters, non-zero parameters, serialized size and latency."""
    try:
        macs, params = count_macs_params(model, image_size)
    except Exception:  # quantized or exotic modules the counter cannot trace
        macs, params = float("nan"), sum(p.numel() for p in model.parameters())
    nonzero = int(sum(int((p != 0).sum()) for p in model.parameters()))
    return ModelCost(macs=macs, params=params, nonzero_params=nonzero,
                     size_bytes=serialized_size(model),
                     latency_ms=measure_latency(model, image_size) if latency else None)
