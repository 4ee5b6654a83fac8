"""Dead channels: channels whose output carries nothing, so cutting them changes (almost) nothing.

A trained network often has filters that weight decay drove to zero or
whose ReLU never fires. The smallest-L1 filters are exactly those, so an
"L1 cut" of a few channels can remove only dead ones and leave the model as
it was: the L1 control then silently becomes "fine-tune only". This module
finds them on real data, so cuts can report how many they removed and the L1
control can cut live channels first.

A channel of `layer` is dead when, over the images seen, its output
never exceeds 0 and the layer feeds a ReLU (the output after the ReLU is 0
everywhere), or when its output is the same number at every image and
position (it carries no information; a zero filter's output is its bias).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .scorers import ChannelScorer, Scorer, scorer_at
from .snnl import ScoringError


def _feeds_relu(model: nn.Module, layer: str) -> bool:
    """True when the module registered right after `layer` is a ReLU (VGG's features, most Sequentials)."""
    names = [n for n, _ in model.named_modules()]
    if layer not in names:
        return False
    i = names.index(layer)
    return i + 1 < len(names) and isinstance(model.get_submodule(names[i + 1]), nn.ReLU)


@torch.no_grad()
def dead_channels(model: nn.Module, layer: str, dataset: Dataset, batch_size: int = 64, max_batches: int = 4,
                  tol: float = 1e-6) -> np.ndarray:
    """Boolean [K]: which output channels of `layer` are dead on the first `max_batches` batches of `dataset`."""
    try:
        module = model.get_submodule(layer)
    except AttributeError:
        raise ScoringError(f"model has no layer {layer!r}") from None
    stats: dict[str, torch.Tensor] = {}

    def hook(_m: nn.Module, _inp: object, out: torch.Tensor) -> None:
        # Reduced here: an in-place ReLU after the layer overwrites `out` once the hook returns.
        flat = out.detach().transpose(0, 1).reshape(out.shape[1], -1).double()
        hi, lo = flat.max(dim=1).values, flat.min(dim=1).values
        stats["hi"] = torch.maximum(stats["hi"], hi) if "hi" in stats else hi
        stats["lo"] = torch.minimum(stats["lo"], lo) if "lo" in stats else lo

    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    handle = module.register_forward_hook(hook)
    try:
        for i, (x, *_rest) in enumerate(DataLoader(dataset, batch_size=batch_size, shuffle=False)):
            if i >= max_batches:
                break
            model(x.to(device))
    finally:
        handle.remove()
        model.train(was_training)
    if "hi" not in stats:
        raise ScoringError("dead_channels needs at least one image")
    hi, lo = stats["hi"].cpu().numpy(), stats["lo"].cpu().numpy()
    scale = max(float(np.abs(np.concatenate([hi, lo])).max()), 1.0)
    constant = (hi - lo) <= tol * scale
    silent = hi <= 0 if _feeds_relu(model, layer) else np.zeros_like(constant)
    return constant | silent


def live_first(scores: np.ndarray, dead: np.ndarray) -> np.ndarray:
    """`scores` with every dead channel ranked after every live one (lowest = cut first), order kept within each."""
    scores = np.asarray(scores, dtype=np.float64)
    dead = np.asarray(dead, dtype=bool)
    if scores.shape != dead.shape:
        raise ScoringError(f"scores {scores.shape} and dead mask {dead.shape} differ in shape")
    out = scores.copy()
    finite = np.isfinite(scores)  # +inf (never cut) stays as it is
    if (dead & finite).any() and (~dead & finite).any():
        lo, hi = scores[finite].min(), scores[finite].max()
        move = dead & finite
        out[move] = scores[move] - lo + hi + (hi - lo) + 1.0
    return out


class LiveFirst(Scorer):
    """A scorer whose dead channels (on `dataset`) come after every live one: ``LiveFirst(L1Scorer(), data)``.

    The L1 control must cut channels that do something; the smallest filters
    are often dead, and a cut of only those leaves the model as it was.
    """

    def __init__(self, scorer: ChannelScorer, dataset: Dataset) -> None:
        self.scorer, self.dataset = scorer, dataset
        self.name = f"live-first {getattr(scorer, 'name', 'scorer')}"

    def __call__(self, model: nn.Module, layer: str) -> np.ndarray:
        return live_first(self.scorer(model, layer), dead_channels(model, layer, self.dataset))

    def for_iteration(self, k: int) -> "LiveFirst":
        return LiveFirst(scorer_at(self.scorer, k), self.dataset)
