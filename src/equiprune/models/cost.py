"""Size, FLOPs and measured CPU latency of a model."""
from __future__ import annotations

import io
import time
from dataclasses import asdict, dataclass

import numpy as np
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
    latency_p10_ms: float | None = None
    latency_p90_ms: float | None = None
    #: 1.0 when the spread was small enough to compare latencies, 0.0 when not (`Latency.reliable`)
    latency_reliable: float | None = None

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) if v is not None else float("nan") for k, v in asdict(self).items()}


#: A latency is marked unreliable when its 10-90% range exceeds this fraction of the median, or when the
#: medians of the measuring blocks differ by more than this fraction: on a shared machine other jobs'
#: load, not the model, then decides the number.
MAX_LATENCY_SPREAD = 0.5


@dataclass
class Latency:
    """Milliseconds of one forward pass: median, 10th and 90th percentile, block medians, and a verdict."""

    median: float
    p10: float
    p90: float
    block_medians: list[float]

    @property
    def spread(self) -> float:
        """The larger of the 10-90% range and the block medians' range, relative to the median."""
        rel = (self.p90 - self.p10) / self.median if self.median > 0 else float("inf")
        blocks = (max(self.block_medians) - min(self.block_medians)) / self.median if self.median > 0 else 0.0
        return max(rel, blocks)

    @property
    def reliable(self) -> bool:
        return self.spread <= MAX_LATENCY_SPREAD


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
def latency_stats(model: nn.Module, image_size: int, batch: int = 1, repeats: int = 30, warmup: int = 5,
                  blocks: int = 3) -> Latency:
    """Wall-clock milliseconds of one forward pass on the model's device, with their spread.

    After `warmup` passes, `repeats` timed passes in `blocks` blocks separated
    by a short sleep (so a burst of other jobs' load shows as a block apart):
    the median, the 10th / 90th percentiles and each block's median.
    """
    device = next(iter(model.parameters()), torch.empty(0)).device
    x = example_input(image_size, batch=batch, device=device)
    was_training = model.training
    model.eval()
    times, medians = [], []
    per_block = max(1, repeats // max(1, blocks))
    with feed_groups(model, torch.zeros(batch, dtype=torch.long, device=device)):  # group-conditioned models
        for _ in range(warmup):
            model(x)
        for b in range(max(1, blocks)):
            block = []
            for _ in range(per_block):
                t0 = time.perf_counter()
                model(x)
                block.append(1000.0 * (time.perf_counter() - t0))
            times += block
            medians.append(float(np.median(block)))
            if b + 1 < blocks:
                time.sleep(0.01)
    model.train(was_training)
    p10, med, p90 = np.percentile(times, [10, 50, 90])
    return Latency(median=float(med), p10=float(p10), p90=float(p90), block_medians=medians)


def measure_latency(model: nn.Module, image_size: int, batch: int = 1, repeats: int = 30,
                    warmup: int = 5) -> float:
    """Median wall-clock milliseconds of one forward pass on the model's device (`latency_stats`)."""
    return latency_stats(model, image_size, batch=batch, repeats=repeats, warmup=warmup).median


def model_cost(model: nn.Module, image_size: int, latency: bool = True) -> ModelCost:
    """FLOPs (as MACs), parameters, non-zero parameters, serialized size and latency."""
    try:
        macs, params = count_macs_params(model, image_size)
    except Exception:  # quantized or exotic modules the counter cannot trace
        macs, params = float("nan"), sum(p.numel() for p in model.parameters())
    nonzero = int(sum(int((p != 0).sum()) for p in model.parameters()))
    lat = latency_stats(model, image_size) if latency else None
    return ModelCost(macs=macs, params=params, nonzero_params=nonzero,
                     size_bytes=serialized_size(model), latency_ms=lat.median if lat else None,
                     latency_p10_ms=lat.p10 if lat else None, latency_p90_ms=lat.p90 if lat else None,
                     latency_reliable=float(lat.reliable) if lat else None)
