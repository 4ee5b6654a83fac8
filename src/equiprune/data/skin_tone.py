"""Skin tone estimated from the pixels: a skin mask without the lesion, the ITA, its six categories.

Most dermatology image sets carry no Fitzpatrick labels, so equiprune can
estimate skin tone from each image's own pixels and use it as the group.

**Skin mask** (border band + thresholds in CIELAB; no learning, no colour library):

1. Only the outer band of the image (``band`` = 20% of the side on each
   edge) is a candidate: dermatology images centre the lesion, so the band is
   mostly skin, and fuzzy lesion borders in the middle cannot leak in.
2. Pixels that are not skin whatever the skin tone are dropped: L* < 12
   (vignetting corners, shadows, dark hair), L* > 97 (specular highlights,
   white rulers and labels), b* < 2 (blue, purple and grey: ink marks, rulers,
   gel; skin of every type has b* > 5).
3. The lesion and artefacts that remain are dropped as outliers of the
   band's own lightness: L* outside median ± max(3 robust SD, 6) of what is
   left (the lesion is darker than the skin on every skin type). The robust SD
   is 1.4826 × the median absolute deviation.
4. An image with fewer than ``min_fraction`` (2%) of its pixels left is
   **flagged** ("too few skin pixels") instead of getting a number: its ITA
   is NaN in the cache, and every consumer drops flagged images with a list
   of them, so no NaN reaches a metric.

**ITA** = arctan((L* − 50) / b*) · 180/π per skin pixel (`colour.ita`), the
median over the mask. **Categories** (Del Bino et al. 2013, the bands
`colour.ITA_BANDS` uses): very light > 55°, light 41–55°, intermediate
28–41°, tan 10–28°, brown −30–10°, dark < −30° (coded 1..6 like Fitzpatrick
I–VI, which they are often read as).

**Cache**: computed once per image and stored next to the decoded image
cache (``images_<key>.npy`` → ``images_<key>.skin_tone-<settings>.npz``, see
`data/cache.py`); images held in memory (synthderm) are cached under a hash
of their bytes in the cache folder.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .cache import NpyImages, atomic_write, config_key, default_cache_dir
from .colour import fitzpatrick_from_ita, ita, srgb_to_lab

__all__ = ["MaskConfig", "SkinTone", "skin_mask", "image_ita", "estimate_skin_tone", "ita_category",
           "ITA_CATEGORY_NAMES", "agreement", "add_skin_tone_columns", "regroup_by_ita", "skin_tone_summary",
           "flagged_items", "ita_group_names", "FLAGGED_NAME", "shift_skin_tone", "SkinToneAugment",
           "CATEGORY_CENTRES"]

#: Category code (1..6) -> name.
ITA_CATEGORY_NAMES: dict[int, str] = {1: "very light (>55°)", 2: "light (41–55°)", 3: "intermediate (28–41°)",
                                      4: "tan (10–28°)", 5: "brown (−30–10°)", 6: "dark (<−30°)"}
_CHUNK = 256


@dataclass(frozen=True)
class MaskConfig:
    """Settings of the skin mask (the module docstring says what each does)."""

    band: float = 0.2
    dark_limit: float = 12.0
    bright_limit: float = 97.0
    min_b: float = 2.0
    outlier_sd: float = 3.0
    min_spread: float = 6.0
    min_fraction: float = 0.02


@dataclass
class SkinTone:
    """Per image: the median ITA over its skin pixels (NaN when flagged), the skin share, the flag."""

    ita: np.ndarray
    skin_fraction: np.ndarray
    flagged: np.ndarray          # bool: too few skin pixels, no ITA

    def category(self) -> np.ndarray:
        """ITA category 1..6 per image, 0 for a flagged image."""
        return ita_category(self.ita, self.flagged)

    def __getitem__(self, idx: Any) -> "SkinTone":
        return SkinTone(self.ita[idx], self.skin_fraction[idx], self.flagged[idx])


def ita_category(angle: np.ndarray, flagged: np.ndarray | None = None) -> np.ndarray:
    """Category 1 (very light) .. 6 (dark) of each ITA; 0 where `flagged` (or the angle is NaN)."""
    angle = np.asarray(angle, dtype=np.float64)
    bad = ~np.isfinite(angle) if flagged is None else (np.asarray(flagged, bool) | ~np.isfinite(angle))
    cat = fitzpatrick_from_ita(np.where(bad, 0.0, angle))
    return np.where(bad, 0, cat).astype(np.int64)


def _lab(rgb_uint8: np.ndarray) -> np.ndarray:
    """uint8 (N, 3, H, W) -> CIELAB (N, H, W, 3)."""
    return srgb_to_lab(np.moveaxis(np.asarray(rgb_uint8), 1, -1).astype(np.float64) / 255.0)


def skin_mask(rgb_uint8: np.ndarray, cfg: MaskConfig = MaskConfig()) -> np.ndarray:
    """Boolean (N, H, W) skin mask of uint8 images (N, 3, H, W) (or one image (3, H, W) -> (H, W))."""
    single = np.asarray(rgb_uint8).ndim == 3
    batch = np.asarray(rgb_uint8)[None] if single else np.asarray(rgb_uint8)
    mask = _mask_from_lab(_lab(batch), cfg)
    return mask[0] if single else mask


def _mask_from_lab(lab: np.ndarray, cfg: MaskConfig, band_only: bool = True) -> np.ndarray:
    """The skin mask; `band_only=False` applies the band's thresholds to every pixel (skin around the lesion
    too, as the skin-tone augmentation needs)."""
    n, h, w, _ = lab.shape
    bh, bw = max(1, int(round(cfg.band * h))), max(1, int(round(cfg.band * w)))
    band = np.ones((h, w), dtype=bool)
    band[bh:h - bh, bw:w - bw] = False
    L, b = lab[..., 0], lab[..., 2]
    plausible = (L >= cfg.dark_limit) & (L <= cfg.bright_limit) & (b >= cfg.min_b)
    cand = band[None] & plausible
    Lc = np.where(cand, L, np.nan).reshape(n, -1)
    with np.errstate(all="ignore"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an image with no candidate: all-NaN slice
            med = np.nanmedian(Lc, axis=1)
            mad = np.nanmedian(np.abs(Lc - med[:, None]), axis=1)
    spread = np.maximum(cfg.outlier_sd * 1.4826 * np.nan_to_num(mad), cfg.min_spread)
    med = np.nan_to_num(med, nan=-1e9)
    return (cand if band_only else plausible) & (np.abs(L - med[:, None, None]) <= spread[:, None, None])


def image_ita(rgb_uint8: np.ndarray, cfg: MaskConfig = MaskConfig()) -> SkinTone:
    """Median ITA over the skin mask of each image of a uint8 batch (N, 3, H, W)."""
    lab = _lab(rgb_uint8)
    mask = _mask_from_lab(lab, cfg)
    angles = ita(lab[..., 0], lab[..., 2])
    n = len(lab)
    frac = mask.reshape(n, -1).mean(1)
    flagged = frac < cfg.min_fraction
    med = np.full(n, np.nan)
    for i in np.flatnonzero(~flagged):
        med[i] = float(np.median(angles[i][mask[i]]))
    return SkinTone(ita=med, skin_fraction=frac, flagged=flagged)


def _cache_file(images: Any, cfg: MaskConfig, cache_dir: str | os.PathLike | None) -> tuple[Path, Any]:
    """Where the skin tone of `images` is cached, and the rows of that file `images` covers (None = all)."""
    settings = config_key({"mask": asdict(cfg)})
    if isinstance(images, NpyImages):
        path = Path(images.path)
        return path.with_name(f"{path.stem}.skin_tone-{settings}.npz"), images.rows
    arr = np.ascontiguousarray(np.asarray(images))
    digest = hashlib.sha1(arr.tobytes()).hexdigest()[:16]
    shape = "x".join(map(str, arr.shape))
    return default_cache_dir(cache_dir) / f"skin_tone_{digest}_{shape}-{settings}.npz", None


def estimate_skin_tone(images: Any, cfg: MaskConfig = MaskConfig(), cache_dir: str | os.PathLike | None = None,
                       progress: bool = False) -> SkinTone:
    """Skin tone of every image of a uint8 (N, 3, H, W) array or `NpyImages`, computed once and cached."""
    path, rows = _cache_file(images, cfg, cache_dir)
    if path.exists():
        try:
            with np.load(path) as z:
                tone = SkinTone(ita=z["ita"], skin_fraction=z["skin_fraction"], flagged=z["flagged"])
            return tone if rows is None else tone[rows]
        except (OSError, KeyError, ValueError, EOFError):
            pass  # unreadable: compute again
    source = np.load(images.path, mmap_mode="r") if isinstance(images, NpyImages) else np.asarray(images)
    parts = []
    from tqdm.auto import tqdm
    for start in tqdm(range(0, len(source), _CHUNK), desc="skin tone (ITA)", unit="chunk", disable=not progress):
        parts.append(image_ita(np.asarray(source[start:start + _CHUNK]), cfg))
    tone = SkinTone(ita=np.concatenate([p.ita for p in parts]) if parts else np.zeros(0),
                    skin_fraction=np.concatenate([p.skin_fraction for p in parts]) if parts else np.zeros(0),
                    flagged=np.concatenate([p.flagged for p in parts]) if parts else np.zeros(0, bool))
    def save(tmp: str) -> None:
        with open(tmp, "wb") as fh:   # a file object: np.savez would add ".npz" to a bare temporary name
            np.savez(fh, ita=tone.ita, skin_fraction=tone.skin_fraction, flagged=tone.flagged)

    atomic_write(path, save)
    return tone if rows is None else tone[rows]


def agreement(true_type: np.ndarray, estimated: np.ndarray) -> dict[str, Any]:
    """Exact and within-one-category agreement of estimated ITA categories (0 = flagged, left out) with types 1..6."""
    true_type, estimated = np.asarray(true_type, np.int64), np.asarray(estimated, np.int64)
    ok = estimated > 0
    n = int(ok.sum())
    diff = np.abs(true_type[ok] - estimated[ok])
    table = np.zeros((6, 6), dtype=np.int64)
    np.add.at(table, (true_type[ok] - 1, estimated[ok] - 1), 1)
    return {"n": n, "flagged": int((~ok).sum()), "exact": float((diff == 0).mean()) if n else float("nan"),
            "within_one": float((diff <= 1).mean()) if n else float("nan"), "confusion": table.tolist()}


#: The ita6 value of a flagged image: its own, named group in an audit, never a NaN.
FLAGGED_NAME = "unknown: too few skin pixels"


def _category_labels(cat: np.ndarray) -> np.ndarray:
    """ita6 column values: "1 very light (>55°)" ... "6 dark (<−30°)" (sorted in category order), or FLAGGED_NAME."""
    return np.array([f"{c} {ITA_CATEGORY_NAMES[c]}" if c > 0 else FLAGGED_NAME for c in cat], dtype=object)


def add_skin_tone_columns(dataset: Any, cache_dir: str | os.PathLike | None = None, progress: bool = False,
                          tone: SkinTone | None = None, cfg: MaskConfig = MaskConfig()) -> Any:
    """Add `ita`, `ita6`, `skin_fraction` and `skin_flagged` to `dataset.meta` (in place; returns `dataset`).

    `tone`: the images' skin tone if already known (synthderm computes it on its whole pool once).
    """
    if "ita6" in dataset.meta.columns:
        return dataset
    tone = tone if tone is not None else estimate_skin_tone(dataset.images, cfg, cache_dir, progress)
    meta = dataset.meta
    meta["ita"] = tone.ita
    meta["ita6"] = _category_labels(tone.category())
    meta["skin_fraction"] = tone.skin_fraction
    meta["skin_flagged"] = tone.flagged
    return dataset


def _item_names(meta: Any) -> list[str]:
    col = next((c for c in ("image", "image_id", "isic_id", "md5hash") if c in meta.columns), None)
    return [str(v) for v in (meta[col] if col else meta.index)]


def flagged_items(meta: Any) -> list[str]:
    """Names (image column, else row number) of the images flagged for too few skin pixels."""
    if "skin_flagged" not in meta.columns:
        return []
    flags = meta["skin_flagged"].to_numpy(dtype=bool)
    return [n for n, f in zip(_item_names(meta), flags) if f]


def regroup_by_ita(dataset: Any, threshold: float, what: str) -> Any:
    """The dataset with group = 1 where ITA <= `threshold` (darker), 0 above; flagged images dropped and listed.

    The given group is kept in the column `given_group` (for the confusion table of the audit report).
    """
    import warnings

    from .errors import DataError

    meta = dataset.meta
    meta["given_group"] = meta["group"].to_numpy()
    flagged = meta["skin_flagged"].to_numpy(dtype=bool)
    names = flagged_items(meta)
    if flagged.any():
        warnings.warn(f"{what}: {len(names)} of {len(meta)} images have too few skin pixels for an ITA and are "
                      f"left out of the ITA groups: {', '.join(names[:10])}" + (" ..." if len(names) > 10 else ""),
                      stacklevel=3)
    kept = dataset.subset(np.flatnonzero(~flagged)) if flagged.any() else dataset
    kept.meta["group"] = (kept.meta["ita"].to_numpy() <= threshold).astype(np.int64)
    kept.groups = kept.meta["group"].to_numpy(dtype=np.int64)
    kept.given_group_names = list(dataset.group_names)
    kept.group_names = ita_group_names(threshold)
    kept.skin_flagged_dropped = names
    counts = np.bincount(kept.groups, minlength=2)
    if len(kept) == 0 or counts.min() == 0:
        raise DataError(f"{what}: with --ita-threshold {threshold:g} the ITA groups hold {counts.tolist()} images "
                        "(lighter, darker); every split needs both. Choose a threshold inside the data's ITA range "
                        f"(here {np.nanmin(meta['ita']) if len(meta) else float('nan'):.0f}° to "
                        f"{np.nanmax(meta['ita']) if len(meta) else float('nan'):.0f}°).")
    return kept


def ita_group_names(threshold: float) -> list[str]:
    return [f"ITA > {threshold:g}° (lighter)", f"ITA ≤ {threshold:g}° (darker)"]


def skin_tone_summary(dataset: Any) -> dict[str, Any] | None:
    """For an audit: ITA categories against the dataset's given group (a confusion table), the flagged images,
    and agreement with a true Fitzpatrick type (synthderm, Fitzpatrick-17k: the `fitzpatrick` column)."""
    meta = getattr(dataset, "meta", None)
    if meta is None or "ita6" not in meta.columns:
        return None
    dropped = list(getattr(dataset, "skin_flagged_dropped", []))   # left out of ITA groups (group_source="ita")
    flagged = dropped + flagged_items(meta)
    import pandas as pd

    given = meta["given_group"] if "given_group" in meta.columns else meta["group"]
    given_names = list(getattr(dataset, "given_group_names", None) or dataset.group_names)
    label = [given_names[int(v)] if 0 <= int(v) < len(given_names) else str(v) for v in given]
    rows = pd.Categorical(label, categories=list(dict.fromkeys(
        [n for n in given_names if n in set(label)] + sorted(set(label) - set(given_names)))))
    table = pd.crosstab(pd.Series(rows, name="given group"), pd.Series(meta["ita6"].to_numpy(), name="ITA category"))
    out: dict[str, Any] = {"confusion": {"rows": [str(r) for r in table.index], "columns": [str(c) for c in table.columns],
                                         "counts": table.to_numpy().tolist()},
                           "flagged": flagged[:200], "n_flagged": len(flagged), "n": len(meta) + len(dropped)}
    if "fitzpatrick" in meta.columns:
        fitz = pd.to_numeric(meta["fitzpatrick"], errors="coerce").to_numpy()
        ok = np.isin(fitz, [1, 2, 3, 4, 5, 6])
        cat = ita_category(meta["ita"].to_numpy(), meta["skin_flagged"].to_numpy(dtype=bool))
        out["fitzpatrick_agreement"] = agreement(fitz[ok].astype(np.int64), cat[ok])
    return out


#: The ITA at the middle of each category (the outer two: 10° inside their open end), augmentation targets.
CATEGORY_CENTRES: dict[int, float] = {1: 62.0, 2: 48.0, 3: 34.5, 4: 19.0, 5: -10.0, 6: -40.0}


def shift_skin_tone(rgb_uint8: np.ndarray, target_ita: float, cfg: MaskConfig = MaskConfig()) -> np.ndarray:
    """One uint8 image (3, H, W) with its skin moved to the ITA `target_ita`, the lesion left as it is.

    The skin (every pixel passing the mask's thresholds, not only the border
    band) is shifted by one (ΔL*, Δb*): from the skin's median colour to the
    point of the same b* on the target ITA line, L* = 50 + b*·tan(ITA) (L*
    kept in [20, 85], b* moved along the line when L* is clipped). Lesion
    pixels and artefacts are not touched. An image flagged for too few skin
    pixels comes back unchanged.
    """
    from .colour import lab_to_srgb

    lab = _lab(np.asarray(rgb_uint8)[None])
    if _mask_from_lab(lab, cfg).mean() < cfg.min_fraction:
        return np.asarray(rgb_uint8)
    skin = _mask_from_lab(lab, cfg, band_only=False)[0]
    L0, b0 = np.median(lab[0, ..., 0][skin]), np.median(lab[0, ..., 2][skin])
    t = np.tan(np.radians(target_ita))
    b1 = max(b0, 4.0)
    L1 = 50.0 + b1 * t
    if not 20.0 <= L1 <= 85.0:
        L1 = float(np.clip(L1, 20.0, 85.0))
        b1 = (L1 - 50.0) / t if abs(t) > 1e-6 else b1
    out = lab[0].copy()
    out[..., 0][skin] += L1 - L0
    out[..., 2][skin] += b1 - b0
    return np.round(lab_to_srgb(out) * 255.0).astype(np.uint8).transpose(2, 0, 1)


class SkinToneAugment:
    """With probability `p`, move the skin of a uint8 image to another ITA category (the lesion kept).

    The target is the centre of a category drawn uniformly among the other
    five, with ±4° jitter: CIRCLe's idea (the same lesion on other skin
    tones) without a generative model, as the dermequity package's colour
    augmentation does. Uses torch's RNG, so DataLoader seeding makes it
    reproducible.
    """

    def __init__(self, p: float = 0.5, cfg: MaskConfig = MaskConfig()) -> None:
        self.p, self.cfg = p, cfg

    def __call__(self, img: Any) -> Any:
        import torch

        if float(torch.rand(())) >= self.p:
            return img
        arr = img.numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
        tone = image_ita(arr[None], self.cfg)
        current = int(tone.category()[0])
        if current == 0:
            return img
        others = [c for c in CATEGORY_CENTRES if c != current]
        target = CATEGORY_CENTRES[others[int(torch.randint(len(others), ()))]] + float(torch.rand(()) * 8 - 4)
        out = shift_skin_tone(arr, target, self.cfg)
        return torch.from_numpy(np.ascontiguousarray(out)) if isinstance(img, torch.Tensor) else out

    def __repr__(self) -> str:
        return f"SkinToneAugment(p={self.p})"
