"""Inference: predictions with groups, and streaming features of one layer."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, IterableDataset, SequentialSampler

from ..models.groups import feed_groups
from .distributed import gather_concat, is_distributed, progress_enabled, unwrap_model
from .runtime import autocast, loader_workers, make_loader, nhwc_inference, resolve_device, to_layout


@dataclass
class Predictions:
    """Per-item true label, predicted label, group, class probabilities and metadata row."""

    y_true: np.ndarray
    y_pred: np.ndarray
    groups: np.ndarray
    probs: np.ndarray
    index: np.ndarray

    def __len__(self) -> int:
        return len(self.y_true)

    def to_dict(self) -> dict[str, np.ndarray]:
        return {"y_true": self.y_true, "y_pred": self.y_pred, "groups": self.groups,
                "probs": self.probs, "index": self.index}


def _as_loader(data: Dataset | DataLoader, batch_size: int, device: torch.device | None = None) -> DataLoader:
    """`data` as an ordered loader (with worker processes on CUDA, `loader_workers`)."""
    if isinstance(data, DataLoader):
        return data
    workers = loader_workers(device, None) if device is not None else 0
    return make_loader(data, batch_size, shuffle=False, num_workers=workers)


def _sharded_loader(data: Dataset | DataLoader, batch_size: int) -> tuple[DataLoader, np.ndarray] | None:
    """This rank's share of `data` in dataset order, and the dataset positions it covers.

    None when `data` cannot be split by position (an iterable dataset, or a
    loader with its own sampler): then every rank runs all of it.
    """
    kwargs: dict = {}
    if isinstance(data, DataLoader):
        if not isinstance(data.sampler, SequentialSampler) or data.batch_size is None:
            return None
        dataset, batch_size = data.dataset, data.batch_size
        kwargs = {"num_workers": data.num_workers, "collate_fn": data.collate_fn, "pin_memory": data.pin_memory}
    else:
        dataset = data
    if isinstance(dataset, IterableDataset):
        return None
    # Padded with repeats of the first items so every rank gets as many; the
    # repeats are dropped after the gather, by position.
    sampler = DistributedSampler(dataset, shuffle=False, drop_last=False)
    positions = np.fromiter(iter(sampler), dtype=np.int64)
    if not kwargs:
        return make_loader(dataset, batch_size, sampler=sampler), positions
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, **kwargs), positions


@torch.inference_mode()
def predict(model: nn.Module, data: Dataset | DataLoader, batch_size: int = 256,
            device: str | torch.device | None = None, progress: bool = False,
            distributed: bool | None = None, amp: bool = True) -> Predictions:
    """Run `model` over `data` (items `(image, label, group, index)`) in order.

    Under torchrun (unless `distributed` is False) each rank predicts its
    share of the items and the predictions of all ranks are gathered, so
    every rank returns exactly the dataset, in order, as one process would.
    This makes it a collective call: every rank must call it. Pass
    ``distributed=False`` to run the whole dataset on this rank alone.
    On CUDA the forward runs in mixed precision unless `amp` is False
    (`runtime.autocast`); probabilities are computed in float32.
    """
    from tqdm.auto import tqdm

    model = unwrap_model(model)
    dev = resolve_device(device) if device is not None else next(model.parameters()).device
    shard = _sharded_loader(data, batch_size) if distributed is not False and is_distributed() else None
    loader = shard[0] if shard is not None else _as_loader(data, batch_size, dev)
    was_training = model.training
    model.eval()
    ys, gs, idx, probs = [], [], [], []
    with nhwc_inference(model) as layout:
        for x, y, g, i in tqdm(loader, desc="predict", disable=not progress_enabled(progress), leave=False):
            x = to_layout(x.to(dev, non_blocking=True), layout)
            with feed_groups(model, g.to(dev)), autocast(dev, amp):  # group-conditioned models (FairAdaBN, ...)
                logits = model(x)
            probs.append(torch.softmax(logits.float(), dim=1).cpu())
            ys.append(y), gs.append(g), idx.append(i)
    model.train(was_training)
    p = torch.cat(probs).numpy()
    out = Predictions(y_true=torch.cat(ys).numpy().astype(np.int64), y_pred=p.argmax(1).astype(np.int64),
                      groups=torch.cat(gs).numpy().astype(np.int64), probs=p,
                      index=torch.cat(idx).numpy().astype(np.int64))
    if shard is None:
        return out
    # First occurrence of each position, in position order: the padding repeats are dropped.
    _, first = np.unique(gather_concat(shard[1]), return_index=True)
    return Predictions(**{k: gather_concat(v)[first] for k, v in out.to_dict().items()})


class _StopForward(Exception):
    """Raised by a hook once the wanted layer has produced its output."""


@torch.inference_mode()
def extract_features(model: nn.Module, layer: str, loader: DataLoader,
                     device: str | torch.device | None = None, amp: bool = True
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield `(features, labels, groups)` per batch: the output of module `layer`.

    The forward pass is cut right after `layer` (the rest of the network is not
    run), and nothing is kept across batches, so memory does not grow with the
    dataset. Features stay on the model's device; on CUDA they are computed
    in mixed precision unless `amp` is False (consumers cast them up).
    """
    model = unwrap_model(model)
    module = model.get_submodule(layer)
    dev = resolve_device(device) if device is not None else next(model.parameters()).device
    captured: list[torch.Tensor] = []

    def hook(_m: nn.Module, _inp: tuple, out: torch.Tensor) -> None:
        captured.append(out)
        raise _StopForward

    was_training = model.training
    model.eval()
    handle = module.register_forward_hook(hook)
    try:
        with nhwc_inference(model) as layout:
            for batch in loader:
                x, y, g = batch[0], batch[1], batch[2]
                captured.clear()
                try:
                    with autocast(dev, amp):
                        model(to_layout(x.to(dev, non_blocking=True), layout))
                except _StopForward:
                    pass
                if not captured:
                    raise RuntimeError(f"layer {layer!r} was not reached in the forward pass")
                # Consumers .view() the features: hand them over in the usual layout.
                yield captured[0].contiguous(), y.to(dev), g.to(dev)
    finally:
        handle.remove()
        model.train(was_training)
