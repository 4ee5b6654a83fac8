"""Influence of every training sample on every impact function (thesis §4.2.2, S1).

``I(-x_i) = grad f(theta)^T H^{-1} grad l(x_i; theta)`` with the summed Hessian
H of the head's training objective, so ``I(-x_i)`` estimates
``f(head refitted without x_i) - f(head fitted on all)``: **negative = removing
the sample lowers the impact function** (every impact function is lower-is-
better), i.e. the sample is harmful to it. tests/test_influence.py checks this
against real leave-one-out refits.

H is factorised once per fitted head (a dense Cholesky while the head has at
most ``DENSE_LIMIT`` parameters, shared with the head's Newton polish; else
preconditioned conjugate gradients on Hessian-vector products, memory
O(n * (features + classes)), never a d x d matrix) and solved for every impact
function's gradient at once. The per-sample influences are then one matrix
product over the training rows: ``I_i = w_i * (p_i - e_{y_i})^T U z_i`` for the
solved ``U`` — the per-sample gradients are never stored.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from . import impact
from .head import LogisticHead, fit_head, fit_head_with_solver, softmax
from .table import FeatureTable


@dataclass
class InfluenceConfig:
    """Settings of an influence computation.

    ``lam``: L2 strength of the head (on standardised features; the objective
    sums the per-sample losses, so lam is comparable to one sample's loss).
    ``gamma``: the linear attacker's overshoot for the robust impact function
    (the thesis code's 1.3). ``solver``: auto (dense up to DENSE_LIMIT
    parameters, else cg), dense or cg.
    """

    impacts: tuple[str, ...] = impact.IMPACTS
    lam: float = 1.0
    gamma: float = 1.3
    solver: str = "auto"
    cg_tol: float = 1e-8

    def __post_init__(self) -> None:
        self.impacts = tuple(self.impacts)
        unknown = [m for m in self.impacts if m not in impact.IMPACTS]
        if unknown:
            raise ValueError(f"unknown impact function(s) {unknown}; choose from {', '.join(impact.IMPACTS)}")
        if self.solver not in ("auto", "dense", "cg"):
            raise ValueError(f"solver must be auto, dense or cg (got {self.solver!r})")
        if self.lam <= 0:
            raise ValueError(f"--lam must be positive (got {self.lam})")
        if self.gamma <= 1:
            raise ValueError(f"--gamma must exceed 1 so that the attack crosses the boundary (got {self.gamma})")


@dataclass
class InfluenceResult:
    values: dict[str, np.ndarray]       # impact name -> influence per training row
    train_index: np.ndarray             # rows of the table that are training rows
    impact_values: dict[str, float]     # f at the fitted head, on the validation split
    head: LogisticHead
    solver: str
    head_val_accuracy: float
    head_agreement: float | None = None  # share of val rows where head and network agree
    notes: list[str] = field(default_factory=list)

    def frame(self, table: FeatureTable) -> pd.DataFrame:
        idx = self.train_index
        df = pd.DataFrame({"row": idx, "id": table.ids[idx], "label": np.asarray(table.classes)[table.y[idx]],
                           "group": np.asarray(table.group_names)[table.g[idx]]})
        for name, v in self.values.items():
            df[f"influence_{name}"] = v
        return df

    def summary(self) -> dict:
        return {"impact_values": self.impact_values, "solver": self.solver, "lam": self.head.lam,
                "head_params": self.head.num_params, "head_val_accuracy": self.head_val_accuracy,
                "head_agreement": self.head_agreement, "n_train": int(len(self.train_index)),
                "negative": {k: int((v < 0).sum()) for k, v in self.values.items()}, "notes": self.notes}


def influences_for(U: np.ndarray, Zt: np.ndarray, P: np.ndarray, Y: np.ndarray,
                   sw: np.ndarray | None = None) -> np.ndarray:
    """``I_ik = w_i (p_i - e_i)^T U_k z_i`` for every row i and solved ``U_k = H^{-1} grad f_k``.

    `U` is a stack (k, classes, features + 1); the result is (n, k). One
    matrix product for all impact functions: the per-sample gradients
    ``(p_i - e_i) z_i^T`` are never formed.
    """
    k, C, _ = U.shape
    proj = (Zt @ U.reshape(k * C, -1).T).reshape(len(Zt), k, C)      # z_i . u_kc
    out = np.einsum("nkc,nc->nk", proj, P - Y)
    return out if sw is None else out * np.asarray(sw)[:, None]


def validation_sets(head: LogisticHead, table: FeatureTable, split: str = "val",
                    gamma: float = 1.3) -> tuple[impact.ValidationSet, impact.ValidationSet]:
    """The clean validation set and its adversarial copy (attacked once, by the fitted head)."""
    Xv, yv, gv = table.part(split)
    Zv = head.augment(Xv)
    adv = impact.linear_attack(head.W, Zv, yv, gamma)
    return impact.ValidationSet.from_numpy(Zv, yv, gv), impact.ValidationSet.from_numpy(adv, yv, gv)


def compute_influence(table: FeatureTable, cfg: InfluenceConfig | None = None,
                      sample_weight: np.ndarray | None = None) -> InfluenceResult:
    """Fit the head on the training rows and score each of them on every impact function."""
    cfg = cfg or InfluenceConfig()
    needs_groups = any(m in impact.FAIRNESS_IMPACTS for m in cfg.impacts)
    table.check(need_two_groups=needs_groups)
    tr = np.flatnonzero(table.mask("train"))
    Xt, yt = table.X[tr], table.y[tr]
    head, solver = fit_head_with_solver(Xt, yt, table.num_classes, cfg.lam, sample_weight, cfg.solver, cfg.cg_tol)
    Zt = head.augment(Xt)
    P = softmax(Zt @ head.W.T)
    Y = np.eye(table.num_classes)[yt]
    clean, adv = validation_sets(head, table, "val", cfg.gamma)
    fvals, grads = {}, []
    for name in cfg.impacts:
        fvals[name], grad = impact.value_and_gradient(name, head.W, adv if name == "robust" else clean)
        grads.append(grad)
    solved = influences_for(solver.solve_many(np.stack(grads)), Zt, P, Y, sample_weight)  # one solve for all
    values = {name: solved[:, k] for k, name in enumerate(cfg.impacts)}
    Xv, yv, _ = table.part("val")
    pred_v = head.predict(Xv)
    agreement = None
    if table.network_pred is not None:
        agreement = float((pred_v == table.network_pred[table.mask("val")]).mean())
    return InfluenceResult(values, tr, fvals, head, solver.kind, float((pred_v == yv).mean()), agreement)


def leave_one_out(table: FeatureTable, rows: Sequence[int], name: str, cfg: InfluenceConfig | None = None
                  ) -> np.ndarray:
    """Actual change of impact function `name` when each training row in `rows` is left out.

    Refits the head from the full fit (same standardisation) — the ground truth
    the influence estimate is tested against; costs one refit per row.
    """
    cfg = cfg or InfluenceConfig()
    tr = np.flatnonzero(table.mask("train"))
    head = fit_head(table.X[tr], table.y[tr], table.num_classes, cfg.lam)
    clean, adv = validation_sets(head, table, "val", cfg.gamma)
    v = adv if name == "robust" else clean
    base = impact.value(name, head.W, v)
    out = []
    for r in rows:
        keep = tr[tr != r]
        h = fit_head(table.X[keep], table.y[keep], table.num_classes, cfg.lam, init=head)
        out.append(impact.value(name, h.W, v) - base)
    return np.asarray(out)


def config_dict(cfg: InfluenceConfig) -> dict:
    d = asdict(cfg)
    d["impacts"] = list(cfg.impacts)
    return d
