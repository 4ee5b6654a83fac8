"""The iterative pruning loop shared by SCP, its controls and other channel scorers.

One iteration: score every output channel of the chosen layer → cut the
lowest-scoring ones → fine-tune → evaluate on the validation split. The loop
stops when validation macro-F1 has fallen more than `th_acc` below the
starting model, when the fairness gain over the previous iteration is below
`th_fair`, or after `max_iters`. The returned model is the iteration with the
best validation FATE against the starting model (iteration 0, the unpruned
model, is a candidate: if no cut helps, the loop says so and returns it);
the test split is never looked at here.

Every finished iteration is saved (`iterations/<k>/model.pt` and one record
in metrics.json), so an interrupted loop resumes after its last finished
iteration; an interrupted fine-tuning resumes from its last epoch.

Under torchrun every rank runs this loop on its own unwrapped copy of the
model: the scores are all-reduced by the scorer (identical on every rank),
so every rank cuts the same channels; the loop checks that the cut and the
resulting shapes agree across ranks, `fit` wraps the model in DDP for the
fine-tuning only, and rank 0 alone writes the run folder.
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from torch import nn

from ..engine import RunDir, TrainConfig, evaluate, fit, set_seed
from ..engine.distributed import check_consistent, is_distributed, module_shapes, on_main
from ..metrics import MetricsError, fate
from ..models import example_input, input_size, last_conv_name, load_checkpoint, save_checkpoint
from ..scoring import ChannelScorer, scorer_at
from ..surgery import apply_channel_mask, layer_out_channels, prune_channels

FAIR_METRICS = ("eodd", "eopp0", "eopp1")


def default_finetune() -> TrainConfig:
    return TrainConfig(epochs=2, lr=0.01, schedule="cosine", select_on="last")


@dataclass
class LoopConfig:
    """Settings of the iterative pruning loop."""

    layer: str | None = None        # module path; default: the last conv layer
    ratio: float = 0.02             # fraction of the layer's current channels cut per iteration
    n: int | None = None            # or exactly n channels per iteration
    max_iters: int = 5
    th_acc: float = 0.05            # stop once val macro-F1 is this far below the start model
    th_fair: float = 0.0            # stop once the fairness gain of an iteration is below this
    fair_metric: str = "eodd"       # eodd | eopp0 | eopp1: the gap used for gains and FATE
    fate_lambda: float = 1.0
    surgery: str = "remove"         # remove | mask
    finetune: TrainConfig = field(default_factory=default_finetune)
    keep_zeros: bool = False        # weights that are exactly 0 stay 0 while fine-tuning (unstructured parents)
    seed: int = 0
    progress: bool = True

    def validate(self) -> None:
        if self.fair_metric not in FAIR_METRICS:
            raise ValueError(f"fair_metric must be one of {FAIR_METRICS}, got {self.fair_metric!r}")
        if self.n is None and not 0 < self.ratio < 1:
            raise ValueError(f"ratio must be in (0, 1), got {self.ratio}")
        if self.n is not None and self.n < 0:
            raise ValueError(f"n must be >= 0, got {self.n}")
        if self.max_iters < 1:
            raise ValueError(f"max_iters must be >= 1, got {self.max_iters}")
        if self.surgery not in ("remove", "mask"):
            raise ValueError(f"surgery must be 'remove' or 'mask', got {self.surgery!r}")


@dataclass
class LoopResult:
    """The selected model and the evidence of every iteration."""

    model: nn.Module
    best_iter: int
    history: list[dict[str, Any]]
    stop_reason: str
    removed: list[list[int]]           # channel indices cut at each iteration (current numbering)
    layer: str
    run: RunDir | None = None

    @property
    def channels_removed(self) -> int:
        return sum(len(r) for r in self.removed[: self.best_iter])


def channels_to_cut(current: int, cfg: LoopConfig) -> int:
    """How many channels one iteration removes (at least one, never all)."""
    k = cfg.n if cfg.n is not None else max(1, int(math.ceil(cfg.ratio * current)))
    return min(k, current - 1)


def _fate(val: dict[str, float], start: dict[str, float], cfg: LoopConfig) -> float:
    try:
        return fate(val["f1"], start["f1"], val[cfg.fair_metric], start[cfg.fair_metric], lam=cfg.fate_lambda)
    except MetricsError:
        return float("nan")


def fate_text(f: float | None, cfg: LoopConfig, start: dict[str, float]) -> str:
    """FATE for the log: signed, or why it is undefined (FATE divides by the start model's values)."""
    if f is not None and not math.isnan(f):
        return f"FATE {f:+.4f}"
    if start.get(cfg.fair_metric) == 0:
        return f"FATE undefined (the start model's val {cfg.fair_metric} is 0: no gap to reduce)"
    return "FATE undefined (the start model's val macro-F1 is 0)"


def judge_iteration(val: dict[str, float], start: dict[str, float], prev_gap: float, k: int,
                    cfg: LoopConfig) -> dict[str, Any]:
    """The stopping rules applied to one finished iteration: its FATE, eligibility, gain and stop reason."""
    drop = start["f1"] - val["f1"]
    gain = prev_gap - val[cfg.fair_metric]
    eligible = drop <= cfg.th_acc
    reason = ""
    if not eligible:
        reason = f"val macro-F1 fell {drop:.4f} below the start model (th_acc {cfg.th_acc})"
    elif gain < cfg.th_fair:
        reason = f"fairness gain {gain:.4f} below th_fair {cfg.th_fair}"
    elif k >= cfg.max_iters:
        reason = f"reached max_iters {cfg.max_iters}"
    return {"fate": _fate(val, start, cfg), "eligible": eligible, "gain": gain, "f1_drop": drop,
            "stop": reason or None}


def pin_zero_weights(model: nn.Module) -> list[Any]:
    """Keep every exactly-zero weight of `model` at zero during training; returns hook handles to remove.

    The gradient of a zero entry is masked, so with a fresh optimizer (as `fit`
    makes) its SGD/Adam update, weight decay included, is exactly 0. This keeps an
    unstructured-pruned parent's zeros through the fine-tuning of a later method;
    channel removal only slices the tensors, so the surviving zeros stay in place.
    """
    handles = []
    for p in model.parameters():
        if p.requires_grad:
            keep = p.detach() != 0
            if not bool(keep.all()):
                handles.append(p.register_hook(lambda g, keep=keep: g * keep))
    return handles


def select_iteration(history: list[dict[str, Any]], rule: str = "best") -> int:
    """The iteration to keep: the best validation FATE among eligible ones (0 if none), or the last."""
    if rule == "last":
        return int(history[-1]["iter"])
    # NaN FATE (a zero gap at the start) comes back from JSON as None
    ok = [r for r in history if r["eligible"] and r["fate"] is not None and not math.isnan(r["fate"])]
    return int(max(ok, key=lambda r: (r["fate"], -r["iter"]))["iter"]) if ok else 0


def _iter_dir(rd: RunDir, k: int) -> Path:
    return rd.path / "iterations" / str(k)


def run_prune_loop(model: nn.Module, splits: Any, cfg: LoopConfig, scorer: ChannelScorer | None,
                   run_dir: str | Path | RunDir | None = None, arch: dict[str, Any] | None = None,
                   log: Callable[[str], None] | None = None) -> LoopResult:
    """Iterate score → cut → fine-tune → validate; `scorer=None` cuts nothing (fine-tune-only control).

    `scorer` follows the contract of `equiprune.scoring.scorers`: at iteration
    k the loop calls ``scorer_at(scorer, k)(model, layer)`` and cuts the lowest.
    """
    cfg.validate()
    rd = run_dir if isinstance(run_dir, RunDir) or run_dir is None else RunDir(run_dir)
    say = log or (rd.log if rd is not None else (lambda m: None))
    layer = cfg.layer or last_conv_name(model)
    image_size = input_size(arch, model, splits)
    set_seed(cfg.seed)

    history: list[dict[str, Any]] = []
    removed: list[list[int]] = []
    done = rd.read_metrics()["history"] if rd is not None else []
    if done:
        last = done[-1]
        model, _, _ = load_checkpoint(_iter_dir(rd, last["iter"]) / "model.pt")
        history, removed = list(done), [list(r["removed"]) for r in done[1:]]
        if cfg.surgery == "mask":
            for r in removed:
                apply_channel_mask(model.get_submodule(layer), r)
        say(f"resuming after iteration {last['iter']} ({last.get('stop') or 'not stopped'})")
    else:
        start, _ = evaluate(model, splits.val)
        rec = {"iter": 0, "removed": [], "channels": layer_out_channels(model, layer),
               "active_channels": layer_out_channels(model, layer), "fate": 0.0, "eligible": True,
               "stop": None, **{f"val_{k}": v for k, v in start.items()}}
        history.append(rec)
        if rd is not None:
            on_main(save_checkpoint, _iter_dir(rd, 0) / "model.pt", model, arch or {})
            rd.append_history(rec)
        say(f"iteration 0: val F1 {start['f1']:.4f}, val {cfg.fair_metric} {start[cfg.fair_metric]:.4f}, "
            f"{rec['channels']} channels in {layer}")

    start_val = {k[4:]: v for k, v in history[0].items() if k.startswith("val_")}
    # Without a run folder the iterations live in memory only.
    snapshots: dict[int, nn.Module] = {} if rd is not None else {len(history) - 1: copy.deepcopy(model)}
    stop_reason = history[-1].get("stop") or ""
    active = history[-1]["active_channels"]
    while not stop_reason and len(history) <= cfg.max_iters:
        k_iter = len(history)
        n_cut = channels_to_cut(active, cfg) if scorer is not None else 0
        cut: list[int] = []
        if n_cut > 0:
            scores = np.asarray(scorer_at(scorer, k_iter)(model, layer), dtype=np.float64)
            if cfg.surgery == "mask":  # masked channels must not be chosen again
                already = {c for r in removed for c in r}
                scores = scores.copy()
                scores[list(already)] = np.inf
            cut = sorted(int(i) for i in np.argsort(scores, kind="stable")[:n_cut])
            if is_distributed():  # the scorer all-reduces, so a mismatch here is a bug, not noise
                check_consistent(cut, f"channels chosen in {layer} at iteration {k_iter}")
            prune_channels(model, layer, cut, mode=cfg.surgery,
                           example_inputs=example_input(image_size, device=next(model.parameters()).device))
            if is_distributed():
                check_consistent(module_shapes(model), f"model shapes after pruning iteration {k_iter}")
        removed.append(cut)
        active -= len(cut)
        ft = TrainConfig(**{**asdict(cfg.finetune), "seed": cfg.seed * 1000 + k_iter, "progress": cfg.progress})
        if ft.epochs > 0:
            state_dir = RunDir(_iter_dir(rd, k_iter)) if rd is not None else None
            pins = pin_zero_weights(model) if cfg.keep_zeros else []
            try:
                model = fit(model, splits, ft, run_dir=state_dir).model
            finally:
                for handle in pins:
                    handle.remove()
        val, _ = evaluate(model, splits.val)
        verdict = judge_iteration(val, start_val, history[-1][f"val_{cfg.fair_metric}"], k_iter, cfg)
        stop_reason, f = verdict["stop"] or "", verdict["fate"]
        rec = {"iter": k_iter, "removed": cut, "channels": layer_out_channels(model, layer), "active_channels": active,
               **verdict, **{f"val_{k}": v for k, v in val.items()}}
        history.append(rec)
        if rd is not None:
            on_main(save_checkpoint, _iter_dir(rd, k_iter) / "model.pt", model, arch or {})
            rd.append_history(rec)
        else:
            snapshots[k_iter] = copy.deepcopy(model)
        say(f"iteration {k_iter}: cut {len(cut)} channels ({active} left), val F1 {val['f1']:.4f}, "
            f"val {cfg.fair_metric} {val[cfg.fair_metric]:.4f}, {fate_text(f, cfg, start_val)}"
            + (f" — stop: {stop_reason}" if stop_reason else ""))

    best = select_iteration(history)
    if rd is not None:
        best_model, _, _ = load_checkpoint(_iter_dir(rd, best) / "model.pt")
    else:
        best_model = snapshots[best]
    later = [r["fate"] for r in history[1:]]
    if later and all(f is None or math.isnan(f) for f in later):
        say(f"selected iteration 0, the start model: {fate_text(None, cfg, start_val)}, "
            "so no iteration can be chosen by FATE")
    else:
        say(f"selected iteration {best} by validation FATE({cfg.fair_metric}) {history[best]['fate']:+.4f}")
    return LoopResult(model=best_model, best_iter=best, history=history, stop_reason=stop_reason,
                      removed=removed, layer=layer, run=rd)
