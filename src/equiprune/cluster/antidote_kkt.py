"""Antidote data by the KKT single-level form, for sum-of-norms clustering and social fairness (thesis §3.1, Algorithm 2).

Sum-of-norms (SON) clustering is strongly convex, so its solution is pinned
down by its KKT conditions, and the bilevel antidote problem

    min_V  F_social(mu, U)   s.t.  mu = C_SON(U ∪ V)                                    (Eq. 3.5)

becomes one level by writing those conditions as constraints. With W = U ∪ V
(m rows), D the |O| x m difference matrix of all pairs i < j (the transpose
of the thesis's node-arc incidence matrix I), eta = D mu and dual zeta:

    theta + mu - W = 0,  theta = D^T zeta,  ||zeta_e|| <= lam,
    eta_e = P(eta_e + zeta_e),  P(v) = max(0, 1 - lam / ||v||) v                        (Eq. 3.4)

(the thesis writes P with lam = 1). P is the one non-convex condition; the
thesis replaces it by the affine eta_e - gamma_e (eta_e + zeta_e) = 0 with
0 <= gamma_e <= 1 and hands the program to CVX. Affine only for a *fixed*
gamma, so here gamma_e is fixed at its exact value at the current lower-level
solution, gamma_e = ||eta_e|| / (||eta_e|| + lam) (0 for fused pairs), the
convex program is solved for V with cvxpy, SON is solved again exactly on
U ∪ V (cvxpy), gamma is refreshed, and so on for ``inner`` steps. Costs are
always those of the exact SON solution, so the returned mu satisfies the KKT
conditions (``kkt_residuals`` checks them); the relaxed program only proposes V.

F_social (Ghadiri et al.) for SON: every real point's centre is its own row of
mu, so F = max over groups of the group's mean ||U_x - mu_x||^2 (convex in mu,
as the thesis needs). Antidote points lie in the data's min-max box.

There are m(m-1)/2 pairs, each with d-dimensional eta and zeta, so this is for
small problems (the thesis calls it a warm-up); larger ones are refused with
the limit in the message.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import sparse


@dataclass
class KKTAntidoteConfig:
    lam: float = 0.1             # SON's lambda: larger = fewer distinct centres
    start: int = 1               # V_s
    step: int = 1                # xi
    max_rounds: int = 3
    starts: int = 3              # initial antidote sets per size (the first at the worst group's points)
    inner: int = 2               # single-level solves per start, each checked by an exact SON solve
    alpha: float | None = None   # target cost; default: SON's on U alone
    max_pair_variables: int = 200_000   # m(m-1)/2 x d, the size of eta (and of zeta)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.lam <= 0:
            raise ValueError(f"SON's lambda must be positive (got {self.lam})")
        if self.start < 1 or self.step < 1:
            raise ValueError("the antidote set starts with at least 1 point and grows by at least 1")


@dataclass
class SONSolution:
    mu: np.ndarray      # m x d centres (one per point)
    zeta: np.ndarray    # |O| x d dual of eta = D mu


@dataclass
class KKTAntidoteResult:
    V: np.ndarray
    mu: np.ndarray               # exact SON centres of U ∪ V, first len(U) rows = the real points'
    vanilla_cost: float
    cost: float
    alpha: float
    residuals: dict[str, float]  # KKT residuals at the returned solution
    trace: list[dict] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return len(self.V) / (len(self.mu) - len(self.V))


def pair_matrix(m: int) -> sparse.csr_matrix:
    """D (|O| x m): row e = (i, j), i < j, is e_i - e_j, so (D mu)_e = mu_i - mu_j."""
    i, j = np.triu_indices(m, 1)
    e = np.arange(len(i))
    return sparse.csr_matrix((np.r_[np.ones(len(i)), -np.ones(len(i))], (np.r_[e, e], np.r_[i, j])),
                             shape=(len(i), m))


def check_size(m: int, d: int, cfg: KKTAntidoteConfig) -> None:
    pairs = m * (m - 1) // 2 * d
    if pairs > cfg.max_pair_variables:
        most = int((1 + np.sqrt(1 + 8 * cfg.max_pair_variables / d)) / 2)
        raise ValueError(f"Algorithm 2 (KKT / sum-of-norms) keeps m(m-1)/2 x d = {pairs:,} pair variables for "
                         f"{m} points x {d} features, above the limit of {cfg.max_pair_variables:,} "
                         f"(KKTAntidoteConfig.max_pair_variables); use at most {most} points with {d} features "
                         "(--max-points), or Algorithm 3 (--clustering kmeans)")


def _solve(problem) -> None:
    import cvxpy as cp
    problem.solve(solver=cp.CLARABEL)
    if problem.status not in ("optimal", "optimal_inaccurate"):
        raise RuntimeError(f"cvxpy could not solve the problem: {problem.status}")


def son(W: np.ndarray, lam: float) -> SONSolution:
    """Sum-of-norms clustering, min 1/2 ||mu - W||^2 + lam sum_{i<j} ||mu_i - mu_j||, with its dual zeta."""
    import cvxpy as cp
    m, d = W.shape
    D = pair_matrix(m)
    mu = cp.Variable((m, d))
    eta = cp.Variable((D.shape[0], d))
    link = eta == D @ mu
    _solve(cp.Problem(cp.Minimize(0.5 * cp.sum_squares(mu - W) + lam * cp.sum(cp.norm(eta, 2, axis=1))), [link]))
    mu_v = np.asarray(mu.value)
    y = np.asarray(link.dual_value)
    # cvxpy's sign convention for an equality's multiplier: take the one that satisfies mu - W + D^T zeta = 0
    zeta = min((y, -y), key=lambda z: np.abs(mu_v - W + D.T @ z).max())
    return SONSolution(mu_v, zeta)


def kkt_residuals(W: np.ndarray, sol: SONSolution, lam: float) -> dict[str, float]:
    """How far (mu, zeta) is from SON's KKT conditions (Eq. 3.4, with P scaled by lam); 0 at the optimum."""
    D = pair_matrix(len(W))
    eta = D @ sol.mu
    theta = W - sol.mu
    v = eta + sol.zeta
    nv = np.linalg.norm(v, axis=1, keepdims=True)
    prox = np.maximum(0.0, 1.0 - lam / np.maximum(nv, 1e-300)) * v
    return {"stationarity": float(np.abs(theta - D.T @ sol.zeta).max()),
            "dual_feasibility": float(max(0.0, (np.linalg.norm(sol.zeta, axis=1) - lam).max())),
            "prox": float(np.abs(eta - prox).max())}


def social_cost_son(U: np.ndarray, mu_u: np.ndarray, groups: np.ndarray) -> float:
    """F_social with each real point's own SON centre: the worst group's mean squared shift."""
    d = ((U - mu_u) ** 2).sum(1)
    return float(max(d[groups == g].mean() for g in np.unique(groups)))


def single_level_step(U: np.ndarray, groups: np.ndarray, V0: np.ndarray, sol: SONSolution, lam: float,
                      lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """One solve of the single-level program around `sol` (the exact SON of U ∪ V0): the proposed V.

    The thesis's affine stand-in eta_e - gamma_e (eta_e + zeta_e) = 0, 0 <= gamma_e <= 1, says that eta_e and
    zeta_e point the same way. Here each separated pair keeps its direction u_e at `sol`: zeta_e = lam u_e
    and eta_e = s_e u_e with s_e >= 0 (so gamma_e = s_e / (s_e + lam)); fused pairs keep eta_e = 0 with
    ||zeta_e|| <= lam. These are SON's exact KKT conditions on that pattern, and they are affine and conic.
    Directions measured from a numerical solution are not exactly consistent when many pairs are separated,
    so the parallel constraints get an L1 slack with an exact-penalty weight.
    """
    import cvxpy as cp
    n, d = U.shape
    m = n + len(V0)
    D = pair_matrix(m)
    from scipy.sparse.csgraph import connected_components
    norm0 = np.linalg.norm(D @ sol.mu, axis=1)
    fused = norm0 <= 1e-5 * max(1.0, float(np.abs(U).max()))
    f_idx, s_idx = np.flatnonzero(fused), np.flatnonzero(~fused)
    # directions between the fused components' mean centres: one consistent configuration
    i, j = np.triu_indices(m, 1)
    _, comp = connected_components(sparse.csr_matrix((np.ones(len(f_idx)), (i[f_idx], j[f_idx])), shape=(m, m)),
                                   directed=False)
    centre = np.stack([sol.mu[comp == c].mean(0) for c in range(comp.max() + 1)])[comp]
    eta0 = D @ centre
    u = eta0[s_idx] / np.maximum(np.linalg.norm(eta0[s_idx], axis=1, keepdims=True), 1e-300)
    # an exact penalty: heavier than the objective's slope, so the program gains nothing by breaking the
    # parallel constraints, while the solver's rounding in u costs next to nothing
    slack_weight = 10.0 * (1.0 + 2.0 * float(np.abs(U - sol.mu[:n]).max()))
    V = cp.Variable((len(V0), d))
    mu = cp.Variable((m, d))
    zf = cp.Variable((len(f_idx), d))
    svar = cp.Variable(len(s_idx), nonneg=True)
    Df, Ds = D[f_idx], D[s_idx]
    W = cp.vstack([U, V])
    slack = Ds @ mu - cp.multiply(svar[:, None], u)                  # eta_e - s_e u_e, 0 when exact
    cons = [W - mu - Df.T @ zf - Ds.T @ (lam * u) == 0,              # theta + mu - W = 0, theta = D^T zeta
            Df @ mu == 0, cp.norm(zf, 2, axis=1) <= lam,             # fused pairs
            V >= lo, V <= hi]
    costs = [cp.sum_squares(U[groups == g] - mu[:n][groups == g]) / int((groups == g).sum())
             for g in np.unique(groups)]
    objective = (cp.maximum(*costs) if len(costs) > 1 else costs[0]) + slack_weight * cp.sum(cp.abs(slack))
    _solve(cp.Problem(cp.Minimize(objective), cons))
    return np.clip(np.asarray(V.value), lo, hi)


def antidote_kkt(U: np.ndarray, groups: np.ndarray, cfg: KKTAntidoteConfig | None = None) -> KKTAntidoteResult:
    """Algorithm 2: grow |V| from V_s by xi until F_social of SON(U ∪ V) on U beats alpha (or the rounds run out)."""
    cfg = cfg or KKTAntidoteConfig()
    U = np.asarray(U, float)
    groups = np.asarray(groups)
    n, d = U.shape
    check_size(n + cfg.start + cfg.step * (cfg.max_rounds - 1), d, cfg)
    lo, hi = U.min(0), U.max(0)
    base = son(U, cfg.lam)
    vanilla = social_cost_son(U, base.mu, groups)
    alpha = vanilla if cfg.alpha is None else cfg.alpha
    best = (vanilla, np.empty((0, d)), base)
    rng = np.random.default_rng(cfg.seed)
    trace: list[dict] = []
    size = cfg.start
    for _ in range(cfg.max_rounds):
        # "initialise V arbitrarily": at points of the worst-off group, then uniformly in the box. The
        # single-level program only moves V within one fusion pattern of SON (its KKT conditions are
        # combinatorial across patterns), so several starts are tried.
        shift = ((U - base.mu) ** 2).sum(1)
        worst = max(np.unique(groups), key=lambda g: shift[groups == g].mean())
        starts = [U[rng.choice(np.flatnonzero(groups == worst), size)]]
        starts += [lo + rng.random((size, d)) * (hi - lo) for _ in range(cfg.starts - 1)]
        for start, V in enumerate(starts):
            for step in range(cfg.inner + 1):
                W = np.vstack([U, V])
                sol = son(W, cfg.lam)
                cost = social_cost_son(U, sol.mu[:n], groups)
                trace.append({"size": size, "start": start, "step": step, "cost": cost})
                if cost < best[0]:
                    best = (cost, V, sol)
                if step == cfg.inner:
                    break
                V_new = single_level_step(U, groups, V, sol, cfg.lam, lo, hi)
                if np.abs(V_new - V).max() < 1e-7:
                    break
                V = V_new
        if best[0] < alpha:
            break
        size += cfg.step
    cost, V, sol = best
    W = np.vstack([U, V])
    return KKTAntidoteResult(V, sol.mu, vanilla, cost, alpha, kkt_residuals(W, sol, cfg.lam), trace)
