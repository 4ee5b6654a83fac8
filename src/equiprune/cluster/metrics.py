"""How fair and how good a clustering is (thesis §3.1, §4.1; shared/research/thesis-systems.md §5).

Fairness of a clustering is about *representation*: whether each group keeps
its share of the data inside every cluster.

* ``balance`` — min over clusters k and groups g of min(r_X^g / r_k^g,
  r_k^g / r_X^g), with r the group's share in the data and in the cluster;
  1 = every cluster mirrors the data, 0 = some cluster misses a group.
* ``entropy`` — for each group g, -sum_k (|N_kg| / n_k) log(|N_kg| / n_k),
  averaged over groups (the thesis's definition: its scale grows with K).
* ``balance_cost`` (§3.1, to minimise, in [-1, 0]) = -balance with the
  ratio written R(i, j) = (data share of j) / (share of j in cluster i).
* ``social_cost`` (§3.1, Ghadiri et al. 2021) — the worst group's mean
  squared distance to its nearest centre.

Utility: NMI, ARI and unsupervised accuracy (Hungarian matching of clusters
to labels), and the label-free Silhouette, Calinski–Harabasz and
Davies–Bouldin indices (scikit-learn).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn import metrics as skm


def _counts(labels: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    _, li = np.unique(labels, return_inverse=True)
    _, gi = np.unique(groups, return_inverse=True)
    table = np.zeros((li.max() + 1, gi.max() + 1))
    np.add.at(table, (li, gi), 1)
    return table, li, gi


def balance(labels: Any, groups: Any) -> float:
    table, _, _ = _counts(np.asarray(labels), np.asarray(groups))
    data_share = table.sum(0) / table.sum()
    cluster_share = table / table.sum(1, keepdims=True)
    if (cluster_share == 0).any():
        return 0.0
    ratio = data_share[None, :] / cluster_share
    return float(np.minimum(ratio, 1.0 / ratio).min())


def balance_cost(labels: Any, groups: Any) -> float:
    """The antidote chapter's fairness cost: -balance (lower is fairer)."""
    return -balance(labels, groups)


def entropy(labels: Any, groups: Any) -> float:
    table, _, _ = _counts(np.asarray(labels), np.asarray(groups))
    share = table / table.sum(1, keepdims=True)       # |N_kg| / n_k
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(share > 0, -share * np.log(share), 0.0)
    return float(terms.sum(0).mean())


def social_cost(X: Any, centers: Any, groups: Any) -> float:
    X, centers, groups = np.asarray(X, float), np.asarray(centers, float), np.asarray(groups)
    d = ((X[:, None, :] - centers[None, :, :]) ** 2).sum(-1).min(1)
    return float(max(d[groups == g].mean() for g in np.unique(groups)))


def unsupervised_accuracy(labels_true: Any, labels_pred: Any) -> float:
    """Accuracy under the best one-to-one matching of clusters to classes (Hungarian)."""
    table, _, _ = _counts(np.asarray(labels_pred), np.asarray(labels_true))
    rows, cols = linear_sum_assignment(-table)
    return float(table[rows, cols].sum() / table.sum())


def clustering_scores(labels: Any, groups: Any, X: Any | None = None, y: Any | None = None) -> dict[str, float]:
    """Every metric that applies: fairness always, NMI/ARI/ACC with labels, internal indices with features."""
    labels, groups = np.asarray(labels), np.asarray(groups)
    out = {"balance": balance(labels, groups), "entropy": entropy(labels, groups),
           "clusters": int(len(np.unique(labels)))}
    if y is not None:
        y = np.asarray(y)
        out.update(nmi=float(skm.normalized_mutual_info_score(y, labels)),
                   ari=float(skm.adjusted_rand_score(y, labels)), acc=unsupervised_accuracy(y, labels))
    if X is not None and 1 < len(np.unique(labels)) < len(labels):
        X = np.asarray(X, float)
        sample = min(len(labels), 3000)
        out.update(silhouette=float(skm.silhouette_score(X, labels, sample_size=sample, random_state=0)),
                   calinski_harabasz=float(skm.calinski_harabasz_score(X, labels)),
                   davies_bouldin=float(skm.davies_bouldin_score(X, labels)))
    return out


def post_pre_ratio(pre: dict[str, float], post: dict[str, float]) -> dict[str, float]:
    """post / pre per metric (the thesis's Fig. 4.6 format; ~1 = robust). NaN where pre is 0."""
    return {k: (post[k] / pre[k] if pre[k] else float("nan")) for k in pre if k in post}
