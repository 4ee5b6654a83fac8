"""Training, evaluation, feature extraction, run folders."""
from .distributed import (DistributedError, barrier, get_rank, get_world_size, init_distributed,
                          is_distributed, is_main_process, on_main)
from .predict import Predictions, extract_features, predict
from .rundir import RunDir, RunError, claim_run_folder, describe_diff, log_prefix, read_json, settings_diff, write_json
from .runlock import RunLockedError
from .runtime import class_balanced_sampler, make_loader, resolve_device, set_seed
from .train import FitResult, TrainConfig, evaluate, fit

__all__ = [
    "DistributedError", "barrier", "get_rank", "get_world_size", "init_distributed", "is_distributed",
    "is_main_process", "on_main",
    "FitResult", "Predictions", "RunDir", "RunError", "RunLockedError", "claim_run_folder", "TrainConfig", "class_balanced_sampler", "evaluate",
    "describe_diff", "extract_features", "fit", "log_prefix", "make_loader", "predict", "read_json", "resolve_device", "set_seed",
    "settings_diff", "write_json",
]
