"""Seeds, devices and loaders."""
from __future__ import annotations

import os
import random
from contextlib import contextmanager, nullcontext
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, WeightedRandomSampler

from .distributed import get_local_rank, is_distributed


def set_seed(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch.Generator for data order."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """'auto' picks CUDA when available, else CPU.

    Under torchrun, 'auto' and a bare 'cuda' mean this process's GPU,
    ``cuda:LOCAL_RANK``.
    """
    if spec is None or spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(spec)
    if dev.type == "cuda" and dev.index is None and is_distributed():
        return torch.device("cuda", get_local_rank())
    return dev


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """The mixed-precision type on `device`: bfloat16 where the GPU supports it, else float16; None off CUDA.

    bfloat16 has float32's range, so it needs no gradient scaling; float16
    (older GPUs) does, which `fit` adds (`torch.amp.GradScaler`).
    """
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device, enabled: bool = True):
    """`torch.autocast` with `amp_dtype` on CUDA; a no-op elsewhere (CPU autocast is slower for these models)."""
    dtype = amp_dtype(device)
    if not enabled or dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def loader_workers(device: torch.device, requested: int | None) -> int:
    """DataLoader worker processes: `requested` when given (>= 0); else up to 8 on CUDA, none on CPU.

    On CPU the two or so cores are better spent on the model; a GPU starves
    without parallel decoding and augmentation.
    """
    if requested is not None and requested >= 0:
        return int(requested)
    if device.type != "cuda":
        return 0
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def class_balanced_weights(labels: np.ndarray) -> np.ndarray:
    """The papers' sampling weight of each item: 1 / (size of its class)."""
    labels = np.asarray(labels)
    return 1.0 / np.bincount(labels)[labels]


def class_balanced_sampler(labels: np.ndarray, generator: torch.Generator | None = None,
                           num_samples: int | None = None) -> WeightedRandomSampler:
    """The papers' sampler: each item drawn with weight 1 / (size of its class), with replacement."""
    labels = np.asarray(labels)
    weights = class_balanced_weights(labels)
    return WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.double),
                                 num_samples=num_samples or len(labels), replacement=True,
                                 generator=generator)


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool = False, drop_last: bool = False,
                generator: torch.Generator | None = None, sampler: Sampler | None = None,
                num_workers: int = 0) -> DataLoader:
    """A DataLoader with the project's defaults (pinned memory only on CUDA)."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle if sampler is None else False,
                      drop_last=drop_last, generator=generator, sampler=sampler,
                      num_workers=num_workers, pin_memory=torch.cuda.is_available(),
                      persistent_workers=num_workers > 0)


def _is_nhwc(p: torch.Tensor) -> bool:
    return p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()


@contextmanager
def nhwc_inference(model: torch.nn.Module) -> Iterator[torch.memory_format]:
    """Run the block with `model` in channels_last (NHWC) layout; restore its layout afterwards.

    oneDNN's NHWC convolutions run about 1.5-2x faster than NCHW for inference on
    CPU. The model is handed back in the layout it came in (pruning utilities
    .view() flat parameters; `fit` keeps NHWC while it trains), and a model with
    no 4-D float parameter (a ViT without patch conv, an int8 model) is left
    alone. Yields the memory format inputs should be given in.
    """
    convs = [p for p in model.parameters() if p.dim() == 4 and p.is_floating_point()]
    if not convs or _is_nhwc(convs[0]):
        yield torch.channels_last if convs else torch.contiguous_format
        return
    try:
        # Outside inference mode: parameters made inside it could never be trained again.
        with torch.inference_mode(False):
            model.to(memory_format=torch.channels_last)
    except (RuntimeError, TypeError):  # a module whose parameters cannot change layout: run as it is
        yield torch.contiguous_format
        return
    try:
        yield torch.channels_last
    finally:
        with torch.inference_mode(False):
            model.to(memory_format=torch.contiguous_format)


def to_layout(x: torch.Tensor, memory_format: torch.memory_format) -> torch.Tensor:
    """`x` in `memory_format` when it is a batch of images (4-D); anything else unchanged."""
    return x.contiguous(memory_format=memory_format) if x.dim() == 4 else x
