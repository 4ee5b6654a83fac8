"""The group-membership flip attack on fair clustering (thesis §4.1.2–4.1.3, S5).

Fair clustering algorithms take every sample's group as input. An attacker who
controls the memberships of a subset G_A (a share of the samples) chooses new
memberships for them so that the clusters of the *other* samples, G_D, become
unfair, while clustering utility hardly moves:

    min over G_A of  Balance(clusters restricted to G_D, groups of G_D)
    where the clusters = F(X, k, memberships with G_A replaced)          (Eq. 4.1)

Black box and discrete: solved with RACOS (zoopt), a budget of 10–50
objective evaluations (the thesis code's range). The baseline draws G_A's
memberships at random. Every score is computed on G_D only.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .algorithms import ALGORITHMS
from .metrics import clustering_scores

# The thesis code's ten seeds.
THESIS_SEEDS = (150, 1, 4200, 424242, 1947, 355, 256, 7500, 99999, 18)


@dataclass
class FlipAttackConfig:
    algorithm: str = "sfd"
    k: int = 2
    fraction: float = 0.15      # share of the samples whose membership the attacker controls
    budget: int = 20            # RACOS objective evaluations
    objective: str = "balance"  # balance | entropy (when an algorithm always scores balance 0)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {self.algorithm!r}; choose from {', '.join(ALGORITHMS)}")
        if not 0 < self.fraction < 1:
            raise ValueError(f"the attacked share must be in (0, 1) (got {self.fraction})")
        if self.budget < 1:
            raise ValueError("the attack budget must be at least 1 objective evaluation")
        if self.objective not in ("balance", "entropy"):
            raise ValueError("the attack objective is balance or entropy")


@dataclass
class FlipAttackResult:
    attacked: np.ndarray                 # indices of G_A
    pre: dict[str, float]                # scores on G_D before the attack
    post: dict[str, float]               # after the optimised flips
    random: dict[str, float]             # after random memberships for G_A
    new_groups: np.ndarray               # the optimised memberships of G_A
    evaluations: list[float] = field(default_factory=list)


def _scores_on_defended(X, groups, y, labels, defended) -> dict[str, float]:
    return clustering_scores(labels[defended], groups[defended], X[defended],
                             None if y is None else y[defended])


def flip_attack(X: np.ndarray, groups: np.ndarray, cfg: FlipAttackConfig, y: np.ndarray | None = None,
                attacked: np.ndarray | None = None) -> FlipAttackResult:
    """Run the attack once (one seed): pre-attack, optimised flips and random flips, scored on G_D."""
    from zoopt import Dimension, Objective, Parameter
    from .zoo import quiet_min
    X = np.asarray(X, float)
    groups = np.asarray(groups, dtype=np.int64)
    values = np.unique(groups)
    if len(values) != 2:
        raise ValueError(f"the flip attack switches between two groups; the data have {len(values)}")
    rng = np.random.default_rng(cfg.seed)
    n = len(X)
    if attacked is None:
        attacked = np.sort(rng.choice(n, max(1, int(round(cfg.fraction * n))), replace=False))
    defended = np.setdiff1d(np.arange(n), attacked)
    algo = ALGORITHMS[cfg.algorithm]

    def run(memberships: np.ndarray, full: bool = True) -> dict[str, float]:
        g = groups.copy()
        g[attacked] = values[memberships.astype(np.int64)]
        labels = algo(X, g, cfg.k, cfg.seed).labels
        if not full:   # inside the RACOS loop only the objective is needed (no silhouette per evaluation)
            return clustering_scores(labels[defended], groups[defended])
        return _scores_on_defended(X, groups, y, labels, defended)

    original = (groups[attacked] == values[1]).astype(np.int64)
    pre = run(original)
    trace: list[float] = []

    def objective(sol) -> float:
        value = run(np.asarray(sol.get_x()), full=False)[cfg.objective]
        trace.append(value)
        return value

    size = len(attacked)
    dim = Dimension(size, [[0, 1]] * size, [False] * size)
    sol = quiet_min(Objective(objective, dim), Parameter(budget=cfg.budget, seed=cfg.seed))
    best = np.asarray(sol.get_x(), dtype=np.int64)
    post = run(best)
    random = run(rng.integers(0, 2, size))
    return FlipAttackResult(attacked, pre, post, random, values[best], trace)


def ks_attack_vs_random(results: list[FlipAttackResult], metric: str = "balance") -> dict[str, float]:
    """Two-sample Kolmogorov–Smirnov test of the attack's against the random attack's results over seeds."""
    from scipy.stats import ks_2samp
    a = [r.post[metric] for r in results]
    b = [r.random[metric] for r in results]
    res = ks_2samp(a, b)
    return {"statistic": float(res.statistic), "p_value": float(res.pvalue)}


def toy_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The thesis toy: 20 points, isotropic Gaussians (std 0.12) at (4, 0) and (4.5, 0), ten each."""
    rng = np.random.default_rng(seed)
    X = np.vstack([rng.normal([4.0, 0.0], 0.12, size=(10, 2)), rng.normal([4.5, 0.0], 0.12, size=(10, 2))])
    y = np.r_[np.zeros(10, int), np.ones(10, int)]
    return X, y
