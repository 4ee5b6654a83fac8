"""Two audited run folders compared on the same images: the paired bootstrap of every metric.

`equiprune audit` stores each run's per-image predictions (``predictions_<split>.csv``).
Two runs audited on the same split of the same data can then be compared
head to head without re-running either model: the same resample indices are
drawn for both, so image-level noise common to both cancels. This is how a
method is set against its controls ("does SCP beat random channels?").
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..metrics import PairedInterval, paired_bootstrap, paired_group_scores
from .audit import AuditConfig, AuditError, predictions_name

__all__ = ["run_predictions", "check_same_items", "paired_runs", "paired_run_scores"]


def run_predictions(run: str | Path, split: str = "test") -> pd.DataFrame:
    """The stored per-image predictions of an audited run (columns index, y_true, y_pred, group, ...)."""
    f = Path(run) / predictions_name(split)
    if not f.exists():
        raise AuditError(f"{run} has no {f.name}; audit it first (equiprune audit --run {run} --split {split})")
    return pd.read_csv(f)


def check_same_items(a: pd.DataFrame, b: pd.DataFrame, run_a: str | Path, run_b: str | Path) -> None:
    """Raise AuditError unless both prediction tables score the same images in the same order."""
    same = len(a) == len(b) and all(np.array_equal(a[c].to_numpy(), b[c].to_numpy())
                                    for c in ("index", "y_true", "group"))
    if not same:
        raise AuditError(f"{run_a} and {run_b} were not scored on the same items ({len(a)} vs {len(b)} rows, or "
                         "another order, labels or groups); audit both on the same split of the same data.")


def paired_runs(run_a: str | Path, run_b: str | Path, cfg: AuditConfig | None = None,
                num_classes: int | None = None) -> dict[str, PairedInterval]:
    """Difference b − a of every metric between two audited runs, with paired bootstrap intervals.

    A negative ``eodd`` estimate means run b has the smaller equalized-odds gap.
    Uses `cfg.split`, `cfg.n_boot`, `cfg.seed` and `cfg.alpha` (the audit's settings).
    """
    cfg = cfg or AuditConfig()
    a, b = run_predictions(run_a, cfg.split), run_predictions(run_b, cfg.split)
    check_same_items(a, b, run_a, run_b)
    return paired_bootstrap(a["y_true"].to_numpy(), a["y_pred"].to_numpy(), b["y_pred"].to_numpy(),
                            a["group"].to_numpy(), n_boot=cfg.n_boot, seed=cfg.seed, alpha=cfg.alpha,
                            num_classes=num_classes)


def _probs(df: pd.DataFrame, run: str | Path) -> np.ndarray:
    cols = sorted((c for c in df.columns if c.startswith("prob_")), key=lambda c: int(c[5:]))
    if len(cols) < 2:
        raise AuditError(f"the stored predictions of {run} have no class probabilities (prob_0, prob_1, ...); "
                         f"audit it again with `equiprune audit --run {run}`.")
    return df[cols].to_numpy(dtype=np.float64)


def paired_run_scores(run_a: str | Path, run_b: str | Path, cfg: AuditConfig | None = None
                      ) -> dict[str, PairedInterval]:
    """Difference b − a of the threshold-free and calibration numbers (worst-group AUC, ECE gap, ...) of two runs.

    The same stored predictions and resamples as :func:`paired_runs`, through
    :func:`equiprune.metrics.paired_group_scores` with the audit's ECE and
    specificity settings; the two paper groups.
    """
    cfg = cfg or AuditConfig()
    a, b = run_predictions(run_a, cfg.split), run_predictions(run_b, cfg.split)
    check_same_items(a, b, run_a, run_b)
    return paired_group_scores(a["y_true"].to_numpy(), _probs(a, run_a), _probs(b, run_b), a["group"].to_numpy(),
                               y_pred_a=a["y_pred"].to_numpy(), y_pred_b=b["y_pred"].to_numpy(), n_boot=cfg.n_boot,
                               seed=cfg.seed, alpha=cfg.alpha, settings=cfg.score_settings())
