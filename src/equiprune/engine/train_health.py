"""Did training learn? Warnings read off a finished training history, with what to try.

A recipe that suits synthderm can leave a user's own data on a plateau: the
loss stays at the cross-entropy of guessing the class shares, and the
validation accuracy at the majority class's share, while every verb after
it audits a model that learned nothing. These checks look only at numbers
`fit` already records, so they cost nothing and run on every training.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

#: What the warnings suggest; the CLI names the options, the API users read the settings.
ADVICE = ("try `--find-lr` (a learning-rate range test that picks the rate), or a rate near 1e-3 with "
          "--weight-decay 0 and more --epochs; check that the labels belong to the images")


def prior_loss(labels: Sequence[int] | np.ndarray) -> float:
    """Cross-entropy of always predicting the training class shares: the loss of a model that learned nothing."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def training_warnings(history: list[dict[str, float]], train_labels: Sequence[int] | np.ndarray,
                      val_labels: Sequence[int] | np.ndarray | None = None) -> list[str]:
    """Sentences for a training that did not learn, each ending with what to try (empty when it learned).

    * the training loss never fell below 90% of `prior_loss` (ln C for
      balanced classes): the network learned nothing beyond the class shares;
    * the last validation accuracy is within 2 points of the majority
      class's share of the validation split: the model predicts (nearly)
      one class;
    * the loss still fell by more than 10% in the last epoch while training
      accuracy is below 0.9: training stopped while it was still learning.
    """
    if not history:
        return []
    out: list[str] = []
    h0 = prior_loss(train_labels)
    n_classes = int(np.max(train_labels)) + 1 if len(train_labels) else 0
    losses = [float(r["train_loss"]) for r in history if r.get("train_loss") is not None]
    if h0 > 0 and losses and min(losses) >= 0.9 * h0:
        ln_c = f" (ln {n_classes} = {math.log(n_classes):.2f} for balanced classes)" if n_classes > 1 else ""
        out.append(f"the training loss did not fall: {losses[0]:.3f} in epoch 1, {losses[-1]:.3f} in epoch "
                   f"{len(losses)}, against {h0:.3f} for guessing the class shares{ln_c}; {ADVICE}.")
    last = history[-1]
    if val_labels is not None and len(val_labels) and last.get("val_acc") is not None:
        share = float(np.bincount(np.asarray(val_labels, dtype=np.int64)).max() / len(val_labels))
        if float(last["val_acc"]) <= share + 0.02:
            out.append(f"validation accuracy is at chance: {float(last['val_acc']):.3f} against {share:.3f} for "
                       f"always predicting the most common class; {ADVICE}.")
    if len(losses) >= 2 and not out and losses[-1] < 0.9 * losses[-2] and float(last.get("train_acc", 1.0)) < 0.9:
        out.append(f"training stopped while the loss was still falling ({losses[-2]:.3f} -> {losses[-1]:.3f} in "
                   f"the last epoch, training accuracy {float(last['train_acc']):.3f}): more --epochs would "
                   "likely help.")
    return out
