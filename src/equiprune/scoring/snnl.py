"""SNNL-Fair channel scores (Sensitive Channel Pruning).

For one batch of b images and one channel k of a layer's output, the b
flattened feature maps m_i = F[i, k].flatten() are scored by the soft nearest
neighbour loss (SNNL) with the sensitive GROUP as label. A low score means the
channel's features cluster by group: the channel is "sensitive" and is pruned.
Scores are averaged over batches of a fixed-order pass over the data.

Two variants (see docs/METRICS.md):

``reference`` -- what the published code computes (it produced the published
numbers). Per channel::

    c_ij   = <m_i, m_j> / (max(|m_i|, 1e-12) * max(|m_j|, 1e-12))
    e_ij   = exp(-(1 - c_ij) / T)                      (T = 1 by default)
    loss_i = -ln( (sum_{j: g_j = g_i} e_ij + 1e-9) / sum_{j != i} e_ij )
    score  = mean_i loss_i

The numerator includes j = i (e_ii = 1, or exp(-1/T) for an all-zero map,
whose normalised vector is zero), the denominator excludes it, 1e-9 is added
to the numerator only, natural log, mean over the batch. A batch holding one
group only is scored like any other (the formula stays defined; its loss is
slightly negative), as in the published code.

``paper`` -- Eq. 1 of the paper::

    d_ij   = |m_i - m_j|^2 / T
    loss_i = -ln( sum_{j != i, g_j = g_i} exp(-d_ij) / sum_{j != i} exp(-d_ij) )
    score  = mean_i loss_i

computed in log space (a log-sum-exp per group), because squared distances
of raw feature maps are in the hundreds and exp(-d) underflows. T defaults
to 1.0, the default of the published SNNL module. A sample that is the only
member of its group in the batch has an empty numerator (the formula is
undefined for it); it is left out of the mean, taken over the other samples.

Features come from `equiprune.engine.extract_features`, which stops the
forward pass after the scored layer.

Under torchrun the fixed-order batches are dealt round-robin: global batch k
(items k*b ... (k+1)*b - 1) goes to rank k % world_size. Each rank sums the
scores of its batches and counts them; both are all-reduced and divided, so
every rank gets the single-process mean over batches (up to float summation
order) and therefore cuts the same channels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from equiprune.engine import extract_features
from equiprune.engine.runtime import loader_workers
from equiprune.engine.distributed import (all_reduce_max, all_reduce_sum, is_distributed, progress_enabled,
                                          round_robin_batches, unwrap_model)

Variant = Literal["reference", "paper"]
VARIANTS: tuple[str, ...] = ("reference", "paper")

# F.normalize's default eps: the published code normalises with it.
_NORM_EPS = 1e-12
# Added to the numerator only, as in the published code.
_NUM_EPS = 1e-9
# Floor of shifted log-terms in the paper variant (see _paper_chunk).
_EXP_FLOOR = -80.0
# Elements of per-chunk temporaries (K_chunk x b x (b + d)); ~64 MB in float32.
_CHUNK_BUDGET = 1 << 24


class ScoringError(ValueError):
    """Inputs to a channel scorer do not fit (shapes, groups, data size)."""


def _check_inputs(features: Tensor, groups: Tensor, variant: str, temperature: float) -> None:
    if variant not in VARIANTS:
        raise ScoringError(f"unknown SNNL variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    if features.dim() < 2:
        raise ScoringError(
            f"features must be shaped [batch, channels, ...], got shape {tuple(features.shape)}")
    if groups.dim() != 1 or groups.shape[0] != features.shape[0]:
        raise ScoringError(
            f"groups must be a 1-D tensor with one entry per sample ({features.shape[0]}), "
            f"got shape {tuple(groups.shape)}")
    if features.shape[0] < 2:
        raise ScoringError("SNNL needs at least 2 samples in a batch (it compares pairs of samples)")
    if not temperature > 0 or not math.isfinite(temperature):
        raise ScoringError(f"temperature must be a positive finite number, got {temperature}")


class _Groups:
    """Group structure of one batch, built on the CPU (no device sync) then moved once."""

    def __init__(self, groups: Tensor, device: torch.device, dtype: torch.dtype) -> None:
        g = groups.detach().to("cpu").reshape(-1)
        _, inverse, counts = torch.unique(g, return_inverse=True, return_counts=True)
        self.has_peer_cpu = counts[inverse] > 1
        self.onehot = F.one_hot(inverse, len(counts)).to(device=device, dtype=dtype)
        self.index = inverse.reshape(1, -1, 1).to(device)
        # The paper variant works on samples sorted by group, so that each group
        # is a contiguous block of columns (the mean over samples is order-free).
        order = torch.argsort(inverse, stable=True)
        self.order = order.to(device)
        ends = torch.cumsum(counts, 0).tolist()
        self.blocks = list(zip([0] + ends[:-1], ends))
        self.sorted_index = inverse[order].reshape(1, -1, 1).to(device)
        self.sorted_has_peer = self.has_peer_cpu[order].to(device)
        self.num_with_peer = int(self.has_peer_cpu.sum())


def _any_peer(groups: Tensor) -> bool:
    g = groups.detach().to("cpu").reshape(-1)
    return bool(((g[:, None] == g[None, :]).sum(dim=1) > 1).any())


def _chunk_channels(b: int, d: int, num_channels: int, chunk_size: int | None) -> int:
    if chunk_size is not None:
        if chunk_size < 1:
            raise ScoringError(f"chunk_size must be at least 1, got {chunk_size}")
        return min(chunk_size, num_channels)
    per_channel = b * (b + d) * 3
    return max(1, min(num_channels, _CHUNK_BUDGET // max(1, per_channel)))


def _reference_chunk(x: Tensor, grp: _Groups, temperature: float) -> Tensor:
    """x: b x K x d -> K losses (published-code convention)."""
    xt = x.transpose(0, 1)
    # Gram matrix first, normalised afterwards: cos_ij = G_ij / (|m_i| |m_j|). This
    # reads the features once (a bmm) instead of writing a normalised copy first.
    e = torch.bmm(xt, xt.transpose(1, 2))
    inv = torch.diagonal(e, dim1=1, dim2=2).sqrt().clamp_min(_NORM_EPS).reciprocal()
    e.mul_(inv[:, :, None]).mul_(inv[:, None, :])
    e.sub_(1.0).div_(temperature).exp_()  # exp(-(1 - cos) / T)
    all_others = e.sum(dim=-1) - torch.diagonal(e, dim1=1, dim2=2)
    # Same-group sums (self included) for every group at once, then pick each sample's group.
    per_group = torch.matmul(e, grp.onehot)
    same_incl_self = per_group.gather(-1, grp.index.expand(e.shape[0], -1, -1)).squeeze(-1)
    return -torch.log((same_incl_self + _NUM_EPS) / all_others).mean(dim=-1)


def _paper_chunk(x: Tensor, grp: _Groups, temperature: float) -> Tensor:
    """x: b x K x d -> K losses (Eq. 1, squared Euclidean distance)."""
    x = x[grp.order]
    # Distances are translation invariant; centring first shrinks the norms and
    # so the cancellation error of |a|^2 + |b|^2 - 2ab.
    x = (x - x.mean(dim=0, keepdim=True)).transpose(0, 1)
    sq = (x * x).sum(dim=-1)
    logits = torch.bmm(x, x.transpose(1, 2))
    logits.mul_(-2.0).add_(sq[:, :, None]).add_(sq[:, None, :]).clamp_min_(0.0).mul_(-1.0 / temperature)
    torch.diagonal(logits, dim1=1, dim2=2).fill_(float("-inf"))  # j != i
    # Log-sum-exp over each group's block of columns, each with its own max, so
    # neither the numerator nor the denominator underflows (torch.logsumexp is
    # several times slower than this on CPU).
    per_group = []
    for start, stop in grp.blocks:  # a loop over groups (2 or a few), not channels
        block = logits[:, :, start:stop]
        peak = block.amax(dim=-1, keepdim=True)
        peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))  # i alone in its group
        # exp of < -80 adds < 2e-35 to a sum that is >= 1; clamping there keeps
        # exp off its slow subnormal path (9x slower on x86 CPUs).
        shifted = block.sub_(peak).clamp_min_(_EXP_FLOOR)
        per_group.append(shifted.exp_().sum(dim=-1).log_().add_(peak.squeeze(-1)))
    lse = torch.stack(per_group, dim=-1)
    log_den = torch.logsumexp(lse, dim=-1)
    log_num = lse.gather(-1, grp.sorted_index.expand(lse.shape[0], -1, -1)).squeeze(-1)
    loss_i = torch.where(grp.sorted_has_peer, log_den - log_num, torch.zeros((), dtype=x.dtype, device=x.device))
    return loss_i.sum(dim=-1) / grp.num_with_peer


def snnl_fair_batch(features: Tensor, groups: Tensor, variant: Variant = "reference",
                    temperature: float = 1.0, chunk_size: int | None = None) -> Tensor:
    """SNNL-Fair score of every channel of one batch.

    `features` is [b, K, ...] (a conv layer's output), `groups` [b] integer
    group labels. Returns a float tensor [K] on the features' device (float64
    if the features are float64, else float32). All channels are scored with
    batched matrix products, `chunk_size` channels at a time (automatic if
    None) to bound memory.
    """
    _check_inputs(features, groups, variant, temperature)
    b, k = features.shape[0], features.shape[1]
    dtype = torch.float64 if features.dtype == torch.float64 else torch.float32
    flat = features.detach().reshape(b, k, -1)
    d = flat.shape[-1]
    grp = _Groups(groups, flat.device, dtype)
    if variant == "paper" and grp.num_with_peer == 0:
        raise ScoringError(
            "paper-variant SNNL is undefined for this batch: no sample shares its group with another "
            "sample; use larger batches")
    step = _chunk_channels(b, d, k, chunk_size)
    out = torch.empty(k, dtype=dtype, device=flat.device)
    for start in range(0, k, step):
        x = flat[:, start:start + step].to(dtype)
        if variant == "reference":
            out[start:start + step] = _reference_chunk(x, grp, temperature)
        else:
            out[start:start + step] = _paper_chunk(x, grp, temperature)
    return out


def snnl_fair_scores(model: nn.Module, layer: str, dataset: Dataset, variant: Variant = "reference",
                     batch_size: int = 128, drop_last: bool = True, device: torch.device | str | None = None,
                     progress: bool = True, temperature: float = 1.0) -> np.ndarray:
    """Average SNNL-Fair score of each output channel of `layer` over `dataset`.

    The dataset is read in its given order (no shuffle) in batches of
    `batch_size`, the last partial batch dropped by default (as in the
    published code); pass the test-transform version of the data. Items are
    `(image, label, group, ...)`. Scores are the layer's raw output (for a
    conv: before its ReLU, like the published code scoring `features.18` of
    VGG-11). Returns float64 [K] in channel order; the lowest are the
    sensitive channels. Batches with fewer than 2 samples, and for the paper
    variant batches where no sample shares its group with another, are
    skipped (their loss is undefined).

    Under torchrun this is a collective call (every rank must make it): the
    batches are shared round-robin between the ranks and the sums and counts
    all-reduced, and every rank returns the same scores.
    """
    return _stream_scores(model, layer, dataset, variant, batch_size, drop_last, device, progress,
                          temperature, null_draws=0, seed=0)[0]


@dataclass
class SNNLNullCheck:
    """SNNL-Fair scores of a layer next to the same scores with the groups shuffled.

    The premise of Sensitive Channel Pruning is that some channels separate the
    groups. Scoring every batch again with its group labels permuted (same group
    sizes, no group structure) gives what a channel scores by chance;
    `separating` counts the channels scoring below the `quantile` of those chance
    scores (pooled over channels and draws), and `expected` is how many would by
    chance alone.
    """

    scores: np.ndarray          # [K] the real scores (what `snnl_fair_scores` returns)
    null_scores: np.ndarray     # [draws, K] scores with permuted groups
    quantile: float
    threshold: float            # the `quantile` of the pooled null scores
    separating: int             # channels with a real score below `threshold`
    expected: float             # quantile * K

    def to_dict(self) -> dict[str, object]:
        return {"null_scores": self.null_scores.tolist(), "quantile": self.quantile, "threshold": self.threshold,
                "separating": self.separating, "expected": self.expected}

    def advice(self) -> str:
        """What the count means for Sensitive Channel Pruning ("" when the premise looks plausible)."""
        k = len(self.scores)
        if self.separating <= max(2 * self.expected, 1.0):
            return ("no more channels separate the groups than chance would give: the SNNL-Fair ranking is "
                    "mostly noise here, and SCP cannot be expected to beat a random cut")
        if self.separating > k / 2:
            return ("most channels carry the groups: cutting a few of them leaves the information in the layer, "
                    "so SCP's premise (a few sensitive channels) does not hold here")
        return ""

    def sentence(self, layer: str) -> str:
        k = len(self.scores)
        return (f"{self.separating} of {k} channels of {layer} separate the groups beyond chance (SNNL-Fair below "
                f"the {100 * self.quantile:g}% quantile of {len(self.null_scores)} shuffled-group scorings; "
                f"{self.expected:.1f} expected by chance)")


def null_check_text(null: dict[str, object]) -> str:
    """A stored premise check (`SNNLNullCheck.to_dict` plus sentence and advice) in words."""
    return str(null["sentence"]) + (f"; {null['advice']}" if null.get("advice") else "")


def snnl_null_check(model: nn.Module, layer: str, dataset: Dataset, variant: Variant = "reference",
                    batch_size: int = 128, drop_last: bool = True, device: torch.device | str | None = None,
                    progress: bool = True, temperature: float = 1.0, draws: int = 4, seed: int = 0,
                    quantile: float = 0.01) -> SNNLNullCheck:
    """`snnl_fair_scores` plus `draws` scorings with each batch's groups permuted, in one forward pass.

    The permutation of a batch depends on `seed` and the batch's first item only,
    so the result is the same under torchrun as in one process.
    """
    if draws < 1:
        raise ScoringError(f"draws must be at least 1, got {draws}")
    if not 0.0 < quantile < 1.0:
        raise ScoringError(f"quantile must be in (0, 1), got {quantile}")
    scores, null = _stream_scores(model, layer, dataset, variant, batch_size, drop_last, device, progress,
                                  temperature, null_draws=draws, seed=seed)
    threshold = float(np.quantile(null, quantile))
    return SNNLNullCheck(scores=scores, null_scores=null, quantile=quantile, threshold=threshold,
                         separating=int((scores < threshold).sum()), expected=quantile * len(scores))


def check_score_batch(n: int, batch_size: int) -> None:
    """Refuse a batch size the scoring data cannot fill once (the last partial batch is dropped).

    Methods call it before they create a run folder, so the refusal leaves
    nothing behind that the corrected command would meet as "other settings".
    """
    if batch_size < 2:
        raise ScoringError(f"the scoring batch size must be at least 2, got {batch_size}")
    if n < batch_size:
        raise ScoringError(
            f"the scoring data has {n} images, fewer than one scoring batch of {batch_size} (the last partial "
            f"batch is dropped, as in the published code); lower the batch size to at most {n} "
            "(--score-batch-size on the command line, batch_size / score_batch_size in the API)")


def _stream_scores(model: nn.Module, layer: str, dataset: Dataset, variant: Variant, batch_size: int,
                   drop_last: bool, device: torch.device | str | None, progress: bool, temperature: float,
                   null_draws: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean over batches of the real scores [K] and of `null_draws` permuted-group scores [draws, K]."""
    n = len(dataset)  # type: ignore[arg-type]
    check_score_batch(n if drop_last else batch_size, batch_size)
    model = unwrap_model(model)
    try:
        model.get_submodule(layer)
    except AttributeError:
        raise ScoringError(f"model has no layer {layer!r}") from None
    if device is None:
        param = next(iter(model.parameters()), None)
        device = param.device if param is not None else torch.device("cpu")
    device = torch.device(device)
    # Exactly the batches of DataLoader(batch_size, shuffle=False, drop_last); one process takes them all.
    batches_here = round_robin_batches(n, batch_size, drop_last=drop_last)
    loader = DataLoader(dataset, batch_sampler=batches_here, pin_memory=device.type == "cuda",
                        num_workers=loader_workers(device, None))
    was_training = model.training
    model.eval()
    total: Tensor | None = None  # [1 + null_draws, K]
    batches = 0
    features = extract_features(model, layer, loader, device=device)
    try:
        with torch.inference_mode():
            stream = features
            if progress_enabled(progress):
                from tqdm.auto import tqdm
                stream = tqdm(stream, total=len(loader), desc=f"SNNL {layer}", leave=False)
            for (feats, _labels, groups), items in zip(stream, batches_here):
                # Skipped, as undefined: a batch of one sample (a drop_last=False tail), and
                # for the paper variant a batch where no sample shares its group.
                if feats.shape[0] < 2 or (variant == "paper" and not _any_peer(groups)):
                    continue
                rows = [snnl_fair_batch(feats, groups, variant=variant, temperature=temperature)]
                if null_draws:
                    gen = torch.Generator().manual_seed(seed * 1_000_003 + items[0])
                    for _ in range(null_draws):
                        perm = torch.randperm(len(groups), generator=gen).to(groups.device)
                        rows.append(snnl_fair_batch(feats, groups[perm], variant=variant, temperature=temperature))
                scores = torch.stack(rows).to(torch.float64)
                total = scores if total is None else total + scores
                batches += 1
    finally:
        features.close()  # its own clean-up (hook removal, train/eval mode) must run before ours
        model.train(was_training)
    if is_distributed():
        # A rank may have scored no batch (fewer batches than ranks): it learns the shape here.
        k = int(all_reduce_max(torch.tensor([0 if total is None else total.shape[1]]))[0])
        local = total.cpu().reshape(-1) if total is not None else torch.zeros((1 + null_draws) * k,
                                                                                dtype=torch.float64)
        summed = all_reduce_sum(torch.cat([local, torch.tensor([float(batches)], dtype=torch.float64)]))
        total, batches = summed[:-1].reshape(1 + null_draws, k), int(summed[-1])
        if batches == 0:
            total = None
    if total is None:
        raise ScoringError("no batch with at least 2 samples was scored; check the dataset and batch_size")
    mean = (total / batches).cpu().numpy()
    return mean[0], mean[1:]
