"""Fairness Reprogramming (Zhang et al., NeurIPS 2022): a learned input trigger for a frozen model.

`run_reprogram(model, splits, ReprogramConfig)` trains the trigger;
`reprogram_from_run` / `sweep_from_run` do it on run folders (the CLI verb);
`ReprogrammedModel` (trigger + frozen model) is usable wherever a model is;
`load_reprogrammed` / `export_reprogrammed` read and write it as one checkpoint.
"""
from .adversary import Adversary, projected_trigger_grad
from ...models.trigger import (IMAGENET_MEAN, IMAGENET_STD, PATCH_LOCATIONS, TRIGGER_INITS, TRIGGER_KINDS,
                               ReprogramError, ReprogrammedModel, Trigger, apply_reprogram_extra, default_size,
                               find_normalization, load_reprogrammed, wrap_with_trigger)
from .core import (CRITERIA, SELECT_ON, FrozenModelChangedError, ReprogramConfig, ReprogramResult, check_unchanged,
                   min_cell_accuracy, resolve_normalization, run_reprogram)
from .pipeline import (ReprogramRunResult, SweepResult, describe_row, export_reprogrammed, lambda_dir_name,
                       reprogram_from_run, summarize, sweep_from_run)

__all__ = [
    "Adversary", "CRITERIA", "FrozenModelChangedError", "IMAGENET_MEAN", "IMAGENET_STD", "PATCH_LOCATIONS",
    "ReprogramConfig", "ReprogramError", "ReprogramResult", "ReprogramRunResult", "ReprogrammedModel", "SELECT_ON",
    "SweepResult", "TRIGGER_INITS", "TRIGGER_KINDS", "Trigger", "apply_reprogram_extra", "check_unchanged",
    "default_size", "describe_row", "export_reprogrammed", "find_normalization", "lambda_dir_name",
    "load_reprogrammed", "min_cell_accuracy", "projected_trigger_grad", "reprogram_from_run",
    "resolve_normalization", "run_reprogram", "summarize", "sweep_from_run", "wrap_with_trigger",
]
