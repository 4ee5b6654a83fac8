"""Loaders: metadata tables -> checked split tables -> cached images -> ``DataSplits``.

``load_tables(cfg)`` reads and checks the metadata only (labels, groups,
splits; no image is opened). ``load_splits(cfg)`` adds the image checks
(missing / corrupt files), the decode cache and the transforms.

Reference conventions (docs/METRICS.md):

* Fitzpatrick-17k: classes of the ``low`` (114) / ``mid`` (9) / ``high`` (3)
  level; the label-name -> index mapping is read from the ``low``/``mid``/
  ``high`` columns of the papers' validation and test tables (and checked to
  be one-to-one); the training rows are the rows of ``fitzpatrick17k.csv``
  whose ``md5hash`` is in neither. Group 0 = types I-III, group 1 = IV-VI and
  unknown (-1). Images: ``<root>/<md5hash>.jpg``.
* ISIC 2019: the three split tables; label ``low`` (0-7, classes MEL NV BCC
  AK BKL DF VASC SCC), group ``gender`` (1 male, 0 female). Images:
  ``<root>/<image>.jpg``.
* HAM10000: ``HAM10000_metadata.csv``; label ``dx``; group ``sex`` (male 1,
  female 0; rows with unknown sex dropped with a warning); split by
  ``lesion_id`` (a lesion never spans two splits), stratified by dx x sex,
  seeded. Images: ``<root>/**/<image_id>.jpg``.
* csv: any table with image / label / group (and optional split) columns.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .cache import NpyImages, build_image_cache
from .config import DataConfig
from .dataset import DataSplits, GroupDataset, stratified_split
from .errors import DataError
from .overlap import check_overlap, overlaps, path_keys, pixel_hashes
from .skin_tone import add_skin_tone_columns, estimate_skin_tone, ita_group_names, regroup_by_ita
from .synthderm import generate_synthderm
from .transforms import build_transforms

__all__ = ["SplitTables", "GroupCoding", "synthderm_coding", "load_tables", "load_splits", "check_two_groups", "group_column", "ISIC_CLASSES",
           "FITZPATRICK_GROUP_MAP", "DEFAULT_GROUP_COLUMN", "NpyImages"]

SPLITS = ("train", "val", "test")
ISIC_CLASSES = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC"]
#: Fitzpatrick type -> group of the reference code (unknown type -1 joins the dark group).
FITZPATRICK_GROUP_MAP = {"1": 0, "2": 0, "3": 0, "4": 1, "5": 1, "6": 1, "-1": 1}
FITZPATRICK_GROUP_NAMES = ["light (I-III)", "dark (IV-VI or unknown)"]
SEX_GROUP_MAP = {"female": 0, "male": 1}
#: The group column each real dataset reads when DataConfig.group_column is None.
DEFAULT_GROUP_COLUMN = {"fitzpatrick17k": "fitzpatrick", "isic2019": "gender", "ham10000": "sex", "csv": "group"}
_FITZ_LEVEL_COLUMN = {"low": "label", "mid": "nine_partition_label", "high": "three_partition_label"}
_SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "vali": "val", "dev": "val",
    "test": "test", "testing": "test",
}


@dataclass
class SplitTables:
    """Checked metadata of the three splits (no images opened yet).

    Each table has at least ``label`` (int), ``class_name``, ``group`` (int)
    and ``image`` (file name relative to the image folder) plus the source
    columns (a source column called ``label`` is replaced by the index).
    ``expected`` describes the file names for error messages.
    """

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    classes: list[str]
    group_names: list[str]
    expected: str = "<image>"
    coding: "GroupCoding | None" = None

    def split(self, name: str) -> pd.DataFrame:
        return getattr(self, name)


# --------------------------------------------------------------------------- helpers


def _shipped_tables() -> Path:
    return Path(str(resources.files("equiprune.data") / "tables"))


def _find_table(folder: Path, name: str) -> Path:
    for cand in (folder / name, folder / f"{name}.gz"):
        if cand.is_file():
            return cand
    raise DataError(
        f"metadata table {name} (or {name}.gz) not found in {folder}; point --metadata (DataConfig.metadata) at the "
        "folder holding it, or leave it unset to use the tables shipped with equiprune"
    )


_TABLE_CACHE: dict[tuple, pd.DataFrame] = {}


def _read_csv(path: Path, required: Sequence[str], what: str = "") -> pd.DataFrame:
    """Read a table (parsed tables are memoised by path, size and mtime) and check its columns."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _TABLE_CACHE:
        try:
            table = pd.read_csv(path, low_memory=False)
        except Exception as exc:  # noqa: BLE001 - any parse error is a bad table
            raise DataError(f"cannot read metadata table {path}: {exc}") from exc
        if len(_TABLE_CACHE) > 16:
            _TABLE_CACHE.clear()
        _TABLE_CACHE[key] = table
    df = _TABLE_CACHE[key].copy()
    if len(df) == 0:
        raise DataError(f"metadata table {path} has no rows (only a header{' line' if len(df.columns) else ''}); "
                        "give the table with one row per image")
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(
            f"metadata table {path} lacks column(s) {missing}{what}; its columns are {list(df.columns)}"
        )
    return df


def group_column(cfg: DataConfig) -> str:
    """The metadata column that defines the group: DataConfig.group_column or the dataset's default."""
    return cfg.group_column or DEFAULT_GROUP_COLUMN[cfg.name]


def _value_key(v) -> str:
    """Normalise a cell to the string used as a group_map key (1.0 -> "1", " male" -> "male")."""
    if isinstance(v, (float, np.floating)) and np.isfinite(v) and float(v).is_integer():
        return str(int(v))
    if isinstance(v, (bool, np.bool_)):
        return str(int(v))
    return str(v).strip()


@dataclass
class GroupCoding:
    """How a metadata column's values became groups 0 and 1 (printed by every verb, shown in reports).

    ``source`` says who chose the mapping: ``"--group-map"`` (the user), the
    dataset's or column's standard coding (Fitzpatrick types, sex, 0/1
    integers), or ``"alphabetical"`` (text values in sorted order: a guess
    that two-group work refuses, see :func:`check_two_groups`).
    """

    column: str
    mapping: dict[str, int]
    names: list[str]
    source: str

    def describe(self) -> str:
        """One line: ``groups: 0 = light (skin = light), 1 = dark (skin = dark) [from --group-map]``."""
        parts = []
        for g, name in enumerate(self.names):
            values = [v for v, i in self.mapping.items() if i == g]
            shown = ", ".join(values[:6]) + (", ..." if len(values) > 6 else "")
            parts.append(f"{g} = {name} ({self.column} = {shown})")
        return f"groups: {'; '.join(parts)} [{self.source}]"


def _default_coding(column: str, values: list[str], default_map: dict[str, int] | None,
                    default_names: list[str] | None, dataset: str) -> tuple[dict[str, int], list[str] | None, str]:
    """The mapping used when no group_map is given: (mapping, names, who chose it)."""
    if default_map is not None:
        return default_map, default_names, f"{dataset}'s coding"
    if column.lower().startswith("fitzpatrick"):
        return FITZPATRICK_GROUP_MAP, FITZPATRICK_GROUP_NAMES, "Fitzpatrick I-III = 0, IV-VI = 1, as the papers"
    if set(v.lower() for v in values) <= set(SEX_GROUP_MAP):
        return {v: SEX_GROUP_MAP[v.lower()] for v in values}, ["female", "male"], "female = 0, male = 1, as the papers"
    if all(v.lstrip("-").isdigit() for v in values) and min(int(v) for v in values) >= 0:
        gmap = {v: int(v) for v in values}
        return gmap, [f"{column}={g}" for g in range(max(gmap.values()) + 1)], "the column's numbers as they are"
    return {v: i for i, v in enumerate(values)}, list(values), "alphabetical"


def _groups(
    tables: dict[str, pd.DataFrame],
    column: str,
    cfg: DataConfig,
    default_map: dict[str, int] | None,
    default_names: list[str] | None,
    source: str,
) -> GroupCoding:
    """Add the ``group`` column to every split table; return how the values were coded."""
    for split, df in tables.items():
        if column not in df.columns:
            raise DataError(
                f"group column {column!r} is not in the {split} table of {source}; "
                f"its columns are {list(df.columns)}. Pass --group-column with one of them (DataConfig.group_column)."
            )
        na = df[column].isna()
        if na.any():
            raise DataError(
                f"{int(na.sum())} row(s) of the {split} table of {source} have no value in group column "
                f"{column!r}; fill them or drop those rows"
            )
    keys = {s: df[column].map(_value_key) for s, df in tables.items()}
    values = sorted(set().union(*[set(k) for k in keys.values()]))

    gmap, names, how = cfg.group_map, None, "--group-map"
    if gmap is None:
        gmap, names, how = _default_coding(column, values, default_map, default_names, cfg.name)
    if not gmap:
        raise DataError(f"the group mapping (--group-map) is empty; map every value of column {column!r} to a group, e.g. --group-map A,B=0 C=1")
    unmapped = [v for v in values if v not in gmap]
    if unmapped:
        raise DataError(
            f"group column {column!r} of {source} has value(s) {unmapped[:10]} that the group mapping "
            f"{gmap} does not cover; map them with --group-map (DataConfig.group_map), e.g. "
            f"--group-map {_map_example(values)}"
        )
    n_groups = max(gmap.values()) + 1
    if min(gmap.values()) < 0:
        raise DataError(f"group indices must be >= 0, got mapping {gmap}")
    if cfg.group_names is not None:
        if len(cfg.group_names) != n_groups:
            raise DataError(
                f"--group-names has {len(cfg.group_names)} names but the mapping {gmap} gives "
                f"{n_groups} groups"
            )
        names = list(cfg.group_names)
    if names is None or len(names) != n_groups:
        names = [
            f"{column} in {{{', '.join(k for k, g in gmap.items() if g == i)}}}" for i in range(n_groups)
        ]
    for split, df in tables.items():
        df["group"] = keys[split].map(gmap).astype(np.int64)
    present = {v: g for v, g in gmap.items() if v in values} or dict(gmap)
    return GroupCoding(column=column, mapping=present, names=names, source=how)


def _labels_from_names(df: pd.DataFrame, column: str, classes: list[str], where: str) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    names = df[column].map(lambda v: v if isinstance(v, str) else _value_key(v))
    unknown = sorted(set(names) - set(index))
    if unknown:
        n = int(names.isin(unknown).sum())
        raise DataError(
            f"{n} row(s) of {where} have label(s) in column {column!r} that are not known classes: "
            f"{unknown[:10]}{' ...' if len(unknown) > 10 else ''}. Known classes: {classes[:10]}"
            f"{' ...' if len(classes) > 10 else ''}; fix the table or list the classes (DataConfig.classes)"
        )
    return names.map(index).to_numpy(dtype=np.int64)


def _check_int_labels(df: pd.DataFrame, column: str, num_classes: int, where: str) -> np.ndarray:
    values = pd.to_numeric(df[column], errors="coerce")
    bad = values.isna() | (values < 0) | (values >= num_classes) | (values != values.round())
    if bad.any():
        raise DataError(
            f"{int(bad.sum())} row(s) of {where} have label(s) in column {column!r} outside 0..{num_classes - 1}: "
            f"{sorted(set(df.loc[bad, column].astype(str)))[:10]}"
        )
    return values.to_numpy().astype(np.int64)


# --------------------------------------------------------------------------- datasets


def _fitzpatrick_tables(cfg: DataConfig) -> SplitTables:
    folder = Path(cfg.metadata) if cfg.metadata else _shipped_tables()
    level = cfg.label_level
    name_col = _FITZ_LEVEL_COLUMN[level]
    full_path = _find_table(folder, "fitzpatrick17k.csv")
    full = _read_csv(full_path, ["md5hash", name_col])
    parts = {}
    for split, fname in (("val", "fitzpatrick17k_vali.csv"), ("test", "fitzpatrick17k_test.csv")):
        path = _find_table(folder, fname)
        parts[split] = (path, _read_csv(path, ["md5hash", name_col, level], f" (needed for label level {level!r})"))
    for path, df in [(full_path, full), *parts.values()]:
        # the full table calls the type column fitzpatrick_scale, the split tables fitzpatrick
        if "fitzpatrick" not in df.columns:
            if "fitzpatrick_scale" not in df.columns:
                raise DataError(
                    f"metadata table {path} has neither 'fitzpatrick' nor 'fitzpatrick_scale'; "
                    f"its columns are {list(df.columns)}"
                )
            df["fitzpatrick"] = df["fitzpatrick_scale"]

    # label name -> index from the papers' split tables, checked one-to-one
    vt = pd.concat([parts["val"][1], parts["test"][1]], ignore_index=True)
    pairs = vt[[name_col, level]].drop_duplicates()
    multi_idx = pairs.groupby(name_col)[level].nunique()
    multi_name = pairs.groupby(level)[name_col].nunique()
    if (multi_idx > 1).any() or (multi_name > 1).any():
        bad = list(multi_idx[multi_idx > 1].index[:3]) + [f"index {i}" for i in multi_name[multi_name > 1].index[:3]]
        raise DataError(
            f"the {level!r} column of {parts['val'][0].name} / {parts['test'][0].name} does not map "
            f"{name_col!r} one-to-one (conflicts: {bad}); the split tables are inconsistent"
        )
    mapping = dict(zip(pairs[name_col], pairs[level].astype(int)))
    n_classes = max(mapping.values()) + 1
    classes = [f"<class {i}>" for i in range(n_classes)]
    for name, i in mapping.items():
        classes[i] = name
    gaps = [c for c in classes if c.startswith("<class ")]
    if gaps:
        warnings.warn(f"fitzpatrick17k: {len(gaps)} {level!r} class index(es) never appear in vali/test", stacklevel=3)

    taken = set(vt["md5hash"])
    train = full[~full["md5hash"].isin(taken)].copy()
    train["label"] = _labels_from_names(train, name_col, classes, f"{full_path} (training rows)")
    tables = {"train": train}
    for split, (path, df) in parts.items():
        df = df.copy()
        # bring columns only the full table has (e.g. fitzpatrick_centaur) to the split rows
        extra = [c for c in full.columns if c not in df.columns]
        if extra:
            df = df.merge(full[["md5hash", *extra]], on="md5hash", how="left")
        df["label"] = _check_int_labels(df, level, n_classes, str(path))
        tables[split] = df
    for df in tables.values():
        df["image"] = df["md5hash"].astype(str) + ".jpg"
    group_col = group_column(cfg)
    default = FITZPATRICK_GROUP_MAP if group_col == "fitzpatrick" else None
    coding = _groups(tables, group_col, cfg, default, FITZPATRICK_GROUP_NAMES, "fitzpatrick17k")
    names = coding.names
    return SplitTables(**{s: tables[s].reset_index(drop=True) for s in SPLITS}, classes=classes, coding=coding,
                       group_names=names, expected="<md5hash>.jpg")


def _isic_tables(cfg: DataConfig) -> SplitTables:
    folder = Path(cfg.metadata) if cfg.metadata else _shipped_tables()
    group_col = group_column(cfg)
    tables = {}
    for split, fname in (("train", "isic2019_train.csv"), ("val", "isic2019_val.csv"), ("test", "isic2019_test.csv")):
        path = _find_table(folder, fname)
        df = _read_csv(path, ["image", "low"])
        df["label"] = _check_int_labels(df, "low", len(ISIC_CLASSES), str(path))
        if all(c in df.columns for c in ISIC_CLASSES):
            onehot = df[ISIC_CLASSES].to_numpy(dtype=np.float64).argmax(1)
            bad = onehot != df["label"].to_numpy()
            if bad.any():
                raise DataError(
                    f"{int(bad.sum())} row(s) of {path} have a 'low' label that disagrees with the one-hot "
                    f"columns {ISIC_CLASSES} (e.g. image {df.loc[bad, 'image'].iloc[0]})"
                )
        df["image"] = df["image"].astype(str) + ".jpg"
        tables[split] = df
    default = {"0": 0, "1": 1} if group_col == "gender" else None
    coding = _groups(tables, group_col, cfg, default, ["female", "male"], "isic2019")
    return SplitTables(**tables, classes=list(ISIC_CLASSES), group_names=coding.names, expected="<image>.jpg",
                       coding=coding)


def _ham_tables(cfg: DataConfig) -> SplitTables:
    if cfg.metadata:
        path = Path(cfg.metadata)
        if path.is_dir():
            path = _find_table(path, "HAM10000_metadata.csv")
    elif cfg.root:
        path = _find_table(Path(cfg.root), "HAM10000_metadata.csv")
    else:
        raise DataError("ham10000 needs --root (the image folder) or --metadata (HAM10000_metadata.csv)")
    if not path.is_file():
        raise DataError(f"HAM10000 metadata file {path} does not exist")
    group_col = group_column(cfg)
    df = _read_csv(path, ["lesion_id", "image_id", "dx", group_col])
    if group_col == "sex" and cfg.group_map is None:
        known = df["sex"].astype(str).str.strip().str.lower().isin(SEX_GROUP_MAP)
        if (~known).any():
            warnings.warn(
                f"HAM10000: dropped {int((~known).sum())} of {len(df)} rows with unknown sex "
                f"(values {sorted(set(df.loc[~known, 'sex'].astype(str)))})",
                stacklevel=3,
            )
        df = df[known].copy()
        df["sex"] = df["sex"].astype(str).str.strip().str.lower()
    classes = list(cfg.classes) if cfg.classes else sorted(df["dx"].astype(str).unique())
    df["label"] = _labels_from_names(df, "dx", classes, str(path))
    df["image"] = df["image_id"].astype(str) + ".jpg"
    tmp = {"all": df}
    coding = _groups(tmp, group_col, cfg, SEX_GROUP_MAP if group_col == "sex" else None, ["female", "male"],
                     str(path))
    names = coding.names
    df = tmp["all"]
    # split lesions, not images: one lesion's images all land in one split
    lesions = df.groupby("lesion_id", sort=True).agg(label=("label", "first"), group=("group", "first"))
    n_groups = int(df["group"].max()) + 1
    strata = lesions["label"].to_numpy() * n_groups + lesions["group"].to_numpy()
    parts = stratified_split(strata, [1 - cfg.val_fraction - cfg.test_fraction, cfg.val_fraction, cfg.test_fraction], cfg.seed)
    tables = {}
    for split, idx in zip(SPLITS, parts):
        ids = set(lesions.index[idx])
        tables[split] = df[df["lesion_id"].isin(ids)].reset_index(drop=True)
    return SplitTables(**tables, classes=classes, group_names=names, expected="<image_id>.jpg", coding=coding)


def _csv_tables(cfg: DataConfig) -> SplitTables:
    if not cfg.metadata:
        raise DataError("--data csv needs --metadata with the path of the CSV table")
    path = Path(cfg.metadata)
    if not path.is_file():
        raise DataError(f"CSV table {path} (--metadata) does not exist")
    group_col = group_column(cfg)
    required = [cfg.image_column, cfg.label_column, group_col] + ([cfg.split_column] if cfg.split_column else [])
    df = _read_csv(path, required)
    if cfg.classes:
        classes = list(cfg.classes)
        df["label"] = _labels_from_names(df, cfg.label_column, classes, str(path))
    elif pd.api.types.is_integer_dtype(df[cfg.label_column]):
        labels = _check_int_labels(df, cfg.label_column, int(df[cfg.label_column].max()) + 1, str(path))
        df["label"] = labels
        classes = [str(i) for i in range(int(labels.max()) + 1)]
    else:
        classes = sorted(df[cfg.label_column].astype(str).unique())
        df["label"] = _labels_from_names(df.assign(**{cfg.label_column: df[cfg.label_column].astype(str)}),
                                         cfg.label_column, classes, str(path))
    names_ = df[cfg.image_column].astype(str)
    if cfg.image_ext:
        ext = cfg.image_ext if cfg.image_ext.startswith(".") else "." + cfg.image_ext
        names_ = names_.where(names_.str.lower().str.endswith(ext.lower()), names_ + ext)
    df["image"] = names_
    tmp = {"all": df}
    coding = _groups(tmp, group_col, cfg, None, None, str(path))
    names = coding.names
    df = tmp["all"]
    if cfg.split_column:
        split = df[cfg.split_column].astype(str).str.strip().str.lower().map(_SPLIT_ALIASES)
        if split.isna().any():
            bad = sorted(set(df.loc[split.isna(), cfg.split_column].astype(str)))
            raise DataError(
                f"split column {cfg.split_column!r} of {path} has value(s) {bad[:10]}; "
                f"use train/val/test (or {sorted(_SPLIT_ALIASES)})"
            )
        tables = {s: df[split == s].reset_index(drop=True) for s in SPLITS}
    else:
        strata = df["label"].to_numpy() * (int(df["group"].max()) + 1) + df["group"].to_numpy()
        parts = stratified_split(strata, [1 - cfg.val_fraction - cfg.test_fraction, cfg.val_fraction, cfg.test_fraction], cfg.seed)
        tables = {s: df.iloc[idx].reset_index(drop=True) for s, idx in zip(SPLITS, parts)}
    ext = cfg.image_ext or ""
    return SplitTables(**tables, classes=classes, group_names=names, expected=f"<{cfg.image_column}>{ext}",
                       coding=coding)


def _unseen_labels(tables: SplitTables, cfg: DataConfig) -> SplitTables:
    """Refuse (or drop with a warning) val/test rows whose label no training row has.

    For loaders that read the class list off the table (csv, ham10000 without
    `DataConfig.classes`), such a label would silently become a class the
    model never saw; classes left without rows are removed and the labels
    renumbered. (Fitzpatrick-17k and ISIC have fixed class lists, where a
    class absent from training is part of the papers' setup.)
    """
    seen = set(tables.train["label"].tolist())
    frames = {s: tables.split(s) for s in SPLITS}
    dropped: set[int] = set()
    for split in ("val", "test"):
        df = frames[split]
        unseen = ~df["label"].isin(seen)
        if not unseen.any():
            continue
        counts = df.loc[unseen, "label"].map(lambda i: tables.classes[i]).value_counts()
        listed = ", ".join(f"{name!r} ({n} row{'s' if n > 1 else ''})" for name, n in counts.head(10).items())
        if cfg.unknown_labels == "error":
            raise DataError(
                f"the {split} split of {cfg.name} has label(s) that no training row has: {listed}; the model "
                "could never predict them. Fix the table (or its split column), or pass --unknown-labels drop "
                "to leave those rows out.")
        warnings.warn(f"{cfg.name} {split}: dropped {int(unseen.sum())} row(s) whose label no training row has: "
                      f"{listed}", stacklevel=3)
        dropped |= set(df.loc[unseen, "label"].tolist())
        frames[split] = df[~unseen].reset_index(drop=True)
    if dropped:  # the dropped labels' classes go (integer labels never used anywhere stay as they were)
        keep = sorted(set(range(len(tables.classes))) - (dropped - seen))
        if keep != list(range(len(tables.classes))):
            new = {old: i for i, old in enumerate(keep)}
            for s in SPLITS:
                frames[s] = frames[s].assign(label=frames[s]["label"].map(new).astype(np.int64))
            return replace(tables, **frames, classes=[tables.classes[i] for i in keep])
    return replace(tables, **frames)


def load_tables(cfg: DataConfig) -> SplitTables:
    """Read and check the metadata of a real dataset (no image is opened).

    Raises :class:`DataError` for missing files or columns, unknown labels
    and unmapped group values.
    """
    cfg.validate()
    loaders = {"fitzpatrick17k": _fitzpatrick_tables, "isic2019": _isic_tables, "ham10000": _ham_tables, "csv": _csv_tables}
    if cfg.name not in loaders:
        raise DataError(f"load_tables reads real datasets {sorted(loaders)}; {cfg.name!r} has no metadata tables")
    tables = loaders[cfg.name](cfg)
    if cfg.name in ("csv", "ham10000") and not cfg.classes:  # classes read off the table: an unseen one is new
        tables = _unseen_labels(tables, cfg)
    for split in SPLITS:
        df = tables.split(split)
        df["class_name"] = np.asarray(tables.classes, dtype=object)[df["label"].to_numpy()]
    return tables


# --------------------------------------------------------------------------- images


def _index_folder(root: Path) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Map relative paths and bare file names under ``root`` to full paths (sorted walk).

    Also returns the bare names that match files in two or more subfolders
    (and no file directly in ``root``): a row naming one of them is ambiguous.
    """
    index: dict[str, str] = {}
    by_name: dict[str, list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        for fn in sorted(filenames):
            full = os.path.join(dirpath, fn)
            rel = fn if rel_dir == "." else os.path.join(rel_dir, fn).replace(os.sep, "/")
            index[rel] = full
            if rel_dir != ".":
                by_name.setdefault(fn, []).append(full)
    for fn, fulls in by_name.items():
        index.setdefault(fn, fulls[0])
    ambiguous = {fn: fulls for fn, fulls in by_name.items() if len(fulls) > 1 and index[fn] == fulls[0]}
    return index, ambiguous


def _check_paths(df: pd.DataFrame, root: Path, ambiguous: dict[str, list[str]], split: str) -> None:
    """Refuse a row whose name matches files in two subfolders, or whose file is a link leaving ``root``."""
    names = df["image"].astype(str)
    hit = names[names.isin(list(ambiguous))]
    if len(hit):
        name = hit.iloc[0]
        raise DataError(
            f"image name {name!r} ({split} split, {len(hit)} such row(s)) matches files in two folders under "
            f"{root}: {ambiguous[name][0]} and {ambiguous[name][1]}; give the path relative to --root in the "
            "table (e.g. sub/name.jpg), or remove the duplicate.")
    real_root = os.path.realpath(root)
    for name, path in zip(names, df["path"]):
        if isinstance(path, str) and os.path.islink(path):
            target = os.path.realpath(path)
            if os.path.commonpath([real_root, target]) != real_root:
                raise DataError(
                    f"image {path} ({split} split, row {name!r}) is a symbolic link to {target}, outside the image "
                    f"folder {root}; equiprune reads only files under --root. Copy the image into it, or point "
                    "--root at the folder that holds the real files.")


def _check_root(cfg: DataConfig) -> Path:
    if not cfg.root:
        raise DataError(f"--data {cfg.name} needs --root with the folder of its images (DataConfig.root)")
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder {root} (--root) does not exist or is not a folder")
    return root


def _attach_paths(tables: SplitTables, cfg: DataConfig) -> SplitTables:
    root = _check_root(cfg)
    index, ambiguous = _index_folder(root)
    frames, missing = {}, {}
    for split in SPLITS:
        df = tables.split(split).copy()
        df["path"] = df["image"].map(lambda n: index.get(str(n).replace(os.sep, "/")))
        _check_paths(df, root, ambiguous, split)
        frames[split], missing[split] = df, df["path"].isna().to_numpy()
    n_miss = sum(int(m.sum()) for m in missing.values())
    if n_miss and cfg.missing_images == "error":
        per_split = ", ".join(f"{int(missing[s].sum())} of {len(frames[s])} {s}" for s in SPLITS)
        names = pd.concat([frames[s].loc[missing[s], "image"] for s in SPLITS]).astype(str)
        raise DataError(
            f"{n_miss} images of {cfg.name} are missing from {root} (searched recursively; {per_split}); "
            f"expected files named {tables.expected}, e.g. {', '.join(names.head(5))}. Put the images in "
            "that folder, point --root at the right folder, or pass --missing-images drop to use "
            "only the rows whose image exists."
        )
    out = {}
    for split in SPLITS:
        df, miss = frames[split], missing[split]
        if miss.any():
            shown = ", ".join(df.loc[miss, "image"].astype(str).head(5))
            warnings.warn(
                f"{cfg.name} {split}: dropped {int(miss.sum())} of {len(df)} rows whose image is missing from {root}",
                stacklevel=3,
            )
            df = df[~miss].reset_index(drop=True)
            if len(df) == 0:
                raise DataError(
                    f"no image of the {split} split of {cfg.name} was found in {root}; expected files named "
                    f"{tables.expected}, e.g. {shown}"
                )
        out[split] = df
    return replace(tables, **out)


def _limit_rows(df: pd.DataFrame, max_rows: int | None, seed: int) -> pd.DataFrame:
    if max_rows is None or len(df) <= max_rows:
        return df
    keep = np.sort(np.random.default_rng(seed).choice(len(df), size=max_rows, replace=False))
    return df.iloc[keep].reset_index(drop=True)


def _map_example(values: Sequence[str]) -> str:
    """A --group-map argument splitting `values` (in their order) into two halves, as an example."""
    half = (len(values) + 1) // 2
    return f"{','.join(values[:half])}=0 {','.join(values[half:])}=1"


def check_two_groups(tables: SplitTables, cfg: DataConfig) -> None:
    """Stop before any image is decoded when the group column does not give exactly two groups.

    Training, the prune loops and the papers' metrics compare group 0 with
    group 1; a column with more values (Fitzpatrick types I-VI as written in a
    CSV, say) needs a mapping to two groups first.
    """
    names = list(tables.group_names)
    column = group_column(cfg)
    coding = tables.coding
    if len(names) == 2 and coding is not None and coding.source == "alphabetical":
        a, b = sorted(coding.mapping, key=coding.mapping.get)
        raise DataError(
            f"the group column {column!r} of {cfg.metadata or cfg.name} holds two text values, {a!r} and {b!r}, and "
            "equiprune does not guess which one is group 0: the choice sets the sign of every signed gap, "
            "which group FairPrune's default treats as privileged on the papers' datasets, and the names in "
            f"every table. Pass the coding, e.g. --group-map {a}=0 {b}=1 --group-names {a} {b} "
            f"(or --group-map {b}=0 {a}=1 --group-names {b} {a}); every verb then prints it on its first line.")
    if len(names) == 2:
        return
    raise DataError(
        f"the group column {column!r} of {cfg.metadata or cfg.name} gives {len(names)} group(s) ({', '.join(names)}), "
        "but training and the fairness metrics compare exactly two (group 0 with group 1). Map its values to "
        f"two groups with --group-map (DataConfig.group_map), e.g. --group-map {_map_example(names)}, and "
        "name them with --group-names; for audits over more groups use `equiprune audit --groups COLUMN`.")


def _check_groups(frames: dict[str, pd.DataFrame], group_names: list[str], source: str) -> None:
    for split, df in frames.items():
        counts = np.bincount(df["group"].to_numpy(dtype=np.int64), minlength=len(group_names))
        empty = [f"{g} ({group_names[g]})" for g in range(len(group_names)) if counts[g] == 0]
        if empty:
            raise DataError(
                f"the {split} split of {source} has no sample of group(s) {', '.join(empty)} "
                f"(counts per group: {counts.tolist()}); the group metrics need every group in every split. "
                "Add images of that group, raise max_rows, or choose another group_column / group_map."
            )


def synthderm_coding(cfg: DataConfig) -> GroupCoding:
    """synthderm's groups: skin tone (types I-III = 0, IV-VI = 1), or the clinic in marker mode."""
    names = cfg.synthderm.group_names
    if cfg.synthderm.group_cue == "marker":
        return GroupCoding("clinic", {"A": 0, "B": 1}, names, "synthderm's marker mode: clinic B's images carry an ink mark")
    return GroupCoding("skin type", {"I-III": 0, "IV-VI": 1}, names, "synthderm's coding, as Fitzpatrick-17k's")


def _synthderm_splits(cfg: DataConfig) -> DataSplits:
    sd_cfg = replace(cfg.synthderm, image_size=cfg.image_size, seed=cfg.seed)
    pool = generate_synthderm(sd_cfg, cache_dir=cfg.cache_dir)
    meta = pool.meta.copy()
    meta["pool_index"] = np.arange(len(meta))
    strata = meta["label"].to_numpy() * 2 + meta["group"].to_numpy()
    fr = [1 - cfg.val_fraction - cfg.test_fraction, cfg.val_fraction, cfg.test_fraction]
    parts = dict(zip(SPLITS, stratified_split(strata, fr, cfg.seed)))
    frames = {s: _limit_rows(meta.iloc[idx].reset_index(drop=True), cfg.max_rows, cfg.seed) for s, idx in parts.items()}
    if cfg.group_source == "given":
        _check_groups(frames, pool.group_names, "synthderm")
    train_t, test_t = build_transforms(cfg.augment_preset, cfg.image_size, cfg.image_size, cfg.normalize)
    ds = {}
    for s, df in frames.items():
        images = pool.images[df["pool_index"].to_numpy()]
        ds[s] = GroupDataset(images, df, pool.classes, pool.group_names, train_t if s == "train" else test_t)
    if cfg.group_source == "ita":  # skin tone of the whole pool, computed once and cached
        tone = estimate_skin_tone(pool.images, cache_dir=cfg.cache_dir, progress=cfg.progress)
        ds = _ita_groups({s: add_skin_tone_columns(d, tone=tone[d.meta["pool_index"].to_numpy()])
                          for s, d in ds.items()}, cfg)
    group_names = ds["train"].group_names
    return DataSplits(**ds, classes=list(pool.classes), group_names=list(group_names), num_classes=len(pool.classes),
                      group_coding=_coding_line(cfg, synthderm_coding(cfg)))


def _ita_groups(ds: dict[str, GroupDataset], cfg: DataConfig) -> dict[str, GroupDataset]:
    """`group_source="ita"`: every split regrouped by its estimated ITA (flagged images dropped and listed)."""
    return {s: regroup_by_ita(d, cfg.ita_threshold, f"{cfg.name} {s}") for s, d in ds.items()}


def _coding_line(cfg: DataConfig, coding: "GroupCoding | None") -> str:
    """The coding line of loaded splits: the given column's, or the ITA threshold's (``--group-source ita``)."""
    if cfg.group_source == "ita":
        a, b = ita_group_names(cfg.ita_threshold)
        return (f"groups: 0 = {a}; 1 = {b} [estimated from the pixels (--group-source ita, --ita-threshold "
                f"{cfg.ita_threshold:g}); the given group column is kept for the audit's confusion table]")
    return coding.describe() if coding else ""


def load_splits(cfg: DataConfig, two_groups: bool = False) -> DataSplits:
    """Load train / val / test of ``cfg`` ready for training.

    Real datasets: metadata checks (:func:`load_tables`), image-file checks
    (missing files listed, corrupt files named), then every image is decoded
    and resized once into the cache (tqdm bar) and augmented on uint8
    tensors per epoch. Every split must contain every group. ``two_groups``:
    refuse (before decoding) a group column that does not give exactly two
    groups, as training and the papers' metrics need.
    """
    cfg.validate()
    if cfg.name == "synthderm":
        return _synthderm_splits(cfg)
    _check_root(cfg)
    tables = load_tables(cfg)
    if two_groups and cfg.group_source == "given":
        check_two_groups(tables, cfg)
    tables = _attach_paths(tables, cfg)
    frames = {s: _limit_rows(tables.split(s), cfg.max_rows, cfg.seed + i) for i, s in enumerate(SPLITS)}
    if cfg.group_source == "given":
        _check_groups(frames, tables.group_names, cfg.name)
    names = {s: frames[s]["image"].astype(str).tolist() for s in SPLITS}
    notes = check_overlap(overlaps({s: path_keys(frames[s]["path"]) for s in SPLITS}, names),
                          "the same file", cfg.name, cfg.split_overlap)
    size = cfg.stored_size
    train_t, test_t = build_transforms(cfg.augment_preset, cfg.image_size, size, cfg.normalize)
    ds = {}
    for s, df in frames.items():
        images = build_image_cache(
            df["path"].tolist(), size, cfg.cache_dir, desc=f"{cfg.name} {s}: decoding {len(df)} images",
            num_workers=cfg.decode_workers, progress=cfg.progress,
        )
        ds[s] = GroupDataset(images, df, tables.classes, tables.group_names, train_t if s == "train" else test_t)
        if cfg.group_source == "ita":  # cached next to the decoded images
            add_skin_tone_columns(ds[s], cache_dir=cfg.cache_dir, progress=cfg.progress)
    if not notes:  # the same pixels under two file names (a re-saved or copied photo)
        notes = check_overlap(overlaps({s: pixel_hashes(ds[s].images) for s in SPLITS}, names),
                              "identical decoded pixels", cfg.name, cfg.split_overlap)
    if cfg.group_source == "ita":  # after the overlap check, which needs every row
        ds = _ita_groups(ds, cfg)
    for note in notes:
        warnings.warn(f"{cfg.name}: {note}", stacklevel=2)
    return DataSplits(**ds, classes=list(tables.classes), group_names=list(ds["train"].group_names),
                      num_classes=len(tables.classes), warnings=notes,
                      group_coding=_coding_line(cfg, tables.coding))
