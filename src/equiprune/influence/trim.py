"""Influence-based data trimming (thesis Algorithm 5, §4.2.3.2) with its controls.

Sort the training rows by their influence on the chosen impact function,
remove the ``min(b, b')`` lowest, where ``b'`` counts the negative (harmful)
ones, and refit. Two controls share every setting: **random** trimming of the
same number of rows (the thesis code's five seeds 42, 1, 35, 999, 5454) and
**utility** trimming (by influence on the validation loss). Results are
measured on the test split, which influence never sees.

Removing minority-group images from medical data is a harm in itself, so the
removed counts per (group, class) are always reported, ``max_group_share``
caps the share of any group's training rows that may go, and
``mode="downweight"`` keeps every row but gives the chosen ones ``weight``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..metrics import group_fairness
from . import impact
from .compute import InfluenceConfig, InfluenceResult, compute_influence
from .head import LogisticHead, fit_head
from .table import FeatureTable

RANDOM_SEEDS = (42, 1, 35, 999, 5454)  # the thesis code's seeds for random trimming


@dataclass
class TrimConfig:
    impact: str = "eodd"
    budgets: tuple[float, ...] = (0.0, 0.005, 0.01, 0.02, 0.03, 0.04, 0.05)
    cap_at_negative: bool = True      # Algorithm 5's min(b, b'); False removes exactly b (the thesis code)
    max_group_share: float | None = None
    mode: str = "delete"              # delete | downweight
    weight: float = 0.0               # the chosen rows' weight in downweight mode (0 = delete)
    random_seeds: tuple[int, ...] = RANDOM_SEEDS
    controls: bool = True

    def __post_init__(self) -> None:
        self.budgets = tuple(float(b) for b in self.budgets)
        self.random_seeds = tuple(int(s) for s in self.random_seeds)
        if self.impact not in impact.IMPACTS:
            raise ValueError(f"--impact must be one of {', '.join(impact.IMPACTS)} (got {self.impact!r})")
        bad = [b for b in self.budgets if not 0 <= b < 1]
        if bad:
            raise ValueError(f"budgets are fractions of the training rows in [0, 1) (got {bad})")
        if self.mode not in ("delete", "downweight"):
            raise ValueError(f"--mode must be delete or downweight (got {self.mode!r})")
        if self.mode == "downweight" and not 0 < self.weight < 1:
            raise ValueError(f"--weight must be in (0, 1) in downweight mode (got {self.weight})")
        if self.max_group_share is not None and not 0 < self.max_group_share <= 1:
            raise ValueError(f"--max-group-share must be in (0, 1] (got {self.max_group_share})")


def select_rows(values: np.ndarray, count: int, groups: np.ndarray, cap_at_negative: bool = True,
                max_group_share: float | None = None) -> np.ndarray:
    """Positions (into `values`) of the rows Algorithm 5 removes, lowest influence first."""
    if cap_at_negative:
        count = min(count, int((values < 0).sum()))
    order = np.argsort(values, kind="stable")
    if max_group_share is None:
        return order[:count]
    limit = {int(k): int(np.floor(max_group_share * n)) for k, n in zip(*np.unique(groups, return_counts=True))}
    taken: dict[int, int] = {k: 0 for k in limit}
    out = []
    for i in order:
        if len(out) >= count:
            break
        if cap_at_negative and values[i] >= 0:
            break
        grp = int(groups[i])
        if taken[grp] < limit[grp]:
            out.append(i)
            taken[grp] += 1
    return np.asarray(out, dtype=np.int64)


def test_metrics(head: LogisticHead, table: FeatureTable, adv_test: np.ndarray | None = None,
                 split: str = "test") -> dict[str, float]:
    """Accuracy, macro-F1, the paper gap metrics, the thesis's DP and robust accuracy."""
    X, y, g = table.part(split)
    P = head.proba(X)
    pred = P.argmax(axis=1)
    out = {k: v for k, v in group_fairness(y, pred, g, num_classes=table.num_classes).to_dict().items()
           if k in ("acc", "f1", "eopp0", "eopp1", "eodd", "acc_g0", "acc_g1")}
    pos = 1 if table.num_classes == 2 else None
    if pos is not None:  # thesis DP: rate of positive decisions, group 1 minus group 0 (signed)
        out["dp_thesis"] = float((pred[g == 1] == pos).mean() - (pred[g == 0] == pos).mean())
    out["worst_group_acc"] = float(min(out["acc_g0"], out["acc_g1"]))
    if adv_test is not None:
        out["robust_acc"] = float((np.argmax(adv_test @ head.W.T, axis=1) == y).mean())
    return out


@dataclass
class TrimResult:
    rows: pd.DataFrame                 # one row per (method, seed, budget) with test metrics
    removed: pd.DataFrame              # per budget: removed counts per (group, class) by influence trimming
    influence: InfluenceResult
    removed_rows: dict[float, np.ndarray] = field(default_factory=dict)  # budget -> table rows removed
    finetuned: dict = field(default_factory=dict)  # name -> run folder of a fine-tuned model (run sources)

    def summary(self) -> pd.DataFrame:
        """Mean (and sd over seeds for random) of each metric per method and budget."""
        num = [c for c in self.rows.columns if c not in ("method", "seed", "budget", "removed")]
        return self.rows.groupby(["method", "budget"])[num].agg(["mean", "std"]).reset_index()


def _refit(table: FeatureTable, tr: np.ndarray, drop_pos: np.ndarray, base: LogisticHead, cfg: TrimConfig
           ) -> LogisticHead:
    if cfg.mode == "downweight":
        w = np.ones(len(tr))
        w[drop_pos] = cfg.weight
        return fit_head(table.X[tr], table.y[tr], table.num_classes, base.lam, sample_weight=w, init=base)
    keep = np.setdiff1d(np.arange(len(tr)), drop_pos)
    return fit_head(table.X[tr[keep]], table.y[tr[keep]], table.num_classes, base.lam, init=base)


def trim_table(table: FeatureTable, cfg: TrimConfig | None = None, icfg: InfluenceConfig | None = None,
               influence: InfluenceResult | None = None, progress: bool = False) -> TrimResult:
    """Trim a feature table at every budget, refit the head, measure on test; with controls."""
    cfg = cfg or TrimConfig()
    icfg = icfg or InfluenceConfig(impacts=tuple(dict.fromkeys((cfg.impact, "utility"))))
    inf = influence or compute_influence(table, icfg)
    tr = inf.train_index
    base = inf.head
    Xte, yte, _ = table.part("test")
    adv_test = impact.linear_attack(base.W, base.augment(Xte), yte, icfg.gamma)  # built once, pre-trimming
    g_tr = table.g[tr]
    plans: list[tuple[str, int, np.ndarray]] = []
    removed_rows: dict[float, np.ndarray] = {}
    rec = []
    for b in cfg.budgets:
        count = int(round(b * len(tr)))
        chosen = select_rows(inf.values[cfg.impact], count, g_tr, cfg.cap_at_negative, cfg.max_group_share)
        plans.append((f"influence-{cfg.impact}", 0, chosen))
        removed_rows[b] = tr[chosen]
        for grp, cls in zip(table.g[tr[chosen]], table.y[tr[chosen]]):
            rec.append({"budget": b, "group": table.group_names[grp], "class": table.classes[cls]})
        if cfg.controls:
            if cfg.impact != "utility" and "utility" in inf.values:
                plans.append(("influence-utility", 0, select_rows(inf.values["utility"], count, g_tr,
                                                                  cfg.cap_at_negative, cfg.max_group_share)))
            for s in cfg.random_seeds:  # the same number of rows as influence trimming removed
                plans.append(("random", s, np.random.default_rng(s).choice(len(tr), len(chosen), replace=False)))
    rows = []
    iterator = plans
    if progress:
        from tqdm import tqdm
        iterator = tqdm(plans, desc="trim: refits", unit="fit")
    budgets_of = [b for b in cfg.budgets for _ in range(len(plans) // len(cfg.budgets))]
    for (method, seed, drop), b in zip(iterator, budgets_of):
        head = _refit(table, tr, drop, base, cfg) if len(drop) else base
        rows.append({"method": method, "seed": seed, "budget": b, "removed": int(len(drop)),
                     **test_metrics(head, table, adv_test)})
    removed = pd.DataFrame(rec, columns=["budget", "group", "class"])
    removed = (removed.groupby(["budget", "group", "class"]).size().rename("removed").reset_index()
               if len(removed) else pd.DataFrame(columns=["budget", "group", "class", "removed"]))
    return TrimResult(pd.DataFrame(rows), removed, inf, removed_rows)
