"""equiprune.data: datasets yielding ``(image, label, group, index)``.

Real loaders (Fitzpatrick-17k, ISIC 2019, HAM10000, generic CSV + image
folder), the synthetic default ``synthderm``, transforms, caching and
validation with clear errors. Entry point: ``load_splits(DataConfig(...))``.
"""
from .cache import NpyImages, default_cache_dir
from .colour import ita, lab_to_srgb, srgb_to_lab
from .config import DATASETS, DataConfig
from .dataset import DataSplits, GroupDataset, describe_splits, scoring_dataset, stratified_split
from .errors import DataError
from .loaders import SplitTables, load_splits, load_tables
from .synthderm import SynthDermConfig, SynthDermData, generate_synthderm
from .transforms import PRESETS, build_transforms

__all__ = [
    "DATASETS",
    "DataConfig",
    "DataError",
    "DataSplits",
    "GroupDataset",
    "NpyImages",
    "PRESETS",
    "SplitTables",
    "SynthDermConfig",
    "SynthDermData",
    "build_transforms",
    "default_cache_dir",
    "describe_splits",
    "generate_synthderm",
    "ita",
    "lab_to_srgb",
    "load_splits",
    "load_tables",
    "scoring_dataset",
    "srgb_to_lab",
    "stratified_split",
]
