"""Fairness poisoning by anchoring (Mehrabi et al., AAAI 2021) and trimming as the defense (thesis §4.2.5.2, S4b).

The attacker adds ``eps * n`` labelled points to the training set. Half are
*favourable* points of the advantaged group placed next to a target drawn from
the advantaged group's unfavourable points; half are *unfavourable* points of
the disadvantaged group placed next to a target drawn from the disadvantaged
group's favourable points. The boundary bends to favour the advantaged group,
so the demographic-parity gap widens. RAA draws the targets at random; NRAA
takes the most "popular" ones (most same-group, same-label neighbours within
the ``popularity_quantile`` of pairwise distances), so one anchor moves many
decisions.

Settings that the thesis and the attack paper leave open are ours and said
here: poisoned points are drawn uniformly in an L2 ball of radius ``tau`` (in
standardised feature units) around their target; the group is a feature (as in
the attack paper's data); the advantaged group is the one with the higher
favourable rate in the clean training split.

The defense is Algorithm 5 with the *DP* impact function on a clean
validation split: remove at most ``budget * n`` training points with negative
influence, refit, measure on the clean test split.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.distance import cdist

from .compute import InfluenceConfig, compute_influence
from .head import fit_head
from .table import FeatureTable
from .trim import select_rows


@dataclass
class AnchoringConfig:
    method: str = "random"          # random (RAA) | nonrandom (NRAA)
    eps: float = 0.1                # poisoned points as a fraction of the clean training rows
    tau: float = 0.5
    popularity_quantile: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in ("random", "nonrandom"):
            raise ValueError(f"anchoring method must be random (RAA) or nonrandom (NRAA), got {self.method!r}")
        if not 0 < self.eps <= 1:
            raise ValueError(f"eps must be in (0, 1] (got {self.eps})")
        if self.tau <= 0:
            raise ValueError(f"tau must be positive (got {self.tau})")


def _ball(center: np.ndarray, n: int, radius: float, rng: np.random.Generator) -> np.ndarray:
    d = center.shape[0]
    v = rng.normal(size=(n, d))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    r = radius * rng.random(n) ** (1.0 / d)
    return center + v * r[:, None]


def _target(X: np.ndarray, cell: np.ndarray, cfg: AnchoringConfig, rng: np.random.Generator) -> np.ndarray:
    idx = np.flatnonzero(cell)
    if len(idx) == 0:
        raise ValueError("the anchoring attack needs at least one point in each target cell (group x label)")
    if cfg.method == "random":
        return X[rng.choice(idx)]
    D = cdist(X[idx], X[idx])
    radius = np.quantile(D[np.triu_indices(len(idx), 1)], cfg.popularity_quantile) if len(idx) > 1 else 0.0
    return X[idx[np.argmax((D <= radius).sum(axis=1))]]


def anchoring_attack(X: np.ndarray, y: np.ndarray, g: np.ndarray, cfg: AnchoringConfig
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Poisoned points (X_p, y_p, g_p) for the clean training data (X standardised, g 0/1, y 1 = favourable)."""
    rng = np.random.default_rng(cfg.seed)
    adv = int(y[g == 1].mean() >= y[g == 0].mean())
    dis = 1 - adv
    n_p = int(round(cfg.eps * len(y)))
    n_plus, n_minus = n_p - n_p // 2, n_p // 2
    t_neg = _target(X, (g == adv) & (y == 0), cfg, rng)   # advantaged, unfavourable -> favourable anchors
    t_pos = _target(X, (g == dis) & (y == 1), cfg, rng)   # disadvantaged, favourable -> unfavourable anchors
    Xp = np.vstack([_ball(t_neg, n_plus, cfg.tau, rng), _ball(t_pos, n_minus, cfg.tau, rng)])
    yp = np.r_[np.ones(n_plus, dtype=np.int64), np.zeros(n_minus, dtype=np.int64)]
    gp = np.r_[np.full(n_plus, adv), np.full(n_minus, dis)].astype(np.int64)
    return Xp, yp, gp


def signed_dp(pred: np.ndarray, g: np.ndarray) -> float:
    """P(yhat = 1 | group 1) - P(yhat = 1 | group 0): the thesis's signed DP (group 1 = the second name)."""
    return float((pred[g == 1] == 1).mean() - (pred[g == 0] == 1).mean())


@dataclass
class PoisoningRow:
    setting: str
    dp: float
    acc: float
    removed: int = 0
    poisoned_removed: int = 0


def poisoning_defense(X: np.ndarray, y: np.ndarray, g: np.ndarray, attack: AnchoringConfig,
                      budget: float = 0.1, lam: float = 1.0, seed: int = 0) -> list[PoisoningRow]:
    """Before / attacked / attacked + trimming (DP influence), measured on a clean test split.

    Clean data split 60/20/20 (train/val/test, stratified by group x label,
    seed `seed`); the group is appended to the features; the poison joins the
    training split only; the defender's validation split is clean.
    """
    from .table import random_split
    Xg = np.hstack([X, g[:, None].astype(float)])
    Xg = (Xg - Xg.mean(0)) / np.where(Xg.std(0) > 0, Xg.std(0), 1.0)
    split = random_split(len(y), y * 2 + g, seed)
    tr, te = split == "train", split == "test"
    rows = []
    clean = fit_head(Xg[tr], y[tr], 2, lam)
    rows.append(PoisoningRow("before", signed_dp(clean.predict(Xg[te]), g[te]),
                             float((clean.predict(Xg[te]) == y[te]).mean())))
    Xp, yp, gp = anchoring_attack(Xg[tr], y[tr], g[tr], attack)
    name = "RAA" if attack.method == "random" else "NRAA"
    Xa = np.vstack([Xg, Xp])
    ya, ga = np.r_[y, yp], np.r_[g, gp]
    sa = np.r_[split, np.array(["train"] * len(yp))]
    poisoned = np.r_[np.zeros(len(y), bool), np.ones(len(yp), bool)]
    table = FeatureTable(Xa, ya, ga, sa, np.arange(len(ya)), ["unfavourable", "favourable"], ["g0", "g1"])
    res = compute_influence(table, InfluenceConfig(impacts=("dp",), lam=lam))
    head = res.head
    pred = head.predict(Xg[te])
    rows.append(PoisoningRow(name, signed_dp(pred, g[te]), float((pred == y[te]).mean())))
    count = int(round(budget * len(res.train_index)))
    drop = select_rows(res.values["dp"], count, ga[res.train_index])
    keep = np.setdiff1d(np.arange(len(res.train_index)), drop)
    kept = res.train_index[keep]
    trimmed = fit_head(Xa[kept], ya[kept], 2, lam, init=head)
    pred = trimmed.predict(Xg[te])
    rows.append(PoisoningRow(f"{name} + trimming", signed_dp(pred, g[te]), float((pred == y[te]).mean()),
                             int(len(drop)), int(poisoned[res.train_index[drop]].sum())))
    return rows
