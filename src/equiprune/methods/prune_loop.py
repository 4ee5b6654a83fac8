"""The one iterative pruning loop: SCP and its controls, FairPrune / OBD (both granularities) and SkewPrune.

One iteration: cut (a *step strategy* chooses and applies the cut) →
fine-tune → evaluate on the validation split. The loop stops when validation
macro-F1 has fallen more than `th_acc` below the starting model, when the
fairness gain over the previous iteration is below `th_fair`, or after
`max_iters`. The returned model is, by `select`, the iteration with the best
validation FATE against the starting model (iteration 0, the unpruned model,
is a candidate: if no cut helps, the loop says so and returns it) or the last
one; the test split is never looked at here.

The step strategy (`PruneStep`) is what differs between methods:

* `ChannelStep(scorer)`: score every output channel of one layer with a
  scorer (`equiprune.scoring.scorers`), cut the lowest (remove or mask);
  SCP, its controls and structured FairPrune / OBD.
* `fairprune.MaskStep`: zero the lowest-saliency parameter entries and hold
  them at zero while fine-tuning (unstructured FairPrune / OBD).
* `skewprune.SkewStep`: cut every skin-like component of many layers at once,
  one shot, fine-tuning with a freezing strategy (SkewPrune).

Every finished iteration is saved (`iterations/<k>/model.pt`, the step's own
files, one record in metrics.json), so an interrupted loop resumes after its
last finished iteration; an interrupted fine-tuning resumes from its last
epoch. A step with ``evaluate_cut`` also saves and evaluates the cut model
before fine-tuning (a record of stage ``pruned``), and a resumed run does not
cut again.

Under torchrun every rank runs this loop on its own unwrapped copy of the
model: the scores are all-reduced by the scorer (identical on every rank),
so every rank cuts the same channels; the channel step checks that the cut
and the resulting shapes agree across ranks, `fit` wraps the model in DDP
for the fine-tuning only, and rank 0 alone writes the run folder.
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
from ..engine.selection import WORST_GROUP_SELECT, undefined_selection_text, worst_group_record
from ..metrics import FAIR_CRITERIA, MetricsError, fate
from ..models import example_input, input_size, last_conv_name, load_checkpoint, save_checkpoint
from ..scoring import ChannelScorer, scorer_at
from ..surgery import apply_channel_mask, layer_out_channels, prune_channels

FAIR_METRICS = FAIR_CRITERIA  # metrics.FAIR_CRITERIA: the gaps FATE is defined on
SELECTIONS = ("best", "last")
# What "best" maximises: validation FATE (the papers), or MEDFAIR's worst-group rules.
LOOP_SELECT_ON = ("val_fate", *WORST_GROUP_SELECT)
KEEPS_ZEROS = "unstructured_zeros"
"""Checkpoint `extra` flag: the model's exact zeros are pruned weights (unstructured pruning), so a later
method's fine-tuning must keep them (`LoopConfig.keep_zeros`). Child runs inherit their parent's extra."""


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
    finetune: TrainConfig | None = field(default_factory=default_finetune)  # None: no fine-tuning
    keep_zeros: bool = False        # weights that are exactly 0 stay 0 while fine-tuning (unstructured parents)
    seed: int = 0
    progress: bool = True
    select: str | None = None       # best (validation FATE) | last; None: the method's default ("best" here)
    select_on: str = "val_fate"     # what "best" maximises: val_fate | val_worst_group_acc | val_worst_group_auc

    @property
    def selection(self) -> str:
        """The iteration-selection rule in force ("best" or "last")."""
        return self.select or "best"

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
        if self.select not in (None, *SELECTIONS):
            raise ValueError(f"select must be 'last', 'best' or None, got {self.select!r}")
        if self.select_on not in LOOP_SELECT_ON:
            raise ValueError(f"select_on must be one of {', '.join(LOOP_SELECT_ON)}, got {self.select_on!r}")


@dataclass
class LoopResult:
    """The selected model and the evidence of every iteration."""

    model: nn.Module
    best_iter: int
    history: list[dict[str, Any]]
    stop_reason: str
    removed: list[list[int]]           # channel indices cut at each iteration (current numbering)
    layer: str | None
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


def select_iteration(history: list[dict[str, Any]], rule: str = "best", select_on: str = "val_fate") -> int:
    """The iteration to keep: the best validation FATE among eligible ones (0 if none), or the last.

    Records of a cut before its fine-tuning (stage ``pruned``) are not candidates.
    ``select_on`` other than ``val_fate`` keeps the eligible iteration with the
    highest record value of that name (``val_worst_group_acc`` /
    ``val_worst_group_auc``, MEDFAIR's minimax selection; iteration 0 competes
    too); undefined values (NaN, or None from JSON) never win.
    """
    history = [r for r in history if r.get("stage") != "pruned"]
    if rule == "last":
        return int(history[-1]["iter"])
    if select_on != "val_fate":
        ok = [r for r in history if r["eligible"] and r.get(select_on) is not None
              and not math.isnan(r[select_on])]
        return int(max(ok, key=lambda r: (r[select_on], -r["iter"]))["iter"]) if ok else 0
    # NaN FATE (a zero gap at the start) comes back from JSON as None
    ok = [r for r in history if r["eligible"] and r["fate"] is not None and not math.isnan(r["fate"])]
    return int(max(ok, key=lambda r: (r["fate"], -r["iter"]))["iter"]) if ok else 0


def iter_dir(rd: RunDir, k: int) -> Path:
    """Where iteration `k` of a loop keeps its model and the step's files."""
    return rd.path / "iterations" / str(k)


# --------------------------------------------------------------------------- step strategies


class PruneStep:
    """How one iteration of the loop changes the model; the loop does the rest (resume, save, judge, log).

    Subclasses override `cut` (and, as needed, the other hooks). Record
    fields returned by the hooks go into the iteration's record in
    metrics.json, before the verdict and the validation metrics.
    """

    evaluate_cut = False    # evaluate and save the cut model before fine-tuning (a record of stage "pruned")
    layer: str | None = None

    def prepare(self, model: nn.Module, splits: Any, cfg: LoopConfig, rd: RunDir | None, arch: dict[str, Any],
                say: Callable[[str], None]) -> None:
        """Called once before anything else, with the start model."""
        self.splits, self.cfg, self.rd, self.arch, self.say = splits, cfg, rd, arch, say

    def start(self, model: nn.Module) -> dict[str, Any]:
        """Record fields of iteration 0 (the start model)."""
        return {}

    def describe_start(self, rec: dict[str, Any]) -> str:
        """The end of the log line of iteration 0 (what is there to cut)."""
        return ""

    def restore(self, model: nn.Module, history: list[dict[str, Any]]) -> nn.Module:
        """On resume: the model as saved after the last record; restore what the step keeps besides it."""
        return model

    def cut(self, model: nn.Module, k: int) -> tuple[nn.Module, dict[str, Any]]:
        """Choose and apply iteration k's cut; returns the model and its record fields."""
        raise NotImplementedError

    def finetune_config(self, k: int) -> TrainConfig | None:
        """Iteration k's fine-tuning (None: none), seeded per iteration."""
        ft = self.cfg.finetune
        if ft is None or ft.epochs == 0:
            return None
        return TrainConfig(**{**asdict(ft), "seed": self.cfg.seed * 1000 + k, "progress": self.cfg.progress})

    def finetune(self, model: nn.Module, splits: Any, ft: TrainConfig, state: RunDir | None) -> nn.Module:
        """Fine-tune after the cut (`state`: where an interrupted fine-tuning resumes from)."""
        pins = pin_zero_weights(model) if self.cfg.keep_zeros else []
        try:
            return fit(model, splits, ft, run_dir=state).model
        finally:
            for handle in pins:
                handle.remove()

    def settle(self, model: nn.Module, k: int) -> tuple[nn.Module, dict[str, Any]]:
        """After fine-tuning (fold masks, measure): the model to evaluate and more record fields."""
        return model, {}

    def save(self, rd: RunDir, k: int) -> None:
        """Write the step's own files of iteration k next to its model.pt."""

    def cut_path(self, rd: RunDir, k: int) -> Path:
        """Where an `evaluate_cut` step's cut model of iteration k is saved."""
        return iter_dir(rd, k) / "cut.pt"

    def describe(self, rec: dict[str, Any]) -> str:
        """What iteration `rec["iter"]` cut, for its log line."""
        return ""

    def selected(self, k: int) -> None:
        """The loop returns iteration k's model; load what the step keeps of that iteration."""


class ChannelStep(PruneStep):
    """Score the output channels of one layer with a scorer, cut the lowest (or nothing: `scorer=None`)."""

    def __init__(self, scorer: ChannelScorer | None) -> None:
        self.scorer = scorer
        self.removed: list[list[int]] = []

    def prepare(self, model: nn.Module, splits: Any, cfg: LoopConfig, rd: RunDir | None, arch: dict[str, Any],
                say: Callable[[str], None]) -> None:
        super().prepare(model, splits, cfg, rd, arch, say)
        self.layer = cfg.layer or last_conv_name(model)
        self.image_size = input_size(arch, model, self.splits)

    def start(self, model: nn.Module) -> dict[str, Any]:
        self.active = layer_out_channels(model, self.layer)
        return {"removed": [], "channels": self.active, "active_channels": self.active}

    def describe_start(self, rec: dict[str, Any]) -> str:
        return f"{rec['channels']} channels in {self.layer}"

    def restore(self, model: nn.Module, history: list[dict[str, Any]]) -> nn.Module:
        self.removed = [list(r["removed"]) for r in history[1:]]
        self.active = history[-1]["active_channels"]
        if self.cfg.surgery == "mask":
            for r in self.removed:
                apply_channel_mask(model.get_submodule(self.layer), r)
        return model

    def cut(self, model: nn.Module, k: int) -> tuple[nn.Module, dict[str, Any]]:
        layer, cfg = self.layer, self.cfg
        n_cut = channels_to_cut(self.active, cfg) if self.scorer is not None else 0
        cut: list[int] = []
        if n_cut > 0:
            scores = np.asarray(scorer_at(self.scorer, k)(model, layer), dtype=np.float64)
            if cfg.surgery == "mask":  # masked channels must not be chosen again
                already = {c for r in self.removed for c in r}
                scores = scores.copy()
                scores[list(already)] = np.inf
            # A score of +inf means "never cut" (masked channels; a consensus scorer's unagreed ones).
            cut = sorted(int(i) for i in np.argsort(scores, kind="stable")[:n_cut] if np.isfinite(scores[i]))
            if is_distributed():  # the scorer all-reduces, so a mismatch here is a bug, not noise
                check_consistent(cut, f"channels chosen in {layer} at iteration {k}")
            if cut:
                prune_channels(model, layer, cut, mode=cfg.surgery,
                               example_inputs=example_input(self.image_size, device=next(model.parameters()).device))
            if is_distributed():
                check_consistent(module_shapes(model), f"model shapes after pruning iteration {k}")
        self.removed.append(cut)
        self.active -= len(cut)
        return model, {"removed": cut}

    def settle(self, model: nn.Module, k: int) -> tuple[nn.Module, dict[str, Any]]:
        return model, {"channels": layer_out_channels(model, self.layer), "active_channels": self.active}

    def describe(self, rec: dict[str, Any]) -> str:
        return f"cut {len(rec['removed'])} channels ({self.active} left)"


# --------------------------------------------------------------------------- the loop


def _val(metrics: dict[str, float]) -> dict[str, float]:
    return {f"val_{k}": v for k, v in metrics.items()}


def run_prune_loop(model: nn.Module, splits: Any, cfg: LoopConfig, step: PruneStep | ChannelScorer | None,
                   run_dir: str | Path | RunDir | None = None, arch: dict[str, Any] | None = None,
                   log: Callable[[str], None] | None = None) -> LoopResult:
    """Iterate cut → fine-tune → validate with a step strategy; see the module docstring.

    `step` is a `PruneStep`, or a scorer (`equiprune.scoring.scorers`; the
    loop cuts the lowest channels of `cfg.layer` by it: `ChannelStep`), or
    None (cut nothing: the fine-tune-only control). `model` is changed in
    place; the selected model is ``.model`` of the result.
    """
    cfg.validate()
    step = step if isinstance(step, PruneStep) else ChannelStep(step)
    rd = run_dir if isinstance(run_dir, RunDir) or run_dir is None else RunDir(run_dir)
    say = log or (rd.log if rd is not None else (lambda m: None))
    arch = arch or {}
    step.prepare(model, splits, cfg, rd, arch, say)
    set_seed(cfg.seed)
    staged = {"stage": "start"} if step.evaluate_cut else {}

    history: list[dict[str, Any]] = []
    done = rd.read_metrics()["history"] if rd is not None else []
    if done:
        last = done[-1]
        mid = last.get("stage") == "pruned"  # cut and saved, fine-tuning not finished
        model, _, _ = load_checkpoint(step.cut_path(rd, last["iter"]) if mid
                                      else iter_dir(rd, last["iter"]) / "model.pt")
        history = list(done)
        model = step.restore(model, history)
        say(f"resuming after iteration {last['iter']} " + ("(cut, fine-tuning again)" if mid else
                                                           f"({last.get('stop') or 'not stopped'})"))
    else:
        fields = step.start(model)
        start, start_preds = evaluate(model, splits.val)
        rec = {"iter": 0, **staged, **fields, "fate": 0.0, "eligible": True, "stop": None, **_val(start)}
        if cfg.select_on in WORST_GROUP_SELECT:
            rec.update(worst_group_record(start_preds))
        history.append(rec)
        if rd is not None:
            on_main(save_checkpoint, iter_dir(rd, 0) / "model.pt", model, arch)
            step.save(rd, 0)
            rd.append_history(rec)
        say(f"iteration 0: val F1 {start['f1']:.4f}, val {cfg.fair_metric} {start[cfg.fair_metric]:.4f}"
            + (f", {step.describe_start(rec)}" if step.describe_start(rec) else ""))

    finished = [r for r in history if r.get("stage") != "pruned"]
    start_val = {k[4:]: v for k, v in history[0].items() if k.startswith("val_")}
    # Without a run folder the iterations live in memory only.
    snapshots: dict[int, nn.Module] = {} if rd is not None else {len(finished) - 1: copy.deepcopy(model)}
    stop_reason = finished[-1].get("stop") or ""
    while not stop_reason and len(finished) <= cfg.max_iters:
        k = len(finished)
        if history[-1].get("stage") == "pruned":  # resumed after the cut
            cut_fields = {key: v for key, v in history[-1].items()
                          if key not in ("iter", "stage") and not key.startswith("val_")}
        else:
            model, cut_fields = step.cut(model, k)
            if step.evaluate_cut:
                cut_val, _ = evaluate(model, splits.val)
                rec = {"iter": k, "stage": "pruned", **cut_fields, **_val(cut_val)}
                history.append(rec)
                if rd is not None:
                    on_main(save_checkpoint, step.cut_path(rd, k), model, arch)
                    rd.append_history(rec)
        ft = step.finetune_config(k)
        if ft is not None:
            model = step.finetune(model, splits, ft, RunDir(iter_dir(rd, k)) if rd is not None else None)
        model, settled = step.settle(model, k)
        val, val_preds = evaluate(model, splits.val)
        verdict = judge_iteration(val, start_val, finished[-1][f"val_{cfg.fair_metric}"], k, cfg)
        stop_reason, f = verdict["stop"] or "", verdict["fate"]
        rec = {"iter": k, **({"stage": "finetuned"} if staged else {}), **cut_fields, **settled, **verdict,
               **_val(val)}
        if cfg.select_on in WORST_GROUP_SELECT:
            rec.update(worst_group_record(val_preds))
        history.append(rec)
        finished.append(rec)
        if rd is not None:
            on_main(save_checkpoint, iter_dir(rd, k) / "model.pt", model, arch)
            step.save(rd, k)
            rd.append_history(rec)
        else:
            snapshots[k] = copy.deepcopy(model)
        what = step.describe(rec)
        say(f"iteration {k}: " + (f"{what}, " if what else "") + f"val F1 {val['f1']:.4f}, "
            f"val {cfg.fair_metric} {val[cfg.fair_metric]:.4f}, {fate_text(f, cfg, start_val)}"
            + (f" — stop: {stop_reason}" if stop_reason else ""))

    best = select_iteration(finished, cfg.selection, cfg.select_on)
    if rd is not None:
        best_model, _, _ = load_checkpoint(iter_dir(rd, best) / "model.pt")
    else:
        best_model = snapshots[best]
    step.selected(best)
    later = [r["fate"] for r in finished[1:]]
    if cfg.selection == "last":
        say(f"selected the last iteration, {best}")
    elif cfg.select_on != "val_fate":
        v = finished[best].get(cfg.select_on)
        say(f"selected iteration {best} by {cfg.select_on} {v:.4f}" if v is not None and not math.isnan(v) else
            f"selected iteration 0, the start model: {undefined_selection_text(cfg.select_on)}")
    elif later and all(f is None or math.isnan(f) for f in later):
        say(f"selected iteration 0, the start model: {fate_text(None, cfg, start_val)}, "
            "so no iteration can be chosen by FATE")
    else:
        say(f"selected iteration {best} by validation FATE({cfg.fair_metric}) {finished[best]['fate']:+.4f}")
    removed = [list(r.get("removed", [])) for r in finished[1:]]
    return LoopResult(model=best_model, best_iter=best, history=history, stop_reason=stop_reason,
                      removed=removed, layer=step.layer, run=rd)
