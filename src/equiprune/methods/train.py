"""The `train` verb: data settings + architecture → trained baseline run folder."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from torch import nn

from ..data import DataConfig, DataSplits
from ..data.fingerprint import changed_tables, table_hashes
from ..engine import (FitResult, RunDir, RunError, TrainConfig, claim_run_folder, evaluate, fit, on_main, read_json,
                      write_json)
from ..engine.lr_find import LRFindConfig, find_lr as lr_range_test
from ..engine.train_health import training_warnings
from ..models import build_model
from ..models.weights import WeightsError, imagenet_preprocessing, load_pretrained, resolve_weights
from .runs import load_announced, save_run_model


@dataclass
class ModelConfig:
    """Which architecture to build (arguments of `build_model` besides num_classes) and its start.

    `weights`: ``"none"`` (random initialisation), ``"imagenet"`` (torchvision's
    ImageNet-1k weights, width 1.0 only) or the path of a torchvision-format
    state dict. With ``"imagenet"`` and `weights_preprocessing`, the data's
    input size and resize ratio become the weights' own (224 px from 256);
    set it False to keep the DataConfig's (the CLI does when --image-size is given).
    """

    name: str = "vgg11"
    width: float = 0.25
    weights: str = "none"
    weights_preprocessing: bool = True


def with_weights_preprocessing(data: DataConfig, model: str) -> DataConfig:
    """`data` fed as `model`'s ImageNet weights expect: their crop size, resize ratio and mean/std."""
    from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD

    prep = imagenet_preprocessing(model)
    if not data.normalize or (prep.mean, prep.std) != (IMAGENET_MEAN, IMAGENET_STD):
        raise WeightsError(f"the ImageNet weights of {model} expect mean {prep.mean} / std {prep.std}; "
                           "the data pipeline normalises with ImageNet's only (DataConfig.normalize=True).")
    return replace(data, image_size=prep.image_size, resize_factor=prep.resize_factor)


@dataclass
class TrainRunResult:
    """A trained model, its training history and its test metrics."""

    model: nn.Module
    run: RunDir | None
    fit: FitResult
    test: dict[str, float] = field(default_factory=dict)
    group_names: list[str] = field(default_factory=list)
    #: sentences for a training that did not learn (`training_warnings`), each with what to try
    warnings: list[str] = field(default_factory=list)
    #: the learning-rate range test, when the rate was picked by one (`find_lr`)
    lr_find: dict[str, Any] | None = None


def train_model(model: nn.Module, splits: DataSplits, cfg: TrainConfig, run_dir: str | Path | None = None,
                arch: dict[str, Any] | None = None, data_config: DataConfig | None = None,
                plugin: Any = None, method: dict[str, Any] | None = None,
                weights: dict[str, Any] | None = None) -> TrainRunResult:
    """Train `model` and write a run folder (config.json, metrics.json, model.pt, log.txt).

    Calling it again on the same folder resumes an interrupted run; a finished
    one is trained no further. `plugin` (a mitigation method's
    `TrainPlugin`, `train --method`) changes the training; `method` (its
    name and settings) is recorded in config.json, and what the plugin's
    `finish` returns becomes the `mitigation` section of metrics.json.
    `weights` (what the model started from, see `load_pretrained`) is
    recorded in config.json.
    """
    cfg.validate()   # before the folder exists, so a mistyped option leaves nothing a corrected command refuses
    rd = RunDir(run_dir) if run_dir is not None else None
    tables = table_hashes(data_config) if data_config is not None else {}
    if rd is not None and rd.file(RunDir.CONFIG).exists():
        changed = changed_tables(rd.read_config().get("tables"), tables)
        if changed:
            raise RunError(f"the metadata table {changed[0]} changed since {rd.path} was started (its SHA-256 "
                           "differs): resuming would train one model on two tables. Restore the table, or pass "
                           "a new --out folder.")
    if rd is not None and rd.model_path.exists() and (rd.path / RunDir.METRICS).exists() \
            and "test" in rd.read_metrics():
        rd.check_or_write_config({"kind": "train", "data": asdict(data_config) if data_config else None,
                                  "arch": arch, "train": asdict(cfg), "method": method, "weights": weights},
                                 keys=["kind", "data", "arch", "train", "method", "weights"])
        from ..models import load_checkpoint
        model, _, _ = load_checkpoint(rd.model_path)
        rd.log("this run has already finished; nothing to do", echo=cfg.progress)
        data = rd.read_metrics()
        rd.release()  # finished: the result keeps the folder's path, not its lock
        return TrainRunResult(model=model, run=rd, fit=FitResult(model=model, history=data["history"]),
                              test=data["test"], group_names=list(splits.group_names),
                              warnings=list(data.get("training_warnings") or []))
    if rd is not None:
        rd.check_or_write_config({
            "kind": "train", "data": asdict(data_config) if data_config else None, "arch": arch,
            "train": asdict(cfg), "classes": list(splits.classes), "group_names": list(splits.group_names),
            "method": method, "tables": tables, **({"weights": weights} if weights else {}),
            "group_coding": getattr(splits, "group_coding", ""),
        }, keys=["kind", "data", "arch", "train", "method", "weights"])
    result = fit(model, splits, cfg, run_dir=rd, plugin=plugin)
    extra: dict[str, Any] = {"classes": list(splits.classes), "group_names": list(splits.group_names)}
    if plugin is not None and hasattr(plugin, "finish"):
        section = plugin.finish(result.model, splits)
        if rd is not None:
            rd.set_section("mitigation", section)
        extra["mitigation"] = (method or {}).get("name")
    test = record_trained_model(rd, result.model, splits, arch or {}, extra, result.history)
    val = getattr(splits, "val", None)
    warnings = training_warnings(result.history, splits.train.labels, val.labels if val is not None else None)
    if rd is not None:
        rd.set_section("training_warnings", warnings)
        for w in warnings:
            rd.log(f"warning: {w}", echo=False)
        rd.release()  # finished: the result keeps the folder's path, not its lock
    return TrainRunResult(model=result.model, run=rd, fit=result, test=test, group_names=list(splits.group_names),
                          warnings=warnings)


def record_trained_model(rd: RunDir | None, model: nn.Module, splits: DataSplits, arch: dict[str, Any],
                         extra: dict[str, Any], history: list[dict[str, Any]]) -> dict[str, float]:
    """Test metrics of a trained model; with `rd`, also its history, test section, model.pt and a log line."""
    test, _ = evaluate(model, splits.test)
    if rd is not None:
        rd.set_history(history)
        rd.set_section("test", test)
        save_run_model(rd, model, arch, extra)
        g0, g1 = list(splits.group_names)[:2]
        # Logged, not printed: the caller (the CLI) prints its own summary line.
        rd.log(f"test accuracy {test['acc']:.4f} ({g0} {test['acc_g0']:.4f}, {g1} {test['acc_g1']:.4f}); "
               f"macro-F1 {test['f1']:.4f}; Eodd {test['eodd']:.4f}", echo=False)
    return test


def pick_lr(model: nn.Module, splits: DataSplits, cfg: TrainConfig, run_dir: str | Path | None = None,
            lf: LRFindConfig | None = None) -> tuple[TrainConfig, dict[str, Any]]:
    """`cfg` with the rate a learning-rate range test picks on `model` (the model is not changed).

    With `run_dir`, the test's curve is kept in ``lr_find.json`` and read back
    when the same command runs again, so a resumed run trains at the same rate.
    """
    f = Path(run_dir) / LR_FIND_FILE if run_dir is not None else None
    if f is not None and f.exists():
        found = read_json(f)
    else:
        found = lr_range_test(model, splits.train, cfg, lf).to_dict()
        if f is not None and not (f.parent / RunDir.CONFIG).exists():  # never into another run's folder
            on_main(write_json, f, found)
    if not math.isfinite(found.get("suggestion") or float("nan")):
        raise ValueError("the learning-rate range test found no rate at which the loss fell; check the data "
                         "(labels, images) or give --lr")
    return replace(cfg, lr=float(found["suggestion"])), found


#: The learning-rate range test's curve in a run folder (`pick_lr`).
LR_FIND_FILE = "lr_find.json"


def train_from_config(data: DataConfig, model_cfg: ModelConfig, cfg: TrainConfig,
                      run_dir: str | Path | None = None, find_lr: bool = False) -> TrainRunResult:
    """Build data and model from settings, then `train_model` (what `equiprune train` calls).

    The weights are resolved before the data is loaded, so a missing file or an
    offline ImageNet download fails at once and leaves no run folder. The run
    folder is claimed first (locked if it exists, else checked to be creatable),
    so a busy or read-only folder is refused before any image is decoded.
    `find_lr`: replace ``cfg.lr`` with the rate a learning-rate range test
    picks on the untrained (or pretrained) model (`pick_lr`).
    """
    cfg.validate()
    claim = claim_run_folder(run_dir) if run_dir is not None else None  # noqa: F841  (held until the RunDir exists)
    state, source = resolve_weights(model_cfg.weights, model_cfg.name, model_cfg.width)
    if model_cfg.weights == "imagenet" and model_cfg.weights_preprocessing:
        data = with_weights_preprocessing(data, model_cfg.name)
    splits = load_announced(data, two_groups=True)
    on_main(print, data.describe_augment())
    arch = {"name": model_cfg.name, "num_classes": splits.num_classes, "width": model_cfg.width,
            "image_size": data.image_size}
    import torch
    torch.manual_seed(cfg.seed)  # the initial weights belong to the seed too
    model = build_model(**arch)
    weights = None
    if state is not None:
        weights = load_pretrained(model, state, source).to_dict()
        if model_cfg.weights != "imagenet":
            from ..data.cache import file_sha256
            weights["sha256"] = file_sha256(Path(model_cfg.weights))
    found = None
    if find_lr:
        cfg, found = pick_lr(model, splits, cfg, run_dir)
        weak = "" if found.get("fell", 0) >= 0.05 else (
            f"; the loss fell only {100 * found.get('fell', 0):.0f}% during the test, so this pick is weak: "
            "train with more --epochs and check the warnings below")
        on_main(print, f"learning-rate range test: lr {cfg.lr:.3g} ({found.get('rule')}; the smoothed loss was "
                       f"lowest at {found['min_loss_lr']:.3g}){weak}")
    result = train_model(model, splits, cfg, run_dir=run_dir, arch=arch, data_config=data, weights=weights)
    result.lr_find = found
    return result
