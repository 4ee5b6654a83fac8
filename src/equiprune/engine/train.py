"""Training and fine-tuning with per-epoch checkpoints, resume and model selection."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn
from tqdm.auto import tqdm

from torch.utils.data import DistributedSampler, WeightedRandomSampler

from ..data.atomic import atomic_write
from ..models.checkpoint import load_file, save_file
from .plugin import LossFnPlugin, TrainPlugin
from .distributed import (DistributedWeightedSampler, all_gather_objects, all_reduce_sum, average_gradients,
                          broadcast_buffers, get_rank, get_world_size, is_distributed, on_main, unwrap_model,
                          wrap_model)
from .predict import Predictions, predict
from .rundir import RunDir
from .runtime import (amp_dtype, autocast, class_balanced_weights, loader_workers, make_loader, resolve_device,
                      set_seed)
from .selection import SELECT_ON, WORST_GROUP_SELECT, undefined_selection_text, worst_group_record


@dataclass
class TrainConfig:
    """Settings of `fit`. Defaults suit CPU runs on synthderm."""

    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "adam"         # adam | sgd (momentum, Nesterov)
    lr: float = 5e-4                # Adam at 1e-3 stalls VGG-11 (no BN) for epochs on some seeds
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "cosine"        # cosine | step | none
    step_size: int = 10             # step schedule: epochs between decays
    gamma: float = 0.1              # step schedule: decay factor
    warmup_epochs: int = 0
    balanced_sampler: bool = False  # the papers' class-balanced weighted sampler
    select_on: str = "val_f1"       # val_f1 | val_acc | val_worst_group_acc | val_worst_group_auc | last
    label_smoothing: float = 0.0
    seed: int = 0
    device: str = "auto"
    amp: bool = True                # mixed precision (bf16, else fp16 + grad scaler), used on CUDA only
    channels_last: bool = True      # NHWC memory layout: ~25% faster convolutions on CPU (oneDNN)
    num_workers: int = -1           # DataLoader workers; -1 = auto (up to 8 on CUDA, 0 on CPU)
    compile: bool = False           # torch.compile the training forward (worth it on GPUs, long runs)
    progress: bool = True
    freeze_epochs: int = 0          # train only the head (last Linear) for this many first epochs
    head_lr: float | None = None    # learning rate of the head; None = lr

    def validate(self) -> None:
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.schedule not in ("cosine", "step", "none"):
            raise ValueError(f"schedule must be cosine, step or none, got {self.schedule!r}")
        if self.select_on not in SELECT_ON:
            raise ValueError(f"select_on must be one of {', '.join(SELECT_ON)}, got {self.select_on!r}")
        for name, value, ok, rule in (("epochs", self.epochs, self.epochs >= 0, ">= 0"),
                                      ("batch_size", self.batch_size, self.batch_size >= 1, ">= 1"),
                                      ("lr", self.lr, self.lr > 0, "> 0"),
                                      ("weight_decay", self.weight_decay, self.weight_decay >= 0, ">= 0"),
                                      ("freeze_epochs", self.freeze_epochs, self.freeze_epochs >= 0, ">= 0"),
                                      ("head_lr", self.head_lr, self.head_lr is None or self.head_lr > 0, "> 0")):
            if not ok:
                raise ValueError(f"training setting {name} must be {rule}, got {value}")


@dataclass
class FitResult:
    """What `fit` returns: the model (best epoch loaded) and the per-epoch history."""

    model: nn.Module
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_score: float = float("nan")
    resumed_from: int = 0


def _split_head(model: nn.Module, params: list[nn.Parameter]) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(backbone, head) among `params`; the head is the model's last Linear (`models.weights.head_name`)
    and any side-branch classifier (a multi-exit network's internal exits, `models.multi_exit`)."""
    from ..models.weights import head_name

    heads = [model.get_submodule(head_name(model))] + [m for m in model.modules() if getattr(m, "side_branch", False)]
    head_ids = {id(p) for h in heads for p in h.parameters()}
    return [p for p in params if id(p) not in head_ids], [p for p in params if id(p) in head_ids]


def _optimizer(params: Iterable[nn.Parameter], cfg: TrainConfig,
               model: nn.Module | None = None) -> tuple[torch.optim.Optimizer, list[nn.Parameter]]:
    """The optimizer, and the backbone parameters that `freeze_epochs` freezes.

    With `head_lr` or `freeze_epochs` (and `model` given) the parameters form
    two groups, backbone then head, so the head gets its own learning rate and
    the schedule scales both.
    """
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: every parameter is frozen")
    backbone: list[nn.Parameter] = []
    groups: list[dict[str, Any]] = [{"params": params, "lr": cfg.lr}]
    if model is not None and (cfg.head_lr is not None or cfg.freeze_epochs > 0):
        backbone, head = _split_head(model, params)
        groups = [g for g in ({"params": backbone, "lr": cfg.lr},
                              {"params": head, "lr": cfg.head_lr if cfg.head_lr is not None else cfg.lr})
                  if g["params"]]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay), backbone
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
                           weight_decay=cfg.weight_decay), backbone


def _freeze_backbone(model: nn.Module, backbone: list[nn.Parameter], frozen: bool) -> None:
    """Stop (or restart) gradients of the backbone; frozen BatchNorm layers also keep their statistics."""
    for p in backbone:
        p.requires_grad_(not frozen)
    if frozen:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def _lr_factor(cfg: TrainConfig, epoch: int) -> float:
    if epoch < cfg.warmup_epochs:
        return (epoch + 1) / (cfg.warmup_epochs + 1)
    if cfg.schedule == "cosine":
        span = max(1, cfg.epochs - cfg.warmup_epochs)
        return 0.5 * (1 + math.cos(math.pi * (epoch - cfg.warmup_epochs) / span))
    if cfg.schedule == "step":
        return cfg.gamma ** (epoch // cfg.step_size)
    return 1.0


def evaluate(model: nn.Module, dataset: Any, batch_size: int = 256, device: torch.device | None = None,
             distributed: bool | None = None) -> tuple[dict[str, float], Predictions]:
    """Accuracy, macro-F1 and the paper fairness numbers of `model` on `dataset`.

    Under torchrun the predictions are gathered from every rank (see
    `predict`), so every rank gets the single-process numbers.
    """
    from ..metrics import group_fairness

    preds = predict(model, dataset, batch_size=batch_size, device=device, distributed=distributed)
    # C from the data, as the reference routine and `equiprune audit` do
    res = group_fairness(preds.y_true, preds.y_pred, preds.groups)
    return res.to_dict(), preds


def _save_state(state: dict[str, Any], path: Path) -> None:
    atomic_write(path, lambda tmp: save_file(state, tmp))


def fit(model: nn.Module, splits: Any, cfg: TrainConfig, run_dir: str | Path | RunDir | None = None,
        state_name: str = "train_state.pt", params: Iterable[nn.Parameter] | None = None,
        loss_fn: Callable[..., torch.Tensor] | None = None, plugin: TrainPlugin | None = None) -> FitResult:
    """Train `model` on `splits.train`, select on `splits.val`, checkpoint every epoch.

    With `run_dir`, the full training state (weights, optimizer, schedule, RNG,
    best model so far, history) is saved after every epoch to
    `run_dir/state_name`; calling `fit` again with the same arguments resumes
    after the last finished epoch. `params` restricts training to some
    parameters (freezing strategies). `loss_fn(logits, labels, groups)`
    replaces the cross-entropy (used by distillation and fairness losses).
    `plugin` (a `TrainPlugin`, the mitigation methods' contract) may change
    the sampling weights, the loss, the trained tensors and what happens after
    each step and epoch; its state is saved with the model's for resume.

    Under torchrun (WORLD_SIZE > 1) the same call trains with
    DistributedDataParallel: each rank reads its share of the training split
    (``DistributedSampler``, or `DistributedWeightedSampler` for the balanced
    sampler), `cfg.batch_size` is per process, gradients are averaged by DDP,
    BatchNorm statistics are taken from rank 0 after each epoch, validation
    metrics come from predictions gathered from every rank, and only rank 0
    writes the state file and log. The returned model is the plain
    (unwrapped) model, identical on every rank.
    """
    cfg.validate()
    model = unwrap_model(model)
    distributed = is_distributed()
    rank, world = get_rank(), get_world_size()
    device = resolve_device(cfg.device)
    model.to(device)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    # Rank 0 keeps the single-process seed; the others get their own augmentation/dropout streams.
    gen = set_seed(cfg.seed + rank)
    rd = run_dir if isinstance(run_dir, RunDir) or run_dir is None else RunDir(run_dir)
    state_path = rd.file(state_name) if rd is not None else None
    progress = cfg.progress and rank == 0

    if plugin is not None and loss_fn is not None:
        raise ValueError("fit takes a loss_fn or a plugin, not both")
    plugin = plugin or LossFnPlugin(loss_fn, cfg.label_smoothing)
    train_set = plugin.train_data(splits.train)
    weights = plugin.sample_weights(train_set)
    if weights is None and cfg.balanced_sampler:
        weights = class_balanced_weights(train_set.labels)
    sampler: Any
    if distributed:
        # The order depends on the seed and the epoch only (set_epoch below), so resumes see the same data.
        sampler = (DistributedWeightedSampler(weights, seed=cfg.seed) if weights is not None
                   else DistributedSampler(train_set, shuffle=True, seed=cfg.seed))
        per_rank = len(sampler)
    else:
        sampler = (WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.double), num_samples=len(weights),
                                         replacement=True, generator=gen) if weights is not None else None)
        per_rank = len(train_set)
    loader = make_loader(train_set, cfg.batch_size, shuffle=True, drop_last=per_rank > cfg.batch_size,
                         generator=gen, sampler=sampler, num_workers=loader_workers(device, cfg.num_workers))
    plugin.setup(model, device)
    trainable = (list(params) if params is not None else list(model.parameters())) + list(plugin.parameters())
    if cfg.freeze_epochs and distributed:
        raise ValueError("freeze_epochs is not supported under torchrun (DDP cannot change which parameters "
                         "train mid-run); run the frozen epochs in one process, or leave freeze_epochs at 0.")
    opt, backbone = _optimizer(trainable, cfg, model)
    base_lrs = [g["lr"] for g in opt.param_groups]
    use_amp = cfg.amp and amp_dtype(device) is not None
    # bf16 keeps float32's range; only fp16 needs its gradients scaled.
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype(device) == torch.float16)

    history: list[dict[str, float]] = []
    best_state: dict[str, torch.Tensor] | None = None
    best_score, best_epoch, start = -float("inf"), -1, 0
    if state_path is not None and state_path.exists():
        st = load_file(state_path, map_location=device)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        scaler.load_state_dict(st["scaler"])
        rank_rngs = st.get("torch_rng_ranks")
        if distributed and rank_rngs is not None and len(rank_rngs) == world:
            torch.set_rng_state(rank_rngs[rank])
        elif rank == 0:
            torch.set_rng_state(st["torch_rng"])
        gen.set_state(st["gen_rng"])
        history, start = st["history"], st["epoch"]
        best_state, best_score, best_epoch = st["best_state"], st["best_score"], st["best_epoch"]
        plugin.load_state_dict(st.get("plugin") or {})
        saved_world = st.get("world_size", 1)
        if rd is not None and start < cfg.epochs:
            rd.log(f"resuming training after epoch {start} of {cfg.epochs}"
                   + (f" (the run was started with {saved_world} process(es), now {world}: "
                      "later epochs see other batches)" if saved_world != world else ""))
    resumed_from = start

    net: nn.Module = model
    outside: list[nn.Parameter] = []
    if distributed:
        # DDP averages the gradients of the model's parameters; anything else trained
        # (a loss's own parameters) is averaged by hand after backward.
        in_model = {id(p) for p in model.parameters()}
        outside = [p for p in trainable if p.requires_grad and id(p) not in in_model]
        # With a parameter subset (or a method that uses part of the model), some parameters may get no gradient.
        net = wrap_model(model, device, find_unused_parameters=params is not None or type(plugin) is not LossFnPlugin)
    if cfg.compile:
        net = torch.compile(net)  # the weights stay `model`'s: checkpoints keep torchvision's key names

    for epoch in range(start, cfg.epochs):
        for g, lr in zip(opt.param_groups, base_lrs):
            g["lr"] = lr * _lr_factor(cfg, epoch)
        if distributed:
            sampler.set_epoch(epoch)
        net.train()
        frozen = epoch < cfg.freeze_epochs
        _freeze_backbone(model, backbone, frozen)
        total = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        seen = 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress, leave=False)
        for step, (x, y, grp, _) in enumerate(bar):
            x, y, grp = x.to(device, non_blocking=True), y.to(device, non_blocking=True), grp.to(device)
            if x.dim() == 4:
                x = x.contiguous(memory_format=memory_format)
            with autocast(device, use_amp):
                loss, logits = plugin.loss(net, x, y, grp)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if outside:
                average_gradients(outside)
            scaler.step(opt)
            scaler.update()
            plugin.after_step(model)
            total += loss.detach() * len(y)
            correct += (logits.detach().argmax(1) == y).sum()
            seen += len(y)
            if progress and step % 20 == 0:  # a host sync, so only now and then
                bar.set_postfix(loss=f"{(total / seen).item():.3f}")
        if distributed:
            # Every rank updated its own BatchNorm statistics in the last step; keep rank 0's.
            broadcast_buffers(model)
        plugin.end_epoch(model, epoch)
        if distributed:
            sums = all_reduce_sum(torch.stack([total.double(), correct.double(),
                                               torch.tensor(float(seen), dtype=torch.float64, device=device)]))
            t_sum, c_sum, n_sum = sums.tolist()
            train_loss, train_acc = t_sum / max(n_sum, 1.0), c_sum / max(n_sum, 1.0)
        else:
            train_loss, train_acc = float(total / max(seen, 1)), float(correct / max(seen, 1))
        record = {"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"], "train_loss": train_loss,
                  "train_acc": train_acc}
        if cfg.head_lr is not None:
            record["head_lr"] = opt.param_groups[-1]["lr"]
        if cfg.freeze_epochs:
            record["backbone_frozen"] = frozen
        if splits.val is not None and cfg.select_on != "last":
            val, val_preds = evaluate(model, splits.val, device=device)
            record.update({"val_acc": val["acc"], "val_f1": val["f1"], "val_eodd": val["eodd"],
                           "val_eopp1": val["eopp1"]})
            if cfg.select_on in WORST_GROUP_SELECT:  # MEDFAIR's minimax selection needs the probabilities
                record.update(worst_group_record(val_preds))
            score = record[cfg.select_on]
        else:
            score = float(epoch)
        history.append(record)
        if score > best_score:
            best_score, best_epoch = score, epoch + 1
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if rd is not None:
            msg = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items())
            rd.log(msg, echo=cfg.progress)
            state = {"model": model.state_dict(), "optimizer": opt.state_dict(),
                     "scaler": scaler.state_dict(), "torch_rng": torch.get_rng_state(),
                     "gen_rng": gen.get_state(), "history": history, "epoch": epoch + 1,
                     "best_state": best_state, "best_score": best_score, "best_epoch": best_epoch,
                     "plugin": plugin.state_dict()}
            if distributed:  # each rank's own random stream, so a resume continues every one of them
                state["torch_rng_ranks"] = all_gather_objects(torch.get_rng_state())
                state["world_size"] = world
            on_main(_save_state, state, state_path)
    _freeze_backbone(model, backbone, False)  # later verbs get a trainable model
    if best_state is not None:
        model.load_state_dict(best_state)
    elif history and cfg.select_on != "last" and rd is not None:
        rd.log(f"kept the last epoch: {undefined_selection_text(cfg.select_on)}")
    if cfg.channels_last:  # hand back the usual layout: pruning utilities .view() flat parameters
        model.to(memory_format=torch.contiguous_format)
    return FitResult(model=model, history=history, best_epoch=best_epoch, best_score=best_score,
                     resumed_from=resumed_from)
