"""ME-FairPrune: FairPrune applied to a multi-exit network (the SCP paper's strongest prior method).

Source: Chiu et al., MICCAI 2023 (the fair multi-exit framework "applied to
most existing fairness-aware frameworks", FairPrune among them), as the SCP
paper (Kong et al., MICCAI 2024) reports it in its Tables 1-2 as
"ME-FairPrune [2]". Two steps:

1. multi-exit training: a single-exit start model gets FME's internal
   classifiers (`fme.py`, `models.multi_exit`) and is trained with the
   multi-exit loss for the whole fine-tuning budget (``--lam`` 0 by default:
   plain cross-entropy at every exit, FairPrune being the fairness part); a
   start model that is already multi-exit (an FME run) is pruned as it is;
2. FairPrune (Wu et al., MICCAI 2022; `methods.fairprune`, through the one
   pruning loop `prune_loop`), structured: the saliency
   S = ½ θ² (H_unprivileged − β H_privileged) of the multi-exit network's
   prediction (the early-exit output) summed per output channel of the
   backbone's last conv layer, and the ``--pr`` fraction of its channels
   with the lowest S removed at once (with every coupled tensor, the last
   internal exit's input included), without fine-tuning afterwards, as the
   FairPrune paper prunes.

The privileged group is FairPrune's default for the run's dataset (synthderm:
group 0), else the group with the higher validation accuracy.

Group at inference: NOT needed (the exit rule reads only the confidences).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from torch import nn

from ...engine import FitResult, RunDir, fit
from ...models import exit_heads
from ...models.multi_exit import DEFAULT_THRESHOLD
from .base import MethodSpec, Mitigation, MitigationConfig
from .fme import FMEConfig, build as build_fme, check_model, exit_usage, exit_weights


@dataclass
class MEFairPruneConfig(MitigationConfig):
    pr: float = 0.35
    beta: float = 0.33
    lam: float = 0.0
    threshold: float = DEFAULT_THRESHOLD
    weights: str = "equal"
    exit_lr: float = 1e-3

    HELP = {"pr": "fraction of the last conv layer's channels FairPrune removes (default 0.35, FairPrune's)",
            "beta": "weight β of the privileged group's curvature (default 0.33, FairPrune's)",
            "lam": "HSIC weight λ of the multi-exit training (default 0: cross-entropy at every exit)",
            "threshold": "early-exit confidence θ of the exits added to a single-exit model (default 0.8; a "
                         "multi-exit start model keeps its own)",
            "weights": "per-exit loss weights of the multi-exit training: equal, ramp or a comma list",
            "exit_lr": "learning rate of the classifiers in the multi-exit training (default 1e-3, as fme's)"}

    def validate(self) -> None:
        super().validate()
        self.check("pr", self.pr, 0 < self.pr < 1, "in (0, 1)")
        self.check("beta", self.beta, self.beta >= 0, ">= 0")
        self.check("lam", self.lam, self.lam >= 0, ">= 0")
        self.check("threshold", self.threshold, 0 < self.threshold <= 1, "in (0, 1]")
        self.check("exit_lr", self.exit_lr, self.exit_lr >= 0, ">= 0")
        exit_weights(self.weights, 5)


def run(model: nn.Module, splits: Any, cfg: MEFairPruneConfig, run_dir: str | Path | RunDir | None = None
        ) -> tuple[nn.Module, FitResult | None, dict[str, Any]]:
    """Multi-exit training (unless `model` already is multi-exit), then structured FairPrune; resumable."""
    from ..fairprune import FairPruneConfig, run_fairprune

    rd = RunDir(run_dir) if run_dir is not None and not isinstance(run_dir, RunDir) else run_dir
    fitted = None
    trained = exit_heads(model) is None
    if trained:
        plugin = build_fme(model, splits, FMEConfig(lam=cfg.lam, threshold=cfg.threshold, weights=cfg.weights,
                                                    exit_lr=cfg.exit_lr))
        if cfg.finetune.epochs > 0:
            fitted = fit(model, splits, plugin.train_config(replace(cfg.finetune, seed=cfg.seed)), run_dir=rd,
                         plugin=plugin)
            model = fitted.model
        if plugin.tap is not None:
            plugin.tap.remove()
    config = rd.read_config() if rd is not None and (rd.path / rd.CONFIG).exists() else {}
    fp = FairPruneConfig(structured=True, pr=cfg.pr, beta=cfg.beta, finetune=None, seed=cfg.seed,
                         progress=cfg.progress, dataset=(config.get("data") or {}).get("name"))
    pruned = run_fairprune(model, splits, fp, run_dir=RunDir(rd.path / "fairprune") if rd is not None else None,
                           arch=config.get("arch") or recipe_of(model, splits))
    heads = exit_heads(pruned.model)
    section = {"multi_exit_training": "trained here" if trained else "the start model was multi-exit",
               "fairprune": pruned.summary(), "threshold": heads.threshold,
               "exits": exit_usage(pruned.model, splits.test)}
    return pruned.model, fitted, section


def recipe_of(model: nn.Module, splits: Any) -> dict[str, Any]:
    """A `build_model` recipe for `model` when no run folder records one (the loop's checkpoints need it).

    Only the architecture family matters: the checkpoint's structure restores every size.
    """
    from ...models import input_size
    from ...models.zoo import _ScaledResNet

    bn = any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    name = "resnet18" if isinstance(model, _ScaledResNet) else ("vgg11_bn" if bn else "vgg11")
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    return {"name": name, "num_classes": splits.num_classes, "width": first.out_channels / 64,
            "image_size": input_size(None, model, splits)}


def _unused_build(model: nn.Module, splits: Any, cfg: MEFairPruneConfig) -> Mitigation:
    raise RuntimeError("ME-FairPrune runs through MethodSpec.run")


SPECS = (MethodSpec(name="me-fairprune", label="ME-FairPrune", config=MEFairPruneConfig, build=_unused_build,
                    group_at_inference=False, check=check_model, run=run, needs_parent=True,
                    parent_reason="prunes a trained model",
                    summary="FairPrune on a multi-exit network: FME's exits trained for the budget (unless the "
                            "model has them), then --pr of the last conv's channels cut by FairPrune saliency",
                    source="Chiu et al., MICCAI 2023 (ME + FairPrune); Wu et al., MICCAI 2022; SCP paper Tables 1-2"),)
