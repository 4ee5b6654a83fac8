"""Antidote data for fair clustering (thesis §3.1, S7): add a few points so that *ordinary* clustering is fair.

Algorithm 3 (general clustering, general fairness cost): with |V| = V_s
antidote points, minimise F(C(U ∪ V), U) — the fairness cost of the clusters
of U ∪ V, evaluated on the real points U only — over V with a zeroth-order
optimiser (RACOS, zoopt) searching through a sequential random embedding
of n' = 100 dimensions (thesis settings V_s = 10, n' = 100, xi = 1). If the
cost does not beat alpha (by default the vanilla clustering's cost, so
success means doing better than it), V_s grows by xi, up to ``max_rounds``.
Antidote coordinates are bounded to the box between the data's 5 % and 95 %
quantiles per feature (the thesis gives no bounds; the full box lets RACOS
place points among far outliers, where they form clusters of their own).

Costs (lower is fairer): ``balance`` = -Balance of U's clusters,
``social`` = the worst group's mean squared distance to its nearest centre.
Clusterings: ``kmeans`` (scikit-learn, fixed seed so the objective is
deterministic) and ``spectral``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .algorithms import kmeans, spectral
from .metrics import balance_cost, social_cost


@dataclass
class AntidoteConfig:
    clustering: str = "kmeans"   # kmeans | spectral
    cost: str = "balance"        # balance | social
    k: int = 2
    start: int = 10              # V_s
    step: int = 1                # xi
    max_rounds: int = 3
    low_dim: int = 100           # n' of the sequential random embedding
    budget: int = 200            # RACOS evaluations per round
    alpha: float | None = None   # target cost; default: the vanilla clustering's
    seed: int = 0

    def __post_init__(self) -> None:
        if self.clustering not in ("kmeans", "spectral"):
            raise ValueError("antidote clustering must be kmeans or spectral")
        if self.cost not in ("balance", "social"):
            raise ValueError("antidote fairness cost must be balance or social")
        if self.cost == "social" and self.clustering != "kmeans":
            raise ValueError("the social-fairness cost needs centres: use it with kmeans")
        if self.start < 1 or self.step < 1:
            raise ValueError("the antidote set starts with at least 1 point and grows by at least 1")


@dataclass
class AntidoteResult:
    V: np.ndarray
    vanilla_cost: float
    cost: float
    alpha: float
    rounds: list[dict] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """|V| / |U| is filled in by `antidote` (kept as an attribute for the table)."""
        return self._ratio

    _ratio: float = 0.0


def cost_of(U: np.ndarray, groups: np.ndarray, V: np.ndarray, cfg: AntidoteConfig) -> float:
    data = U if len(V) == 0 else np.vstack([U, V])
    fit = (kmeans if cfg.clustering == "kmeans" else spectral)(data, None, cfg.k, cfg.seed)
    labels = fit.labels[:len(U)]
    if cfg.cost == "balance":
        return balance_cost(labels, groups)
    return social_cost(U, fit.centers, groups)


def antidote(U: np.ndarray, groups: np.ndarray, cfg: AntidoteConfig | None = None) -> AntidoteResult:
    from zoopt import Dimension, Objective, Parameter
    from .zoo import quiet_min
    cfg = cfg or AntidoteConfig()
    U = np.asarray(U, float)
    groups = np.asarray(groups)
    lo, hi = np.quantile(U, 0.05, axis=0), np.quantile(U, 0.95, axis=0)
    hi = np.where(hi > lo, hi, U.max(0))
    d = U.shape[1]
    vanilla = cost_of(U, groups, np.empty((0, d)), cfg)
    alpha = vanilla if cfg.alpha is None else cfg.alpha
    best_V, best = np.empty((0, d)), vanilla
    rounds = []
    size = cfg.start
    for _ in range(cfg.max_rounds):
        dims = size * d

        def objective(sol, size=size) -> float:
            v = np.clip(np.asarray(sol.get_x(), float), 0.0, 1.0).reshape(size, d)
            return cost_of(U, groups, lo + v * (hi - lo), cfg)
        dim = Dimension(dims, [[0.0, 1.0]] * dims, [True] * dims)
        if dims > cfg.low_dim:
            low = Dimension(cfg.low_dim, [[0.0, 1.0]] * cfg.low_dim, [True] * cfg.low_dim)
            par = Parameter(budget=cfg.budget, high_dim_handling=True, reducedim=True, num_sre=5,
                            low_dimension=low, withdraw_alpha=Dimension(1, [[-1, 1]], [True]), seed=cfg.seed)
        else:
            par = Parameter(budget=cfg.budget, seed=cfg.seed)
        sol = quiet_min(Objective(objective, dim), par)
        value = float(sol.get_value())
        V = lo + np.clip(np.asarray(sol.get_x(), float), 0.0, 1.0).reshape(size, d) * (hi - lo)
        rounds.append({"size": size, "cost": value})
        tie = 1e-9 * max(1.0, abs(alpha))         # a gain below this is the clustering's floating-point noise
        if value < best - tie:
            best, best_V = value, V
        if value < alpha - tie:
            break
        size += cfg.step
    res = AntidoteResult(best_V, vanilla, best, alpha, rounds)
    res._ratio = len(best_V) / len(U)
    return res
