"""SkewPrune: label-free pruning of skin-like components by activation skewness.

After Paxton et al., "Enhancing Fairness in Skin Lesion Classification for
Medical Diagnosis Using Prune Learning" (arXiv 2509.00745). A lesion is small
and local, skin fills the background: a component whose response over the
image is negatively skewed responds broadly over the skin (skin-tone
features), one with positive skewness responds to a small region (the
lesion). Cutting the negatively skewed components needs no skin-tone labels.
The authors' code is not public; this is built from the paper's description,
and every choice below is an option with a documented default.

One shot (not iterative): score -> cut -> fine-tune -> validate.

1. Score (`equiprune.scoring.skewness`, on the validation split by default,
   test-time transform, no labels used): per image and component the
   skewness of its map over the spatial positions, aggregated over images by
   the median. CNNs: every output filter of the chosen conv layers (`layers`,
   default all). ViTs (torchvision `vit_b_16`, `vit_tiny`): the output
   channels of the patch embedding `conv_proj` over the patch grid
   (`vit_patches`) and, per attention head, the CLS token's attention over
   the patches (`vit_heads`).
2. Cut every component whose aggregate is not above `threshold` (default 0;
   NaN, i.e. constant on every image, counts as not above unless
   `keep_constant`), at most `max_fraction` of a layer / block and never all
   of them (the most negative go first when capped). CNN filters are removed
   with `surgery.prune_channels` (Torch-Pruning), layer by layer in
   definition order; a layer already shrunk by an earlier cut it is coupled
   to (a ResNet residual stream) is not cut again, so each coupled channel is
   decided once, by the first layer of its group that cuts any. Maps with fewer than
   `min_positions` positions (ResNet's layer4 at 32 px) are not scored: with
   `layers="all"` such layers are skipped, when named it is an error. ViT
   components and heads are removed with `surgery.vit` (which swaps
   torchvision's attention for the equivalent `PrunableAttention`).
3. Fine-tune (`finetune`, an `engine.TrainConfig`) with a freezing strategy
   (`freeze`): `none` (everything trains), `embed` (the pruned patch
   embedding -- conv_proj, class token, positional embedding -- stays fixed;
   ViT only; the paper's best-fairness setting), `all-but-head` (only the
   classifier module trains: ViT `heads`, VGG `classifier`, ResNet `fc`);
   `auto` = `embed` for ViTs, `none` for CNNs.
4. Report the counts removed, MACs / parameters / latency before and after
   (`models.model_cost`), validation metrics before, after the cut and after
   fine-tuning, and the premise check: per component, skewness against the
   SNNL-Fair score (how well it separates the skin-tone groups; low =
   separates) with a Spearman rank correlation.

Run folders (`skewprune_from_run`) hold: config.json; metrics.json with the
history (stages `start`, `pruned`, `finetuned`) and the sections `skewprune`
(what was cut), `cost` and `skewness` (scores, per-group aggregates, SNNL,
premise statistics); `pruned.pt` (the cut model before fine-tuning) and
`model.pt`. An interrupted run resumes: the cut is not redone once
`pruned.pt` exists, and fine-tuning resumes from its last epoch.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ..data import scoring_dataset
from ..engine import RunDir, TrainConfig, fit
from ..models import conv_layer_names, example_input, input_size, model_cost
from ..scoring import SkewnessScorer
from ..scoring.skewness import AGGREGATES, HEAD_QUERIES, SkewnessScores, premise_summary
from ..surgery import layer_out_channels, prune_channels
from ..surgery.vit import (convert_vit_attention, is_vit, patch_embedding_parameters, prune_vit_embedding,
                           prune_vit_heads, vit_attention_paths, vit_embed_dim, vit_heads)
from .prune_loop import LoopConfig, PruneStep, default_finetune, run_prune_loop

FREEZE = ("auto", "none", "embed", "all-but-head")
PATCH_LAYER = "conv_proj"
HEADS_KEY = "heads (all blocks)"


class SkewPruneError(ValueError):
    """Settings or a model that SkewPrune cannot work with."""


@dataclass
class SkewPruneConfig:
    """Settings of SkewPrune (defaults in brackets are documented in the module docstring)."""

    layers: str | list[str] = "all"   # CNN: "all" conv layers, or a list of module paths
    threshold: float = 0.0            # cut components whose aggregate skewness is not above this
    aggregate: str = "median"         # median | mean over images
    relu: bool = False                # score ReLU(map) instead of the raw map
    after_bn: bool = True             # score a conv's following BatchNorm output (sign-correct)
    const_tol: float = 1e-5           # a map with std <= const_tol * max|x| is constant (no skewness)
    keep_constant: bool = False       # keep components constant on every image (default: cut them)
    max_fraction: float = 0.9         # at most this fraction of a layer's / block's components is cut
    min_positions: int = 4            # maps with fewer spatial positions are not scored (too few values)
    vit_patches: bool = True          # ViT: cut patch-embedding components
    vit_heads: bool = True            # ViT: cut attention heads
    head_query: str = "cls"           # cls (CLS token's attention row) | mean (over all query tokens)
    freeze: str = "auto"              # auto | none | embed | all-but-head
    score_split: str = "val"          # split the skewness is measured on (test-time transform)
    score_batch_size: int = 128       # also the SNNL batch of the premise check (reference: 128)
    max_images: int | None = None     # score at most this many images (evenly spaced subset)
    premise: bool = True              # compute SNNL-Fair per component for the premise check
    snnl_variant: str = "reference"   # reference | paper
    finetune: TrainConfig = field(default_factory=default_finetune)
    latency: bool = True              # measure CPU latency in the cost report
    seed: int = 0
    progress: bool = True

    def validate(self) -> None:
        if isinstance(self.layers, str):
            if self.layers != "all":
                raise SkewPruneError(f"layers must be 'all' or a list of module paths, got {self.layers!r}")
        elif not self.layers or not all(isinstance(x, str) for x in self.layers):
            raise SkewPruneError("layers must be 'all' or a non-empty list of module paths")
        if not math.isfinite(self.threshold):
            raise SkewPruneError(f"threshold must be a finite number, got {self.threshold}")
        if self.aggregate not in AGGREGATES:
            raise SkewPruneError(f"aggregate must be one of {AGGREGATES}, got {self.aggregate!r}")
        if self.head_query not in HEAD_QUERIES:
            raise SkewPruneError(f"head_query must be one of {HEAD_QUERIES}, got {self.head_query!r}")
        if not 0 < self.max_fraction <= 1:
            raise SkewPruneError(f"max_fraction must be in (0, 1], got {self.max_fraction}")
        if self.freeze not in FREEZE:
            raise SkewPruneError(f"freeze must be one of {FREEZE}, got {self.freeze!r}")
        if self.score_split not in ("train", "val", "test"):
            raise SkewPruneError(f"score_split must be train, val or test, got {self.score_split!r}")
        if self.score_batch_size < 2:
            raise SkewPruneError(f"score_batch_size must be at least 2, got {self.score_batch_size}")
        if self.snnl_variant not in ("reference", "paper"):
            raise SkewPruneError(f"snnl_variant must be 'reference' or 'paper', got {self.snnl_variant!r}")
        if self.min_positions < 3:
            raise SkewPruneError(f"min_positions must be at least 3 (the skewness of 2 values is always 0), "
                                 f"got {self.min_positions}")
        if self.const_tol < 0:
            raise SkewPruneError(f"const_tol must be >= 0, got {self.const_tol}")


@dataclass
class SkewPruneResult:
    """The fine-tuned pruned model and the evidence."""

    model: nn.Module
    config: SkewPruneConfig
    kind: str                                    # "cnn" | "vit"
    scores: SkewnessScores
    removed: dict[str, list[int]]                # layer / attention path -> indices cut (numbering at cut time)
    counts: dict[str, Any]
    cost: dict[str, Any]                         # before / pruned / after / reduction_pct
    val: dict[str, dict[str, float]]             # start / pruned / finetuned
    premise: dict[str, dict[str, float]]
    freeze: str                                  # the resolved strategy
    finetune_history: list[dict[str, Any]] = field(default_factory=list)
    run: RunDir | None = None


# --------------------------------------------------------------------------- selection

def select_components(scores: np.ndarray, threshold: float = 0.0, max_fraction: float = 1.0,
                      keep_constant: bool = False) -> tuple[list[int], bool]:
    """Indices to cut: aggregate not above `threshold`, capped; returns (sorted indices, capped?).

    NaN (constant on every image) counts as not above the threshold unless
    `keep_constant`. At most floor(max_fraction * K) and at most K - 1 are cut;
    when capped, the lowest go first (NaN lowest of all).
    """
    s = np.asarray(scores, dtype=np.float64)
    k = len(s)
    if k == 0:
        return [], False
    cut = ~(s > threshold)
    if keep_constant:
        cut &= ~np.isnan(s)
    limit = min(k - 1, int(math.floor(max_fraction * k + 1e-9)))
    idx = np.flatnonzero(cut)
    capped = len(idx) > limit
    if capped:
        order = np.argsort(np.where(np.isnan(s[idx]), -np.inf, s[idx]), kind="stable")
        idx = idx[order[:limit]]
    return sorted(int(i) for i in idx), bool(capped)


# --------------------------------------------------------------------------- freezing

def _classifier(model: nn.Module) -> nn.Module:
    for name in ("heads", "classifier", "fc"):
        m = getattr(model, name, None)
        if isinstance(m, nn.Module):
            return m
    raise SkewPruneError("cannot find the classifier module (heads / classifier / fc) for freeze='all-but-head'")


def resolve_freeze(model: nn.Module, freeze: str) -> str:
    """`auto` -> `embed` for ViTs, `none` for CNNs; `embed` on a CNN is an error."""
    if freeze == "auto":
        return "embed" if is_vit(model) else "none"
    if freeze == "embed" and not is_vit(model):
        raise SkewPruneError("freeze='embed' freezes a ViT's patch embedding; for a CNN use 'none' or "
                             "'all-but-head'")
    return freeze


def trainable_parameters(model: nn.Module, freeze: str) -> list[nn.Parameter]:
    """The parameters fine-tuning updates under a freezing strategy (see module docstring)."""
    freeze = resolve_freeze(model, freeze)
    if freeze == "none":
        return list(model.parameters())
    if freeze == "all-but-head":
        return list(_classifier(model).parameters())
    frozen = {id(p) for p in patch_embedding_parameters(model)}
    return [p for p in model.parameters() if id(p) not in frozen]


def finetune_with_freeze(model: nn.Module, splits: Any, cfg: TrainConfig, freeze: str,
                         run_dir: RunDir | None = None) -> Any:
    """`engine.fit` on the parameters `freeze` leaves trainable; the rest get no gradient at all."""
    train = trainable_parameters(model, freeze)
    keep = {id(p) for p in train}
    saved = {id(p): p.requires_grad for p in model.parameters()}
    try:
        # No gradient for frozen tensors: faster, and nothing else can move them.
        for p in model.parameters():
            if id(p) not in keep:
                p.requires_grad_(False)
        return fit(model, splits, cfg, run_dir=run_dir, params=train)
    finally:
        for p in model.parameters():
            p.requires_grad_(saved.get(id(p), True))


# --------------------------------------------------------------------------- helpers

def _cost(model: nn.Module, image_size: int, latency: bool) -> dict[str, float]:
    return model_cost(model, image_size, latency=latency).to_dict()


def _reduction(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    out = {}
    for key in ("macs", "params", "latency_ms", "size_bytes"):
        b, a = before.get(key), after.get(key)
        ok = b is not None and a is not None and math.isfinite(b) and math.isfinite(a) and b > 0
        out[key] = 100.0 * (b - a) / b if ok else float("nan")
    return out


def _cnn_layers(model: nn.Module, cfg: SkewPruneConfig) -> list[str]:
    convs = conv_layer_names(model)
    if not convs:
        raise SkewPruneError("the model has no convolution layer to score")
    if cfg.layers == "all":
        return convs
    missing = [layer for layer in cfg.layers if layer not in convs]
    if missing:
        raise SkewPruneError(f"not conv layers of this model: {missing}; conv layers are: {', '.join(convs)}")
    return list(dict.fromkeys(cfg.layers))


def _premise(scores: SkewnessScores, threshold: float, exclude: Any = ()) -> dict[str, dict[str, float]]:
    """Premise statistics per scored layer, pooled over layers, and pooled over all heads."""
    out: dict[str, dict[str, float]] = {}
    for name, skew in scores.channels.items():
        if name in scores.snnl_channels and name not in exclude and np.isfinite(skew).any():
            out[name] = premise_summary(skew, scores.snnl_channels[name], threshold)
    names = [n for n in scores.channels if n in out]
    if len(names) > 1:
        out["all layers"] = premise_summary(np.concatenate([scores.channels[n] for n in names]),
                                            np.concatenate([scores.snnl_channels[n] for n in names]), threshold)
    if scores.snnl_heads:
        names = [n for n in scores.heads if n in scores.snnl_heads]
        out[HEADS_KEY] = premise_summary(np.concatenate([scores.heads[n] for n in names]),
                                         np.concatenate([scores.snnl_heads[n] for n in names]), threshold)
    return out


def _scores_from_dict(d: dict[str, Any]) -> SkewnessScores:
    arr = lambda m: {k: np.asarray([np.nan if v is None else v for v in vals], dtype=float)  # noqa: E731
                     for k, vals in (m or {}).items()}
    by_g = lambda m: {k: {int(g): np.asarray([np.nan if v is None else v for v in a], dtype=float)  # noqa: E731
                          for g, a in v.items()} for k, v in (m or {}).items()}
    return SkewnessScores(channels=arr(d.get("channels")), heads=arr(d.get("heads")),
                          channels_by_group=by_g(d.get("channels_by_group")),
                          heads_by_group=by_g(d.get("heads_by_group")),
                          snnl_channels=arr(d.get("snnl_channels")), snnl_heads=arr(d.get("snnl_heads")),
                          scored_points=dict(d.get("scored_points") or {}),
                          positions={k: int(v) for k, v in (d.get("positions") or {}).items()},
                          images=int(d.get("images", 0)),
                          aggregate=d.get("aggregate", "median"), head_query=d.get("head_query", "cls"))


# --------------------------------------------------------------------------- the cut

def _cut(model: nn.Module, splits: Any, cfg: SkewPruneConfig, image_size: int,
         say: Any) -> tuple[SkewnessScores, dict[str, list[int]], dict[str, Any]]:
    """Score and cut in place; returns (scores, removed indices, counts)."""
    data = scoring_dataset(splits, cfg.score_split)
    n_images = len(data) if cfg.max_images is None else min(len(data), cfg.max_images)
    snnl = cfg.premise and n_images >= cfg.score_batch_size
    if cfg.premise and not snnl:
        say(f"premise check skipped: {n_images} scoring images, fewer than one SNNL batch of "
            f"{cfg.score_batch_size} (lower --score-batch-size)")
    vit = is_vit(model)
    # A ViT's patch embedding is scored raw (no ReLU or BatchNorm follows it).
    scorer = SkewnessScorer(data, aggregate=cfg.aggregate, batch_size=cfg.score_batch_size,
                            relu=False if vit else cfg.relu, after_bn=True if vit else cfg.after_bn,
                            const_tol=cfg.const_tol, max_images=cfg.max_images, head_query=cfg.head_query,
                            progress=cfg.progress)
    premise = dict(snnl=snnl, snnl_variant=cfg.snnl_variant)
    removed: dict[str, list[int]] = {}
    counts: dict[str, Any] = {"capped": [], "coupled": {}}
    device = next(model.parameters()).device
    if vit:
        convert_vit_attention(model)
        attention = vit_attention_paths(model) if cfg.vit_heads else []
        scores = scorer.score_pass(model, layers=[PATCH_LAYER] if cfg.vit_patches else [], attention=attention,
                                   **premise)
        few = {n: p for n, p in scores.positions.items() if p < cfg.min_positions}
        if few:
            raise SkewPruneError(f"the ViT has only {min(few.values())} patches per image, fewer than "
                                 f"min_positions={cfg.min_positions}: skewness over so few values means "
                                 "little; use larger images or lower min_positions")
        heads_before = vit_heads(model)
        embed_before = vit_embed_dim(model)
        if cfg.vit_heads:
            plan = {}
            for path in attention:
                idx, capped = select_components(scores.heads[path], cfg.threshold, cfg.max_fraction,
                                                cfg.keep_constant)
                plan[path] = idx
                if capped:
                    counts["capped"].append(path)
            prune_vit_heads(model, plan)
            removed.update(plan)
        if cfg.vit_patches:
            idx, capped = select_components(scores.channels[PATCH_LAYER], cfg.threshold, cfg.max_fraction,
                                            cfg.keep_constant)
            if capped:
                counts["capped"].append(PATCH_LAYER)
            prune_vit_embedding(model, idx)
            removed[PATCH_LAYER] = idx
        heads_after = vit_heads(model)
        counts.update({
            "kind": "vit",
            "patch_components_removed": len(removed.get(PATCH_LAYER, [])),
            "embed_dim_before": embed_before, "embed_dim_after": vit_embed_dim(model),
            "heads_removed": sum(heads_before.values()) - sum(heads_after.values()),
            "heads_before": sum(heads_before.values()), "heads_after": sum(heads_after.values()),
            "heads_per_block_after": heads_after,
        })
        counts["patch_components_fraction"] = counts["patch_components_removed"] / embed_before
        say(f"cut {counts['patch_components_removed']} of {embed_before} patch-embedding components and "
            f"{counts['heads_removed']} of {counts['heads_before']} attention heads")
        return scores, removed, counts

    layers = _cnn_layers(model, cfg)
    scores = scorer.score_pass(model, layers=layers, **premise)
    few = {layer: scores.positions[layer] for layer in layers if scores.positions[layer] < cfg.min_positions}
    if few and cfg.layers != "all":
        raise SkewPruneError(f"layers {sorted(few)} have maps of only {min(few.values())} positions at this image "
                             f"size, fewer than min_positions={cfg.min_positions}; leave them out of --layers, "
                             "use larger images or lower min_positions")
    if few:
        say(f"not pruned (maps smaller than {cfg.min_positions} positions): {', '.join(few)}")
    counts["skipped"] = {layer: f"{p} positions per map < min_positions {cfg.min_positions}"
                         for layer, p in few.items()}
    layers = [layer for layer in layers if layer not in few]
    if not layers:
        raise SkewPruneError("no conv layer has maps large enough to score at this image size")
    before = {layer: layer_out_channels(model, layer) for layer in layers}
    per_layer: dict[str, dict[str, int]] = {}
    for layer in layers:
        current = layer_out_channels(model, layer)
        if current != before[layer]:
            # An earlier cut already shrank this layer through a coupling (a ResNet
            # residual stream): those channels were decided once, by the earlier layer;
            # cutting again would shrink the stream once per coupled layer.
            counts["coupled"][layer] = "shrunk with an earlier layer it is coupled to (residual connection)"
            removed[layer] = []
            per_layer[layer] = {"before": before[layer], "removed": before[layer] - current, "after": current}
            continue
        idx, capped = select_components(scores.channels[layer], cfg.threshold, cfg.max_fraction,
                                        cfg.keep_constant)
        if capped:
            counts["capped"].append(layer)
        if idx:
            prune_channels(model, layer, idx, example_inputs=example_input(image_size, device=device))
        removed[layer] = idx
        per_layer[layer] = {"before": before[layer], "removed": len(idx),
                            "after": layer_out_channels(model, layer)}
    total_before = sum(before.values())
    total_after = sum(layer_out_channels(model, layer) for layer in layers)
    counts.update({"kind": "cnn", "filters_removed": total_before - total_after,
                   "filters_before": total_before, "filters_after": total_after,
                   "filters_fraction": (total_before - total_after) / total_before, "layers": per_layer})
    say(f"cut {counts['filters_removed']} of {total_before} filters "
        f"({100 * counts['filters_fraction']:.1f}%) in {len(layers)} conv layers")
    return scores, removed, counts


# --------------------------------------------------------------------------- the loop's step

def _cost_fields(cost: dict[str, float]) -> dict[str, Any]:
    return {"macs": cost.get("macs"), "params": cost.get("params"), "latency_ms": cost.get("latency_ms")}


class SkewStep(PruneStep):
    """SkewPrune as the pruning loop's step: one cut of every skin-like component, then frozen fine-tuning.

    The cut model is saved as ``pruned.pt`` and evaluated before fine-tuning
    (history stages ``start``, ``pruned``, ``finetuned``); the evidence goes to
    the sections ``skewness``, ``skewprune``, ``cost`` and ``finetune``.
    """

    evaluate_cut = True

    def __init__(self, splits: Any, cfg: SkewPruneConfig, image_size: int, freeze: str) -> None:
        self.splits, self.skew, self.image_size, self.freeze = splits, cfg, image_size, freeze
        self.cost: dict[str, Any] = {}
        self.finetune_history: list[dict[str, Any]] = []

    def start(self, model: nn.Module) -> dict[str, Any]:
        self.cost["before"] = _cost(model, self.image_size, self.skew.latency)
        return _cost_fields(self.cost["before"])

    def cut(self, model: nn.Module, k: int) -> tuple[nn.Module, dict[str, Any]]:
        cfg = self.skew
        self.scores, self.removed, self.counts = _cut(model, self.splits, cfg, self.image_size, self.say)
        self.cost["pruned"] = _cost(model, self.image_size, cfg.latency)
        self.premise = _premise(self.scores, cfg.threshold, exclude=self.counts.get("skipped", {}))
        for name, p in self.premise.items():
            if name in ("all layers", HEADS_KEY) or len(self.premise) == 1:
                self.say(f"premise check, {name}: Spearman(skewness, SNNL-Fair) = {p['spearman']:+.3f} over "
                         f"{p['n']} components (> 0 supports the premise)")
        if self.rd is not None:
            self.rd.set_section("skewness", {**self.scores.to_dict(), "threshold": cfg.threshold,
                                             "premise": self.premise})
            self.rd.set_section("skewprune", {"kind": self.counts["kind"], "removed": self.removed,
                                              "counts": self.counts, "freeze": self.freeze})
            self.rd.set_section("cost", self.cost)
        return model, _cost_fields(self.cost["pruned"])

    def restore(self, model: nn.Module, history: list[dict[str, Any]]) -> nn.Module:
        metrics = self.rd.read_metrics()
        sec = metrics["skewprune"]
        self.scores = _scores_from_dict(metrics.get("skewness", {}))
        self.removed = {k: list(v) for k, v in sec["removed"].items()}
        self.counts = sec["counts"]
        # JSON stores NaN (no latency measured) as null: back to NaN
        self.cost = {stage: {key: float("nan") if v is None else v for key, v in values.items()}
                     for stage, values in (metrics.get("cost") or {}).items()}
        self.premise = metrics.get("skewness", {}).get("premise", {})
        self.finetune_history = list((metrics.get("finetune") or {}).get("history", []))
        if history[-1].get("stage") == "pruned":
            self.say("resuming: the cut is already done, loading pruned.pt")
        return model

    def cut_path(self, rd: RunDir, k: int) -> Path:
        return rd.file("pruned.pt")

    def finetune_config(self, k: int) -> TrainConfig | None:
        ft = self.skew.finetune
        if ft.epochs == 0:
            return None
        return TrainConfig(**{**asdict(ft), "seed": self.skew.seed, "progress": self.skew.progress})

    def finetune(self, model: nn.Module, splits: Any, ft: TrainConfig, state: RunDir | None) -> nn.Module:
        self.say(f"fine-tuning {ft.epochs} epochs, freeze={self.freeze}")
        res = finetune_with_freeze(model, splits, ft, self.freeze, run_dir=state)
        self.finetune_history = res.history
        return res.model

    def settle(self, model: nn.Module, k: int) -> tuple[nn.Module, dict[str, Any]]:
        self.cost["after"] = _cost(model, self.image_size, self.skew.latency)
        self.cost["reduction_pct"] = _reduction(self.cost["before"], self.cost["after"])
        if self.rd is not None:
            self.rd.set_section("cost", self.cost)
            self.rd.set_section("finetune", {"freeze": self.freeze, "history": self.finetune_history})
        return model, _cost_fields(self.cost["after"])


# --------------------------------------------------------------------------- the method

def run_skewprune(model: nn.Module, splits: Any, cfg: SkewPruneConfig,
                  run_dir: str | Path | RunDir | None = None,
                  arch: dict[str, Any] | None = None) -> SkewPruneResult:
    """SkewPrune `model` (pruned in place) on `splits`; see the module docstring.

    One iteration of the pruning loop (`prune_loop`, no stopping rule, the
    last iteration kept) with `SkewStep`. With `run_dir`, the cut model and the
    evidence are saved and an interrupted run resumes (the cut is not redone;
    fine-tuning continues).
    """
    cfg.validate()
    if run_dir is not None and not arch:
        raise SkewPruneError("run_skewprune with a run_dir needs `arch` (the build_model arguments) so that "
                             "the pruned model can be saved and reloaded")
    check_model(model, cfg)
    rd = run_dir if isinstance(run_dir, RunDir) or run_dir is None else RunDir(run_dir)
    say = rd.log if rd is not None else (lambda m: None)
    freeze = resolve_freeze(model, cfg.freeze)
    step = SkewStep(splits, cfg, input_size(arch, model, splits), freeze)
    loop_cfg = LoopConfig(max_iters=1, th_acc=math.inf, th_fair=-math.inf, finetune=cfg.finetune, seed=cfg.seed,
                          progress=cfg.progress, select="last")
    loop = run_prune_loop(model, splits, loop_cfg, step, run_dir=rd, arch=arch, log=say)
    val = {r["stage"]: {k[4:]: v for k, v in r.items() if k.startswith("val_")} for r in loop.history}
    cost = step.cost
    say(f"val macro-F1 {val['start']['f1']:.4f} -> {val['pruned']['f1']:.4f} (cut) -> "
        f"{val['finetuned']['f1']:.4f} (fine-tuned); MACs {-cost['reduction_pct']['macs']:+.1f}%, "
        f"params {-cost['reduction_pct']['params']:+.1f}%")
    return SkewPruneResult(model=loop.model, config=cfg, kind=step.counts["kind"], scores=step.scores,
                           removed=step.removed, counts=step.counts, cost=cost, val=val, premise=step.premise,
                           freeze=freeze, finetune_history=step.finetune_history, run=rd)


def check_model(model: nn.Module, cfg: SkewPruneConfig) -> None:
    """SkewPruneError when `cfg` cannot apply to `model` (unknown layers, a ViT option on a CNN, ...)."""
    resolve_freeze(model, cfg.freeze)
    if is_vit(model):
        if not (cfg.vit_patches or cfg.vit_heads):
            raise SkewPruneError("nothing to prune: enable vit_patches and/or vit_heads")
        if cfg.layers != "all":
            raise SkewPruneError("layers applies to CNNs; for a ViT choose vit_patches / vit_heads")
    else:
        _cnn_layers(model, cfg)


def skewprune_from_run(parent_path: str | Path, cfg: SkewPruneConfig, out: str | Path) -> SkewPruneResult:
    """`equiprune prune skew`: SkewPrune the model of a run folder into the new run folder `out`.

    The plots of the premise check are made by
    `equiprune.report.skew_plots.save_skew_plots(out)` (the CLI calls it).
    """
    from .runs import save_run_model, start_child_run

    parent, rd = start_child_run(parent_path, out, kind="skewprune", settings=cfg,
                                 check=lambda run: check_model(run.model, cfg),
                                 method="SkewPrune (label-free skewness)")
    result = run_skewprune(parent.model, parent.splits(), cfg, run_dir=rd, arch=parent.arch)
    save_run_model(rd, result.model, parent.arch, {
        **parent.extra, "skewprune": {"kind": result.kind, "counts": _plain_counts(result.counts),
                                      "freeze": result.freeze}})
    return result


def _plain_counts(counts: dict[str, Any]) -> dict[str, Any]:
    """The scalar counts only (checkpoint `extra` must stay small and weights_only-loadable)."""
    return {k: v for k, v in counts.items() if isinstance(v, (int, float, str, bool))}
