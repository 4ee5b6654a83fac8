"""The black-box spill-over poisoning attack on clustering (thesis §2.2, Algorithm 1, S8).

Perturb one point, within per-feature bounds, so that *other*, unperturbed
points change cluster when the defender re-clusters. Two clusters k1, k2:

1. the target is the point of k1 nearest k2's centre;
2. f(eps) = -||Y Y^T - Y' Y'^T||_F, with Y the one-hot clustering before and
   Y' after replacing the target by target + eps (0 if nothing moves);
3. minimise f over |eps_j| <= Delta_j with a response-surface method: a cubic
   RBF surrogate (scipy's RBFInterpolator) seeded by a Latin-hypercube design
   (scipy.stats.qmc), then iteratively the candidate with the lowest surrogate
   value among random candidates kept away from evaluated points (CORS-style).

Delta follows the undetectability rule: the perturbed point must stay above
the 0.1 quantile of the data's COMD depth (coordinate-wise minimum of the
per-coordinate Mahalanobis depth summed over clusters). Because COMD is a
minimum over coordinates, that holds exactly when every coordinate stays
above it, so Delta_j is found per coordinate.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import RBFInterpolator
from scipy.stats import qmc
from sklearn.cluster import AgglomerativeClustering, KMeans


def cluster_two(X: np.ndarray, method: str = "ward", seed: int = 0) -> np.ndarray:
    if method == "ward":
        return AgglomerativeClustering(n_clusters=2, linkage="ward").fit_predict(X)
    if method == "kmeans":
        return KMeans(n_clusters=2, n_init=5, random_state=seed).fit_predict(X)
    raise ValueError(f"spill-over clustering must be ward or kmeans (got {method!r})")


def _coordinate_depth(values: np.ndarray, X: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-coordinate MDC: sum over clusters of (1 + (v - mean)^2 / var)^-1, for each row of `values`."""
    out = np.zeros_like(values, dtype=float)
    for c in np.unique(labels):
        part = X[labels == c]
        var = np.maximum(part.var(0), 1e-12)
        out += 1.0 / (1.0 + (values - part.mean(0)) ** 2 / var)
    return out


def comd(points: np.ndarray, X: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """COMD depth of each point against the clustered data (smaller = more outlying)."""
    return _coordinate_depth(np.atleast_2d(points), X, labels).min(1)


def comd_bounds(x: np.ndarray, X: np.ndarray, labels: np.ndarray, quantile: float = 0.1,
                steps: int = 200) -> tuple[np.ndarray, float]:
    """Per-feature Delta keeping every coordinate's depth >= the data's COMD `quantile`; and that threshold."""
    threshold = float(np.quantile(comd(X, X, labels), quantile))
    span = X.max(0) - X.min(0)
    delta = np.zeros(X.shape[1])
    for j in range(X.shape[1]):
        if span[j] == 0:
            continue
        grid = np.linspace(0, span[j], steps)[1:]
        reach = []
        for sign in (1, -1):
            vals = np.tile(x, (len(grid), 1))
            vals[:, j] = x[j] + sign * grid
            ok = _coordinate_depth(vals, X, labels)[:, j] >= threshold
            reach.append(grid[np.argmin(ok)] if not ok.all() else grid[-1])
            if not ok[0]:
                reach[-1] = 0.0
        delta[j] = min(reach)
    return delta, threshold


@dataclass
class SpilloverResult:
    target: int
    epsilon: np.ndarray
    delta: float                 # the objective -||YY^T - Y'Y'^T||_F at the best epsilon
    spilled: np.ndarray          # indices (other than the target) whose cluster changed
    target_depth: float          # COMD of the perturbed target
    depth_quantile: float        # its quantile among the data's COMD values
    evaluations: int


def co_membership_change(a: np.ndarray, b: np.ndarray) -> float:
    """-||Y Y^T - Y' Y'^T||_F for two labelings (pairs that changed togetherness)."""
    A = a[:, None] == a[None, :]
    B = b[:, None] == b[None, :]
    return -float(np.sqrt((A != B).sum()))


def spillover_attack(X: np.ndarray, method: str = "ward", budget: int = 60, seed: int = 0,
                     quantile: float = 0.1) -> SpilloverResult:
    X = np.asarray(X, float)
    if budget < 1:
        raise ValueError("the attack budget must be at least one evaluation")
    rng = np.random.default_rng(seed)
    labels = cluster_two(X, method, seed)
    sizes = np.bincount(labels, minlength=2)
    k1, k2 = (0, 1) if sizes[0] >= sizes[1] else (1, 0)
    c2 = X[labels == k2].mean(0)
    members = np.flatnonzero(labels == k1)
    t = int(members[np.argmin(((X[members] - c2) ** 2).sum(1))])
    delta_bounds, threshold = comd_bounds(X[t], X, labels, quantile)
    if not delta_bounds.any():
        raise ValueError("the perturbation budget is zero: the target already sits at the depth limit; "
                         "raise the quantile's slack or pick other data")
    free = delta_bounds > 0
    m = int(free.sum())

    def f(u: np.ndarray) -> float:
        eps = np.zeros(X.shape[1])
        eps[free] = u * delta_bounds[free]
        Xp = X.copy()
        Xp[t] = X[t] + eps
        return co_membership_change(labels, cluster_two(Xp, method, seed))

    n0 = min(budget, max(2 * (m + 1), 5))
    U = qmc.scale(qmc.LatinHypercube(d=m, seed=seed).random(n0), -1, 1)
    vals = [f(u) for u in U]
    while len(vals) < budget:
        best = U[int(np.argmin(vals))]
        cand = np.clip(np.vstack([best + rng.normal(scale=0.3, size=(200, m)), rng.uniform(-1, 1, (200, m))]), -1, 1)
        if len(set(vals)) > 1:
            surrogate = RBFInterpolator(U, np.asarray(vals), kernel="cubic", degree=1, smoothing=1e-9)
            pred = surrogate(cand)
        else:
            pred = np.zeros(len(cand))
        dist = np.sqrt(((cand[:, None, :] - U[None, :, :]) ** 2).sum(-1)).min(1)
        pred = np.where(dist < 0.05, np.inf, pred)   # keep away from points already evaluated
        u = cand[int(np.argmin(pred - 1e-3 * dist))]
        U = np.vstack([U, u])
        vals.append(f(u))
    best = U[int(np.argmin(vals))]
    eps = np.zeros(X.shape[1])
    eps[free] = best * delta_bounds[free]
    Xp = X.copy()
    Xp[t] += eps
    after = cluster_two(Xp, method, seed)
    same = (after == labels).mean() >= 0.5            # labels may come back swapped
    after_aligned = after if same else 1 - after
    moved = np.flatnonzero(after_aligned != labels)
    depth = float(comd(Xp[t], X, labels)[0])
    all_depths = comd(X, X, labels)
    return SpilloverResult(t, eps, float(min(vals)), moved[moved != t], depth,
                           float((all_depths <= depth).mean()), len(vals))
