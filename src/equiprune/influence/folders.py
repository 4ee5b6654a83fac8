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

from ..data.atomic import atomic_write
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
    val_from: str | None = None   # validation split from a target domain (thesis §4.2.5.1)

    def __post_init__(self) -> None:
        if (self.run is None) == (self.features is None):
            raise ValueError("give exactly one of --run RUN and --features TABLE")

    def describe(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("run", "features", "val_from"):
            if d[k] is not None:
                d[k] = str(Path(d[k]).resolve())
        return d

    def load(self) -> FeatureTable:
        table = self._load_base()
        return table if self.val_from is None else with_validation_from(table, self._load_val())

    def _load_base(self) -> FeatureTable:
        if self.run is not None:
            from .run_features import features_from_run
            return features_from_run(self.run)
        return load_feature_table(self.features, label_column=self.label_column, group_column=self.group_column,
                                  split_column=self.split_column, id_column=self.id_column,
                                  group_map=self.group_map, seed=self.seed)

    def _load_val(self) -> FeatureTable:
        """The target domain's rows: a feature table's every row, or a run folder's validation split.

        A run folder given with --run is read through *this* run's model (the
        other run only supplies its data), so the features live in one space.
        """
        path = Path(self.val_from)
        if path.is_dir():
            if self.run is None:
                raise ValueError("--val-from a run folder needs --run (its images go through that run's model)")
            from ..methods.runs import open_run
            from .run_features import penultimate
            own, other = open_run(self.run), open_run(path)
            ds = other.splits().val
            X, pred = penultimate(own.model, ds)
            return FeatureTable(X, ds.labels, ds.groups, np.full(len(ds), "val"),
                                np.asarray([f"val-from:{i}" for i in range(len(ds))]), [], [], source=str(path),
                                network_pred=pred)
        t = load_feature_table(path, label_column=self.label_column, group_column=self.group_column,
                               split_column=None, id_column=self.id_column, group_map=self.group_map)
        t.split = np.full(len(t.y), "val")
        return t


def with_validation_from(table: FeatureTable, target: FeatureTable) -> FeatureTable:
    """`table` with its validation rows replaced by `target`'s rows (same feature columns)."""
    if target.X.shape[1] != table.X.shape[1]:
        raise ValueError(f"--val-from {target.source}: {target.X.shape[1]} feature columns, but the training "
                         f"features have {table.X.shape[1]}")
    keep = table.split != "val"
    meta = pd.concat([table.meta[keep].reset_index(drop=True),
                      pd.DataFrame(index=range(len(target.y)))], ignore_index=True)
    net = None
    if table.network_pred is not None and target.network_pred is not None:
        net = np.r_[table.network_pred[keep], target.network_pred]
    return FeatureTable(np.vstack([table.X[keep], target.X]), np.r_[table.y[keep], target.y],
                        np.r_[table.g[keep], target.g], np.r_[table.split[keep], target.split],
                        np.r_[table.ids[keep], target.ids], table.classes, table.group_names, meta,
                        f"{table.source} (validation from {target.source})", net)


def _open(out: str | Path, kind: str, source: Source, settings: dict[str, Any]) -> RunDir:
    """The output folder: for a run source a child of that run (lineage, baseline) via the one child-run entry."""
    if source.run is not None:
        from ..methods.runs import start_child_run
        _, rd = start_child_run(source.run, out, kind, settings, verb=kind, source=source.describe())
        return rd
    rd = RunDir(out)
    rd.check_or_write_config({"kind": kind, "source": source.describe(), "settings": settings},
                             keys=["kind", "source", "settings"])
    return rd


def write_csv(rd: RunDir, name: str, frame: pd.DataFrame) -> Path:
    """`frame` as rd/name, atomically (a unique temporary name, renamed when complete)."""
    return atomic_write(rd.file(name), lambda tmp: frame.to_csv(tmp, index=False))


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
    write_csv(rd, "influence.csv", result.frame(table))
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


@dataclass
class FinetuneSpec:
    """Fine-tune the run's model without the images trimmed at `budget` (``--finetune-budget``).

    With `controls`, also without random images of the same count (one run per
    seed of `random_seeds`), without the utility-influence images, and with
    nothing removed (fine-tune only): subfolders of the trim folder.
    """

    budget: float
    controls: bool = False
    random_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)   # the five random-trimming controls
    epochs: int | None = None


def trim_to_folder(source: Source, cfg: TrimConfig, icfg: InfluenceConfig, out: str | Path,
                   progress: bool = True, finetune: FinetuneSpec | None = None) -> TrimResult:
    if finetune is not None and source.run is None:
        raise ValueError("--finetune-budget needs --run: a feature table has no model to fine-tune "
                         "(its head is refitted at every budget already)")
    if finetune is not None and finetune.budget not in cfg.budgets:
        cfg.budgets = tuple(sorted(set(cfg.budgets) | {finetune.budget}))
    settings = {"trim": asdict(cfg), "influence": config_dict(icfg)}
    rd = _open(out, "trim", source, settings)
    table = source.load()
    result = trim_table(table, cfg, icfg, progress=progress)
    for name, frame in (("trim.csv", result.rows), ("removed.csv", result.removed)):
        write_csv(rd, name, frame)
    rd.set_section(SECTION_TRIM, {"rows": result.rows.to_dict("records"),
                                  "removed": result.removed.to_dict("records"),
                                  "impact": cfg.impact, "classes": table.classes,
                                  "group_names": table.group_names,
                                  "n_train": int(len(result.influence.train_index)),
                                  "head_val_accuracy": result.influence.head_val_accuracy,
                                  "head_agreement": result.influence.head_agreement})
    rd.log(f"trimmed by {cfg.impact} influence at budgets {list(cfg.budgets)}; {len(result.rows)} refits")
    if finetune is not None:
        result.finetuned = finetune_runs(source.run, result, cfg, finetune, rd.path)
        rd.set_section("finetuned", {k: str(v) for k, v in result.finetuned.items()})
    return result


def finetune_runs(run: str, result: TrimResult, cfg: TrimConfig, spec: FinetuneSpec, out: Path) -> dict[str, Path]:
    """The fine-tuned run folders (influence-trimmed, and the controls with `spec.controls`)."""
    from .finetune import FinetuneTrimConfig, default_finetune, finetune_without
    from .trim import select_rows
    tr = result.influence.train_index
    positions = lambda rows: np.searchsorted(tr, rows).tolist()  # noqa: E731  (train rows come first, in order)
    ft = default_finetune()
    if spec.epochs is not None:
        ft.epochs = spec.epochs
    drop = positions(result.removed_rows[spec.budget])
    plans = {f"finetuned-{cfg.impact}": (drop, f"influence-{cfg.impact}")}
    if spec.controls:
        plans["finetune-only"] = ([], "finetune-only")
        util = result.influence.values.get("utility")
        if util is not None and cfg.impact != "utility":
            same_count = select_rows(util, len(drop), np.zeros(len(tr), int), cfg.cap_at_negative)
            plans["finetuned-utility"] = (same_count.tolist(), "influence-utility")
        for s in spec.random_seeds:
            plans[f"finetuned-random-{s}"] = (np.random.default_rng(s).choice(len(tr), len(drop), replace=False)
                                              .tolist(), f"random-{s}")
    out_paths = {}
    for name, (rows, label) in plans.items():
        out_paths[name] = finetune_without(run, FinetuneTrimConfig(drop=rows, label=label, finetune=ft), out / name)
    return out_paths
