"""Consensus SNNL-Fair: score on bootstrap resamples and cut only what most of them agree on.

The thesis's consensus defense (Consensus Fair Clustering, S6 in
../shared/research/thesis-systems.md) rests on one idea: poisoned samples are
few, so a random subset rarely holds many of them, and what many subsets
agree on is hard to steer. Applied to SCP's channel choice: score the layer
by SNNL-Fair on R bootstrap resamples of the scoring data, let each resample
choose its k lowest channels, and cut only channels chosen by at least a
fraction τ of the resamples. A channel chosen by fewer gets the score +inf,
which the prune loop never cuts, so an iteration may cut fewer than k
channels (or none) when the resamples disagree.

Scores (lower = cut first): 1 − votes / R for a chosen channel, with the mean
SNNL-Fair score over the resamples (scaled below one vote) breaking ties.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from torch import nn

from .snnl import ScoringError, snnl_fair_scores


@dataclass
class ConsensusScorer:
    """`scorer(model, layer)` -> consensus scores of the layer's channels (module doc).

    `k(channels)` is how many channels one resample chooses (what the loop would cut).
    """

    dataset: Any
    rounds: int
    tau: float
    k: Callable[[int], int]
    seed: int = 0
    snnl: dict[str, Any] = field(default_factory=dict)   # further snnl_fair_scores settings (variant, batch_size)
    calls: int = 0

    def __post_init__(self) -> None:
        if self.rounds < 2:
            raise ScoringError(f"consensus needs at least 2 bootstrap resamples, got {self.rounds}")
        if not 0 < self.tau <= 1:
            raise ScoringError(f"tau must be in (0, 1], got {self.tau}")

    def __call__(self, model: nn.Module, layer: str) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.calls])
        self.calls += 1
        n = len(self.dataset)
        votes, total = None, None
        for _ in range(self.rounds):
            sample = self.dataset.subset(np.sort(rng.integers(0, n, size=n)))
            scores = np.asarray(snnl_fair_scores(model, layer, sample, **self.snnl), dtype=np.float64)
            if votes is None:
                votes, total = np.zeros(len(scores)), np.zeros(len(scores))
            k = self.k(len(scores))
            votes[np.argsort(scores, kind="stable")[:k]] += 1
            total += scores
        share = votes / self.rounds
        mean = total / self.rounds
        spread = np.ptp(mean) or 1.0
        out = 1.0 - share + (mean - mean.min()) / spread / (2 * self.rounds)   # tie-break below one vote
        out[share < self.tau - 1e-12] = np.inf
        return out
