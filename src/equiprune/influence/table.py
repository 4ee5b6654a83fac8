"""Feature tables: what influence, trimming and (later) clustering work on.

A feature table is one row per sample: numeric features, a label, a 0/1 group
and a split (train / val / test), plus any metadata columns kept for the
explanation trees. It comes from a user's CSV or NPZ file (the thesis's own
tabular setting) or from a run folder: the penultimate-layer features of the
run's model on un-augmented images (``features_from_run``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test")


class FeatureTableError(ValueError):
    """A feature table that cannot be used; the message names the file, the column and the fix."""


@dataclass
class FeatureTable:
    X: np.ndarray                 # (n, D) float64
    y: np.ndarray                 # (n,) int64 class index
    g: np.ndarray                 # (n,) int64 group code (0/1 for the fairness impacts)
    split: np.ndarray             # (n,) str: train / val / test
    ids: np.ndarray               # (n,) str: a name per row (image path or row number)
    classes: list[str]
    group_names: list[str]
    meta: pd.DataFrame = field(default_factory=pd.DataFrame)  # interpretable columns, one row per sample
    source: str = ""
    network_pred: np.ndarray | None = None  # the run model's own predictions (for head agreement)

    def __post_init__(self) -> None:
        self.X = np.asarray(self.X, dtype=np.float64)
        self.y = np.asarray(self.y, dtype=np.int64)
        self.g = np.asarray(self.g, dtype=np.int64)
        self.split = np.asarray(self.split).astype(str)
        self.ids = np.asarray(self.ids).astype(str)
        if self.meta.empty:
            self.meta = pd.DataFrame(index=range(len(self.y)))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def mask(self, split: str) -> np.ndarray:
        return self.split == split

    def part(self, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        m = self.mask(split)
        return self.X[m], self.y[m], self.g[m]

    def check(self, need_two_groups: bool = True) -> None:
        src = self.source or "the feature table"
        if not np.isfinite(self.X).all():
            bad = np.argwhere(~np.isfinite(self.X))[0]
            raise FeatureTableError(f"{src}: feature {bad[1]} of row {self.ids[bad[0]]} is NaN or infinite; "
                                    "drop or impute those rows first")
        for s in ("train", "val"):
            if not self.mask(s).any():
                raise FeatureTableError(f"{src}: no row is in the {s!r} split; influence needs train and val "
                                        "rows (give a split column with values train/val/test)")
        if need_two_groups:
            for s in ("train", "val"):
                present = set(np.unique(self.g[self.mask(s)]).tolist())
                if present != {0, 1}:
                    raise FeatureTableError(
                        f"{src}: the {s} split has groups {sorted(present)}; the fairness impact functions "
                        "compare two groups coded 0 and 1 (pass --group-map to code a many-valued column)")


def _code(values: pd.Series, what: str, src: str, mapping: dict[str, int] | None = None
          ) -> tuple[np.ndarray, list[str]]:
    if values.isna().any():
        row = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise FeatureTableError(f"{src}: column {values.name!r} ({what}) is empty in row {row}; fill or drop it")
    if mapping:
        keys = values.astype(str)
        unknown = sorted(set(keys) - set(mapping))
        if unknown:
            raise FeatureTableError(f"{src}: {what} value(s) {unknown[:5]} are not in the map {mapping}")
        codes = keys.map(mapping).to_numpy(dtype=np.int64)
        names = [next((k for k, v in mapping.items() if v == c), str(c)) for c in range(max(mapping.values()) + 1)]
        return codes, names
    uniq = sorted(values.unique().tolist(), key=lambda v: (str(type(v)), v))
    if all(isinstance(u, (int, np.integer)) for u in uniq) and uniq and min(uniq) >= 0 and max(uniq) < 1000:
        return values.to_numpy(dtype=np.int64), [str(i) for i in range(int(max(uniq)) + 1)]
    lookup = {v: i for i, v in enumerate(uniq)}
    return values.map(lookup).to_numpy(dtype=np.int64), [str(u) for u in uniq]


def random_split(n: int, y: np.ndarray, seed: int = 0, fractions: tuple[float, float] = (0.6, 0.2)) -> np.ndarray:
    """A stratified 60/20/20 train/val/test split for a table that has none."""
    from sklearn.model_selection import train_test_split
    idx = np.arange(n)
    strat = y if np.bincount(y).min() >= 3 else None
    tr, rest = train_test_split(idx, train_size=fractions[0], random_state=seed, stratify=strat)
    val_share = fractions[1] / (1 - fractions[0])
    va, te = train_test_split(rest, train_size=val_share, random_state=seed,
                              stratify=y[rest] if strat is not None else None)
    out = np.empty(n, dtype=object)
    out[tr], out[va], out[te] = "train", "val", "test"
    return out.astype(str)


def table_from_frame(df: pd.DataFrame, label_column: str = "label", group_column: str = "group",
                     split_column: str | None = "split", id_column: str | None = None,
                     feature_columns: Sequence[str] | None = None, group_map: dict[str, int] | None = None,
                     seed: int = 0, source: str = "the feature table") -> FeatureTable:
    """Build a table from a DataFrame; features default to every numeric column not used otherwise."""
    for col, what in ((label_column, "--label-column"), (group_column, "--group-column")):
        if col not in df.columns:
            raise FeatureTableError(f"{source}: no column {col!r} (set {what}); columns are {list(df.columns)[:12]}")
    if len(df) == 0:
        raise FeatureTableError(f"{source}: the table has no rows")
    used = {label_column, group_column, split_column, id_column}
    if feature_columns:
        missing = [c for c in feature_columns if c not in df.columns]
        if missing:
            raise FeatureTableError(f"{source}: feature column(s) {missing[:5]} not found")
        feats = list(feature_columns)
    else:
        feats = [c for c in df.columns if c not in used and pd.api.types.is_numeric_dtype(df[c])]
    if not feats:
        raise FeatureTableError(f"{source}: no numeric feature column (columns: {list(df.columns)[:12]})")
    non_numeric = [c for c in feats if not pd.api.types.is_numeric_dtype(df[c])]
    if non_numeric:
        raise FeatureTableError(f"{source}: feature column {non_numeric[0]!r} is not numeric; encode it or leave "
                                "it out of --feature-columns")
    y, classes = _code(df[label_column], "label", source)
    g, group_names = _code(df[group_column], "group", source, group_map)
    if split_column and split_column in df.columns:
        split = df[split_column].astype(str).str.lower().to_numpy()
        bad = sorted(set(split) - set(SPLITS))
        if bad:
            raise FeatureTableError(f"{source}: column {split_column!r} has value(s) {bad[:5]}; "
                                    "use train, val and test")
    else:
        split = random_split(len(df), y, seed)
    meta_cols = [c for c in df.columns if c not in feats and c not in {split_column, id_column}]
    meta = df[meta_cols].reset_index(drop=True).copy()
    ids = df[id_column].astype(str).to_numpy() if id_column and id_column in df.columns else np.arange(len(df)).astype(str)
    return FeatureTable(df[feats].to_numpy(dtype=np.float64), y, g, split, ids, classes, group_names, meta, source)


def load_feature_table(path: str | Path, **kwargs) -> FeatureTable:
    """A CSV (columns as in `table_from_frame`) or an NPZ with arrays X, y, g and optionally split, ids."""
    path = Path(path)
    if not path.exists():
        raise FeatureTableError(f"feature table {path} does not exist")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("X", "y", "g") if k not in z.files]
            if missing:
                raise FeatureTableError(f"{path}: the NPZ file has no array(s) {missing} (it has {z.files}); "
                                        "save features as X, labels as y, groups as g")
            X, y, g = z["X"], z["y"], z["g"]
            split = z["split"] if "split" in z.files else None
            ids = z["ids"] if "ids" in z.files else None
        df = pd.DataFrame(np.asarray(X, dtype=np.float64), columns=[f"f{i}" for i in range(np.asarray(X).shape[1])])
        df["label"], df["group"] = y, g
        if split is not None:
            df["split"] = split
        if ids is not None:
            df["id"] = ids
        kw = {k: v for k, v in kwargs.items() if k in ("group_map", "seed")}
        return table_from_frame(df, "label", "group", "split", "id" if ids is not None else None,
                                source=str(path), **kw)
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise FeatureTableError(f"{path}: not a readable CSV ({exc})") from None
    return table_from_frame(df, source=str(path), **kwargs)
