"""Impact functions: the validation quantity an influence value predicts the change of.

Every function here is *lower is better* (a loss or a gap), which is what makes
the sign convention read naturally: a negative influence means that removing the
training sample lowers the quantity, i.e. the sample is harmful to it.

* ``utility`` — the summed validation cross-entropy (thesis Eq. 4.5).
* ``dp`` — the gap in mean predicted probability between the groups (thesis
  §4.2.2, DP); for C > 2 classes the mean over classes of that gap.
* ``eop`` — the gap in mean loss on positives between the groups (thesis EOP);
  for C > 2 the mean over classes c of the gap on samples of class c.
* ``eopp0`` / ``eopp1`` / ``eodd`` — soft versions of equiprune's paper
  metrics (docs/METRICS.md), with predicted probabilities in place of hard
  decisions (the extension in shared/research/thesis-systems.md, S1): per class,
  the groups' mean probability of the class on its true samples (TPR), on the
  other samples (FPR, and TNR = 1 - FPR). Cells with no sample are skipped.
* ``robust`` — the summed cross-entropy on an adversarial copy of the
  validation set made by the linear attacker of the thesis (Eq. 4.8).

Absolute values are differentiated as ``sign(gap) * d gap`` at the fitted
head, so each fairness impact function is the real gap, not the signed one the
thesis code differentiates.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

IMPACTS: tuple[str, ...] = ("utility", "dp", "eop", "eopp0", "eopp1", "eodd", "robust")
FAIRNESS_IMPACTS = ("dp", "eop", "eopp0", "eopp1", "eodd")


@dataclass
class ValidationSet:
    """Augmented (standardised + bias) validation features with labels and 0/1 groups."""

    Zt: torch.Tensor
    y: torch.Tensor
    g: torch.Tensor

    @classmethod
    def from_numpy(cls, Zt: np.ndarray, y: np.ndarray, g: np.ndarray) -> "ValidationSet":
        return cls(torch.as_tensor(Zt, dtype=torch.float64), torch.as_tensor(y, dtype=torch.int64),
                   torch.as_tensor(g, dtype=torch.int64))


def _ce(W: torch.Tensor, v: ValidationSet) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(v.Zt @ W.T, v.y, reduction="none")


def _mean_where(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
    return values[mask].mean() if bool(mask.any()) else None


def _gap_over_classes(per_class: Callable[[int, int], torch.Tensor | None], C: int,
                      classes: range | list[int]) -> torch.Tensor:
    terms = []
    for c in classes:
        a, b = per_class(c, 0), per_class(c, 1)
        if a is None or b is None:
            continue
        terms.append((a - b).abs())
    if not terms:
        raise ValueError("no class has samples of both groups in the validation split; "
                         "a fairness impact function cannot be computed")
    return torch.stack(terms).sum() / len(terms)


def _classes(C: int, binary_positive_only: bool) -> list[int]:
    return [1] if (C == 2 and binary_positive_only) else list(range(C))


def utility(W: torch.Tensor, v: ValidationSet) -> torch.Tensor:
    return _ce(W, v).sum()


def dp(W: torch.Tensor, v: ValidationSet) -> torch.Tensor:
    P = torch.softmax(v.Zt @ W.T, dim=1)
    C = W.shape[0]
    return _gap_over_classes(lambda c, grp: _mean_where(P[:, c], v.g == grp), C, _classes(C, True))


def eop(W: torch.Tensor, v: ValidationSet) -> torch.Tensor:
    loss = _ce(W, v)
    C = W.shape[0]
    return _gap_over_classes(lambda c, grp: _mean_where(loss, (v.y == c) & (v.g == grp)), C, _classes(C, True))


def _soft_rates(W: torch.Tensor, v: ValidationSet):
    P = torch.softmax(v.Zt @ W.T, dim=1)

    def tpr(c: int, grp: int):
        return _mean_where(P[:, c], (v.y == c) & (v.g == grp))

    def fpr(c: int, grp: int):
        return _mean_where(P[:, c], (v.y != c) & (v.g == grp))
    return tpr, fpr


def eopp1(W: torch.Tensor, v: ValidationSet) -> torch.Tensor:
    tpr, _ = _soft_rates(W, v)
    return _gap_over_classes(tpr, W.shape[0], range(W.shape[0]))


def eopp0(W: torch.Tensor, v: ValidationSet) -> torch.Tensor:
    _, fpr = _soft_rates(W, v)  # |TNR0 - TNR1| = |FPR0 - FPR1|
    return _gap_over_classes(fpr, W.shape[0], range(W.shape[0]))


def eodd(W: torch.Tensor, v: ValidationSet) -> torch.Tensor:
    tpr, fpr = _soft_rates(W, v)
    terms = []
    for c in range(W.shape[0]):
        parts = [tpr(c, 0), tpr(c, 1), fpr(c, 0), fpr(c, 1)]
        if any(p is None for p in parts):
            continue
        terms.append(0.5 * ((parts[0] - parts[1]) + (parts[2] - parts[3])).abs())
    if not terms:
        raise ValueError("no class has true and other samples in both groups of the validation split; "
                         "the soft Eodd cannot be computed")
    return torch.stack(terms).sum() / len(terms)


def linear_attack(W: np.ndarray, Zt: np.ndarray, y: np.ndarray, gamma: float = 1.3) -> np.ndarray:
    """The thesis's white-box attacker for linear models, per sample.

    Each point moves perpendicular to the boundary between its true class and
    the strongest other class, ``gamma`` times the way to it (gamma > 1 crosses
    it; the public code uses 1.3 and divides by the squared norm, i.e. gamma
    times the exact projection). For two classes this is the thesis's formula.
    The bias input stays 1.
    """
    logits = Zt @ W.T
    other = logits.copy()
    other[np.arange(len(y)), y] = -np.inf
    r = other.argmax(axis=1)
    w = W[y, :-1] - W[r, :-1]
    margin = logits[np.arange(len(y)), y] - logits[np.arange(len(y)), r]
    step = gamma * margin / np.maximum((w ** 2).sum(axis=1), 1e-12)
    out = Zt.copy()
    out[:, :-1] -= step[:, None] * w
    return out


def robust(W: torch.Tensor, v: ValidationSet) -> torch.Tensor:
    """Summed loss on the adversarial validation set (``v`` is already attacked)."""
    return _ce(W, v).sum()


FUNCTIONS: dict[str, Callable[[torch.Tensor, ValidationSet], torch.Tensor]] = {
    "utility": utility, "dp": dp, "eop": eop, "eopp0": eopp0, "eopp1": eopp1, "eodd": eodd, "robust": robust,
}


def value_and_gradient(name: str, W: np.ndarray, v: ValidationSet) -> tuple[float, np.ndarray]:
    """f(W) and its gradient with respect to W (same shape), by autograd in float64."""
    Wt = torch.tensor(W, dtype=torch.float64, requires_grad=True)
    f = FUNCTIONS[name](Wt, v)
    (grad,) = torch.autograd.grad(f, Wt)
    return float(f.detach()), grad.numpy()


def value(name: str, W: np.ndarray, v: ValidationSet) -> float:
    with torch.no_grad():
        return float(FUNCTIONS[name](torch.as_tensor(W, dtype=torch.float64), v))
