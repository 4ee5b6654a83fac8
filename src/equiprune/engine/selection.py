"""Model selection on the validation split: which epoch (or pruning iteration) is kept.

Next to the papers' rules (best validation macro-F1, validation FATE), MEDFAIR
chooses models by their worst group (minimax selection): the epoch whose
lowest per-group accuracy, or lowest per-group AUC, is highest. Those two
scores come from the validation predictions with their probabilities
(:func:`equiprune.metrics.group_scores`).

The hook for any training or pruning loop: call :func:`worst_group_record`
on the validation predictions and keep the epoch with the highest
``record[select_on]``. `fit` does this for ``TrainConfig.select_on``, the
pruning loop for ``LoopConfig.select_on``, and a method that trains through
`fit` (the mitigations) gets it from its TrainConfig.
"""
from __future__ import annotations

import math

from ..metrics import group_scores
from .predict import Predictions

__all__ = ["SELECT_ON", "WORST_GROUP_SELECT", "worst_group_record", "undefined_selection_text"]

WORST_GROUP_SELECT: tuple[str, ...] = ("val_worst_group_acc", "val_worst_group_auc")
SELECT_ON: tuple[str, ...] = ("val_f1", "val_acc", *WORST_GROUP_SELECT, "last")


def worst_group_record(preds: Predictions) -> dict[str, float]:
    """``val_worst_group_acc`` and ``val_worst_group_auc`` of validation predictions (NaN AUC: undefined)."""
    v = group_scores(preds.y_true, preds.probs, preds.groups, y_pred=preds.y_pred).values
    return {"val_worst_group_acc": v["worst_group_acc"], "val_worst_group_auc": v["worst_group_auc"]}


def undefined_selection_text(select_on: str) -> str:
    """Why no epoch could be chosen by `select_on`, for the log."""
    if select_on == "val_worst_group_auc":
        return ("the validation worst-group AUC was undefined at every step (every group has a single class in "
                "the validation split)")
    return f"{select_on} was undefined at every step"

