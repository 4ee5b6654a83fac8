"""Clustering algorithms, vanilla and fair: the baselines and the victims of the attacks.

One contract: ``ALGORITHMS[name](X, groups, k, seed) -> Clustering`` (labels,
and centres where the algorithm has them). Fair algorithms read the groups;
vanilla ones ignore them.

* ``kmeans`` / ``spectral`` — scikit-learn (spectral: a 10-nearest-neighbour
  affinity graph).
* ``sfd`` — Scalable Fairlet Decomposition (Backurs et al., ICML 2019) for two
  groups with balance parameters (p, q) = (2, 5) as in the thesis (code
  alpha=5, beta=2): the points are put in a locality-preserving order (the
  leaves of a recursive median split, standing in for the paper's
  hierarchically separated tree), each group's points are cut into as many
  consecutive chunks as there are fairlets, chunk i of both groups forms
  fairlet i (so every fairlet keeps a ratio of at least p/q whenever the
  data allow it), and a weighted k-means on the fairlets' medoids clusters
  the fairlets. Every cluster is a union of fairlets, so its balance is at
  least the smallest fairlet's. (The paper clusters fairlets by k-median; k-means is
  used here, said so.)
* ``fsc`` — Fair Spectral Clustering (Kleindessner et al., ICML 2019),
  unnormalised: eigenvectors of the graph Laplacian L = D - W restricted to
  vectors orthogonal to every group's centred indicator, k-means on them; W
  is the symmetrised 3-nearest-neighbour graph (the thesis's setting).
* ``kfc`` — fair k-center (Harb & Lam, 2020): Gonzalez's greedy centres, then
  an assignment LP (scipy's HiGHS) that keeps every group's share in every
  cluster within [(1 - delta) r_g, r_g / (1 - delta)] (delta = 0.1), allowing
  assignments within lambda times the greedy radius and raising lambda until
  the LP is feasible, then rounding each point to its largest fraction.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import sparse
from scipy.optimize import linprog
from scipy.sparse.linalg import LinearOperator, eigsh
from sklearn.cluster import KMeans, SpectralClustering
from sklearn.neighbors import kneighbors_graph


@dataclass
class Clustering:
    labels: np.ndarray
    centers: np.ndarray | None = None


def _centers(X: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    return np.stack([X[labels == c].mean(0) if (labels == c).any() else np.full(X.shape[1], np.nan)
                     for c in range(k)])


def kmeans(X: np.ndarray, groups: np.ndarray, k: int, seed: int = 0) -> Clustering:
    km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(X)
    return Clustering(km.labels_.astype(np.int64), km.cluster_centers_)


def spectral(X: np.ndarray, groups: np.ndarray, k: int, seed: int = 0) -> Clustering:
    sc = SpectralClustering(n_clusters=k, affinity="nearest_neighbors", n_neighbors=min(10, len(X) - 1),
                            random_state=seed, assign_labels="kmeans").fit(X)
    return Clustering(sc.labels_.astype(np.int64), _centers(X, sc.labels_, k))


def locality_order(X: np.ndarray, leaf: int = 8) -> np.ndarray:
    """Indices in the order of the leaves of a recursive median split along the widest axis."""
    out: list[int] = []
    stack = [np.arange(len(X))]
    while stack:
        idx = stack.pop()
        if len(idx) <= leaf:
            out.extend(idx.tolist())
            continue
        axis = int(np.argmax(X[idx].max(0) - X[idx].min(0)))
        order = idx[np.argsort(X[idx, axis], kind="stable")]
        half = len(order) // 2
        stack.append(order[half:])
        stack.append(order[:half])
    return np.asarray(out, dtype=np.int64)


def fairlets(X: np.ndarray, groups: np.ndarray, p: int = 2, q: int = 5) -> list[np.ndarray]:
    """(p, q)-fairlets of two groups: chunk i of each group's locality-ordered points."""
    values = np.unique(groups)
    if len(values) != 2:
        raise ValueError(f"SFD decomposes two groups into fairlets; the data have {len(values)}")
    order = locality_order(X)
    minor_val = min(values, key=lambda v: (groups == v).sum())
    minor = order[groups[order] == minor_val]
    major = order[groups[order] != minor_val]
    # as many fairlets as keep p minority points each (at least one fairlet)
    m = max(1, len(minor) // p)
    # a fairlet may hold at most q/p majority per minority point: more fairlets only if the data allow
    m = max(m, min(len(minor), int(np.ceil(len(major) * p / q / p)))) if len(major) > q * m else m
    cut_minor = np.array_split(minor, m)
    cut_major = np.array_split(major, m)
    return [np.r_[a, b] for a, b in zip(cut_minor, cut_major)]


def sfd(X: np.ndarray, groups: np.ndarray, k: int, seed: int = 0, p: int = 2, q: int = 5) -> Clustering:
    parts = fairlets(X, groups, p, q)
    medoids = np.stack([X[f][np.argmin(((X[f] - X[f].mean(0)) ** 2).sum(1))] for f in parts])
    weights = np.array([len(f) for f in parts], float)
    k_eff = min(k, len(parts))
    km = KMeans(n_clusters=k_eff, n_init=3, random_state=seed).fit(medoids, sample_weight=weights)
    labels = np.empty(len(X), dtype=np.int64)
    for f, c in zip(parts, km.labels_):
        labels[f] = c
    return Clustering(labels, _centers(X, labels, k_eff))


def fsc(X: np.ndarray, groups: np.ndarray, k: int, seed: int = 0, neighbors: int = 3,
        metric: str = "euclidean") -> Clustering:
    n = len(X)
    A = kneighbors_graph(X, min(neighbors, n - 1), metric=metric, include_self=False)
    W = A.maximum(A.T).astype(float)
    L = sparse.diags(np.asarray(W.sum(1)).ravel()) - W
    vals = np.unique(groups)
    F = np.stack([(groups == v).astype(float) - (groups == v).mean() for v in vals[:-1]], axis=1)
    Q, _ = np.linalg.qr(F)                       # orthonormal basis of the constraint space
    shift = 2.0 * float(np.asarray(W.sum(1)).max()) + 1.0  # lifts span(F) above every admissible eigenvalue

    def matvec(v: np.ndarray) -> np.ndarray:
        v = v.ravel()
        pv = v - Q @ (Q.T @ v)
        lp = L @ pv
        return (lp - Q @ (Q.T @ lp)) + shift * (Q @ (Q.T @ v))
    op = LinearOperator((n, n), matvec=matvec, dtype=float)
    rng = np.random.default_rng(seed)
    m = min(k, n - len(vals))
    # a wider Lanczos basis (ncv) restarts less often: 2,000 points x 64 features, 3-NN graph: 1.13 -> 0.79 s
    _, vecs = eigsh(op, k=m, which="SA", v0=rng.normal(size=n), tol=1e-6, maxiter=5000, ncv=min(n, max(2 * m + 1, 40)))
    km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(vecs)
    return Clustering(km.labels_.astype(np.int64), _centers(X, km.labels_, k))


def gonzalez(X: np.ndarray, k: int, seed: int = 0) -> tuple[np.ndarray, float]:
    """Greedy farthest-point centres (a 2-approximation of k-center) and their radius."""
    rng = np.random.default_rng(seed)
    idx = [int(rng.integers(len(X)))]
    d = ((X - X[idx[0]]) ** 2).sum(1)
    for _ in range(1, k):
        idx.append(int(np.argmax(d)))
        d = np.minimum(d, ((X - X[idx[-1]]) ** 2).sum(1))
    return np.asarray(idx), float(np.sqrt(d.max()))


def kfc(X: np.ndarray, groups: np.ndarray, k: int, seed: int = 0, delta: float = 0.1) -> Clustering:
    n = len(X)
    centers_idx, radius = gonzalez(X, k, seed)
    C = X[centers_idx]
    D = np.sqrt(((X[:, None, :] - C[None, :, :]) ** 2).sum(-1))      # n x k
    vals = np.unique(groups)
    member = np.stack([groups == v for v in vals]).astype(float)     # groups x n
    share = member.mean(1)
    hi, lo = share / (1 - delta), share * (1 - delta)
    for lam in (1.0, 1.5, 2.0, 3.0, 5.0, np.inf):
        # only the assignments within lam x the greedy radius are variables (x[i, j] for allowed pairs)
        pi, pj = np.nonzero(D <= lam * radius + 1e-12)
        m = len(pi)
        if np.bincount(pi, minlength=n).min() == 0:
            continue                                                   # some point reaches no centre
        # for every cluster j and group g: sum_i (member_gi - hi_g) x_ij <= 0 and sum_i (lo_g - member_gi) x_ij <= 0
        rows = (pj[None, :] * len(vals) + np.arange(len(vals))[:, None]) * 2          # groups x m
        cols = np.tile(np.arange(m), len(vals))
        A_ub = sparse.csr_matrix((np.r_[(member[:, pi] - hi[:, None]).ravel(), (lo[:, None] - member[:, pi]).ravel()],
                                  (np.r_[rows.ravel(), rows.ravel() + 1], np.r_[cols, cols])),
                                 shape=(2 * k * len(vals), m))
        A_eq = sparse.csr_matrix((np.ones(m), (pi, np.arange(m))), shape=(n, m))
        res = linprog(D[pi, pj], A_ub=A_ub, b_ub=np.zeros(A_ub.shape[0]), A_eq=A_eq, b_eq=np.ones(n),
                      bounds=(0, 1), method="highs")
        if res.status == 0:
            frac = np.zeros((n, k))
            frac[pi, pj] = res.x
            return Clustering(frac.argmax(1).astype(np.int64), C)
    raise RuntimeError("the fair k-center assignment LP is infeasible even without a radius limit")


ALGORITHMS: dict[str, Callable[..., Clustering]] = {"kmeans": kmeans, "spectral": spectral, "sfd": sfd,
                                                     "fsc": fsc, "kfc": kfc}
FAIR = ("sfd", "fsc", "kfc")
