"""Influence explained by rules on interpretable metadata (thesis Algorithm 4, S2).

A regression tree is fitted to the influence values with the training rows'
*interpretable* columns as inputs — group, label and whatever metadata the
table carries (skin-tone bin, body site, sex, age) — and shrunk with
hierarchical shrinkage (Agarwal et al., ICML 2022; imodels' HSTreeRegressor).
Each leaf then reads as a rule such as "label = melanoma and group = dark ->
mean influence on eodd -0.0021 (n = 41)". On raw embeddings such rules would
mean nothing; on metadata they are an audit statement.

Targets are divided by max |influence| (as the thesis code does before its tree
plots) so that rules of different impact functions share a scale; the printed
means are converted back.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.tree import DecisionTreeRegressor

MAX_LEVELS = 30  # a categorical column with more distinct values is left out (an id, a path)


@dataclass
class Rule:
    conditions: list[str]
    mean_influence: float
    count: int

    def text(self, impact: str) -> str:
        cond = " and ".join(self.conditions) or "all rows"
        return f"{cond} -> mean influence on {impact} {self.mean_influence:+.3g} (n = {self.count})"


def interpretable_frame(meta: pd.DataFrame, label: pd.Series, group: pd.Series) -> pd.DataFrame:
    """One-hot categorical columns with few levels, numeric columns as they are."""
    cols = {"label": label.astype(str).to_numpy(), "group": group.astype(str).to_numpy()}
    for c in meta.columns:
        if c in ("label", "group"):
            continue
        s = meta[c]
        if pd.api.types.is_numeric_dtype(s) and s.nunique() > MAX_LEVELS:
            cols[c] = s.to_numpy()
        elif s.nunique() <= MAX_LEVELS:
            cols[c] = s.astype(str).to_numpy()
    df = pd.DataFrame(cols)
    cat = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    out = pd.get_dummies(df, columns=cat, prefix_sep=" = ", dtype=float)
    out.attrs["levels"] = {c: sorted(df[c].unique().tolist()) for c in cat}
    return out


def _negate(name: str, levels: dict[str, list[str]]) -> str:
    """'not sex = male' reads better as 'sex = female' when the column has two values."""
    col, _, val = name.partition(" = ")
    other = [v for v in levels.get(col, []) if v != val]
    return f"{col} = {other[0]}" if len(other) == 1 else f"{col} != {val}"


def _walk(tree, names: list[str], scale: float, levels: dict[str, list[str]]) -> list[Rule]:
    t = tree.tree_
    rules: list[Rule] = []

    def rec(node: int, conds: list[str]) -> None:
        if t.children_left[node] == -1:
            rules.append(Rule(conds, float(t.value[node].ravel()[0]) * scale, int(t.n_node_samples[node])))
            return
        name, thr = names[t.feature[node]], t.threshold[node]
        if " = " in name:  # a one-hot column: <= 0.5 means "not this value"
            left, right = _negate(name, levels), name
        else:
            left, right = f"{name} <= {thr:.3g}", f"{name} > {thr:.3g}"
        rec(t.children_left[node], conds + [left])
        rec(t.children_right[node], conds + [right])
    rec(0, [])
    return rules


def explain(values: np.ndarray, frame: pd.DataFrame, max_depth: int = 3, shrinkage: float = 10.0,
            min_leaf: int = 10, seed: int = 0) -> list[Rule]:
    """Leaves of a shrunk tree on `frame`, most negative (most harmful) first."""
    from imodels import HSTreeRegressor
    scale = float(np.abs(values).max()) or 1.0
    base = DecisionTreeRegressor(max_depth=max_depth, min_samples_leaf=min_leaf, random_state=seed)
    hs = HSTreeRegressor(estimator_=base, reg_param=shrinkage)
    hs.fit(frame.to_numpy(dtype=float), values / scale)
    rules = _walk(hs.estimator_, list(frame.columns), scale, frame.attrs.get("levels", {}))
    return sorted(rules, key=lambda r: r.mean_influence)
