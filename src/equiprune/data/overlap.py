"""Train/test leakage: the same image in two splits, found by file and by decoded pixels.

A test image that was also trained on makes the test numbers optimistic, and
per group unevenly. Two cheap checks, both after the metadata is read:
the resolved file path (one file listed twice, or through two names), and a
hash of the decoded, resized pixels (the same photo saved under two names),
which costs one pass over the decode cache. By default an overlap stops the
run with the rows to fix; ``DataConfig.split_overlap = "allow"`` keeps them
and returns a warning that the audit shows at the top of its report.
"""
from __future__ import annotations

import hashlib
import os
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import DataError

SPLIT_PAIRS = (("train", "val"), ("train", "test"), ("val", "test"))


def pixel_hashes(images: Any) -> list[str]:
    """A SHA-1 of each decoded image's bytes (an array or memmap of shape N x C x H x W)."""
    return [hashlib.sha1(np.ascontiguousarray(images[i]).tobytes()).hexdigest() for i in range(len(images))]


def overlaps(keys: Mapping[str, Sequence[str]], names: Mapping[str, Sequence[str]]) -> list[str]:
    """One phrase per pair of splits sharing keys: ``'3 test rows are train images (a.jpg, b.jpg)'``."""
    out = []
    for a, b in SPLIT_PAIRS:
        if a not in keys or b not in keys:
            continue
        in_a = set(keys[a])
        shared = [i for i, k in enumerate(keys[b]) if k in in_a]
        if shared:
            shown = ", ".join(str(names[b][i]) for i in shared[:5]) + (" ..." if len(shared) > 5 else "")
            out.append(f"{len(shared)} {b} row{'s' if len(shared) > 1 else ''} repeat{'' if len(shared) > 1 else 's'} "
                       f"{a} images ({shown})")
    return out


def check_overlap(found: list[str], how: str, dataset: str, policy: str) -> list[str]:
    """Raise DataError for `found` overlaps under policy "error"; return the warnings under "allow"."""
    if not found:
        return []
    what = "; ".join(found)
    if policy == "error":
        raise DataError(
            f"the splits of {dataset} share images ({how}): {what}. Test numbers on images the model trained "
            "on are optimistic; fix the split (split column or table), or pass --split-overlap allow to keep "
            "them with a warning in the report.")
    return [f"the splits share images ({how}): {what}; the test numbers are optimistic "
            "(allowed by --split-overlap allow)."]


def path_keys(paths: Sequence[str]) -> list[str]:
    """Resolved real paths, so one file reached through two names or links counts once."""
    return [os.path.realpath(p) for p in paths]
