"""Worst-group model selection (MEDFAIR's minimax rule) in fit and in the pruning loop."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import TinyGroupDataset, TinySplits
from equiprune.engine import TrainConfig, fit, predict
from equiprune.engine.selection import worst_group_record
from equiprune.methods.prune_loop import LoopConfig, run_prune_loop, select_iteration
from equiprune.models import build_model


@pytest.fixture(scope="module")
def splits():
    return TinySplits(TinyGroupDataset(160, size=32, seed=1), TinyGroupDataset(64, size=32, seed=2),
                      TinyGroupDataset(64, size=32, seed=3))


def _model():
    torch.manual_seed(0)
    return build_model("vgg11", num_classes=3, width=0.125, image_size=32)


@pytest.mark.parametrize("select_on", ["val_worst_group_acc", "val_worst_group_auc"])
def test_fit_keeps_the_epoch_with_the_best_worst_group(splits, select_on, one_thread):
    cfg = TrainConfig(epochs=3, batch_size=32, lr=2e-3, optimizer="adam", select_on=select_on, progress=False,
                      device="cpu")
    res = fit(_model(), splits, cfg)
    scores = [r[select_on] for r in res.history]
    assert all(math.isfinite(s) for s in scores)
    assert res.best_epoch == int(np.argmax(scores)) + 1 and res.best_score == max(scores)
    # The model handed back is that epoch's: its validation worst group is the recorded one.
    assert worst_group_record(predict(res.model, splits.val, device="cpu"))[select_on] == pytest.approx(
        max(scores), abs=1e-9)


def test_worst_group_record_is_the_lowest_group():
    from equiprune.engine import Predictions

    y = np.array([0, 1, 0, 1, 0, 1, 1, 0])
    g = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    probs = np.array([[.9, .1], [.2, .8], [.6, .4], [.3, .7], [.4, .6], [.7, .3], [.8, .2], [.1, .9]])
    rec = worst_group_record(Predictions(y, probs.argmax(1), g, probs, np.arange(8)))
    assert rec["val_worst_group_acc"] == 0.0          # group 1 gets every one wrong
    assert rec["val_worst_group_auc"] == 0.0          # and ranks them all the wrong way round


def test_select_iteration_by_worst_group_ignores_undefined_and_ineligible():
    hist = [{"iter": 0, "eligible": True, "fate": 0.0, "val_worst_group_auc": 0.70},
            {"iter": 1, "eligible": True, "fate": 0.3, "val_worst_group_auc": 0.74},
            {"iter": 2, "eligible": False, "fate": 0.5, "val_worst_group_auc": 0.90},
            {"iter": 3, "eligible": True, "fate": 0.1, "val_worst_group_auc": float("nan")}]
    assert select_iteration(hist) == 1                                    # FATE: only eligible ones
    assert select_iteration(hist, select_on="val_worst_group_auc") == 1
    hist[1]["val_worst_group_auc"] = None                                 # NaN read back from JSON
    assert select_iteration(hist, select_on="val_worst_group_auc") == 0


def test_the_pruning_loop_selects_by_worst_group_accuracy(splits, one_thread):
    ft = TrainConfig(epochs=1, batch_size=32, lr=1e-3, optimizer="adam", select_on="last", progress=False,
                     device="cpu")
    cfg = LoopConfig(ratio=0.1, max_iters=2, th_acc=1.0, th_fair=-1.0, finetune=ft, progress=False,
                     select_on="val_worst_group_acc")
    res = run_prune_loop(_model(), splits, cfg, None, arch={"image_size": 32})   # fine-tune-only control
    scores = [r["val_worst_group_acc"] for r in res.history]
    assert len(scores) == 3 and all(math.isfinite(s) for s in scores)
    assert res.best_iter == max(range(3), key=lambda i: (scores[i], -i))
    with pytest.raises(ValueError, match="select_on"):
        LoopConfig(select_on="val_f1").validate()
