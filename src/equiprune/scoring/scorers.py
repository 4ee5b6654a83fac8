"""The scorer contract: an object built with its data and settings, called as ``scorer(model, layer)``.

Every channel-pruning method asks the same question: which output channels of
this layer, of this model as it is now, should go first? A scorer answers it
with one float per output channel (a 1-D float64 numpy array in channel
order); **the lowest scores are cut first**. Everything the answer depends on
besides the model (the scoring data, a variant, a batch size, a seed, which
group is privileged) is given when the scorer is built, so the pruning loop
(`equiprune.methods.prune_loop`), the cut-response diagnostic and any later
method call every scorer the same way and never adapt signatures.

One optional hook: ``scorer.for_iteration(k)`` returns the scorer to use at
iteration ``k`` of an iterative loop. Only scorers whose answer depends on
the iteration need it (a random scorer draws anew each time, seeded by
``k``, so a resumed loop draws what an uninterrupted one would); the base
class returns ``self``.

Adding a scorer: subclass `Scorer`, take data and settings in ``__init__``,
implement ``__call__(model, layer) -> np.ndarray`` (lower = cut first; use
`out_channels` to check the length) and give it a ``name``. The five scorers
here are SNNL-Fair, L1, random, Hessian saliency (FairPrune / OBD) and
skewness (SkewPrune).
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset

from . import saliency as _saliency
from . import simple as _simple
from . import skewness as _skewness
from . import snnl as _snnl
from .snnl import ScoringError


@runtime_checkable
class ChannelScorer(Protocol):
    """Anything called as ``scorer(model, layer)`` returning one score per output channel (lowest cut first)."""

    def __call__(self, model: nn.Module, layer: str) -> np.ndarray: ...


ScoreFn = ChannelScorer
"""The type a pruning loop takes (kept under the name the loop used before the contract moved here)."""


def out_channels(model: nn.Module, layer: str) -> int:
    """Output channels of a Conv/Linear `layer` (its weight's first dimension; masked channels count)."""
    try:
        module = model.get_submodule(layer)
    except AttributeError:
        raise ScoringError(f"model has no layer {layer!r}") from None
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor):
        raise ScoringError(f"layer {layer!r} is a {type(module).__name__} without a weight to score")
    return int(weight.shape[0])


def scorer_at(scorer: ChannelScorer, k: int) -> ChannelScorer:
    """The scorer to use at iteration `k` (`scorer.for_iteration(k)` when it has one, else itself)."""
    at = getattr(scorer, "for_iteration", None)
    return at(k) if callable(at) else scorer


class Scorer:
    """Base class of the scorers: ``__call__(model, layer)`` -> float64 [channels], lowest cut first."""

    name = "scorer"

    def __call__(self, model: nn.Module, layer: str) -> np.ndarray:
        raise NotImplementedError

    def for_iteration(self, k: int) -> Scorer:
        """The scorer for iteration `k`; the same one unless the scores depend on the iteration."""
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"


class FixedScores(Scorer):
    """Scores already known (a stored run, or a pass made for another purpose); checked against the layer."""

    name = "fixed"

    def __init__(self, scores: Any) -> None:
        self.scores = np.asarray(scores, dtype=np.float64)

    def __call__(self, model: nn.Module, layer: str) -> np.ndarray:
        k = out_channels(model, layer)
        if self.scores.shape != (k,):
            raise ScoringError(f"scores_before has shape {self.scores.shape}, but {layer} has {k} output channels")
        return self.scores


class KnownFirst(Scorer):
    """`scorer`, except that iteration `at` uses scores already computed for that model (saves one pass)."""

    def __init__(self, scorer: ChannelScorer, scores: Any, at: int = 1) -> None:
        self.scorer, self.known, self.at = scorer, FixedScores(scores), at
        self.name = getattr(scorer, "name", "scorer")

    def __call__(self, model: nn.Module, layer: str) -> np.ndarray:
        return self.scorer(model, layer)

    def for_iteration(self, k: int) -> ChannelScorer:
        return self.known if k == self.at else scorer_at(self.scorer, k)


class Negated(Scorer):
    """The opposite order of `scorer` (its highest scores cut first), e.g. highest SNNL-Fair."""

    def __init__(self, scorer: ChannelScorer) -> None:
        self.scorer = scorer
        self.name = f"-{getattr(scorer, 'name', 'scorer')}"

    def __call__(self, model: nn.Module, layer: str) -> np.ndarray:
        return -np.asarray(self.scorer(model, layer), dtype=np.float64)


class L1Scorer(Scorer):
    """Filter L1 magnitude: the smallest filters go first (magnitude pruning). Needs no data."""

    name = "l1"

    def __call__(self, model: nn.Module, layer: str) -> np.ndarray:
        return _simple.l1_channel_scores(model, layer)


class RandomScorer(Scorer):
    """Uniform random scores, seeded by ``seed * 1000 + draw``; each iteration is a new draw."""

    name = "random"

    def __init__(self, seed: int = 0, draw: int = 0) -> None:
        self.seed, self.draw = seed, draw

    def __call__(self, model: nn.Module, layer: str) -> np.ndarray:
        return _simple.random_channel_scores(out_channels(model, layer), seed=self.seed * 1000 + self.draw)

    def for_iteration(self, k: int) -> RandomScorer:
        return RandomScorer(self.seed, draw=k)


class SNNLFairScorer(Scorer):
    """SNNL-Fair (Sensitive Channel Pruning): channels whose maps cluster by group score low and go first.

    `dataset` is the scoring data with the test transform
    (`equiprune.methods.scp.scoring_dataset`); see `scoring.snnl` for the
    variants. `null_check` is the premise check of the same settings.
    """

    name = "snnl"

    def __init__(self, dataset: Dataset, variant: str = "reference", batch_size: int = 128,
                 temperature: float = 1.0, progress: bool = True) -> None:
        self.dataset, self.variant, self.batch_size = dataset, variant, batch_size
        self.temperature, self.progress = temperature, progress

    def _kwargs(self) -> dict[str, Any]:
        return {"variant": self.variant, "batch_size": self.batch_size, "temperature": self.temperature,
                "progress": self.progress}

    def __call__(self, model: nn.Module, layer: str) -> np.ndarray:
        return np.asarray(_snnl.snnl_fair_scores(model, layer, self.dataset, **self._kwargs()), dtype=np.float64)

    def null_check(self, model: nn.Module, layer: str, draws: int = 4, seed: int = 0) -> _snnl.SNNLNullCheck:
        """The scores together with `draws` shuffled-group re-scorings, in one pass (`snnl_null_check`)."""
        return _snnl.snnl_null_check(model, layer, self.dataset, **self._kwargs(), draws=draws, seed=seed)


class HessianSaliencyScorer(Scorer):
    """FairPrune / OBD saliency, ``S = ½ θ² (H_unpriv − β H_priv)`` or ``½ θ² H``; the lowest go first.

    ``method="fairprune"`` needs the privileged and unprivileged group ids
    (per-group Hessians from each group's own samples, at most
    `max_samples_per_group` each; with β = 0 the privileged group's Hessian is
    not computed). ``method="obd"`` uses one Hessian over a seeded subset of
    ``max_samples_per_group × groups`` items (the same data budget).
    `parameter_saliency` gives the per-entry saliency (unstructured pruning);
    calling the scorer sums it per output channel over the layer's own weight
    and bias (the structured variant, an equiprune extension).
    """

    def __init__(self, dataset: Dataset, method: str = "fairprune", beta: float = 0.33, estimator: str = "fisher",
                 privileged: int | None = None, unprivileged: int | None = None,
                 max_samples_per_group: int | None = 512, balance: bool = False, batch_size: int = 32,
                 seed: int = 0, progress: bool = True) -> None:
        if method not in ("fairprune", "obd"):
            raise ScoringError(f"method must be 'fairprune' or 'obd', got {method!r}")
        if method == "fairprune" and (privileged is None or unprivileged is None):
            raise ScoringError("FairPrune needs the privileged and unprivileged group ids")
        self.dataset, self.method, self.beta, self.estimator = dataset, method, beta, estimator
        self.privileged, self.unprivileged = privileged, unprivileged
        self.max_samples_per_group, self.balance = max_samples_per_group, balance
        self.batch_size, self.seed, self.progress = batch_size, seed, progress
        self.name = method

    def _obd_subset(self) -> Dataset:
        """All of the data, or a seeded random subset of cap × groups items (FairPrune's data budget)."""
        if self.max_samples_per_group is None:
            return self.dataset
        groups = np.unique(np.asarray(_saliency._dataset_groups(self.dataset)))
        cap = self.max_samples_per_group * len(groups)
        if len(self.dataset) <= cap:  # type: ignore[arg-type]
            return self.dataset
        idx = np.sort(np.random.default_rng(self.seed).choice(len(self.dataset), size=cap, replace=False))  # type: ignore[arg-type]
        return Subset(self.dataset, idx.tolist())

    def parameter_saliency(self, model: nn.Module, params: Any = "weights") -> dict[str, Tensor]:
        """Saliency of every entry of the named parameters (`saliency.resolve_params` selection)."""
        names = _saliency.resolve_params(model, params)
        kw: dict[str, Any] = dict(estimator=self.estimator, params=names, batch_size=self.batch_size,
                                  progress=self.progress)
        if self.method == "obd":
            return _saliency.obd_saliency(model, _saliency.hessian_diagonal(model, self._obd_subset(),
                                                                            seed=self.seed, **kw))
        groups = (self.unprivileged,) if self.beta == 0 else (self.unprivileged, self.privileged)
        hs = _saliency.group_hessians(model, self.dataset, groups=groups,
                                      max_samples_per_group=self.max_samples_per_group, balance=self.balance,
                                      seed=self.seed, **kw)
        h_priv = hs.get(self.privileged, hs[self.unprivileged])  # unused when β = 0
        return _saliency.fairprune_saliency(model, hs[self.unprivileged], h_priv, beta=self.beta)

    def __call__(self, model: nn.Module, layer: str) -> np.ndarray:
        # Only the layer's own parameters are scored: the per-sample gradients stay small.
        module = model.get_submodule(layer)
        own = [f"{layer}.{n}" for n, _ in module.named_parameters(recurse=False) if n in ("weight", "bias")]
        return _saliency.channel_saliency(self.parameter_saliency(model, own), model, layer)


class SkewnessScorer(Scorer):
    """Label-free skewness of each channel's map over the image (SkewPrune); skin-like (negative) go first.

    A channel constant on every image has no skewness (NaN in `scoring.skewness`);
    the scorer returns it as −inf, i.e. first to go, as SkewPrune treats it by
    default. `score_pass` scores many layers and attention modules in one
    forward pass, with the in-pass SNNL-Fair premise check when asked.
    """

    name = "skewness"

    def __init__(self, dataset: Dataset, aggregate: str = "median", batch_size: int = 64, relu: bool = False,
                 after_bn: bool = True, const_tol: float = _skewness.DEFAULT_CONST_TOL,
                 max_images: int | None = None, head_query: str = "cls", progress: bool = True) -> None:
        self.dataset, self.aggregate, self.batch_size, self.relu = dataset, aggregate, batch_size, relu
        self.after_bn, self.const_tol, self.max_images = after_bn, const_tol, max_images
        self.head_query, self.progress = head_query, progress

    def score_pass(self, model: nn.Module, layers: Any = (), attention: Any = (), snnl: bool = False,
                   snnl_variant: str = "reference") -> _skewness.SkewnessScores:
        """`skewness_pass` over `layers` and `attention` with this scorer's settings."""
        return _skewness.skewness_pass(model, self.dataset, layers=layers, attention=attention,
                                       aggregate=self.aggregate, batch_size=self.batch_size, relu=self.relu,
                                       after_bn=self.after_bn, head_query=self.head_query,
                                       const_tol=self.const_tol, snnl=snnl, snnl_variant=snnl_variant,
                                       max_images=self.max_images, progress=self.progress)

    def __call__(self, model: nn.Module, layer: str) -> np.ndarray:
        scores = self.score_pass(model, layers=[layer]).channels[layer]
        return np.where(np.isnan(scores), -np.inf, scores)
