"""``DataConfig``: every data setting of a run, JSON-serialisable."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from .errors import DataError
from .synthderm import SynthDermConfig
from .transforms import PRESETS

__all__ = ["DataConfig", "DATASETS", "GROUP_SOURCES"]

#: Names accepted by ``DataConfig.name``.
DATASETS: list[str] = ["synthderm", "fitzpatrick17k", "isic2019", "ham10000", "csv"]
#: Where the group comes from: the data's own group, or skin tone estimated from the pixels.
GROUP_SOURCES: tuple[str, ...] = ("given", "ita")
#: The datasets of the fairness-pruning papers, whose recipe ``--augment auto`` picks.
PAPER_DATASETS: tuple[str, ...] = ("fitzpatrick17k", "isic2019", "ham10000")
#: What each augmentation preset does, for help texts and the line every training prints.
PRESET_HELP: dict[str, str] = {
    "paper": "the dermatology papers' recipe: random crop, horizontal and vertical flips, rotations up to "
             "180 degrees with scale and shear, colour jitter, AutoAugment and a cutout square",
    "light": "horizontal and vertical flips and a small random crop",
    "none": "no augmentation (the test transform)",
    "skin-tone": "light plus, for half the images, the skin moved to another ITA category with the lesion kept",
}


@dataclass
class DataConfig:
    """What to load and how (``dataclasses.asdict(cfg)`` is JSON-serialisable).

    Attributes:
        name: one of :data:`DATASETS`.
        root: folder holding the images (searched recursively); required for
            every dataset except synthderm.
        image_size: side of the square network input.
        seed: seed of generated data and of the splits made here
            (synthderm, ham10000, csv without split column, ``max_rows``).
        augment: training preset ``"paper"``, ``"light"`` or ``"none"``
            (:data:`PRESET_HELP`); ``"auto"`` = ``"paper"`` for the papers'
            datasets (:data:`PAPER_DATASETS`), ``"light"`` for synthderm and csv.
        normalize: ImageNet mean/std normalisation at the end of every transform.
        label_level: fitzpatrick17k label granularity: ``"low"`` (114
            conditions), ``"mid"`` (9) or ``"high"`` (3).
        group_column: column of the metadata that defines the group;
            ``None`` = the reference coding (fitzpatrick17k: ``fitzpatrick``,
            isic2019: ``gender``, ham10000: ``sex``, csv: ``group``).
        group_map: value -> group index (keys are strings: ``{"male": 1,
            "female": 0}`` or ``{"1": 0, "4": 1, ...}``); ``None`` = the
            default mapping of the column (Fitzpatrick columns: I-III -> 0,
            IV-VI and -1 -> 1; sex: female 0 / male 1; integer columns as is;
            other text sorted alphabetically).
        group_names: names of the groups, index = group; ``None`` = derived.
        metadata: where the tables are. fitzpatrick17k / isic2019: a folder
            with the three tables (``.csv`` or ``.csv.gz``), default the
            tables shipped with equiprune; ham10000: the metadata CSV (or its
            folder), default ``<root>/HAM10000_metadata.csv``; csv: the CSV
            file (required).
        image_column, label_column, split_column, image_ext: column names of
            the generic csv loader; ``split_column`` values are
            ``train``/``val``/``test`` (also ``training``, ``valid``,
            ``validation``, ``vali``, ``testing``); without it the rows are
            split here, stratified by label x group. ``image_ext`` is
            appended to the image column when the name lacks it (``".jpg"``).
        classes: class names in index order for the csv / ham10000 loaders
            (labels given as names); ``None`` = sorted unique names, or
            integer labels used as they are.
        val_fraction, test_fraction: split fractions where equiprune splits
            (synthderm, ham10000 by lesion, csv without split column).
        missing_images: ``"error"`` (default) stops with the list of missing
            files; ``"drop"`` keeps only the rows whose image exists (with a
            warning giving the count).
        unknown_labels: a label of the val/test rows that no training row has
            (it would become a class the model never learned): ``"error"``
            (default) stops naming it, ``"drop"`` drops those rows with a warning.
        split_overlap: images shared by two splits (same file, or the same
            decoded pixels): ``"error"`` (default) stops listing them,
            ``"allow"`` keeps them with a warning (the test numbers are then
            optimistic).
        max_rows: keep at most this many rows per split (seeded random
            subset), for quick runs; ``None`` keeps all.
        resize_factor: images are decoded once and stored with side
            ``round(image_size * resize_factor)`` (256/224 ~ 1.15 as the papers).
        cache_dir: cache folder; ``None`` = ``$EQUIPRUNE_CACHE`` or ``~/.cache/equiprune``.
        decode_workers: threads decoding images when building the cache.
        progress: show tqdm bars while building caches.
        synthderm: generator settings (its ``image_size`` and ``seed`` are
            replaced by the ones above).
        group_source: ``"given"`` (the group column or synthderm's group) or
            ``"ita"``: the group is estimated from the pixels
            (:mod:`equiprune.data.skin_tone`): 1 where the image's ITA is at
            most ``ita_threshold`` degrees (darker), 0 above it; images with
            too few skin pixels are dropped and listed.
        ita_threshold: ITA boundary of ``group_source="ita"`` (default 28°,
            between intermediate and tan: Fitzpatrick I-III against IV-VI).
    """

    name: str = "synthderm"
    root: str | None = None
    image_size: int = 64
    seed: int = 0
    augment: str = "auto"
    normalize: bool = True
    label_level: str = "low"
    group_column: str | None = None
    group_map: dict[str, int] | None = None
    group_names: list[str] | None = None
    metadata: str | None = None
    image_column: str = "image"
    label_column: str = "label"
    split_column: str | None = None
    image_ext: str = ""
    classes: list[str] | None = None
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    missing_images: str = "error"
    unknown_labels: str = "error"
    split_overlap: str = "error"
    max_rows: int | None = None
    resize_factor: float = 1.15
    cache_dir: str | None = None
    decode_workers: int = 2
    progress: bool = True
    synthderm: SynthDermConfig = field(default_factory=SynthDermConfig)
    group_source: str = "given"
    ita_threshold: float = 28.0

    def __post_init__(self) -> None:
        if isinstance(self.synthderm, dict):
            self.synthderm = SynthDermConfig(**self.synthderm)
        # absolute, so a run folder read from another directory finds its data (config.json stores these)
        for name in ("root", "metadata"):
            value = getattr(self, name)
            if value:
                setattr(self, name, os.path.abspath(os.path.expanduser(str(value))))
        if self.group_map is not None:
            self.group_map = {str(k): int(v) for k, v in self.group_map.items()}
        for name in ("root", "metadata", "cache_dir"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, str(value))
        self.validate()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DataConfig":
        """Rebuild from ``dataclasses.asdict`` output (e.g. a run's config.json); unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise DataError(f"unknown DataConfig field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**d)

    @property
    def augment_preset(self) -> str:
        """The preset ``augment`` resolves to: the papers' dermatology recipe for the papers' datasets only.

        A generic CSV may hold any kind of image, on which rotations up to 180
        degrees, AutoAugment and cutout are a strong guess; it gets ``light``.
        """
        if self.augment == "auto":
            return "paper" if self.name in PAPER_DATASETS else "light"
        return self.augment

    def describe_augment(self) -> str:
        """One line naming the training augmentation and, for ``auto``, why it was chosen."""
        preset = self.augment_preset
        line = f"augmentation (training images only): {preset} = {PRESET_HELP[preset]}"
        if self.augment == "auto":
            other = "--augment light" if preset == "paper" else "--augment paper for the papers' recipe"
            line += f" [--augment auto picks it for {self.name}; {other}, --augment none for none]"
        return line

    @property
    def stored_size(self) -> int:
        """Side of the images kept in the decode cache (real datasets)."""
        return max(self.image_size, int(round(self.image_size * self.resize_factor)))

    def validate(self) -> None:
        """Raise :class:`DataError` for impossible settings."""
        if self.name not in DATASETS:
            raise DataError(f"unknown dataset {self.name!r}; choose one of {DATASETS}")
        if self.image_size < 8:
            raise DataError(f"image_size must be >= 8 pixels, got {self.image_size}")
        if self.augment != "auto" and self.augment not in PRESETS:
            raise DataError(f"unknown augment preset {self.augment!r}; choose 'auto' or one of {list(PRESETS)}")
        if self.label_level not in ("low", "mid", "high"):
            raise DataError(f"label_level must be 'low', 'mid' or 'high', got {self.label_level!r}")
        if self.missing_images not in ("error", "drop"):
            raise DataError(f"--missing-images must be 'error' or 'drop', got {self.missing_images!r}")
        if self.unknown_labels not in ("error", "drop"):
            raise DataError(f"--unknown-labels must be 'error' or 'drop', got {self.unknown_labels!r}")
        if self.split_overlap not in ("error", "allow"):
            raise DataError(f"--split-overlap must be 'error' or 'allow', got {self.split_overlap!r}")
        for name in ("val_fraction", "test_fraction"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise DataError(f"{name} must be strictly between 0 and 1, got {getattr(self, name)}")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise DataError(
                f"val_fraction + test_fraction must leave rows for training, got "
                f"{self.val_fraction} + {self.test_fraction}"
            )
        if self.group_source not in GROUP_SOURCES:
            raise DataError(f"group_source must be one of {list(GROUP_SOURCES)}, got {self.group_source!r}")
        if not -90.0 < float(self.ita_threshold) < 90.0:
            raise DataError(f"ita_threshold must be an angle in degrees strictly between -90 and 90, "
                            f"got {self.ita_threshold}")
        if self.max_rows is not None and self.max_rows < 1:
            raise DataError(f"max_rows must be >= 1 or None, got {self.max_rows}")
        if self.resize_factor < 1.0:
            raise DataError(f"resize_factor must be >= 1, got {self.resize_factor}")
