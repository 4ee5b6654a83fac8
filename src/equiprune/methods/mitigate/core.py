"""Running any mitigation method: on a model, on a run folder (`mitigate`), or from scratch (`train --method`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from torch import nn

from ...data import DataConfig
from ...engine import FitResult, RunDir, fit, set_seed
from ..train import ModelConfig, TrainRunResult, record_trained_model, train_model
from .base import Mitigation, MitigationConfig
from .registry import spec_for


@dataclass
class MitigationResult:
    """The mitigated model, its training history, its test metrics and the method's own section."""

    model: nn.Module
    method: str
    fit: FitResult | None
    section: dict[str, Any] = field(default_factory=dict)
    test: dict[str, float] = field(default_factory=dict)
    run: RunDir | None = None


def run_mitigation(model: nn.Module, splits: Any, cfg: MitigationConfig,
                   run_dir: str | Path | RunDir | None = None) -> MitigationResult:
    """Fine-tune `model` with the method `cfg` belongs to, through the one training loop (`engine.fit`).

    `build` may change the model first (heads, layers); with `run_dir` every
    epoch is checkpointed and an interrupted run resumes. The method's
    `finish` runs after training (weight average, fitted offsets).
    """
    cfg.validate()
    spec = spec_for(cfg)
    set_seed(cfg.seed)
    if spec.run is not None:  # a method of several steps runs them itself
        model, result, own = spec.run(model, splits, cfg, run_dir)
        section = {"method": spec.name, "group_at_inference": spec.group_at_inference, **own}
        return MitigationResult(model=model, method=spec.name, fit=result, section=section)
    plugin: Mitigation = spec.build(model, splits, cfg)
    result = None
    if spec.trains and cfg.finetune.epochs > 0:
        result = fit(model, splits, plugin.train_config(replace(cfg.finetune, seed=cfg.seed)), run_dir=run_dir,
                     plugin=plugin)
        model = result.model
    section = {"method": spec.name, "group_at_inference": spec.group_at_inference, **plugin.finish(model, splits)}
    return MitigationResult(model=model, method=spec.name, fit=result, section=section)


def _finished(rd: RunDir) -> bool:
    return rd.model_path.exists() and "test" in rd.read_metrics()


def mitigate_from_run(parent_path: str | Path, cfg: MitigationConfig, out: str | Path) -> MitigationResult:
    """`equiprune mitigate`: the model of a run folder, mitigated by `cfg`'s method, into a new run folder."""
    from ..runs import load_model_file, start_child_run

    spec = spec_for(cfg)
    check = (lambda run: spec.check(run.model)) if spec.check is not None else None
    parent, rd = start_child_run(parent_path, out, kind=f"mitigate-{spec.name}", settings=cfg, verb="mitigate",
                                 check=check, method=spec.label)
    if _finished(rd):
        rd.log("this run has already finished; nothing to do", echo=cfg.progress)
        model = load_model_file(rd.model_path)[0]
        data = rd.read_metrics()
        return MitigationResult(model=model, method=spec.name, fit=None, section=data.get("mitigation", {}),
                                test=data["test"], run=rd)
    splits = parent.splits()
    result = run_mitigation(parent.model, splits, cfg, run_dir=rd)
    rd.set_section("mitigation", result.section)
    history = result.fit.history if result.fit is not None else []
    result.test = record_trained_model(rd, result.model, splits, parent.arch,
                                       {**parent.extra, "mitigation": spec.name}, history)
    result.run = rd
    return result


def train_with_method(data: DataConfig, model_cfg: ModelConfig, cfg: MitigationConfig,
                      run_dir: str | Path | None = None) -> TrainRunResult:
    """`equiprune train --method`: train from scratch with a method (its `finetune` is the training budget)."""
    from ...models import build_model
    from ..runs import load_announced

    cfg.validate()
    spec = spec_for(cfg)
    if spec.needs_parent:
        raise ValueError(f"{spec.name} {spec.parent_reason}; train a baseline first, then run "
                         f"`equiprune mitigate {spec.name} --run BASELINE --out OUT`")
    splits = load_announced(data, two_groups=True)
    arch = {"name": model_cfg.name, "num_classes": splits.num_classes, "width": model_cfg.width,
            "image_size": data.image_size}
    import torch
    torch.manual_seed(cfg.finetune.seed)  # the initial weights belong to the seed too
    model = build_model(**arch)
    plugin = spec.build(model, splits, cfg)
    settings = asdict(cfg)
    settings.pop("finetune")  # recorded once, as the run's `train` settings
    return train_model(model, splits, plugin.train_config(cfg.finetune), run_dir=run_dir, arch=arch, data_config=data, plugin=plugin,
                       method={"name": spec.name, "settings": settings})
