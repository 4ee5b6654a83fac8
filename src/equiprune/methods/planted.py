"""A positive control with a known answer: plant k group-detecting channels that cause a gap.

Every verdict of equiprune that "SCP did not beat its controls" is only worth
something if SCP *can* win where its premise holds. Data built so that the
premise holds (synthderm's marker mode) leaves open whether the gap really
runs through a few channels. Here the gap's cause is written into the
weights, so it is known exactly:

1. k output channels of the scored conv layer (chosen at random, seeded) are
   overwritten with a group detector: each is a linear probe (logistic
   regression, scikit-learn) fitted on the spatially pooled input of the layer
   to predict the group, laid out as a conv filter that averages its
   receptive field, so it fires where the local features look like the
   minority group (after the layer's ReLU). Each planted channel sees a random
   half of the input channels, so the k channels are not copies.
   Their filters are rescaled to the (lower) median L1 norm of the layer's filters
   (the L1 control is blind to them by construction; ReLU(s·z) = s·ReLU(z)
   keeps what they detect).
2. The planted channels feed nothing but a private path to the logits: their
   columns in the classifier's first Linear are zeroed except in m hidden
   units reserved for them (the units with the smallest outgoing weights, the
   ones the model relies on least), which the second Linear copies into m units of
   its own, whose only effect is +β per unit activation on one class's logit
   (`target_class`, default the most frequent training class). So an image
   the channels take for the minority group is pushed towards that class and
   the minority group's true-positive rate on every other class falls.
3. β (in logits per average minority image) is set on the validation split
   so the gap metric (Eodd by default) rises `gap_increase` above the model
   with the channels planted at β = 0, while the other group loses at most
   `max_other_drop` accuracy (the logits are linear in β, so two forward
   passes give every β). Each planted channel's threshold is raised until it
   stays silent on `silent_quantile` (80%) of the other group's images, so
   the push lands mostly on the minority group. The sparser a detector is made
   (a higher quantile), the less SNNL-Fair's cosine form sees it: a feature map
   that is all zero on most images looks like no signal (measured in
   `benchmarks/bench_planted.py`).

Cutting the planted channels removes the added gap exactly (the path has no
other input); `PlantResult.ablation` measures it. What the control asks of SCP:
SNNL-Fair ranks the planted channels among its lowest k (`planted_recall`),
its cut narrows the gap more than random cuts (`cut_response`), and `prune scp`
beats vanilla and its random / L1 / fine-tune-only controls over seeds
(`benchmarks/bench_planted.py`).

Only VGG-style models are supported (the scored conv layer feeds, through
ReLU and pooling, a `classifier` Sequential of three Linear layers), which is
every VGG equiprune builds.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..engine import extract_features, make_loader
from ..engine.runtime import set_seed
from ..metrics import group_fairness
from ..models import last_conv_name
from ..surgery import layer_out_channels

SECTION = "planted"
GAP_METRICS = ("eodd", "eopp0", "eopp1")


class PlantError(ValueError):
    """The model or settings do not allow planting channels."""


@dataclass
class PlantConfig:
    """How many channels to plant where, and how strong a gap they cause."""

    layer: str | None = None        # conv layer whose channels are overwritten; default: the last conv
    k: int = 6                      # planted channels
    hidden_units: int = 4           # classifier units per hidden layer reserved for the planted path
    gap_increase: float = 0.10      # validation gap added over the β = 0 model
    gap_metric: str = "eodd"
    target_class: int | None = None  # class the minority group is pushed towards (default: most frequent)
    minority: int | None = None     # group whose TPR falls (default: the smaller group in train)
    probe_samples: int = 2000       # training images the probes are fitted on
    silent_quantile: float = 0.8    # a planted channel stays silent on this share of the other group's images
    max_other_drop: float = 0.02    # the bias may cost the other group at most this much validation accuracy
    max_beta: float = 100.0         # the strongest bias tried (logit units per unit of planted signal)
    seed: int = 0

    def validate(self) -> None:
        if self.k < 1:
            raise ValueError(f"k (planted channels) must be >= 1, got {self.k}")
        if self.hidden_units < 1:
            raise ValueError(f"hidden_units must be >= 1, got {self.hidden_units}")
        if not 0 < self.gap_increase < 1:
            raise ValueError(f"gap_increase must be in (0, 1), got {self.gap_increase}")
        if self.gap_metric not in GAP_METRICS:
            raise ValueError(f"gap_metric must be one of {GAP_METRICS}, got {self.gap_metric!r}")
        if self.minority not in (None, 0, 1):
            raise ValueError(f"minority must be 0 or 1 (or unset), got {self.minority}")
        if self.probe_samples < 20:
            raise ValueError(f"probe_samples must be >= 20, got {self.probe_samples}")


@dataclass
class PlantResult:
    """The planted model and what is known about it."""

    model: nn.Module
    layer: str
    channels: list[int]             # the planted channel indices of `layer`
    beta: float
    target_class: int
    minority: int
    probe_accuracy: list[float]     # per planted channel: training accuracy of its group probe
    val: dict[str, dict[str, float]] = field(default_factory=dict)  # original / beta0 / planted / ablated metrics
    reached: bool = True            # False if no allowed β added gap_increase
    firing: dict[str, float] = field(default_factory=dict)  # share of probe images a planted channel fires on

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "channels": self.channels, "beta": self.beta, "target_class": self.target_class,
                "minority": self.minority, "probe_accuracy": self.probe_accuracy, "val": self.val,
                "reached": self.reached, "firing": self.firing}


def _classifier_linears(model: nn.Module, layer: str) -> list[nn.Linear]:
    """The three Linear layers of a VGG classifier fed by `layer`, or a PlantError saying what is supported."""
    head = getattr(model, "classifier", None)
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)] if isinstance(head, nn.Sequential) else []
    if len(linears) != 3 or layer != last_conv_name(model):
        raise PlantError(f"planting channels needs a VGG-style model scored at its last conv layer "
                         f"({last_conv_name(model)}) with a three-Linear classifier; got layer {layer!r} of a "
                         f"{type(model).__name__}")
    return linears


def _probe_sample(dataset: Any, n: int, seed: int) -> Any:
    """Up to `n` random items of `dataset` (the probes are fitted and their thresholds set on them)."""
    idx = np.sort(np.random.default_rng(seed).choice(len(dataset), size=min(n, len(dataset)), replace=False))
    return dataset.subset(idx)


def _layer_inputs(model: nn.Module, layer: str, sample: Any) -> np.ndarray:
    """Spatially pooled inputs of `layer` on `sample` ([n, C_in])."""
    pooled: list[torch.Tensor] = []

    def hook(_m: nn.Module, inp: tuple) -> None:
        pooled.append(inp[0].detach().float().mean(dim=(2, 3)))

    handle = model.get_submodule(layer).register_forward_pre_hook(hook)
    model.eval()
    try:
        with torch.no_grad():
            for x, _y, _g, _i in make_loader(sample, 256):
                model(x)
    finally:
        handle.remove()
    return torch.cat(pooled).numpy()


def _peak_responses(model: nn.Module, layer: str, channels: list[int], sample: Any) -> np.ndarray:
    """Each image's largest pre-activation of each planted channel over positions ([n, k])."""
    peaks = [f[:, channels].flatten(2).amax(2).float() for f, _y, _g in
             extract_features(model, layer, make_loader(sample, 256))]
    return torch.cat(peaks).cpu().numpy()


def _fit_probe(x: np.ndarray, g: np.ndarray, minority: int, seed: int) -> tuple[np.ndarray, float, float]:
    """Logistic-regression probe for 'is minority' on raw pooled features: (weights, bias, training accuracy)."""
    from sklearn.linear_model import LogisticRegression
    mu, sd = x.mean(0), x.std(0) + 1e-6
    clf = LogisticRegression(class_weight="balanced", max_iter=2000, random_state=seed)
    y = (g == minority).astype(int)
    clf.fit((x - mu) / sd, y)
    w = clf.coef_[0] / sd                       # undo the standardisation: w·x + b on raw features
    b = float(clf.intercept_[0] - (clf.coef_[0] * mu / sd).sum())
    return w, b, float(clf.score((x - mu) / sd, y))


def _logits(model: nn.Module, dataset: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    model.eval()
    out, ys, gs = [], [], []
    with torch.no_grad():
        for x, y, g, _i in make_loader(dataset, 256):
            out.append(model(x).float())
            ys.append(y)
            gs.append(g)
    return torch.cat(out).numpy(), torch.cat(ys).numpy(), torch.cat(gs).numpy()


def _metrics(logits: np.ndarray, y: np.ndarray, g: np.ndarray) -> dict[str, float]:
    return group_fairness(y, logits.argmax(1), g).to_dict()


def _choose_beta(val0: tuple[np.ndarray, np.ndarray, np.ndarray], push: np.ndarray, target: int, minority: int,
                 cfg: PlantConfig) -> tuple[float, bool]:
    """The bias strength: the smallest β on a log grid whose validation gap reaches β = 0's plus `gap_increase`
    while the other group loses at most `max_other_drop` accuracy; else the allowed β with the largest gap.

    The logits are `val0` + β · push on the target class, so no forward pass is needed per β.
    Returns (β, whether the wanted gap was reached).
    """
    logits, y, g = val0
    base = _metrics(logits, y, g)
    want = base[cfg.gap_metric] + cfg.gap_increase
    other = f"acc_g{1 - minority}"
    best, best_gap = 0.0, base[cfg.gap_metric]
    for beta in np.geomspace(cfg.max_beta / 1e4, cfg.max_beta, 120):
        lg = logits.copy()
        lg[:, target] += beta * push
        m = _metrics(lg, y, g)
        if base[other] - m[other] > cfg.max_other_drop:
            continue
        if m[cfg.gap_metric] >= want:
            return float(beta), True
        if m[cfg.gap_metric] > best_gap:
            best, best_gap = float(beta), m[cfg.gap_metric]
    return best, False


def plant_channels(model: nn.Module, splits: Any, cfg: PlantConfig) -> PlantResult:
    """A copy of `model` with `cfg.k` planted group-detecting channels that cause a known gap (module doc)."""
    cfg.validate()
    set_seed(cfg.seed)
    layer = cfg.layer or last_conv_name(model)
    out_ch = layer_out_channels(model, layer)
    if cfg.k >= out_ch:
        raise PlantError(f"k = {cfg.k} planted channels leaves none of {layer}'s {out_ch} channels unplanted")
    planted = copy.deepcopy(model).eval()
    fc0, fc1, fc2 = _classifier_linears(planted, layer)
    hidden = fc1.in_features
    if 2 * cfg.hidden_units > hidden:
        raise PlantError(f"hidden_units = {cfg.hidden_units} is too many for a classifier of {hidden} units")
    conv = planted.get_submodule(layer)
    if not isinstance(conv, nn.Conv2d) or conv.bias is None:
        raise PlantError(f"{layer} must be a Conv2d with a bias")
    train = splits.train.with_transform(splits.test.transform)
    minority = cfg.minority if cfg.minority is not None else int(np.argmin(np.bincount(train.groups, minlength=2)))
    target = (cfg.target_class if cfg.target_class is not None
              else int(np.argmax(np.bincount(train.labels, minlength=len(splits.classes)))))
    if not 0 <= target < fc2.out_features:
        raise PlantError(f"target_class {target} is not a class of this model (0..{fc2.out_features - 1})")

    rng = np.random.default_rng(cfg.seed)
    channels = sorted(int(c) for c in rng.choice(out_ch, size=cfg.k, replace=False))
    sample = _probe_sample(train, cfg.probe_samples, cfg.seed)
    x, g = _layer_inputs(planted, layer, sample), np.asarray(sample.groups)
    if len(np.unique(g)) < 2:
        raise PlantError("the probe sample holds one group only; pass a larger probe_samples")
    original_val = _metrics(*_logits(planted, splits.val))

    with torch.no_grad():
        w = conv.weight
        median_l1 = float(w.abs().reshape(out_ch, -1).sum(1).median())
        cin, kh, kw = w.shape[1:]
        accs = []
        for j, c in enumerate(channels):
            sel = np.sort(rng.choice(cin, size=max(1, cin // 2), replace=False))
            pw, pb, acc = _fit_probe(x[:, sel], g, minority, cfg.seed + j)
            accs.append(acc)
            filt = torch.zeros(cin, kh, kw, dtype=w.dtype)
            filt[torch.as_tensor(sel)] = torch.as_tensor(pw, dtype=w.dtype)[:, None, None] / (kh * kw)
            scale = median_l1 / max(float(filt.abs().sum()), 1e-12)
            w[c] = filt * scale
            conv.bias[c] = pb * scale
        # Selectivity: raise each threshold until the channel stays silent on `silent_quantile` of the other
        # group's images (a probe right on pooled features still fires at some positions of many of them).
        peaks = _peak_responses(planted, layer, channels, sample)
        other = peaks[g != minority]
        margin = np.maximum(np.quantile(other, cfg.silent_quantile, axis=0), 0.0)
        conv.bias[channels] -= torch.as_tensor(margin, dtype=conv.bias.dtype)
        fires = (peaks - margin > 0)
        firing = {"minority": float(fires[g == minority].mean()), "other": float(fires[g != minority].mean())}
        # The private path: planted channels -> m units of fc0 -> m units of fc1 -> target logit.
        per_ch = fc0.in_features // out_ch          # pooled positions per channel (flatten is channel-major)
        cols = torch.as_tensor([c * per_ch + p for c in channels for p in range(per_ch)])
        # The hidden units the model relies on least (smallest outgoing weights) carry the path, so that
        # taking them over costs the original model as little as possible.
        m = cfg.hidden_units
        u0 = torch.argsort(fc1.weight.norm(dim=0), stable=True)[:m]
        u1 = torch.argsort(fc2.weight.norm(dim=0), stable=True)[:m]
        fc0.weight[:, cols] = 0.0
        fc0.weight[u0] = 0.0
        fc0.bias[u0] = 0.0
        fc0.weight[u0[:, None], cols[None, :]] = 1.0
        fc1.weight[:, u0] = 0.0
        fc1.weight[u1] = 0.0
        fc1.bias[u1] = 0.0
        fc1.weight[u1, u0] = 1.0
        fc2.weight[:, u1] = 0.0

        val0 = _logits(planted, splits.val)
        fc2.weight[target, u1] = 1.0
        val1 = _logits(planted, splits.val)
    signal = val1[0][:, target] - val0[0][:, target]      # the planted path's logit push at β = 1
    minority_mean = float(signal[val0[2] == minority].mean())
    if minority_mean <= 0:
        raise PlantError("the planted channels never fire on the minority group's validation images; "
                         "the group cannot be read from this layer's input")
    unit = 1.0 / minority_mean                             # β is in logits per average minority image

    beta, reached = _choose_beta(val0, signal * unit, target, minority, cfg)
    with torch.no_grad():
        fc2.weight[target, u1] = float(beta * unit)
    planted_val = _metrics(*_logits(planted, splits.val))
    ablated = copy.deepcopy(planted)
    with torch.no_grad():
        ablated.get_submodule(layer).weight[channels] = 0.0
        ablated.get_submodule(layer).bias[channels] = 0.0
    val = {"original": original_val, "beta0": _metrics(*val0), "planted": planted_val,
           "ablated": _metrics(*_logits(ablated, splits.val))}
    return PlantResult(model=planted, layer=layer, channels=channels, beta=float(beta), firing=firing,
                       target_class=target,
                       minority=minority, probe_accuracy=accs, val=val, reached=reached)


def planted_recall(scores: np.ndarray, channels: list[int]) -> dict[str, Any]:
    """How many of the planted channels a scorer ranks among its lowest k (k = number planted).

    `ranks` are the planted channels' positions in ascending score order (0 =
    cut first); recall 1.0 means the scorer's k lowest are exactly the planted ones.
    """
    scores = np.asarray(scores, dtype=np.float64)
    k = len(channels)
    order = np.argsort(scores, kind="stable")
    rank_of = np.empty(len(scores), dtype=np.int64)
    rank_of[order] = np.arange(len(scores))
    lowest = set(int(i) for i in order[:k])
    hits = sorted(set(channels) & lowest)
    return {"k": k, "recall": len(hits) / k, "hits": hits, "ranks": sorted(int(rank_of[c]) for c in channels),
            "channels": list(channels), "of": len(scores)}


def plant_from_run(parent_path: str | Path, cfg: PlantConfig, out: str | Path) -> PlantResult:
    """The planted copy of a run's model as a new run folder (kind ``planted``), usable by every verb."""
    from .runs import save_run_model, start_child_run

    parent, rd = start_child_run(parent_path, out, "planted", cfg,
                                 check=lambda run: _classifier_linears(run.model, cfg.layer or
                                                                       last_conv_name(run.model)))
    stored = rd.read_metrics().get(SECTION)
    if stored and rd.model_path.exists():   # finished before: the planted model is kept, not planted again
        from .runs import open_run
        return PlantResult(model=open_run(rd.path).model, **stored)
    result = plant_channels(parent.model, parent.splits(), cfg)
    rd.set_section(SECTION, result.to_dict())
    rd.log(plant_sentence(result), echo=False)
    save_run_model(rd, result.model, parent.arch, {**parent.extra, SECTION: {"layer": result.layer,
                                                                             "channels": result.channels}})
    return result


def plant_sentence(r: PlantResult | dict[str, Any]) -> str:
    """What was planted and what it did to the validation gap, in one sentence."""
    d = r.to_dict() if isinstance(r, PlantResult) else r
    v = d["val"]
    return (f"planted {len(d['channels'])} group-detecting channels in {d['layer']} ({', '.join(map(str, d['channels']))})"
            f" pushing group {d['minority']} towards class {d['target_class']} (beta {d['beta']:.2f}): val Eodd "
            f"{v['original']['eodd']:.3f} (original) -> {v['beta0']['eodd']:.3f} (channels overwritten, beta 0) -> "
            f"{v['planted']['eodd']:.3f} (planted); {v['ablated']['eodd']:.3f} with the planted channels zeroed"
            + ("" if d["reached"] else "; the wanted gap was not reached within the allowed cost to the other group"))
