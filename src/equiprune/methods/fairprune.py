"""FairPrune (Wu et al., MICCAI 2022) and Optimal Brain Damage (LeCun et al., 1989) as pruning methods.

FairPrune scores every parameter θ_j of a trained model by

    S_j = ½ θ_j² (H_jj(unprivileged) − β · H_jj(privileged))

(H the diagonal Hessian of the mean cross-entropy over that group's samples,
see `equiprune.scoring.saliency`) and prunes the fraction ``pr`` of parameters
with the smallest S: those that matter little to the unprivileged group but a
lot to the privileged one, so removing them narrows the gap. The papers' tables
use ``pr = 0.35`` and ``β = 0.33``. OBD is the same recipe with one Hessian
over all data and no β (``method="obd"``), i.e. the fairness-blind control.

Which group is privileged. The papers call the group on which the vanilla
model is more accurate privileged, and fix it per dataset in their tables:
Fitzpatrick-17k → dark skin (group 1, types IV–VI), ISIC 2019 → female
(group 0). On synthderm light skin (group 0) is advantaged by construction
(lower lesion contrast and under-representation of dark skin), so group 0 is
the default there. ``privileged="auto"`` picks the group with the higher
validation accuracy of the model being pruned; an integer sets it explicitly.
Any other dataset without an explicit choice uses "auto".

Two granularities:

* unstructured (the paper): masks on individual parameters, applied with
  ``torch.nn.utils.prune.custom_from_mask`` so that pruned entries stay zero
  during fine-tuning; the masks are folded into the weights when the model is
  returned or saved (a plain model whose pruned weights are exact zeros).
  This is `MaskStep` in the shared pruning loop of `prune_loop`.
* structured (an equiprune extension, ``structured=True``): one score per
  output channel of one conv layer (the sum of its parameters' saliency,
  `channel_saliency`), the lowest channels physically removed by
  `equiprune.surgery.prune_channels` inside the shared pruning loop of
  `prune_loop` (the same loop, stopping rules and resume as SCP).

One-shot or iterative. ``iters = 1`` (default) prunes ``pr`` at once, as the
paper does. With ``iters = k > 1`` the fraction grows by ``pr / k`` per
iteration (the saliency is recomputed on the pruned, fine-tuned model each
time) and the loop applies SCP's stopping rules (validation macro-F1 drop
``th_acc``, fairness gain ``th_fair``). Which iteration is returned:
``select="last"`` (default for one-shot: the pruned model, whatever it scores)
or ``"best"`` (default when iterative: the best validation FATE against the
starting model, the unpruned iteration 0 included, as SCP does).

Fine-tuning. The paper's text available to us describes pruning the
pre-trained model and does not spell out a fine-tuning schedule; equiprune
fine-tunes briefly after each pruning step by default (the pruned entries are
held at zero) so that it is compared with SCP on the same extra training.
``finetune=None`` (or ``epochs=0``) prunes without any fine-tuning.

Every iteration is saved (``iterations/<k>/model.pt``, and for the
unstructured variant ``iterations/<k>/masks.pt``), so an interrupted run resumes
after its last finished iteration.
"""
from __future__ import annotations

import copy
import math
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils import prune as tprune

from ..data import scoring_dataset
from ..engine import RunDir, TrainConfig, evaluate, fit, set_seed
from ..models import input_size, last_conv_name
from ..scoring import HessianSaliencyScorer
from ..scoring.saliency import ESTIMATORS, resolve_params, select_smallest
from ..models.checkpoint import load_file, save_tensors
from ..surgery import layer_out_channels
from .prune_loop import KEEPS_ZEROS, LoopConfig, LoopResult, PruneStep, iter_dir, run_prune_loop

__all__ = [
    "METHODS",
    "METHOD_LABELS",
    "PRIVILEGED_DEFAULTS",
    "FairPruneConfig",
    "FairPruneError",
    "FairPruneResult",
    "default_privileged",
    "resolve_privileged",
    "parameter_saliency",
    "apply_parameter_masks",
    "fold_parameter_masks",
    "run_fairprune",
    "run_obd",
    "fairprune_from_run",
    "obd_from_run",
]

METHODS = ("fairprune", "obd")
METHOD_LABELS = {"fairprune": "FairPrune", "obd": "OBD"}

# The papers' choice of privileged group per dataset (docs/METRICS.md group coding).
PRIVILEGED_DEFAULTS: dict[str, int] = {
    "fitzpatrick17k": 1,  # dark skin (IV-VI): the papers' tables call it privileged
    "isic2019": 0,        # female: privileged in the papers
    "synthderm": 0,       # light skin (I-III): advantaged by construction of the bias
}
MASKS_FILE = "masks.pt"


class FairPruneError(ValueError):
    """Bad FairPrune / OBD settings or data."""


@dataclass
class FairPruneConfig(LoopConfig):
    """Settings of FairPrune (and of OBD with ``method="obd"``, which ignores β and the groups).

    The loop settings (`LoopConfig`: stopping rules, fine-tuning, FATE) are
    inherited; FairPrune's own count of iterations is `iters` (``--iters``),
    which `max_iters` follows.
    """

    method: str = "fairprune"          # fairprune | obd
    pr: float = 0.35                   # fraction pruned in total (parameters, or the layer's channels)
    beta: float = 0.33                 # weight of the privileged group's curvature
    estimator: str = "fisher"          # fisher | ggn | ggn-mc | exact (see scoring.saliency)
    privileged: int | str | None = None  # group id, "auto", or None: the dataset's default
    dataset: str | None = None         # data name for the privileged default (filled from the run folder)
    params: str = "weights"            # weights (conv/linear weights) | all
    structured: bool = False           # prune output channels of one conv layer (LoopConfig.layer) instead
    scope: str = "global"              # unstructured: one threshold over all tensors, or per tensor (layer)
    max_samples_per_group: int | None = 512  # per-group Hessian sample cap (OBD: this × number of groups)
    balance: bool = False              # give both groups the size of the smaller one
    score_split: str = "train"         # split the Hessians are computed on (with the test transform)
    batch_size: int = 32
    iters: int = 1                     # 1: one-shot (the paper); k > 1: pr / k more per iteration
    # Inherited, with FairPrune's meaning: select (last | best; None: last when one-shot, best when
    # iterative), th_acc / th_fair (iterative stopping rules), finetune (None: no fine-tuning).

    def __post_init__(self) -> None:
        self.max_iters = self.iters

    def validate(self) -> None:
        """Raise FairPruneError when a setting is out of range."""
        if self.method not in METHODS:
            raise FairPruneError(f"method must be one of {METHODS}, got {self.method!r}")
        if not 0.0 < self.pr < 1.0:
            raise FairPruneError(f"pr (the pruned fraction) must be in (0, 1), e.g. 0.35; got {self.pr}")
        if not math.isfinite(self.beta) or self.beta < 0:
            raise FairPruneError(f"beta must be a finite number >= 0 (the papers use 0.33); got {self.beta}")
        if self.estimator not in ESTIMATORS:
            raise FairPruneError(f"estimator must be one of {ESTIMATORS}, got {self.estimator!r}")
        p = self.privileged
        if not (p is None or p == "auto" or (isinstance(p, int) and not isinstance(p, bool) and p >= 0)):
            raise FairPruneError(f"privileged must be a group id (0, 1, ...), 'auto' or None; got {p!r}")
        if self.params not in ("weights", "all"):
            raise FairPruneError(f"params must be 'weights' or 'all', got {self.params!r}")
        if self.scope not in ("global", "layer"):
            raise FairPruneError(f"scope must be 'global' or 'layer', got {self.scope!r}")
        if self.max_samples_per_group is not None and self.max_samples_per_group < 1:
            raise FairPruneError(f"max_samples_per_group must be >= 1 or None, got {self.max_samples_per_group}")
        if self.score_split not in ("train", "val"):
            raise FairPruneError(f"score_split must be 'train' or 'val', got {self.score_split!r}")
        if self.batch_size < 1:
            raise FairPruneError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.iters < 1:
            raise FairPruneError(f"iters must be >= 1, got {self.iters}")
        if self.finetune is not None:
            try:
                self.finetune.validate()
            except ValueError as exc:   # named as runs.validate_settings names a nested setting
                raise FairPruneError(f"finetune: {exc}") from exc
        try:
            super().validate()
        except ValueError as exc:
            raise FairPruneError(str(exc)) from exc

    @property
    def selection(self) -> str:
        """The iteration-selection rule in force ("last" or "best")."""
        return self.select or ("last" if self.iters == 1 else "best")


@dataclass
class FairPruneResult:
    """The returned model and the evidence of every iteration.

    ``pruned`` (unstructured): parameter name → number of entries set to zero
    in the returned model; ``sparsity``: their share of all scored entries.
    ``channels_removed`` (structured): channels cut from ``layer``.
    ``privileged``/``unprivileged`` are None for OBD.
    """

    model: nn.Module
    config: FairPruneConfig
    privileged: int | None
    unprivileged: int | None
    privileged_reason: str
    history: list[dict[str, Any]]
    best_iter: int
    stop_reason: str
    pruned: dict[str, int] = field(default_factory=dict)
    scored_elements: int = 0
    layer: str | None = None
    channels_removed: int = 0
    loop: LoopResult | None = None
    run: RunDir | None = None

    @property
    def sparsity(self) -> float:
        return sum(self.pruned.values()) / self.scored_elements if self.scored_elements else 0.0

    def summary(self) -> dict[str, Any]:
        """JSON-able summary (the ``fairprune`` section of metrics.json)."""
        return {"method": self.config.method, "structured": self.config.structured,
                "privileged": self.privileged, "unprivileged": self.unprivileged,
                "privileged_reason": self.privileged_reason, "best_iter": self.best_iter,
                "selection": self.config.selection, "stop_reason": self.stop_reason,
                "pruned": dict(self.pruned), "scored_elements": self.scored_elements,
                "sparsity": self.sparsity, "layer": self.layer, "channels_removed": self.channels_removed}


# ----------------------------------------------------------------------------- groups


def default_privileged(dataset: str | None) -> int | None:
    """The papers' privileged group for a dataset name, or None when there is no convention."""
    return PRIVILEGED_DEFAULTS.get(str(dataset).lower()) if dataset else None


def _group_values(dataset: Any) -> list[int]:
    groups = getattr(dataset, "groups", None)
    if groups is None:
        raise FairPruneError(f"{type(dataset).__name__} has no 'groups'; FairPrune needs a GroupDataset")
    return sorted(int(g) for g in np.unique(np.asarray(groups)))


def resolve_privileged(cfg: FairPruneConfig, model: nn.Module, splits: Any) -> tuple[int | None, int | None, str]:
    """(privileged, unprivileged, why) for the config; (None, None, ...) for OBD.

    Only two groups are supported: the unprivileged group is the other one.
    """
    if cfg.method == "obd":
        return None, None, "OBD uses one Hessian over all groups"
    present = sorted(set(_group_values(splits.val)) | set(_group_values(scoring_dataset(splits, cfg.score_split))))
    if len(present) != 2:
        raise FairPruneError(
            f"FairPrune compares two groups; the data has groups {present}. Recode the sensitive attribute "
            "to two groups (0/1) or use OBD.")
    if isinstance(cfg.privileged, int):
        if cfg.privileged not in present:
            raise FairPruneError(f"privileged group {cfg.privileged} is not in the data (groups {present})")
        priv, why = cfg.privileged, "set explicitly"
    else:
        priv = default_privileged(cfg.dataset) if cfg.privileged is None else None
        if priv is not None and priv in present:
            why = f"the papers' default for {cfg.dataset}"
        else:
            val, _ = evaluate(model, splits.val)
            accs = {g: float(val.get(f"acc_g{g}", float("nan"))) for g in present}
            priv = max(present, key=lambda g: (accs[g], -g))
            why = ("the group with the higher validation accuracy of the model being pruned ("
                   + ", ".join(f"group {g}: {a:.4f}" for g, a in accs.items()) + ")")
    unpriv = next(g for g in present if g != priv)
    return priv, unpriv, why


# ----------------------------------------------------------------------------- saliency


def hessian_scorer(cfg: FairPruneConfig, dataset: Any, privileged: int | None = None,
                   unprivileged: int | None = None) -> HessianSaliencyScorer:
    """The saliency scorer of `cfg` (FairPrune's per-group Hessians, or OBD's one) on `dataset`."""
    if cfg.method == "fairprune" and (privileged is None or unprivileged is None):
        raise FairPruneError("FairPrune needs the privileged and unprivileged group ids")
    return HessianSaliencyScorer(dataset, method=cfg.method, beta=cfg.beta, estimator=cfg.estimator,
                                 privileged=privileged, unprivileged=unprivileged,
                                 max_samples_per_group=cfg.max_samples_per_group, balance=cfg.balance,
                                 batch_size=cfg.batch_size, seed=cfg.seed, progress=cfg.progress)


def parameter_saliency(model: nn.Module, dataset: Any, cfg: FairPruneConfig, privileged: int | None = None,
                       unprivileged: int | None = None, params: list[str] | str | None = None
                       ) -> dict[str, Tensor]:
    """FairPrune (or OBD) saliency of every scored parameter entry of `model` on `dataset`.

    FairPrune: per-group Hessians from each group's own samples (at most
    ``cfg.max_samples_per_group`` each); with β = 0 the privileged group's
    Hessian is not computed. OBD: one Hessian over the data. `params`
    defaults to ``cfg.params``.
    """
    scorer = hessian_scorer(cfg, dataset, privileged, unprivileged)
    return scorer.parameter_saliency(model, params if params is not None else cfg.params)


# ----------------------------------------------------------------------------- parameter masks


def _owner(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    mod_name, _, attr = name.rpartition(".")
    return (model.get_submodule(mod_name) if mod_name else model), attr


def apply_parameter_masks(model: nn.Module, pruned: dict[str, Tensor]) -> None:
    """Zero the entries marked True in `pruned` and keep them zero in training (torch prune).

    Uses ``torch.nn.utils.prune.custom_from_mask``: the parameter becomes
    ``<name>_orig`` times a ``<name>_mask`` buffer; `fold_parameter_masks`
    (or `save_checkpoint`) makes it permanent.
    """
    for name, mask in pruned.items():
        module, attr = _owner(model, name)
        if hasattr(module, attr + "_orig"):
            raise FairPruneError(f"{name} already carries a pruning mask; fold it first")
        keep = (~mask.bool()).to(device=getattr(module, attr).device)
        tprune.custom_from_mask(module, attr, keep)


def fold_parameter_masks(model: nn.Module, names: list[str] | None = None) -> None:
    """Make masks permanent: the weights keep their zeros, the mask and hook are removed."""
    for name in names if names is not None else _masked_names(model):
        module, attr = _owner(model, name)
        if hasattr(module, attr + "_orig"):
            tprune.remove(module, attr)


def _masked_names(model: nn.Module) -> list[str]:
    return [f"{mn}.{pn[:-5]}" if mn else pn[:-5] for mn, m in model.named_modules()
            for pn, _ in m.named_parameters(recurse=False) if pn.endswith("_orig")
            and hasattr(m, pn[:-5] + "_mask")]


def _select_cumulative(saliency: dict[str, Tensor], previous: dict[str, Tensor], fraction: float,
                       scope: str) -> dict[str, Tensor]:
    """Masks of the `fraction` smallest saliencies; earlier pruned entries always stay pruned."""
    # FairPrune saliency can be negative, so the zeros of pruned entries are not
    # automatically the smallest: pin them below everything.
    pinned = {n: s.masked_fill(previous[n].to(s.device), -math.inf) if n in previous else s
              for n, s in saliency.items()}
    return select_smallest(pinned, fraction, scope=scope)


# ----------------------------------------------------------------------------- loop helpers


class _Workdir:
    """The run folder, or a temporary one when the caller gave none (iterations live on disk either way)."""

    def __init__(self, run_dir: str | Path | RunDir | None) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="equiprune-fairprune-") if run_dir is None else None
        self.rd = run_dir if isinstance(run_dir, RunDir) else RunDir(self._tmp.name if self._tmp else run_dir)
        self.persistent = self._tmp is None

    def __enter__(self) -> RunDir:
        return self.rd

    def __exit__(self, *exc: object) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


def _count_pruned(masks: dict[str, Tensor]) -> dict[str, int]:
    return {n: int(m.sum()) for n, m in masks.items()}


class MaskStep(PruneStep):
    """The loop's step of unstructured FairPrune / OBD: mask the lowest-saliency parameter entries.

    Iteration k prunes ``pr * k / iters`` of the scored entries (cumulative:
    earlier pruned entries stay pruned), holds them at zero through the
    fine-tuning (torch prune masks) and folds the masks into the weights
    afterwards. Each iteration's masks are saved as ``iterations/<k>/masks.pt``.
    """

    def __init__(self, scorer: HessianSaliencyScorer, cfg: FairPruneConfig) -> None:
        self.scorer, self.fp = scorer, cfg
        self.masks: dict[str, Tensor] = {}

    def prepare(self, model: nn.Module, splits: Any, cfg: LoopConfig, rd: RunDir | None, arch: dict[str, Any],
                say: Any) -> None:
        super().prepare(model, splits, cfg, rd, arch, say)
        self.names = resolve_params(model, self.fp.params)
        self.total = sum(dict(model.named_parameters())[n].numel() for n in self.names)

    def start(self, model: nn.Module) -> dict[str, Any]:
        self.masks = {n: torch.zeros_like(p, dtype=torch.bool, device="cpu")
                      for n, p in model.named_parameters() if n in self.names}
        return {"target_fraction": 0.0, "pruned": 0, "pruned_fraction": 0.0, "newly_pruned": 0}

    def describe_start(self, rec: dict[str, Any]) -> str:
        return f"{self.total} scored parameters"

    def restore(self, model: nn.Module, history: list[dict[str, Any]]) -> nn.Module:
        self.masks = self._load(history[-1]["iter"])
        return model

    def _load(self, k: int) -> dict[str, Tensor]:
        return load_file(iter_dir(self.rd, k) / MASKS_FILE)

    def cut(self, model: nn.Module, k: int) -> tuple[nn.Module, dict[str, Any]]:
        fraction = self.fp.pr * k / self.fp.iters
        saliency = self.scorer.parameter_saliency(model, self.names)
        new = {n: m.cpu() for n, m in _select_cumulative(saliency, self.masks, fraction, self.fp.scope).items()}
        newly = sum(int((new[n] & ~self.masks[n]).sum()) for n in self.names)
        self.masks = new
        apply_parameter_masks(model, new)
        pruned = sum(_count_pruned(new).values())
        return model, {"target_fraction": fraction, "pruned": pruned, "pruned_fraction": pruned / self.total,
                       "newly_pruned": newly}

    def finetune(self, model: nn.Module, splits: Any, ft: TrainConfig, state: RunDir | None) -> nn.Module:
        return fit(model, splits, ft, run_dir=state).model  # the masks hold the pruned entries at zero

    def settle(self, model: nn.Module, k: int) -> tuple[nn.Module, dict[str, Any]]:
        fold_parameter_masks(model, self.names)
        return model, {}

    def save(self, rd: RunDir, k: int) -> None:
        save_tensors(iter_dir(rd, k) / MASKS_FILE, self.masks)

    def describe(self, rec: dict[str, Any]) -> str:
        return f"{rec['pruned']} of {self.total} parameters pruned ({rec['pruned'] / self.total:.1%})"

    def selected(self, k: int) -> None:
        self.masks = self._load(k)


# ----------------------------------------------------------------------------- API


def run_fairprune(model: nn.Module, splits: Any, cfg: FairPruneConfig | None = None,
                  run_dir: str | Path | RunDir | None = None, arch: dict[str, Any] | None = None
                  ) -> FairPruneResult:
    """FairPrune (or OBD with ``cfg.method="obd"``) of `model` on `splits`.

    Hessians come from ``splits.<score_split>`` (with the test transform);
    stopping and selection look at ``splits.val`` only. With `run_dir`, every
    iteration is saved and an interrupted run resumes; without, the iterations
    go to a temporary folder that is removed afterwards. `model` itself is not
    modified; the pruned model is ``.model`` of the result.
    """
    cfg = cfg or FairPruneConfig()
    cfg.validate()
    model = copy.deepcopy(model)
    arch = dict(arch or {"image_size": input_size(None, model, splits)})
    set_seed(cfg.seed)
    priv, unpriv, why = resolve_privileged(cfg, model, splits)
    scorer = hessian_scorer(cfg, scoring_dataset(splits, cfg.score_split), priv, unpriv)
    with _Workdir(run_dir) as rd:
        say = lambda m: rd.log(m, echo=cfg.progress)  # noqa: E731
        if cfg.method == "fairprune":
            say(f"privileged group {priv}, unprivileged {unpriv}: {why}")
        if cfg.structured:
            # The loop cuts n channels per iteration: pr / iters of the layer's starting channels.
            layer = cfg.layer or last_conv_name(model)
            n = max(1, int(math.floor(cfg.pr / cfg.iters * layer_out_channels(model, layer) + 0.5)))
            loop = run_prune_loop(model, splits, replace(cfg, n=n, layer=layer), scorer, run_dir=rd, arch=arch,
                                  log=say)
            result = FairPruneResult(
                model=loop.model, config=cfg, privileged=priv, unprivileged=unpriv, privileged_reason=why,
                history=loop.history, best_iter=loop.best_iter, stop_reason=loop.stop_reason, layer=loop.layer,
                channels_removed=loop.channels_removed, loop=loop)
        else:
            step = MaskStep(scorer, cfg)
            loop = run_prune_loop(model, splits, cfg, step, run_dir=rd, arch=arch, log=say)
            result = FairPruneResult(
                model=loop.model, config=cfg, privileged=priv, unprivileged=unpriv, privileged_reason=why,
                history=loop.history, best_iter=loop.best_iter, stop_reason=loop.stop_reason,
                pruned=_count_pruned(step.masks), scored_elements=step.total, loop=loop)
            if run_dir is not None:
                save_tensors(rd.file(MASKS_FILE), step.masks)
        result.run = rd if run_dir is not None else None
        if run_dir is not None:
            rd.set_section("fairprune", result.summary())
        say(f"selected iteration {result.best_iter} ({cfg.selection}); "
            + (f"{result.channels_removed} channels removed from {result.layer}" if cfg.structured
               else f"sparsity {result.sparsity:.1%} of the scored parameters"))
    return result


def run_obd(model: nn.Module, splits: Any, cfg: FairPruneConfig | None = None,
            run_dir: str | Path | RunDir | None = None, arch: dict[str, Any] | None = None) -> FairPruneResult:
    """Optimal Brain Damage: FairPrune's recipe with one Hessian over all data and no β."""
    return run_fairprune(model, splits, replace(cfg or FairPruneConfig(), method="obd"), run_dir, arch)


def _with_dataset(parent_path: str | Path, cfg: FairPruneConfig) -> FairPruneConfig:
    if cfg.dataset is not None or cfg.method == "obd":
        return cfg
    data = RunDir(parent_path, create=False).read_config().get("data") or {}
    return replace(cfg, dataset=data.get("name"))


def fairprune_from_run(parent_path: str | Path, cfg: FairPruneConfig, out: str | Path) -> FairPruneResult:
    """`equiprune prune fairprune` (or `obd`): prune the model of a run folder into a new run folder."""
    from .runs import save_run_model, start_child_run

    cfg = _with_dataset(parent_path, cfg)
    cfg.validate()
    parent, rd = start_child_run(parent_path, out, kind=cfg.method, settings=cfg,
                                 method=METHOD_LABELS[cfg.method] + (" (structured)" if cfg.structured else ""))
    result = run_fairprune(parent.model, parent.splits(), cfg, run_dir=rd, arch=parent.arch)
    extra = {**parent.extra, "method": cfg.method, "best_iter": result.best_iter}
    if cfg.structured:
        extra.update(layer=result.layer, channels_removed=result.channels_removed, surgery="remove")
    else:
        extra.update(sparsity=result.sparsity, pruned_parameters=sum(result.pruned.values()))
        extra[KEEPS_ZEROS] = True  # later methods' fine-tuning keeps these zeros (scp_from_run reads it)
    save_run_model(rd, result.model, parent.arch, extra)
    rd.set_section("selection", {"best_iter": result.best_iter, "stop_reason": result.stop_reason,
                                 "rule": cfg.selection})
    return result


def obd_from_run(parent_path: str | Path, cfg: FairPruneConfig | None, out: str | Path) -> FairPruneResult:
    """`equiprune prune obd`: OBD of the model in a run folder, into a new run folder."""
    return fairprune_from_run(parent_path, replace(cfg or FairPruneConfig(), method="obd"), out)
