"""The mitigation contract: a config dataclass, a `Mitigation` plugin and one `MethodSpec` per method.

A mitigation method is one module of this package holding

- a config dataclass deriving from `MitigationConfig` (its own knobs, each
  with a default and a line in `HELP`); the fine-tuning budget `finetune`
  is inherited, so every method trains exactly as long as the others and as
  the pruning methods' fine-tuning;
- a `Mitigation` subclass (an `engine.TrainPlugin`): the loss, the sampler
  weights, extra trained tensors, per-step/epoch hooks, and `finish`, which
  runs once after training (a weight average, fitted offsets) and returns
  what the method reports in metrics.json;
- `build(model, splits, cfg) -> Mitigation`, which may change the model
  first (a head per group, per-group batch norm, an offset layer);
- `SPEC = MethodSpec(...)`: its name, label, source and whether it needs the
  group at inference.

`registry.METHOD_MODULES` lists the modules; `core.run_mitigation` runs any
of them through the one training loop (`engine.fit`). Nothing else changes
when a method is added.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ...engine import TrainConfig
from ...engine.plugin import TrainPlugin
from ...models import final_linear_name


def default_mitigation_train() -> TrainConfig:
    """The fine-tuning budget of `mitigate`: that of `prune scp` at its defaults, 5 iterations x 2 epochs.

    Adam at lr 1e-4 (the pruning verbs' fine-tuning rate, cli.common.FINETUNE_LR),
    cosine schedule, the last epoch kept (as the pruning loop's fine-tuning does).
    """
    return TrainConfig(epochs=10, optimizer="adam", lr=1e-4, schedule="cosine", select_on="last")


@dataclass
class MitigationConfig:
    """Settings every mitigation method shares; a method's config derives from it."""

    finetune: TrainConfig = field(default_factory=default_mitigation_train)
    seed: int = 0
    progress: bool = True

    HELP = {}  # field name -> --help text of the method's own knobs (subclasses fill it)

    def validate(self) -> None:
        self.finetune.validate()

    @staticmethod
    def check(name: str, value: float, ok: bool, rule: str) -> None:
        if not ok:
            raise ValueError(f"{name} must be {rule}, got {value}")


class Mitigation(TrainPlugin):
    """A method's plugin into `engine.fit`, plus `finish`, run once after training."""

    def train_config(self, train: TrainConfig) -> TrainConfig:
        """The training settings the method trains with (default: the budget unchanged; FME raises its
        fresh exits' learning rate)."""
        return train

    def finish(self, model: nn.Module, splits: Any) -> dict[str, Any]:
        """Last step after training (on the trained model, in place); returns the method's metrics section."""
        return {}


@dataclass(frozen=True)
class MethodSpec:
    """One mitigation method as the registry, the CLI and the tables see it."""

    name: str                       # CLI name: equiprune mitigate NAME
    label: str                      # table label
    config: type[MitigationConfig]
    build: Callable[[nn.Module, Any, Any], Mitigation]
    group_at_inference: bool        # does the trained model need each item's group to predict?
    summary: str                    # one line for --help
    source: str                     # paper and equation
    trains: bool = True             # False: no fine-tuning at all (post-processing)
    needs_parent: bool = False      # True: uses the start model beyond its weights (a teacher), so no --method in train
    check: Callable[[nn.Module], None] | None = None  # refuses an unsuitable start model before any folder exists
    # A method that is more than one `fit` with a plugin (ME-FairPrune: multi-exit training, then FairPrune)
    # runs its own steps: run(model, splits, cfg, run_dir) -> (model, FitResult | None, section).
    run: Callable[..., tuple[nn.Module, Any, dict[str, Any]]] | None = None
    parent_reason: str = "distils from a trained model"  # why a needs_parent method cannot `train --method`
    reads_groups: bool = True       # False: training never reads the group labels (so `stress-groups` has nothing to corrupt)


# ----------------------------------------------------------------------------- shared pieces


def num_groups_of(splits: Any) -> int:
    return max(2, len(getattr(splits, "group_names", [])) or 2)


def cell_index(y: torch.Tensor, g: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Group x class cell of each item: ``g * C + y``."""
    return g.long() * num_classes + y.long()


def cell_counts(labels: np.ndarray, groups: np.ndarray, num_classes: int, num_groups: int) -> np.ndarray:
    """Items per group x class cell (flat, ``g * C + y``)."""
    cells = np.asarray(groups, dtype=np.int64) * num_classes + np.asarray(labels, dtype=np.int64)
    return np.bincount(cells, minlength=num_classes * num_groups).astype(np.float64)


def cell_weights(labels: np.ndarray, groups: np.ndarray, num_classes: int, num_groups: int,
                 target: str = "balanced") -> np.ndarray:
    """Per-item weight that gives each group x class cell the `target` share of the total, mean 1.

    ``balanced``: every non-empty cell weighs the same (weight ∝ 1 / cell size).
    ``independent``: Kamiran & Calders' reweighing, P(g) P(y) / P(g, y), which
    makes group and label independent without equalising the classes.
    """
    labels, groups = np.asarray(labels, dtype=np.int64), np.asarray(groups, dtype=np.int64)
    counts = cell_counts(labels, groups, num_classes, num_groups)
    cells = groups * num_classes + labels
    n = len(labels)
    if target == "balanced":
        w = n / (np.count_nonzero(counts) * counts[cells])
    elif target == "independent":
        p_g = np.bincount(groups, minlength=num_groups) / n
        p_y = np.bincount(labels, minlength=num_classes) / n
        w = p_g[groups] * p_y[labels] / (counts[cells] / n)
    else:
        raise ValueError(f"target must be 'balanced' or 'independent', got {target!r}")
    return w / w.mean()


class FeatureTap:
    """Keeps the input of the model's last linear layer (the penultimate feature) from each forward pass.

    A forward pre-hook, so the model's code is untouched and DDP wrapping does
    not matter. `features` holds the last batch's features (with gradient).
    """

    def __init__(self, model: nn.Module) -> None:
        self.layer = final_linear_name(model)
        module = model.get_submodule(self.layer)
        self.in_features = int(module.in_features)
        self.features: torch.Tensor | None = None
        self._handle = module.register_forward_pre_hook(self._hook)

    def _hook(self, _module: nn.Module, inputs: tuple) -> None:
        self.features = inputs[0].flatten(1)

    def take(self) -> torch.Tensor:
        f, self.features = self.features, None
        if f is None:
            raise RuntimeError(f"the forward pass did not reach {self.layer}")
        return f

    def remove(self) -> None:
        self._handle.remove()


def method_fields(config: type[MitigationConfig]) -> list[Any]:
    """The method's own settings: the config's fields beyond those every method shares."""
    from dataclasses import fields
    shared = {f.name for f in fields(MitigationConfig)}
    return [f for f in fields(config) if f.name not in shared]


def config_from_options(config: type[MitigationConfig], options: dict[str, Any], **shared: Any) -> MitigationConfig:
    """A method's config from its own options by name (strings are converted to each default's type)."""
    own = {f.name: f for f in method_fields(config)}
    unknown = sorted(set(options) - set(own))
    if unknown:
        known = ", ".join(own) or "none"
        raise ValueError(f"{config.__name__} has no setting {', '.join(unknown)}; its settings: {known}")
    values: dict[str, Any] = {}
    for name, value in options.items():
        default = own[name].default
        if isinstance(value, str) and not isinstance(default, str):
            try:
                value = type(default)(value)
            except ValueError:
                raise ValueError(f"setting {name} takes a {type(default).__name__}, got {value!r}") from None
        values[name] = value
    return config(**values, **shared)
