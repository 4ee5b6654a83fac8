"""The dataset type every loader returns, the split container and split helpers."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from .errors import DataError

__all__ = ["GroupDataset", "DataSplits", "describe_splits", "stratified_split"]


class GroupDataset(Dataset):
    """Images with a class label and a group (sensitive attribute).

    Item ``i`` is ``(image, label, group, index)``: ``image`` float32
    ``C x H x W`` after ``transform`` (uint8 images are scaled to [0, 1] when
    there is no transform), ``label`` and ``group`` ints, ``index == i`` the
    row of :attr:`meta`.

    Args:
        images: uint8 array or tensor ``(N, 3, H, W)``; a numpy memory map is
            kept as is (rows are copied on access).
        meta: one row per image with at least the columns ``label`` and ``group``.
        classes: class names, index = label.
        group_names: group names, index = group.
        transform: callable on a uint8 ``C x H x W`` tensor, or ``None``.
    """

    def __init__(
        self,
        images: np.ndarray | torch.Tensor,
        meta: pd.DataFrame,
        classes: Sequence[str],
        group_names: Sequence[str],
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if len(images) != len(meta):
            raise DataError(f"GroupDataset got {len(images)} images but {len(meta)} metadata rows")
        missing = [c for c in ("label", "group") if c not in meta.columns]
        if missing:
            raise DataError(f"GroupDataset metadata lacks column(s) {missing}; it has {list(meta.columns)}")
        self.images = images
        self.meta = meta.reset_index(drop=True)
        self.classes = list(classes)
        self.group_names = list(group_names)
        self.labels = self.meta["label"].to_numpy(dtype=np.int64)
        self.groups = self.meta["group"].to_numpy(dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.meta)

    def image_uint8(self, i: int) -> torch.Tensor:
        """The stored (untransformed) uint8 image ``i``."""
        img = self.images[i]
        if isinstance(img, torch.Tensor):
            return img
        # np.array copies out of a read-only memory map into a writable buffer
        return torch.from_numpy(np.array(img, dtype=np.uint8, copy=True))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int, int]:
        i = int(i)
        img = self.image_uint8(i)
        if self.transform is not None:
            img = self.transform(img)
        if img.dtype == torch.uint8:
            img = img.to(torch.float32).div_(255.0)
        return img, int(self.labels[i]), int(self.groups[i]), i

    def with_transform(self, transform: Callable | None) -> "GroupDataset":
        """A shallow copy (same images and metadata) using ``transform``."""
        new = copy.copy(self)
        new.transform = transform
        return new

    def subset(self, indices: Sequence[int] | np.ndarray) -> "GroupDataset":
        """A new dataset of the rows ``indices`` (metadata re-indexed from 0; column ``parent_index`` keeps the old row)."""
        idx = np.asarray(indices, dtype=np.int64)
        meta = self.meta.iloc[idx].copy()
        meta["parent_index"] = idx
        images = self.images[torch.from_numpy(idx)] if isinstance(self.images, torch.Tensor) else self.images[idx]
        return GroupDataset(images, meta, self.classes, self.group_names, self.transform)

    def __repr__(self) -> str:
        counts = np.bincount(self.groups, minlength=len(self.group_names)) if len(self) else []
        return (
            f"GroupDataset(n={len(self)}, classes={len(self.classes)}, "
            f"groups={dict(zip(self.group_names, map(int, counts)))})"
        )


@dataclass
class DataSplits:
    """Train / validation / test datasets of one configuration.

    ``train`` carries the training augmentation, ``val`` and ``test`` the test
    transform; ``train.with_transform(test.transform)`` is the un-augmented
    training set.
    """

    train: GroupDataset
    val: GroupDataset
    test: GroupDataset
    classes: list[str]
    group_names: list[str]
    num_classes: int
    #: one line saying how the group column became groups 0 and 1 (``GroupCoding.describe``)
    group_coding: str = ""
    # what the data checks let through but the user must see (images shared by splits when allowed)
    warnings: list[str] = field(default_factory=list)


def scoring_dataset(splits: DataSplits, split: str) -> GroupDataset:
    """The split a method scores channels (or weights) on, always with the test-time transform.

    Scores must not depend on random augmentation (the reference code scores
    on un-augmented images too), so the training split is viewed through the
    test transform; val and test already use it.
    """
    ds = getattr(splits, split)
    return ds.with_transform(splits.test.transform) if split == "train" else ds


def describe_splits(splits: DataSplits) -> pd.DataFrame:
    """Counts per split x group (rows) and class (columns), with a ``total`` column.

    Rows are a MultiIndex ``(split, group)`` where ``group`` is the group
    name; every class of ``splits.classes`` is a column, even with zero counts.
    """
    rows = []
    for name in ("train", "val", "test"):
        ds = getattr(splits, name)
        for g, gname in enumerate(splits.group_names):
            sel = ds.groups == g
            counts = np.bincount(ds.labels[sel], minlength=splits.num_classes)[: splits.num_classes]
            rows.append(((name, gname), counts))
    table = pd.DataFrame(
        np.stack([c for _, c in rows]),
        index=pd.MultiIndex.from_tuples([k for k, _ in rows], names=["split", "group"]),
        columns=list(splits.classes),
    )
    table["total"] = table.sum(axis=1)
    return table


def stratified_split(
    strata: np.ndarray,
    fractions: Sequence[float],
    seed: int,
) -> list[np.ndarray]:
    """Split row indices into parts with the given fractions inside every stratum.

    ``strata`` holds one hashable key per row (e.g. ``label * G + group``).
    Each stratum is shuffled with ``seed`` and cut at ``floor(cumulative
    fraction * size + offset)`` with one random offset in [0, 1) per stratum:
    every part gets its share of every stratum up to one row, and small
    strata still reach the small parts with the right probability.
    Returns one sorted index array per fraction.
    """
    fr = np.asarray(fractions, dtype=np.float64)
    if np.any(fr < 0) or not np.isclose(fr.sum(), 1.0):
        raise DataError(f"split fractions must be non-negative and sum to 1, got {list(fractions)}")
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in fr]
    keys, inverse = np.unique(np.asarray(strata), return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse, minlength=len(keys)))[:-1]
    for members in np.split(order, bounds):
        members = rng.permutation(members)
        offset = rng.uniform()
        cuts = np.clip(np.floor(np.cumsum(fr)[:-1] * len(members) + offset), 0, len(members)).astype(int)
        for p, chunk in enumerate(np.split(members, cuts)):
            parts[p].append(chunk)
    return [np.sort(np.concatenate(p)) if p else np.zeros(0, np.int64) for p in parts]
