"""The attacker's only access to a deep clustering model: queries, counted (thesis §2.3.2).

`BlackBox` wraps a function from a batch of images to memberships. In
``score`` mode the attacker sees the soft memberships M (a score-based
attack); in ``decision`` mode only the cluster labels L, returned as one-hot
rows so the same loss applies (a decision-based attack). A box made with
`BlackBox.from_labels` holds a function that returns labels only, so
nothing else can leak. Every call is one batched query (the thesis's
Table 2.4 counts batches); images are counted too.

`nes_gradient` estimates the gradient of the per-image attack loss
||M_i - C(x_i')|| at x' from queries alone: antithetic Gaussian directions
(Ilyas et al. 2018's NES), drawn at a coarse resolution and upsampled, which
lowers the variance of the estimate for images.
"""
from __future__ import annotations

from typing import Callable

import torch


class BlackBox:
    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], k: int, mode: str = "score",
                 labels_only: bool = False) -> None:
        if mode not in ("score", "decision"):
            raise ValueError(f"the attack mode must be score or decision (got {mode!r})")
        if labels_only and mode == "score":
            raise ValueError("a box that returns labels only supports the decision-based attack")
        self.fn, self.k, self.mode, self.labels_only = fn, k, mode, labels_only
        self.queries = 0
        self.images = 0

    @classmethod
    def from_labels(cls, fn: Callable[[torch.Tensor], torch.Tensor], k: int) -> "BlackBox":
        """A decision-based box over a function that returns integer cluster labels."""
        return cls(fn, k, "decision", labels_only=True)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.queries += 1
        self.images += len(x)
        out = self.fn(x)
        if self.labels_only:
            labels = torch.as_tensor(out).long()
        elif self.mode == "decision":
            labels = out.argmax(1)
        else:
            return out.float()
        return torch.nn.functional.one_hot(labels, self.k).float()


def membership_distance(reference: torch.Tensor, memberships: torch.Tensor) -> torch.Tensor:
    """||M_i - C(x_i')||_2 per image."""
    return (reference - memberships).norm(dim=1)


def _directions(shape: torch.Size, resolution: int | None, gen: torch.Generator) -> torch.Tensor:
    n, c, h, w = shape
    if resolution is None or resolution >= min(h, w):
        return torch.randn(shape, generator=gen)
    u = torch.randn((n, c, resolution, resolution), generator=gen)
    return torch.nn.functional.interpolate(u, size=(h, w), mode="bilinear", align_corners=False)


def nes_gradient(box: BlackBox, x: torch.Tensor, reference: torch.Tensor, samples: int = 10, sigma: float = 0.05,
                 resolution: int | None = 8, gen: torch.Generator | None = None) -> torch.Tensor:
    """Query-only estimate of d ||M_i - C(x_i)|| / d x_i for every image (2 x `samples` batched queries)."""
    gen = gen or torch.Generator().manual_seed(0)
    grad = torch.zeros_like(x)
    for _ in range(samples):
        u = _directions(x.shape, resolution, gen)
        u = u / u.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * (x[0].numel() ** 0.5)
        up = membership_distance(reference, box(x + sigma * u))
        down = membership_distance(reference, box(x - sigma * u))
        grad += ((up - down) / (2 * sigma)).view(-1, 1, 1, 1) * u
    return grad / samples
