"""Trimming a run: fine-tune the run's model without the removed training images.

Influence is computed for the head over fixed features, but the repair that
matters for an image model is to fine-tune the whole network without the
harmful images. This makes that a run folder (kind ``trim``) like every other
child run: its model.pt can be audited, pruned, compared. The controls are the
same call with other rows: random rows of the same count, the rows of utility
influence, or none at all (fine-tune only), so that a gain can be credited to
the choice of images and not to the extra epochs.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..engine import TrainConfig, fit
from ..methods.runs import save_run_model, start_child_run


def default_finetune() -> TrainConfig:
    """The pruning verbs' fine-tuning as the CLI sets it (2 epochs, Adam at 1e-4, cosine, keep the last epoch).

    Like for like with `prune scp --finetune-*` defaults, so trimming and pruning
    are compared at the same budget. (Adam at 0.01, the loop's bare default,
    collapsed a synthderm VGG-11 to one class in a first benchmark run.)
    """
    return TrainConfig(epochs=2, lr=1e-4, optimizer="adam", schedule="cosine", select_on="last")


@dataclass
class FinetuneTrimConfig:
    """Which training images to leave out (positions in the run's train split) and how to fine-tune."""

    drop: list[int] = field(default_factory=list)
    label: str = "influence"      # influence-<impact> | random-<seed> | utility | finetune-only
    finetune: TrainConfig = field(default_factory=default_finetune)

    def validate(self) -> None:
        if any(i < 0 for i in self.drop):
            raise ValueError("row positions to drop must be >= 0")
        self.finetune.validate()


def finetune_without(run: str | Path, cfg: FinetuneTrimConfig, out: str | Path) -> Path:
    """Fine-tune `run`'s model on its training split minus `cfg.drop`; `out` becomes a resumable run folder."""
    settings: dict[str, Any] = {"drop": sorted(int(i) for i in cfg.drop), "label": cfg.label,
                                "finetune": asdict(cfg.finetune)}
    cfg.validate()
    parent, rd = start_child_run(run, out, "trim", settings, method=f"trim-{cfg.label}")
    if rd.model_path.exists() and "finetune_done" in rd.read_metrics():
        return rd.path
    splits = parent.splits()
    n = len(splits.train)
    if cfg.drop and max(cfg.drop) >= n:
        raise ValueError(f"row {max(cfg.drop)} is not in the run's training split ({n} images)")
    keep = np.setdiff1d(np.arange(n), np.asarray(cfg.drop, dtype=np.int64))
    trimmed = replace(splits, train=splits.train.subset(keep))
    result = fit(parent.model, trimmed, cfg.finetune, run_dir=rd)
    save_run_model(rd, result.model, parent.arch, {"trim": {"removed": len(cfg.drop), "label": cfg.label}})
    rd.set_section("finetune_done", {"removed": len(cfg.drop), "kept": int(len(keep))})
    rd.log(f"fine-tuned without {len(cfg.drop)} training images ({cfg.label}); {len(keep)} kept")
    return rd.path
