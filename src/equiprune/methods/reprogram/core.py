"""Fairness Reprogramming (Zhang et al., NeurIPS 2022): a trigger trained against an adversary.

The classifier stays frozen. A learned input perturbation, the fairness
trigger (a border frame or a patch, see `trigger.py`), is applied to every
input. Per batch:

1. the adversary (an MLP on the temperature-scaled softmax of the model, plus
   the softmax times the one-hot true label for equalized odds) takes one Adam
   step on its cross-entropy for predicting the group;
2. the trigger's gradient is ``g_task - proj_{g_adv}(g_task) - lam * g_adv``,
   where ``g_adv`` is the gradient of the adversary's loss (computed before the
   adversary's step, as in the reference) and ``g_task`` that of the task
   cross-entropy; the trigger takes one Adam step along it.

Defaults. The reference's recipe (`ReprogramConfig.paper`: a border that
shrinks the image, a trigger drawn from tanh(U(-1, 1)), Adam at 1e-4) changes
every image before training starts; on synthderm it left the model worse
(test macro-F1 0.866 -> 0.650, Eodd +0.048) and the run kept that trigger.
The default here starts from the frozen model itself: an overlaid border
(``shrink=False``) whose values start at 0 (``init="zero"``) is the identity,
so epoch 0 is the frozen model, and the epoch kept is the one with the best
validation FATE, epoch 0 included (``select_on="val_fate"``): when no trigger
beats the frozen model on validation, the run says so and keeps the frozen
model. The trigger's Adam rate is 1e-3: at the reference's 1e-4 a trigger
starting at zero left every validation prediction unchanged in 4 epochs.
`benchmarks/bench_reprogram.py` measures both recipes. The adversary
and schedule follow the reference: Adam at 0.05 (adversary), weight decay
2e-5, both learning rates ×0.1 at 80% and 90% of the epochs; the reference
keeps the epoch with the best validation "Min_ACC_AcrossZY" (the worst
accuracy over group × class cells, ``select_on="val_min_acc"``). Mixed
precision is not used.
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Subset
from tqdm.auto import tqdm

from ...data.atomic import atomic_write
from ...engine import Predictions, RunDir, evaluate, make_loader, resolve_device, set_seed
from ...metrics import MetricsError, fate
from ...models import save_checkpoint
from ...models.checkpoint import load_file, save_file, save_tensors
from .adversary import Adversary, projected_trigger_grad
from ...models.trigger import (PATCH_LOCATIONS, TRIGGER_INITS, TRIGGER_KINDS, ReprogramError, ReprogrammedModel,
                               Trigger, check_geometry, default_size, find_normalization)

CRITERIA = ("eodd", "dp")
SELECT_ON = ("last", "val_min_acc", "val_fate")
STATE_FILE = "reprogram_state.pt"
RUNTIME_KEYS = ("device", "progress")


class FrozenModelChangedError(RuntimeError):
    """The model that reprogramming must leave untouched was modified."""


@dataclass
class ReprogramConfig:
    """Settings of `run_reprogram`.

    Attributes:
        trigger: ``border`` (a frame) or ``patch`` (a square).
        size: frame width or patch side in pixels; None takes the reference's
            proportions (a 20 px frame / 30 px patch on 224 px images).
        location: patch position: top_left, top_right, bottom_left,
            bottom_right or center.
        shrink: border only: shrink the image inside the frame (reference) or
            lay the frame over the image's outer pixels (default).
        init: ``uniform`` (the reference: W ~ U(-1, 1)) or ``zero`` (default:
            trigger values start at 0, so an overlaid border starts as the
            frozen model itself).
        criterion: ``eodd`` (equalized odds: the adversary also sees the true
            label) or ``dp`` (demographic parity).
        lam: weight of the adversary's gradient in the trigger update
            (the paper sweeps 0.05 … 0.5).
        epochs, batch_size: passes over the (fraction of the) training split.
        lr_trigger, lr_adv, weight_decay: Adam settings (reference values).
        schedule: ``multistep`` (×0.1 at 80% and 90% of the epochs, reference)
            or ``none``.
        temperature: initial value of the adversary's learnable temperature c
            (its softmax is of ``logits * (1 + |c|)``).
        adversary_hidden: hidden units of the adversary MLP.
        adversary_logits: also give the adversary the raw logits (the
            reference's ``--adversary-with-logits``).
        train_fraction: fraction of the training split used (data efficiency);
            a seeded random subset.
        select_on: which epoch's trigger is kept: ``val_fate`` (default: FATE
            of F1 and the criterion against the frozen model on the validation
            split, epoch 0 = no trigger included, so a trigger is kept only
            when it beats the frozen model), ``last`` or ``val_min_acc``
            (reference).
        mean, std: pixel normalisation of the data; None reads it from the
            data's transforms (a Normalize step), and without one takes the
            inputs as pixel values (mean 0, std 1).
    """

    trigger: str = "border"
    size: int | None = None
    location: str = "top_left"
    shrink: bool = False
    init: str = "zero"
    criterion: str = "eodd"
    lam: float = 0.5
    epochs: int = 10
    batch_size: int = 64
    lr_trigger: float = 1e-3        # at 1e-4 a zero-start trigger left every prediction as it was (bench_reprogram)
    lr_adv: float = 0.05
    weight_decay: float = 2e-5
    schedule: str = "multistep"
    temperature: float = 1.0
    adversary_hidden: int = 512
    adversary_logits: bool = False
    train_fraction: float = 1.0
    select_on: str = "val_fate"
    mean: list[float] | None = None
    std: list[float] | None = None
    seed: int = 0
    device: str = "auto"
    progress: bool = True

    def validate(self) -> None:
        """Raise ReprogramError when a setting is out of range."""
        if self.trigger not in TRIGGER_KINDS:
            raise ReprogramError(f"trigger must be one of {TRIGGER_KINDS}, got {self.trigger!r}")
        if self.location not in PATCH_LOCATIONS:
            raise ReprogramError(f"location must be one of {PATCH_LOCATIONS}, got {self.location!r}")
        if self.init not in TRIGGER_INITS:
            raise ReprogramError(f"init must be one of {TRIGGER_INITS}, got {self.init!r}")
        if self.criterion not in CRITERIA:
            raise ReprogramError(f"criterion must be 'eodd' (equalized odds) or 'dp' (demographic parity), "
                                 f"got {self.criterion!r}")
        if self.select_on not in SELECT_ON:
            raise ReprogramError(f"select_on must be one of {SELECT_ON}, got {self.select_on!r}")
        if self.schedule not in ("multistep", "none"):
            raise ReprogramError(f"schedule must be 'multistep' or 'none', got {self.schedule!r}")
        if not (math.isfinite(self.lam) and self.lam >= 0):
            raise ReprogramError(f"lam must be a finite number >= 0 (the paper uses 0.05 to 0.5), got {self.lam}")
        if self.epochs < 0 or self.batch_size < 1:
            raise ReprogramError(f"epochs must be >= 0 and batch_size >= 1, got {self.epochs} and {self.batch_size}")
        if self.lr_trigger <= 0 or self.lr_adv <= 0 or self.weight_decay < 0:
            raise ReprogramError("lr_trigger and lr_adv must be > 0 and weight_decay >= 0")
        if not 0 < self.train_fraction <= 1:
            raise ReprogramError(f"train_fraction must be in (0, 1], got {self.train_fraction}")
        if self.size is not None and self.size < 1:
            raise ReprogramError(f"size must be a positive number of pixels, got {self.size}")
        if self.adversary_hidden < 1:
            raise ReprogramError(f"adversary_hidden must be >= 1, got {self.adversary_hidden}")
        if (self.mean is None) != (self.std is None):
            raise ReprogramError("give both mean and std, or neither (then they are read from the data)")

    @classmethod
    def paper(cls, **overrides: Any) -> "ReprogramConfig":
        """The reference's recipe: a shrinking border, tanh(U(-1, 1)) start, best val Min_ACC_AcrossZY kept."""
        return cls(**{"shrink": True, "init": "uniform", "lr_trigger": 1e-4, "select_on": "val_min_acc",
                      **overrides})

    def settings(self) -> dict[str, Any]:
        """The settings that change results (what config.json records and resume compares)."""
        return {k: v for k, v in asdict(self).items() if k not in RUNTIME_KEYS}


@dataclass
class ReprogramResult:
    """The reprogrammed model and the evidence of its training."""

    model: ReprogrammedModel
    history: list[dict[str, Any]]
    val: dict[str, float]
    frozen_val: dict[str, float]
    best_epoch: int
    config: ReprogramConfig
    run: RunDir | None = None
    normalization: dict[str, list[float]] = field(default_factory=dict)
    example: torch.Tensor | None = None  # an image to show behind the trigger (report.reprogram_plots)
    #: no trigger beat the frozen model on validation (select_on="val_fate"): `model` is the frozen model
    kept_frozen: bool = False
    trained: Trigger | None = None      # the last epoch's trigger (what `trigger` is when kept_frozen)

    @property
    def trigger(self) -> Trigger:
        return self.model.trigger if isinstance(self.model, ReprogrammedModel) else self.trained

    @property
    def pattern(self) -> torch.Tensor:
        """The trigger's pixel values (C×H×W, zero outside the trigger region)."""
        return self.trigger.pattern().detach().cpu()


def _state_snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def check_unchanged(model: nn.Module, snapshot: dict[str, torch.Tensor]) -> None:
    """Raise FrozenModelChangedError unless every weight and buffer is bit-identical to `snapshot`."""
    now = model.state_dict()
    changed = [k for k, v in snapshot.items() if k not in now or now[k].shape != v.shape
               or not torch.equal(now[k].detach().to(v.device), v)]
    changed += [k for k in now if k not in snapshot]
    if changed:
        raise FrozenModelChangedError(
            f"reprogramming changed the frozen model ({len(changed)} tensors, e.g. {changed[:3]}); "
            "this is a bug: the model's weights and buffers must stay bit-identical")


def min_cell_accuracy(p: Predictions) -> float:
    """The reference's Min_ACC_AcrossZY: the lowest accuracy over non-empty (group, class) cells."""
    c = int(max(p.y_true.max(initial=0), p.y_pred.max(initial=0))) + 1
    key = p.groups * c + p.y_true
    n = np.bincount(key, minlength=(p.groups.max(initial=0) + 1) * c)
    ok = np.bincount(key, weights=(p.y_true == p.y_pred).astype(np.float64), minlength=len(n))
    return float((ok[n > 0] / n[n > 0]).min()) if (n > 0).any() else float("nan")


def _lr_factor(cfg: ReprogramConfig, epoch: int) -> float:
    if cfg.schedule == "none":
        return 1.0
    return 0.1 ** ((epoch >= int(0.8 * cfg.epochs)) + (epoch >= int(0.9 * cfg.epochs)))


def _val_record(model: nn.Module, dataset: Any, device: torch.device) -> tuple[dict[str, float], float]:
    metrics, preds = evaluate(model, dataset, device=device)
    return metrics, min_cell_accuracy(preds)


def _fate_or_nan(val: dict[str, float], base: dict[str, float], crit: str) -> float:
    try:
        return fate(val["f1"], base["f1"], val[crit], base[crit])
    except MetricsError:
        return float("nan")


def resolve_normalization(splits: Any, cfg: ReprogramConfig) -> tuple[list[float], list[float], str]:
    """(mean, std, source) of the data's pixel normalisation."""
    if cfg.mean is not None and cfg.std is not None:
        return list(cfg.mean), list(cfg.std), "config"
    for name in ("test", "val", "train"):
        found = find_normalization(getattr(getattr(splits, name, None), "transform", None))
        if found is not None:
            return list(found[0]), list(found[1]), f"{name} transform"
    # No Normalize step anywhere: the inputs already are pixel values.
    return [0.0] * 3, [1.0] * 3, "none found in the data transforms: inputs taken as pixel values"


def _train_subset(dataset: Any, fraction: float, seed: int) -> Any:
    if fraction >= 1.0:
        return dataset
    n = len(dataset)
    k = max(1, int(round(fraction * n)))
    idx = np.sort(np.random.default_rng(seed).permutation(n)[:k])
    return Subset(dataset, idx.tolist())


def _num_groups(dataset: Any) -> int:
    groups = getattr(dataset, "groups", None)
    if groups is None:
        raise ReprogramError("the training set has no `groups` array; reprogramming needs the sensitive "
                             "attribute of every training item")
    groups = np.asarray(groups)
    if groups.size == 0 or groups.min() < 0:
        raise ReprogramError("group codes must be non-negative integers (0/1 for the paper metrics)")
    return max(2, int(groups.max()) + 1)


def run_reprogram(model: nn.Module, splits: Any, cfg: ReprogramConfig,
                  run_dir: str | Path | RunDir | None = None, arch: dict[str, Any] | None = None,
                  extra: dict[str, Any] | None = None) -> ReprogramResult:
    """Train a fairness trigger for the frozen `model` on `splits.train`.

    `model` is put in eval mode and its parameters stop requiring gradients;
    its weights and buffers are checked to be bit-identical afterwards (a
    FrozenModelChangedError otherwise). With `run_dir`, the training state is
    saved after every epoch (an interrupted run resumes), the per-epoch history
    goes to metrics.json, the trigger to ``trigger.pt`` (its picture, ``trigger.png``, is
    `report.reprogram_plots.write_reprogram_pictures`'s),
    and, when `arch` (the build_model recipe of `model`) is given, the
    reprogrammed model to ``model.pt`` (the frozen model's checkpoint with the
    trigger in ``extra["reprogram"]``, merged into `extra`).
    """
    cfg.validate()
    if isinstance(model, ReprogrammedModel) or any(isinstance(m, Trigger) for m in model.modules()):
        raise ReprogramError("this model already carries a fairness trigger; reprogram the model it was "
                             "made from instead (its parent run)")
    train_set = splits.train
    if train_set is None or len(train_set) == 0:
        raise ReprogramError("the training split is empty; the trigger is trained on it")
    if getattr(splits, "val", None) is None or len(splits.val) == 0:
        raise ReprogramError("the validation split is empty; reprogramming reports every epoch on it")
    sample = train_set[0][0]
    if sample.dim() != 3 or sample.shape[-1] != sample.shape[-2]:
        raise ReprogramError(f"reprogramming needs square C×H×W images, got an item of shape {tuple(sample.shape)}")
    image_size, channels = int(sample.shape[-1]), int(sample.shape[0])
    mean, std, norm_source = resolve_normalization(splits, cfg)
    size = cfg.size if cfg.size is not None else default_size(cfg.trigger, image_size)
    check_geometry(cfg.trigger, image_size, size, cfg.location)  # before anything is written

    device = resolve_device(cfg.device)
    rd = run_dir if isinstance(run_dir, RunDir) or run_dir is None else RunDir(run_dir)
    if rd is not None:
        rd.check_or_write_config({"kind": "reprogram", "settings": cfg.settings()}, keys=["kind", "settings"])
    say = (lambda m: rd.log(m, echo=cfg.progress)) if rd is not None else (lambda m: None)

    model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    snapshot = _state_snapshot(model)

    gen = set_seed(cfg.seed)
    init_gen = torch.Generator().manual_seed(cfg.seed)
    trigger = Trigger(cfg.trigger, image_size, size, cfg.location, cfg.shrink, mean, std, channels,
                      generator=init_gen, init=cfg.init).to(device)
    wrapped = ReprogrammedModel(trigger, model)
    with torch.no_grad():
        num_classes = int(model(sample.unsqueeze(0).to(device)).shape[1])
    adversary = Adversary(num_classes, _num_groups(train_set), with_y=cfg.criterion == "eodd",
                          with_logits=cfg.adversary_logits, temperature=cfg.temperature,
                          hidden=cfg.adversary_hidden).to(device)
    opt_t = torch.optim.Adam([trigger.weight], lr=cfg.lr_trigger, weight_decay=cfg.weight_decay)
    opt_a = torch.optim.Adam(adversary.parameters(), lr=cfg.lr_adv, weight_decay=cfg.weight_decay)
    adv_params = list(adversary.parameters())

    data = _train_subset(train_set, cfg.train_fraction, cfg.seed)
    # The adversary's accuracy means something only above always guessing the largest group.
    used_groups = np.asarray(train_set.groups)
    if isinstance(data, Subset):
        used_groups = used_groups[data.indices]
    adv_chance = float(np.bincount(used_groups).max() / len(used_groups))
    loader = make_loader(data, cfg.batch_size, shuffle=True, drop_last=len(data) > cfg.batch_size, generator=gen)

    history: list[dict[str, Any]] = []
    best_weight: torch.Tensor | None = None
    best_score, best_epoch, start = -math.inf, 0, 0
    state_path = rd.file(STATE_FILE) if rd is not None else None
    if state_path is not None and state_path.exists():
        st = load_file(state_path, map_location=device)
        with torch.no_grad():
            trigger.weight.copy_(st["weight"])
        adversary.load_state_dict(st["adversary"])
        opt_t.load_state_dict(st["opt_t"])
        opt_a.load_state_dict(st["opt_a"])
        torch.set_rng_state(st["torch_rng"])
        gen.set_state(st["gen_rng"])
        history, start = list(st["history"]), int(st["epoch"])
        best_weight, best_score, best_epoch = st["best_weight"], float(st["best_score"]), int(st["best_epoch"])
        if start < cfg.epochs:
            say(f"resuming reprogramming after epoch {start} of {cfg.epochs}")
    if not history:
        # Epoch 0: the frozen model without any trigger, the point everything is compared with.
        base, base_min = _val_record(model, splits.val, device)
        history.append({"epoch": 0, "trigger": False, **{f"val_{k}": v for k, v in base.items()},
                        "val_min_acc": base_min})
        say(f"frozen model: val F1 {base['f1']:.4f}, val {cfg.criterion} {base[cfg.criterion]:.4f}")
    frozen_val = {k[4:]: v for k, v in history[0].items() if k.startswith("val_")}
    if best_weight is None:
        best_weight = trigger.weight.detach().clone()
    if cfg.select_on == "val_fate" and best_epoch == 0 and best_score == -math.inf:
        best_score = 0.0   # epoch 0, the frozen model, has FATE 0 against itself: a trigger must beat it

    for epoch in range(start, cfg.epochs):
        f = _lr_factor(cfg, epoch)
        for opt, lr in ((opt_t, cfg.lr_trigger), (opt_a, cfg.lr_adv)):
            for g in opt.param_groups:
                g["lr"] = lr * f
        wrapped.train()
        adversary.train()
        sums = torch.zeros(4, device=device)  # task loss, adversary loss, task correct, adversary correct
        seen = 0
        for x, y, grp, _ in tqdm(loader, desc=f"reprogram {epoch + 1}/{cfg.epochs}", disable=not cfg.progress,
                                 leave=False):
            x, y, grp = x.to(device, non_blocking=True), y.to(device), grp.to(device)
            logits = model(trigger(x))
            task_loss = F.cross_entropy(logits, y)
            adv_out = adversary(logits, y)
            adv_loss = F.cross_entropy(adv_out, grp)
            grads = torch.autograd.grad(adv_loss, [trigger.weight, *adv_params], retain_graph=True)
            g_adv = grads[0]
            for p, g in zip(adv_params, grads[1:]):
                p.grad = g
            opt_a.step()
            (g_task,) = torch.autograd.grad(task_loss, trigger.weight)
            trigger.weight.grad = projected_trigger_grad(g_task, g_adv, cfg.lam)
            opt_t.step()
            with torch.no_grad():
                n = len(y)
                sums += torch.stack([task_loss.detach() * n, adv_loss.detach() * n,
                                     (logits.argmax(1) == y).sum().float(), (adv_out.argmax(1) == grp).sum().float()])
                seen += n
        s = (sums / max(seen, 1)).tolist()
        val, val_min = _val_record(wrapped, splits.val, device)
        rec: dict[str, Any] = {"epoch": epoch + 1, "trigger": True, "lr_trigger": opt_t.param_groups[0]["lr"],
                               "train_task_loss": s[0], "train_adv_loss": s[1], "train_acc": s[2],
                               "train_adv_acc": s[3], "adv_chance_acc": adv_chance,
                               "trigger_abs_mean": float(trigger.pattern().detach().abs().sum()
                                                         / trigger.mask.sum() / channels),
                               **{f"val_{k}": v for k, v in val.items()}, "val_min_acc": val_min,
                               "val_fate": _fate_or_nan(val, frozen_val, cfg.criterion)}
        history.append(rec)
        score = {"last": float(epoch), "val_min_acc": val_min, "val_fate": rec["val_fate"]}[cfg.select_on]
        if cfg.select_on == "last" or (not math.isnan(score) and score > best_score):
            best_score, best_epoch = score, epoch + 1
            best_weight = trigger.weight.detach().clone()
        say(f"epoch {epoch + 1}/{cfg.epochs}: task loss {s[0]:.4f}, adversary loss {s[1]:.4f} "
            f"(adversary acc {s[3]:.3f}, largest group {adv_chance:.3f}); val F1 {val['f1']:.4f}, "
            f"val {cfg.criterion} {val[cfg.criterion]:.4f}")
        if state_path is not None:
            state = {"weight": trigger.weight.detach(), "adversary": adversary.state_dict(),
                     "opt_t": opt_t.state_dict(), "opt_a": opt_a.state_dict(),
                     "torch_rng": torch.get_rng_state(), "gen_rng": gen.get_state(), "history": history,
                     "epoch": epoch + 1, "best_weight": best_weight, "best_score": best_score,
                     "best_epoch": best_epoch}
            atomic_write(state_path, lambda tmp: save_file(state, tmp))

    kept_frozen = cfg.select_on == "val_fate" and best_epoch == 0
    if not kept_frozen:
        with torch.no_grad():
            trigger.weight.copy_(best_weight)
    wrapped.eval()
    check_unchanged(model, snapshot)
    final = history[best_epoch] if best_epoch < len(history) else history[-1]
    val_final = {k[4:]: v for k, v in final.items() if k.startswith("val_")}
    normalization = {"mean": mean, "std": std, "source": norm_source}
    if rd is not None:
        rd.set_history(history)
        rd.set_section("selection", {"select_on": cfg.select_on, "best_epoch": best_epoch,
                                     "kept_frozen": kept_frozen, "frozen_weights_unchanged": True,
                                     "normalization": normalization})
        payload = trigger.payload(cfg.settings())
        save_tensors(rd.file("trigger.pt"), payload)
        if arch is not None:
            save_checkpoint(rd.model_path, model, arch,
                            dict(extra or {}) if kept_frozen else {**(extra or {}), "reprogram": payload})
        if kept_frozen:
            fates = [r.get("val_fate") for r in history[1:] if r.get("val_fate") == r.get("val_fate")]
            best = f" (best validation FATE of a trigger {max(fates):+.4f})" if fates else ""
            say(f"no trigger beat the frozen model on validation FATE({cfg.criterion}){best}: kept the frozen "
                "model (model.pt holds no trigger; trigger.pt is the last epoch's, for inspection)")
        else:
            say(f"kept the trigger of epoch {best_epoch} (select_on={cfg.select_on}); frozen model unchanged")
    example = splits.val[0][0] if splits.val is not None and len(splits.val) else sample
    return ReprogramResult(model=model if kept_frozen else wrapped, history=history, val=val_final,
                           frozen_val=frozen_val, best_epoch=best_epoch, config=copy.deepcopy(cfg), run=rd,
                           normalization={"mean": mean, "std": std}, example=example, kept_frozen=kept_frozen,
                           trained=trigger)
