"""The thesis's application scenarios of influence-based trimming (§4.2.5, S4b–S4e).

Each scenario is one function returning a tidy DataFrame (one row per setting,
seed and measurement) so the CLI, the benchmark and the tests share it:

* `poisoning` (S4b): anchoring attacks (RAA / NRAA) on the training set,
  trimming by DP influence as the defense — Table 4.5's form;
* `evasion` (S4c): an adaptive attacker moves 5–25 % of the test points across
  the boundary of the model it faces; the defender trims 2.5 % by robustness
  influence and refits; accuracy under attack with and without trimming;
* `online` (S4d): ten streamed batches with a share of labels flipped, an SGD
  logistic model updated per batch, with and without trimming 10 % of each
  batch by utility influence of a per-batch surrogate;
* `active` (S4e): a regression tree, fitted without the label, predicts the
  utility influence of unlabelled pool points; the highest are queried, against
  random, entropy and margin sampling, for a linear SVM learner.

The distribution-shift scenario (S4a) is not a function here: it is
`--val-from` on `influence` and `trim` (the validation split drawn from the
target domain).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import impact
from .anchoring import AnchoringConfig, poisoning_defense
from .compute import InfluenceConfig, compute_influence
from .head import fit_head
from .table import FeatureTable, random_split
from .trim import select_rows


def _standardise(X: np.ndarray) -> np.ndarray:
    sd = X.std(0)
    return (X - X.mean(0)) / np.where(sd > 0, sd, 1.0)


def poisoning(X: np.ndarray, y: np.ndarray, g: np.ndarray, seeds=(0, 1, 2), eps: float = 0.1,
              budget: float = 0.1, lam: float = 1.0) -> pd.DataFrame:
    rows = []
    for method in ("random", "nonrandom"):
        for s in seeds:
            for r in poisoning_defense(X, y, g, AnchoringConfig(method=method, eps=eps, seed=s), budget, lam, s):
                if r.setting == "before" and method == "nonrandom":
                    continue  # the same clean fit as under RAA for this seed
                rows.append({"setting": r.setting, "seed": s, "dp": r.dp, "acc": r.acc, "removed": r.removed,
                             "poisoned_removed": r.poisoned_removed})
    return pd.DataFrame(rows)


def evasion(X: np.ndarray, y: np.ndarray, g: np.ndarray, fractions=(0.05, 0.1, 0.15, 0.2, 0.25),
            budget: float = 0.025, seeds=range(10), lam: float = 1.0, gamma: float = 1.3) -> pd.DataFrame:
    """Accuracy on a test split with `fraction` of its points attacked, before and after trimming."""
    Xs = _standardise(X)
    rows = []
    for s in seeds:
        split = random_split(len(y), y, s)
        t = FeatureTable(Xs, y, g, split, np.arange(len(y)), [str(c) for c in range(int(y.max()) + 1)], ["g0", "g1"])
        res = compute_influence(t, InfluenceConfig(impacts=("robust",), lam=lam, gamma=gamma))
        tr = res.train_index
        drop = select_rows(res.values["robust"], int(round(budget * len(tr))), t.g[tr])
        keep = tr[np.setdiff1d(np.arange(len(tr)), drop)]
        models = {"no trimming": res.head, "trimming": fit_head(Xs[keep], y[keep], t.num_classes, lam, init=res.head)}
        Xte, yte, _ = t.part("test")
        rng = np.random.default_rng(s)
        for frac in fractions:
            hit = rng.random(len(yte)) < frac
            for name, head in models.items():  # adaptive: the attacker attacks the model it faces
                Z = head.augment(Xte)
                Z[hit] = impact.linear_attack(head.W, Z[hit], yte[hit], gamma)
                acc = float((np.argmax(Z @ head.W.T, axis=1) == yte).mean())
                rows.append({"model": name, "seed": s, "attacked_fraction": frac, "acc": acc,
                             "clean_acc": float((head.predict(Xte) == yte).mean())})
    return pd.DataFrame(rows)


def online(X: np.ndarray, y: np.ndarray, g: np.ndarray, batches: int = 10, flip: float = 0.35,
           trim: float = 0.1, seeds=range(3), lam: float = 1.0) -> pd.DataFrame:
    """Test accuracy after each streamed batch, for SGD logistic models with and without trimming."""
    from sklearn.linear_model import SGDClassifier
    Xs = _standardise(X)
    classes = np.unique(y)
    rows = []
    for s in seeds:
        rng = np.random.default_rng(s)
        split = random_split(len(y), y, s)
        tr, va, te = (np.flatnonzero(split == k) for k in ("train", "val", "test"))
        stream = np.array_split(rng.permutation(tr), batches)
        learners = {name: SGDClassifier(loss="log_loss", random_state=s) for name in ("no trimming", "trimming")}
        for b, idx in enumerate(stream):
            yb = y[idx].copy()
            noisy = rng.random(len(idx)) < flip
            yb[noisy] = rng.choice(classes, noisy.sum())  # flipped labels (may land on the true one for 2 classes)
            if len(classes) == 2:
                yb[noisy] = 1 - y[idx][noisy]
            Xb = Xs[idx]
            for name, model in learners.items():
                keep = np.arange(len(idx))
                if name == "trimming":
                    bx = np.vstack([Xb, Xs[va]])
                    by = np.r_[yb, y[va]]
                    t = FeatureTable(bx, by, np.r_[g[idx], g[va]], np.r_[["train"] * len(idx), ["val"] * len(va)],
                                     np.arange(len(by)), [str(c) for c in range(int(y.max()) + 1)], ["g0", "g1"])
                    res = compute_influence(t, InfluenceConfig(impacts=("utility",), lam=lam))
                    drop = select_rows(res.values["utility"], int(round(trim * len(idx))), np.zeros(len(idx), int),
                                       cap_at_negative=False)
                    keep = np.setdiff1d(keep, drop)
                model.partial_fit(Xb[keep], yb[keep], classes=classes)
                rows.append({"model": name, "seed": s, "batch": b + 1,
                             "acc": float((model.predict(Xs[te]) == y[te]).mean())})
    return pd.DataFrame(rows)


def _decision_proba(d: np.ndarray) -> np.ndarray:
    """Class probabilities from a linear SVM's decision values (sigmoid / softmax): only their order matters."""
    if d.ndim == 1:
        p = 1.0 / (1.0 + np.exp(-d))
        return np.stack([1 - p, p], axis=1)
    e = np.exp(d - d.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def active(X: np.ndarray, y: np.ndarray, g: np.ndarray, initial: int = 50, rounds: int = 10, per_round: int = 10,
           seeds=range(5), lam: float = 1.0) -> pd.DataFrame:
    """Test accuracy per query round for influence, random, entropy and margin sampling."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeRegressor
    Xs = _standardise(X)
    rows = []
    for s in seeds:
        rng = np.random.default_rng(s)
        split = random_split(len(y), y, s)
        tr, va, te = (np.flatnonzero(split == k) for k in ("train", "val", "test"))
        start = rng.choice(tr, initial, replace=False)
        pool0 = np.setdiff1d(tr, start)
        t = FeatureTable(np.vstack([Xs[start], Xs[va]]), np.r_[y[start], y[va]], np.r_[g[start], g[va]],
                         np.r_[["train"] * initial, ["val"] * len(va)], np.arange(initial + len(va)),
                         [str(c) for c in range(int(y.max()) + 1)], ["g0", "g1"])
        util = compute_influence(t, InfluenceConfig(impacts=("utility",), lam=lam)).values["utility"]
        tree = DecisionTreeRegressor(random_state=42).fit(Xs[start], util)  # without the label: the pool has none
        for strategy in ("influence", "random", "entropy", "margin"):
            labelled, pool = list(start), pool0.copy()
            for r in range(rounds + 1):
                learner = make_pipeline(StandardScaler(), SVC(kernel="linear", random_state=s))
                learner.fit(Xs[labelled], y[labelled])
                rows.append({"strategy": strategy, "seed": s, "round": r, "labels": len(labelled),
                             "acc": float((learner.predict(Xs[te]) == y[te]).mean())})
                if r == rounds:
                    break
                if strategy == "influence":
                    score = tree.predict(Xs[pool])          # query the highest predicted influence
                elif strategy == "random":
                    score = rng.random(len(pool))
                else:
                    P = np.clip(_decision_proba(learner.decision_function(Xs[pool])), 1e-12, 1)
                    if strategy == "entropy":
                        score = -(P * np.log(P)).sum(1)
                    else:
                        top2 = np.sort(P, axis=1)[:, -2:]
                        score = -(top2[:, 1] - top2[:, 0])   # smallest margin first
                pick = pool[np.argsort(-score, kind="stable")[:per_round]]
                labelled += pick.tolist()
                pool = np.setdiff1d(pool, pick)
    return pd.DataFrame(rows)


SCENARIOS = {"poisoning": poisoning, "evasion": evasion, "online": online, "active": active}
