"""Fairness and accuracy numbers (docs/METRICS.md), FATE, bootstrap intervals, multi-group audits.

Pure numpy; torch tensors are accepted as inputs but torch is not imported.
The defaults reproduce the reference papers' metric routine number for number.
"""

from .bootstrap import (
    Interval,
    PairedInterval,
    bootstrap_ci,
    bootstrap_samples,
    paired_bootstrap,
)
from .fairness import GAP_LABELS, GAP_METRICS, METRIC_NAMES, FairnessResult, MetricsError, group_fairness
from .fate import FAIR_CRITERIA, FATE_CRITERIA, fate, fate_array, fate_samples, fate_scores, fate_scores_or_undefined
from .group_scores import (
    SCORE_LABELS,
    SCORE_METRICS,
    SCORE_SENSE,
    GroupScores,
    ScoreSettings,
    bootstrap_group_scores,
    group_scores,
    paired_group_scores,
)
from .multigroup import (
    PAIR_METRICS,
    TABLE_METRICS,
    IntersectedGroups,
    MultiGroupGaps,
    intersect_groups,
    multigroup_gaps,
    multigroup_table,
)
from .numbers import float_or_nan, format_float

__all__ = [
    "GAP_LABELS",
    "GAP_METRICS",
    "METRIC_NAMES",
    "FairnessResult",
    "MetricsError",
    "group_fairness",
    "FAIR_CRITERIA",
    "FATE_CRITERIA",
    "fate",
    "fate_array",
    "fate_samples",
    "fate_scores",
    "fate_scores_or_undefined",
    "Interval",
    "PairedInterval",
    "bootstrap_ci",
    "bootstrap_samples",
    "paired_bootstrap",
    "SCORE_LABELS",
    "SCORE_METRICS",
    "SCORE_SENSE",
    "GroupScores",
    "ScoreSettings",
    "bootstrap_group_scores",
    "group_scores",
    "paired_group_scores",
    "float_or_nan",
    "format_float",
    "PAIR_METRICS",
    "TABLE_METRICS",
    "IntersectedGroups",
    "MultiGroupGaps",
    "intersect_groups",
    "multigroup_gaps",
    "multigroup_table",
]
