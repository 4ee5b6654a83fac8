"""One score per channel / head: SNNL-Fair, skewness, Hessian saliency, L1 magnitude, random.

Every channel scorer returns a 1-D float64 numpy array in channel order, the
lowest cut first. The scorer objects of `scorers` (built with their data and
settings, called as ``scorer(model, layer)``) are the contract the pruning
loop and every method use; the functions below are what they compute.
"""
from .consensus import ConsensusScorer
from .saliency import (SaliencyError, channel_saliency, fairprune_saliency, group_hessians, hessian_diagonal,
                       obd_saliency, select_smallest)
from .simple import l1_channel_scores, random_channel_scores
from .skewness import (SkewnessAccumulator, SkewnessScores, premise_summary, skewness_channel_scores,
                       skewness_head_scores, skewness_pass, spatial_skewness, spearman)
from .scorers import (ChannelScorer, FixedScores, HessianSaliencyScorer, KnownFirst, L1Scorer, Negated,
                      RandomScorer, Scorer, ScoreFn, SkewnessScorer, SNNLFairScorer, out_channels, scorer_at)
from .snnl import (VARIANTS, ScoringError, SNNLNullCheck, check_score_batch, null_check_text, snnl_fair_batch, snnl_fair_scores,
                   snnl_null_check)

__all__ = [
    "ChannelScorer", "ConsensusScorer", "FixedScores", "HessianSaliencyScorer", "KnownFirst", "L1Scorer", "Negated", "RandomScorer",
    "SNNLFairScorer", "ScoreFn", "Scorer", "SkewnessScorer", "out_channels", "scorer_at",
    "SaliencyError", "ScoringError", "check_score_batch", "SkewnessAccumulator", "SkewnessScores", "VARIANTS", "channel_saliency",
    "fairprune_saliency", "group_hessians", "hessian_diagonal", "l1_channel_scores", "obd_saliency",
    "premise_summary", "random_channel_scores", "select_smallest", "skewness_channel_scores",
    "skewness_head_scores", "skewness_pass", "snnl_fair_batch", "snnl_fair_scores", "spatial_skewness", "spearman",
]
