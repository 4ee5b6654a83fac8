"""Influence and trimming as run folders: what `equiprune influence` and `trim` write.

The source is either a run folder (``--run``: its model's penultimate features)
or a feature table (``--features``: CSV or NPZ). The output folder holds
config.json (source and settings; re-running with the same ones resumes, other
ones are refused like every run folder), metrics.json, and the per-sample
tables:

* influence: ``influence.csv`` (one row per training sample, one column per
  impact function) and the ``influence`` section (impact values, head
  agreement, the rules of the explanation tree per impact function);
* trim: ``trim.csv`` (test metrics per method, seed and budget),
  ``removed.csv`` (removed counts per budget, group and class) and the ``trim``
  section; with ``finetune`` and a run source also model.pt, the run's model
  fine-tuned on the trimmed training split, so every verb can use it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..engine import RunDir
from .compute import InfluenceConfig, InfluenceResult, compute_influence, config_dict
from .table import FeatureTable, load_feature_table
from .trees import explain, interpretable_frame
from .trim import TrimConfig, TrimResult, trim_table

SECTION_INFLUENCE = "influence"
SECTION_TRIM = "trim"


@dataclass
class Source:
    """Where the features come from: exactly one of `run` and `features`."""

    run: str | None = None
    features: str | None = None
    label_column: str = "label"
    group_column: str = "group"
    split_column: str = "split"
    id_column: str | None = None
    group_map: dict[str, int] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if (self.run is None) == (self.features is None):
            raise ValueError("give exactly one of --run RUN and --features TABLE")

    def describe(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("run", "features"):
            if d[k] is not None:
                d[k] = str(Path(d[k]).resolve())
        return d

    def load(self) -> FeatureTable:
        if self.run is not None:
            from .run_features import features_from_run
            return features_from_run(self.run)
        return load_feature_table(self.features, label_column=self.label_column, group_column=self.group_column,
                                  split_column=self.split_column, id_column=self.id_column,
                                  group_map=self.group_map, seed=self.seed)


def _open(out: str | Path, kind: str, source: Source, settings: dict[str, Any]) -> RunDir:
    """The output folder; for a run source it is a child of that run (lineage, baseline)."""
    config: dict[str, Any] = {"kind": kind, "source": source.describe(), "settings": settings}
    if source.run is not None:
        from ..methods.runs import child_config, open_run
        parent = open_run(source.run)
        if Path(out).resolve() == parent.run.path.resolve():
            raise ValueError("--out must be a new folder, not the --run folder itself")
        config = {**child_config(parent, kind, settings), "source": source.describe()}
    rd = RunDir(out)
    rd.check_or_write_config(config, keys=["kind", "source", "settings"])
    return rd


def rules_for(table: FeatureTable, result: InfluenceResult, max_depth: int = 3) -> dict[str, list[dict]]:
    """The explanation tree's leaves per impact function, most harmful first."""
    tr = result.train_index
    frame = interpretable_frame(table.meta.iloc[tr].reset_index(drop=True),
                                pd.Series(np.asarray(table.classes)[table.y[tr]]),
                                pd.Series(np.asarray(table.group_names)[table.g[tr]]))
    out = {}
    for name, values in result.values.items():
        out[name] = [{"rule": r.text(name), "mean": r.mean_influence, "count": r.count}
                     for r in explain(values, frame, max_depth=max_depth)]
    return out


def influence_to_folder(source: Source, cfg: InfluenceConfig, out: str | Path) -> tuple[FeatureTable, InfluenceResult]:
    rd = _open(out, "influence", source, config_dict(cfg))
    table = source.load()
    result = compute_influence(table, cfg)
    result.frame(table).to_csv(rd.file("influence.csv.tmp"), index=False)
    rd.file("influence.csv.tmp").replace(rd.file("influence.csv"))
    section = {**result.summary(), "rules": rules_for(table, result),
               "classes": table.classes, "group_names": table.group_names,
               "removed_by_group": _negative_by_group(table, result)}
    rd.set_section(SECTION_INFLUENCE, section)
    rd.log(f"influence of {len(result.train_index)} training samples on {', '.join(cfg.impacts)} "
           f"({result.solver} solver, head val accuracy {result.head_val_accuracy:.3f})")
    return table, result


def _negative_by_group(table: FeatureTable, result: InfluenceResult) -> dict[str, dict[str, int]]:
    g = table.g[result.train_index]
    return {name: {table.group_names[k]: int(((v < 0) & (g == k)).sum()) for k in np.unique(g)}
            for name, v in result.values.items()}


def trim_to_folder(source: Source, cfg: TrimConfig, icfg: InfluenceConfig, out: str | Path,
                   progress: bool = True) -> TrimResult:
    settings = {"trim": asdict(cfg), "influence": config_dict(icfg)}
    rd = _open(out, "trim", source, settings)
    table = source.load()
    result = trim_table(table, cfg, icfg, progress=progress)
    for name, frame in (("trim.csv", result.rows), ("removed.csv", result.removed)):
        frame.to_csv(rd.file(name + ".tmp"), index=False)
        rd.file(name + ".tmp").replace(rd.file(name))
    rd.set_section(SECTION_TRIM, {"rows": result.rows.to_dict("records"),
                                  "removed": result.removed.to_dict("records"),
                                  "impact": cfg.impact, "classes": table.classes,
                                  "group_names": table.group_names,
                                  "n_train": int(len(result.influence.train_index)),
                                  "head_val_accuracy": result.influence.head_val_accuracy,
                                  "head_agreement": result.influence.head_agreement})
    rd.log(f"trimmed by {cfg.impact} influence at budgets {list(cfg.budgets)}; {len(result.rows)} refits")
    return result
