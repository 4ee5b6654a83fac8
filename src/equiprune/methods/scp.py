"""Sensitive Channel Pruning (Kong et al., MICCAI 2024) and its controls.

SCP scores every output channel of a layer by SNNL-Fair (the soft nearest
neighbour loss of the channel's feature maps with the GROUP as the label; a
low score means the channel separates the groups) and cuts the lowest, then
fine-tunes, inside the loop of `prune_loop`. The controls run the very same
loop and fine-tuning with another choice of channels: `random`, `l1` (the
smallest-magnitude filters) and `none` (fine-tune only, nothing cut), so that
what SNNL adds can be told apart from what pruning as such, or the extra
training, does.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ..data import scoring_dataset
from ..engine import RunDir
from ..scoring import (ChannelScorer, ConsensusScorer, FixedScores, KnownFirst, L1Scorer, RandomScorer,
                       SNNLFairScorer, check_score_batch, null_check_text)
from ..scoring.dead import LiveFirst
from ..surgery import layer_out_channels
from .prune_loop import KEEPS_ZEROS, LoopConfig, LoopResult, channels_to_cut, run_prune_loop

SCORERS = ("snnl", "random", "l1", "none")
SCORER_LABELS = {"snnl": "SCP (SNNL-Fair)", "random": "random channels", "l1": "L1-magnitude channels",
                 "none": "fine-tune only"}


@dataclass
class SCPConfig(LoopConfig):
    """Loop settings plus how channels are scored."""

    scorer: str = "snnl"            # snnl | random | l1 | none (the controls)
    variant: str = "reference"      # SNNL-Fair variant: reference (published code) | paper (Eq. 1)
    temperature: float = 1.0        # paper variant only
    score_split: str = "train"      # which split (with the test transform) the scores are computed on
    score_batch_size: int = 128     # the reference batching: fixed order, last partial batch dropped
    null_draws: int = 4             # premise check: re-score the start model with shuffled groups (0: off)
    consensus: int = 0              # > 1: score on this many bootstrap resamples, cut only channels most agree on
    tau: float = 0.5                # consensus: share of resamples that must choose a channel for it to be cut

    def validate(self) -> None:
        super().validate()
        if self.scorer not in SCORERS:
            raise ValueError(f"scorer must be one of {SCORERS}, got {self.scorer!r}")
        if self.variant not in ("reference", "paper"):
            raise ValueError(f"variant must be 'reference' or 'paper', got {self.variant!r}")
        if self.null_draws < 0:
            raise ValueError(f"null_draws must be >= 0 (0 turns the premise check off), got {self.null_draws}")
        if self.consensus == 1 or self.consensus < 0:
            raise ValueError(f"consensus must be 0 (off) or at least 2 bootstrap resamples, got {self.consensus}")
        if not 0 < self.tau <= 1:
            raise ValueError(f"tau must be in (0, 1], got {self.tau}")
        if self.consensus and self.scorer != "snnl":
            raise ValueError("consensus applies to the SNNL-Fair scorer only (scorer 'snnl')")
        if self.score_split not in ("train", "val"):
            raise ValueError(f"score_split must be 'train' or 'val', got {self.score_split!r}")


@dataclass
class SCPResult:
    """The selected model, the loop's evidence and the SNNL-Fair scores before and after."""

    loop: LoopResult
    config: SCPConfig
    scores_before: np.ndarray | None
    scores_after: np.ndarray | None
    null: dict[str, Any] | None = None  # the premise check (`snnl_null_check`) of the start model

    @property
    def model(self) -> nn.Module:
        return self.loop.model


def check_layer(model: nn.Module, layer: str | None) -> str:
    """The conv layer to score and cut (`layer`, or the last conv); SurgeryError names the valid ones."""
    from ..models import last_conv_name
    name = layer or last_conv_name(model)
    layer_out_channels(model, name)
    return name


def make_scorer(splits: Any, cfg: SCPConfig) -> ChannelScorer | None:
    """The channel scorer the config asks for (None for the fine-tune-only control)."""
    if cfg.scorer == "none":
        return None
    if cfg.scorer == "random":
        return RandomScorer(seed=cfg.seed)
    if cfg.scorer == "l1":  # live channels first: cutting dead (all-zero) filters would change nothing
        return LiveFirst(L1Scorer(), scoring_dataset(splits, cfg.score_split))
    if cfg.consensus:
        return ConsensusScorer(scoring_dataset(splits, cfg.score_split), rounds=cfg.consensus, tau=cfg.tau,
                               seed=cfg.seed, k=lambda channels: channels_to_cut(channels, cfg),
                               snnl={"variant": cfg.variant, "batch_size": cfg.score_batch_size,
                                     "temperature": cfg.temperature, "progress": cfg.progress})
    return snnl_scorer(splits, cfg)


def snnl_scorer(splits: Any, cfg: SCPConfig) -> SNNLFairScorer:
    """SNNL-Fair as `cfg` asks for it: the data and batching of every scoring pass."""
    return SNNLFairScorer(scoring_dataset(splits, cfg.score_split), variant=cfg.variant,
                          batch_size=cfg.score_batch_size, temperature=cfg.temperature, progress=cfg.progress)


def run_scp(model: nn.Module, splits: Any, cfg: SCPConfig, run_dir: str | Path | RunDir | None = None,
            arch: dict[str, Any] | None = None, scores_before: np.ndarray | None = None) -> SCPResult:
    """Sensitive Channel Pruning (or a control, by `cfg.scorer`) of `model`.

    The FATE baseline is `model` as given: SCP on top of another method's
    checkpoint is measured against that checkpoint. With `run_dir`, every
    iteration is saved and an interrupted run resumes. `scores_before`, the
    SNNL-Fair scores of `model`'s layer if already known (the controls of one
    baseline share them), saves one pass over the scoring data.
    """
    cfg.validate()
    scorer = make_scorer(splits, cfg)
    rd = run_dir if isinstance(run_dir, RunDir) or run_dir is None else RunDir(run_dir)
    snnl = snnl_scorer(splits, cfg)  # the plots' before/after scores, whatever `cfg.scorer` cuts by
    from ..models import last_conv_name
    layer = cfg.layer or last_conv_name(model)
    stored = (rd.read_metrics().get("snnl_scores") if rd is not None else None) or {}
    if stored.get("layer") != layer or stored.get("variant") != cfg.variant:
        stored = {}  # written only when a run finishes, so present = this run is done
    before = np.asarray(stored["before"]) if stored else scores_before
    null = stored.get("null")
    if before is None and cfg.null_draws > 0:
        # The same forward pass also scores shuffled groups: does any channel separate them beyond chance?
        check = snnl.null_check(model, layer, draws=cfg.null_draws, seed=cfg.seed)
        before, null = check.scores, {**check.to_dict(), "sentence": check.sentence(layer),
                                      "advice": check.advice()}
        if rd is not None:
            rd.log(f"premise check: {null_check_text(null)}", echo=cfg.progress)
    elif before is None:
        before = snnl(model, layer)
    before = FixedScores(before)(model, layer)  # checks the length against the layer
    if cfg.scorer == "snnl" and not cfg.consensus:
        # Iteration 1 scores the start model, which `before` already did.
        scorer = KnownFirst(snnl, before, at=1)
    loop = run_prune_loop(model, splits, cfg, scorer, run_dir=rd, arch=arch)
    after = np.asarray(stored["after"] if stored.get("after") is not None else snnl(loop.model, loop.layer))
    if rd is not None:
        rd.set_section("snnl_scores", {"layer": loop.layer, "before": before.tolist(), "after": after.tolist(),
                                       "variant": cfg.variant, "null": null})
    return SCPResult(loop=loop, config=cfg, scores_before=before, scores_after=after, null=null)


def scp_from_run(parent_path: str | Path, cfg: SCPConfig, out: str | Path,
                 scores_before: np.ndarray | None = None) -> SCPResult:
    """`equiprune prune scp`: SCP (or a control) of the model in a run folder, into a new run folder.

    `scores_before`: the parent's SNNL-Fair scores of the layer, if known (see `run_scp`).
    """
    from .runs import save_run_model, start_child_run

    cfg = replace(cfg)  # our own copy: the parent may switch keep_zeros on below

    def check(run: Any) -> None:
        check_layer(run.model, cfg.layer)
        # SNNL-Fair scores the layer before and after whatever the scorer (the plots), so always.
        check_score_batch(len(scoring_dataset(run.splits(), cfg.score_split)), cfg.score_batch_size)
        if run.extra.get(KEEPS_ZEROS) and not cfg.keep_zeros:
            # An unstructured-pruned parent (FairPrune/OBD): its zeros are its method, fine-tuning must keep them.
            cfg.keep_zeros = True

    parent, rd = start_child_run(parent_path, out, kind=f"scp-{cfg.scorer}", settings=cfg, check=check,
                                 method=SCORER_LABELS[cfg.scorer])
    splits = parent.splits()
    result = run_scp(parent.model, splits, cfg, run_dir=rd, arch=parent.arch, scores_before=scores_before)
    save_run_model(rd, result.model, parent.arch, {
        **parent.extra, "surgery": cfg.surgery, "layer": result.loop.layer, "best_iter": result.loop.best_iter,
        "channels_removed": result.loop.channels_removed})
    rd.set_section("selection", {"best_iter": result.loop.best_iter, "stop_reason": result.loop.stop_reason,
                                 "channels_removed": result.loop.channels_removed, "layer": result.loop.layer,
                                 "surgery": cfg.surgery, "select_on": cfg.select_on})
    return result
