"""Fair summaries: pick k items whose groups appear in the same proportions as in the whole (thesis §3.2, S11).

* ``sumbal`` (Eq. 3.7): for each group g, R = (share of items showing g in the
  whole) / (share in the summary); SumBal = min over groups of min(R, 1/R), in
  [0, 1], with the violating group named. A group present in the whole but
  absent from the summary gives 0.
* ``fvs_lp`` (Eq. 3.8): the thesis's FVS-LP baseline — an LP with a zero
  objective, ``G^T x = k * mean(G)``, ``1^T x = k``, ``0 <= x <= 1``, summary =
  the frames with round(x_i) = 1. It optimises fairness only.
* ``representative_subset``: what `equiprune summarize` uses for an image set
  (a review set for a clinician): a mixed-integer program (scipy's HiGHS) that
  picks exactly k items, each group's count within one of k times its share,
  minimising the items' distance to the centre of their k-means cluster (so the
  set is spread over the data and central within it).
* ``f_beta``: the summarization benchmarks' utility — each user's summary is the
  top 15 % of frames by that user's importance scores (0/1 knapsack with unit
  frame costs), F_beta (beta = 1) against the predicted summary, averaged over
  users.
* ``load_h5_videos`` reads frame features in the common h5 layout of the video
  summarization benchmarks (one group per video with ``features``,
  ``gtscore``, ``user_summary``); ``synthetic_video`` makes a test video.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, linprog, milp
from sklearn.cluster import KMeans


def sumbal(selected: np.ndarray, H: np.ndarray, names: list[str] | None = None) -> tuple[float, str | None]:
    """SumBal of the summary `selected` (indices) against presence matrix H (n items x g groups)."""
    H = np.asarray(H, float)
    selected = np.asarray(selected, dtype=np.int64)
    if len(selected) == 0:
        raise ValueError("the summary is empty")
    whole = H.mean(0)
    part = H[selected].mean(0)
    worst, who = 1.0, None
    for j in range(H.shape[1]):
        if whole[j] == 0 and part[j] == 0:
            continue
        value = 0.0 if (whole[j] == 0 or part[j] == 0) else min(whole[j] / part[j], part[j] / whole[j])
        if value < worst:
            worst, who = value, (names[j] if names else str(j))
    return float(worst), who


def _check_k(k: int, n: int) -> None:
    if k < 1:
        raise ValueError(f"the summary size must be at least 1 (got {k})")
    if k > n:
        raise ValueError(f"the summary size {k} is larger than the set ({n} items)")


def fvs_lp(H: np.ndarray, k: int, importance: np.ndarray | None = None) -> np.ndarray:
    """The thesis's FVS-LP: indices of round(x) = 1 for the proportional-representation LP.

    The thesis's objective is zero (fairness only). With `importance` (one
    score per item) the same constraints instead maximise the summary's total
    importance — our variant, to see how much utility the constraints cost.
    """
    H = np.asarray(H, float)
    n = len(H)
    _check_k(k, n)
    A_eq = np.vstack([H.T, np.ones((1, n))])
    b_eq = np.r_[k * H.mean(0), k]
    c = np.zeros(n) if importance is None else -np.asarray(importance, float)
    res = linprog(c, A_eq=A_eq, b_eq=b_eq, bounds=(0, 1), method="highs")
    if res.status != 0:
        raise RuntimeError(f"FVS-LP found no feasible summary: {res.message}")
    return np.flatnonzero(np.round(res.x) == 1)


def representative_subset(X: np.ndarray, groups: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Exactly k items, every group's count within 1 of k x its share, as central as possible."""
    X = np.asarray(X, float)
    groups = np.asarray(groups)
    n = len(X)
    _check_k(k, n)
    km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(X)
    cost = np.sqrt(((X - km.cluster_centers_[km.labels_]) ** 2).sum(1))
    vals = np.unique(groups)
    rows = [np.ones(n)]
    lo, hi = [k], [k]
    for v in vals:
        target = k * (groups == v).mean()
        rows.append((groups == v).astype(float))
        lo.append(np.floor(target))
        hi.append(np.ceil(target))
    # one item per k-means cluster at most, so the set covers the data
    onehot = np.zeros((k, n))
    onehot[km.labels_, np.arange(n)] = 1.0
    cons = [LinearConstraint(np.vstack(rows), lo, hi), LinearConstraint(onehot, 0, 1)]
    res = milp(cost, constraints=cons, integrality=np.ones(n), bounds=Bounds(0, 1))
    if res.status != 0:   # the per-cluster cap can make it infeasible: drop it
        res = milp(cost, constraints=cons[:1], integrality=np.ones(n), bounds=Bounds(0, 1))
    if res.status != 0:
        raise RuntimeError(f"no summary of {k} items keeps the groups in proportion: {res.message}")
    return np.flatnonzero(np.round(res.x) == 1)


def user_summary(scores: np.ndarray, fraction: float = 0.15) -> np.ndarray:
    k = max(1, int(round(fraction * len(scores))))
    out = np.zeros(len(scores), bool)
    out[np.argsort(-scores, kind="stable")[:k]] = True
    return out


def f_beta(selected: np.ndarray, user_scores: np.ndarray, beta: float = 1.0, fraction: float = 0.15) -> float:
    """Mean over users of F_beta between the predicted summary and the user's top-`fraction` frames."""
    pred = np.zeros(user_scores.shape[1], bool)
    pred[np.asarray(selected, dtype=np.int64)] = True
    out = []
    for s in user_scores:
        ref = user_summary(s, fraction)
        tp = (pred & ref).sum()
        if tp == 0:
            out.append(0.0)
            continue
        p, r = tp / pred.sum(), tp / ref.sum()
        out.append((1 + beta ** 2) * p * r / (beta ** 2 * p + r))
    return float(np.mean(out))


@dataclass
class Video:
    name: str
    features: np.ndarray          # frames x d
    user_scores: np.ndarray       # users x frames (importance, higher = more important)
    presence: np.ndarray | None   # frames x g (who is on screen), where annotated
    groups: list[str]


def synthetic_video(n: int = 300, d: int = 16, people: int = 3, users: int = 5, seed: int = 0) -> Video:
    """Shots of random length, each showing a subset of `people`; importance follows one person's screen time."""
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(5, n - 5), size=max(1, n // 25), replace=False))
    shots = np.split(np.arange(n), cuts)
    H = np.zeros((n, people))
    X = np.zeros((n, d))
    base = np.zeros(n)
    for s in shots:
        who = rng.random(people) < 0.4
        H[s] = who
        X[s] = rng.normal(size=d) + rng.normal(scale=0.2, size=(len(s), d))
        base[s] = rng.random() + 0.8 * who[0]
    scores = base[None, :] + rng.normal(scale=0.2, size=(users, n))
    return Video(f"synthetic-{seed}", X, scores, H, [f"person {i + 1}" for i in range(people)])


def load_h5_videos(path: str | Path) -> list[Video]:
    """Videos from an h5 file in the benchmarks' layout (eccv16_dataset_*_google_pool5.h5)."""
    import h5py
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    out = []
    with h5py.File(path, "r") as f:
        for name in f:
            v = f[name]
            if "features" not in v:
                raise ValueError(f"{path}: video {name!r} has no 'features' dataset (keys: {list(v)})")
            feats = np.asarray(v["features"], float)
            if "user_summary" in v:
                us = np.asarray(v["user_summary"], float)
                if us.shape[1] != len(feats) and "picks" in v:   # per-frame summaries: bring to the sampled frames
                    us = us[:, np.asarray(v["picks"], dtype=np.int64)]
            elif "gtscore" in v:
                us = np.asarray(v["gtscore"], float)[None, :]
            else:
                raise ValueError(f"{path}: video {name!r} has neither 'user_summary' nor 'gtscore'")
            pres = np.asarray(v["presence"], float) if "presence" in v else None
            out.append(Video(str(name), feats, us, pres, [f"group {i}" for i in range(0 if pres is None
                                                                                        else pres.shape[1])]))
    return out
