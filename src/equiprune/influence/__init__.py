"""Which training samples drive a model's metrics: influence functions and data trimming (thesis §4.2).

The thesis's method on a convex head over fixed features — the penultimate
features of any run, or a user's feature table:

* `compute_influence` (S1): per-sample influence on the validation loss, the
  thesis's DP and EOP, soft Eopp0 / Eopp1 / Eodd, and adversarial loss;
* `trees.explain` (S2): rules on interpretable metadata that say where the
  harmful samples are;
* `trim_table` (S3): Algorithm 5 with random and utility-trimming controls,
  per-group caps and a down-weighting mode;
* `influence_to_folder` / `trim_to_folder`: the run folders of the CLI verbs.
"""
from .compute import InfluenceConfig, InfluenceResult, compute_influence, leave_one_out
from .folders import FinetuneSpec, Source, influence_to_folder, trim_to_folder
from .head import LogisticHead, fit_head
from .impact import IMPACTS
from .table import FeatureTable, FeatureTableError, load_feature_table, table_from_frame
from .trim import TrimConfig, TrimResult, select_rows, trim_table

__all__ = ["FinetuneSpec", "IMPACTS", "FeatureTable", "FeatureTableError", "InfluenceConfig", "InfluenceResult", "LogisticHead",
           "Source", "TrimConfig", "TrimResult", "compute_influence", "fit_head", "influence_to_folder",
           "leave_one_out", "load_feature_table", "select_rows", "table_from_frame", "trim_table",
           "trim_to_folder"]
