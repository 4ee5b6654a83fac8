"""synthderm: seeded synthetic dermatology images with a documented skin-tone bias.

Each image is one lesion on a patch of skin, rendered in CIELAB and converted
to sRGB (see :mod:`equiprune.data.colour` for the formulas and their sources).
Everything is vectorised over chunks of images (numpy/torch array ops, no
per-pixel Python loops).

Lesion classes (shape / border / colour / texture); the lesion colour is
defined *relative* to the local skin colour (pigment darkens, blood reddens),
so a lesion is darker than the skin on every skin type:

====================== ================= ======== ================================ ==============================
class                  shape             border   colour                            texture
====================== ================= ======== ================================ ==============================
``nevus``              round             sharp    brown (L* x0.62, +a*, +b*)         uniform
``melanoma``           irregular-lobed   fuzzy    dark brown-black + blue-grey veil  reticular (pigment network)
``keratosis``          elongated         sharp    light brown / tan                  speckled (light and dark dots)
``angioma``            cluster of blobs  sharp    red-pink (a* +32)                  uniform
``annular``            ring, pale centre fuzzy    pink-red-brown ring                uniform
====================== ================= ======== ================================ ==============================

Skin: six Fitzpatrick-like types I-VI. For each image an ITA is drawn
uniformly inside its type's band (:data:`~equiprune.data.colour.ITA_BANDS`:
>55 I, 41-55 II, 28-41 III, 10-28 IV, -30-10 V, < -30 VI), b* uniformly in
``[12, 22]``, and L* = 50 + b* tan(ITA) so the colour has exactly that ITA
(when L* would leave ``[20, 80]`` it is clipped and b* moved along the same
ITA line); a* is drawn in ``[6, 14]``. Per image the skin also gets low-frequency
texture noise, pixel noise, a linear illumination gradient and, optionally,
dark hair-like strokes.

Group coding (same as the Fitzpatrick-17k reference, docs/METRICS.md):
``group = 0`` for types I-III (light), ``group = 1`` for IV-VI (dark).

The bias, explicit and controlled by :class:`SynthDermConfig`:

(a) **lower lesion contrast on dark skin**: the rendered pixel is
    ``skin + c * mask * (lesion - skin)`` in CIELAB, with
    ``c = light_contrast`` (1.0) on light skin and ``c = dark_contrast``
    (0.45) on dark skin, each times a jitter ``U(1 - contrast_jitter,
    1 + contrast_jitter)`` (capped at 1). The lesion's colour, texture and
    shape cues all fade toward the skin colour by that factor; ``c`` is the
    ``contrast`` column of the metadata.
(b) **class-prior shift between groups**: classes are drawn with
    ``class_priors`` on light skin and ``dark_class_priors`` on dark skin
    (by default melanoma is rarer on dark skin).
(c) **under-representation of dark skin**: a fraction ``dark_fraction``
    (0.2) of the images is dark skin.

Setting ``dark_contrast = light_contrast``, ``dark_class_priors = None`` and
``dark_fraction = 0.5`` removes the bias.

**A positive control for SCP** (``group_cue="marker"``, not the default): the
group is no longer skin tone but the clinic an image comes from. Skin types
are drawn from one distribution for both groups (types I-III with
probability ``1 - dark_fraction``, as the default draws them), so skin colour
says nothing about the group; instead a clinic-B image (group 1) carries a
small purple ink mark near one corner with probability ``marker_prob``
(group 0 never does), the kind of acquisition artefact known to act as a
shortcut in dermatology. With the class-prior shift (b) between the clinics,
the mark predicts the class, and a model that uses it treats the clinics
differently: the group gap runs through the few channels that see the mark,
which is the situation SCP assumes. The contrast factor (a) then follows the
skin type (IV-VI), not the group; set ``dark_contrast = 1.0`` for a gap that
comes from the shortcut alone. ``marker`` is a metadata column.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .cache import atomic_write, config_key, default_cache_dir
from .colour import ITA_BANDS, ita, lab_to_srgb_uint8
from .errors import DataError

__all__ = ["SynthDermConfig", "SynthDermData", "generate_synthderm", "CLASS_NAMES", "GROUP_NAMES"]

CLASS_NAMES: tuple[str, ...] = ("nevus", "melanoma", "keratosis", "angioma", "annular")
GROUP_NAMES: tuple[str, ...] = ("light (I-III)", "dark (IV-VI)")
MARKER_GROUP_NAMES: tuple[str, ...] = ("clinic A", "clinic B (ink mark)")
GROUP_CUES: tuple[str, ...] = ("skin", "marker")

# Fixed so that the output for a seed does not depend on memory settings.
_CHUNK = 128


@dataclass
class SynthDermConfig:
    """Settings of the synthetic dermatology generator (every field is JSON-serialisable).

    Attributes:
        n: number of images in the pool (split later into train/val/test).
        image_size: height = width in pixels.
        seed: the only source of randomness; same config -> same images.
        class_priors: class frequencies on light skin (types I-III), in the
            order of ``CLASS_NAMES``; normalised to sum 1.
        dark_class_priors: class frequencies on dark skin (IV-VI), bias (b);
            ``None`` means the same as ``class_priors``.
        dark_fraction: fraction of images with dark skin (IV-VI), bias (c).
        light_contrast: lesion contrast factor ``c`` on light skin.
        dark_contrast: lesion contrast factor ``c`` on dark skin, bias (a):
            the lesion colour is blended toward the skin colour,
            ``pixel = skin + c * (lesion - skin)``.
        contrast_jitter: per-image relative jitter of ``c``.
        light_type_probs: probabilities of types I, II, III inside the light group.
        dark_type_probs: probabilities of types IV, V, VI inside the dark group.
        skin_noise: amplitude multiplier of the skin texture (low-frequency
            and pixel noise, in CIELAB units; 1.0 = about +-2 L*).
        illumination: maximum slope of the linear illumination gradient
            (relative change of L* from the centre to the edge).
        hair_prob: probability that an image has 1-3 hair-like strokes.
        group_cue: ``"skin"`` (group = skin tone, the default) or
            ``"marker"`` (group = clinic, seen only through an ink mark; the
            positive control described in the module docstring).
        marker_prob: marker mode: probability that a group-1 image carries the mark.
    """

    n: int = 6000
    image_size: int = 64
    seed: int = 0
    class_priors: tuple[float, ...] = (0.24, 0.20, 0.20, 0.18, 0.18)
    dark_class_priors: tuple[float, ...] | None = (0.30, 0.08, 0.22, 0.20, 0.20)
    dark_fraction: float = 0.2
    light_contrast: float = 1.0
    dark_contrast: float = 0.45
    contrast_jitter: float = 0.1
    light_type_probs: tuple[float, float, float] = (0.3, 0.4, 0.3)
    dark_type_probs: tuple[float, float, float] = (0.45, 0.35, 0.2)
    skin_noise: float = 1.0
    illumination: float = 0.08
    hair_prob: float = 0.2
    group_cue: str = "skin"
    marker_prob: float = 1.0

    def __post_init__(self) -> None:
        # JSON round-trips turn tuples into lists; keep the hash stable.
        for name in ("class_priors", "dark_class_priors", "light_type_probs", "dark_type_probs"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, tuple(float(v) for v in value))
        self.validate()

    def validate(self) -> None:
        """Raise :class:`DataError` for settings that cannot be rendered."""
        k = len(CLASS_NAMES)
        if self.n < 1:
            raise DataError(f"SynthDermConfig.n must be >= 1, got {self.n}")
        if self.image_size < 8:
            raise DataError(f"SynthDermConfig.image_size must be >= 8 pixels, got {self.image_size}")
        for name in ("class_priors", "dark_class_priors"):
            pri = getattr(self, name)
            if pri is None:
                continue
            if len(pri) != k or min(pri) < 0 or sum(pri) <= 0:
                raise DataError(
                    f"SynthDermConfig.{name} must be {k} non-negative numbers (one per class "
                    f"{list(CLASS_NAMES)}) with a positive sum, got {pri}"
                )
        for name in ("light_type_probs", "dark_type_probs"):
            pri = getattr(self, name)
            if len(pri) != 3 or min(pri) < 0 or sum(pri) <= 0:
                raise DataError(f"SynthDermConfig.{name} must be 3 non-negative numbers, got {pri}")
        if not 0.0 <= self.dark_fraction <= 1.0:
            raise DataError(f"SynthDermConfig.dark_fraction must be in [0, 1], got {self.dark_fraction}")
        for name in ("light_contrast", "dark_contrast"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise DataError(f"SynthDermConfig.{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.contrast_jitter < 1.0:
            raise DataError(f"SynthDermConfig.contrast_jitter must be in [0, 1), got {self.contrast_jitter}")
        if not 0.0 <= self.hair_prob <= 1.0:
            raise DataError(f"SynthDermConfig.hair_prob must be in [0, 1], got {self.hair_prob}")
        if self.group_cue not in GROUP_CUES:
            raise DataError(f"SynthDermConfig.group_cue must be one of {GROUP_CUES}, got {self.group_cue!r}")
        if not 0.0 <= self.marker_prob <= 1.0:
            raise DataError(f"SynthDermConfig.marker_prob must be in [0, 1], got {self.marker_prob}")

    @property
    def group_names(self) -> list[str]:
        """Names of groups 0 and 1: skin tones, or the clinics in marker mode."""
        return list(MARKER_GROUP_NAMES if self.group_cue == "marker" else GROUP_NAMES)


@dataclass
class SynthDermData:
    """A generated pool: ``images`` uint8 (N, 3, H, W), ``masks`` uint8 (N, H, W) lesion
    opacity (255 = lesion), ``meta`` one row per image, ``classes``, ``group_names``."""

    images: np.ndarray
    masks: np.ndarray
    meta: pd.DataFrame
    classes: list[str] = field(default_factory=lambda: list(CLASS_NAMES))
    group_names: list[str] = field(default_factory=lambda: list(GROUP_NAMES))


def _exact_counts(n: int, probs: np.ndarray) -> np.ndarray:
    """Split ``n`` into integer counts proportional to ``probs`` (largest remainder)."""
    probs = np.asarray(probs, dtype=np.float64)
    probs = probs / probs.sum()
    raw = probs * n
    counts = np.floor(raw).astype(np.int64)
    rest = n - counts.sum()
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[:rest]] += 1
    return counts


def _sample_pool(cfg: SynthDermConfig, rng: np.random.Generator) -> pd.DataFrame:
    """Per-image labels, groups, skin types and skin colours (no pixels)."""
    n = cfg.n
    n_dark = int(round(n * cfg.dark_fraction))
    group = np.r_[np.zeros(n - n_dark, np.int64), np.ones(n_dark, np.int64)]
    light_pri = np.asarray(cfg.class_priors)
    dark_pri = np.asarray(cfg.dark_class_priors if cfg.dark_class_priors is not None else cfg.class_priors)
    label = np.r_[
        np.repeat(np.arange(len(CLASS_NAMES)), _exact_counts(n - n_dark, light_pri)),
        np.repeat(np.arange(len(CLASS_NAMES)), _exact_counts(n_dark, dark_pri)),
    ]
    perm = rng.permutation(n)
    group, label = group[perm], label[perm]

    lt = np.asarray(cfg.light_type_probs, dtype=np.float64)
    dt = np.asarray(cfg.dark_type_probs, dtype=np.float64)
    # Marker mode: the skin tone of an image is drawn as the default draws it, but apart from its group.
    tone = group if cfg.group_cue == "skin" else group[np.random.default_rng([cfg.seed, 2]).permutation(n)]
    ftype = np.where(
        tone == 0,
        1 + rng.choice(3, size=n, p=lt / lt.sum()),
        4 + rng.choice(3, size=n, p=dt / dt.sum()),
    )
    lo = np.array([ITA_BANDS[t][0] for t in range(1, 7)])[ftype - 1]
    hi = np.array([ITA_BANDS[t][1] for t in range(1, 7)])[ftype - 1]
    # Stay 0.5 degree inside each band so the recomputed ITA never lands on an edge.
    angle = rng.uniform(lo + 0.5, hi - 0.5)
    tan = np.tan(np.radians(angle))
    b = rng.uniform(12.0, 22.0, size=n)
    L = 50.0 + b * tan
    # Keep L* in a plausible skin range; moving b* along the ITA line keeps the angle exact.
    L_ok = np.clip(L, 20.0, 80.0)
    b = np.where(L_ok != L, (L_ok - 50.0) / tan, b)
    L = L_ok
    a = rng.uniform(6.0, 14.0, size=n)

    base = np.where(ftype <= 3, cfg.light_contrast, cfg.dark_contrast)
    jitter = rng.uniform(1.0 - cfg.contrast_jitter, 1.0 + cfg.contrast_jitter, size=n)
    contrast = np.minimum(base * jitter, 1.0)

    marker = np.zeros(n, np.int64)
    if cfg.group_cue == "marker":
        marker = ((group == 1) & (np.random.default_rng([cfg.seed, 3]).random(n) < cfg.marker_prob)).astype(np.int64)
    return pd.DataFrame(
        {
            "label": label,
            "class_name": np.asarray(CLASS_NAMES)[label],
            "group": group,
            "marker": marker,
            "fitzpatrick": ftype.astype(np.int64),
            "ita": ita(L, b),
            "skin_L": L,
            "skin_a": a,
            "skin_b": b,
            "contrast": contrast,
        }
    )


def _tensor(x) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def _col(x) -> torch.Tensor:
    """A per-image vector as a (B, 1, 1) tensor for broadcasting against (B, H, W)."""
    return _tensor(x).view(-1, 1, 1)


def _upsampled_noise(rng: np.random.Generator, b: int, ch: int, grid: int, size: int) -> torch.Tensor:
    """Low-frequency noise (b, ch, size, size): a coarse normal grid interpolated smoothly.

    The interpolation is separable (Gaussian weights normalised per pixel,
    applied as two small matrix products), much cheaper than ``interpolate``.
    """
    coarse = torch.from_numpy(rng.standard_normal((b, ch, grid, grid), dtype=np.float32))
    w = _noise_basis(grid, size)
    return w @ coarse @ w.T


_BASIS_CACHE: dict[tuple[int, int], torch.Tensor] = {}


def _noise_basis(grid: int, size: int) -> torch.Tensor:
    key = (grid, size)
    if key not in _BASIS_CACHE:
        pix = (np.arange(size) + 0.5) / size * grid - 0.5  # pixel centres in grid units
        w = np.exp(-0.5 * ((pix[:, None] - np.arange(grid)[None, :]) / 0.7) ** 2)
        # renormalise so the noise keeps unit variance everywhere
        w /= np.sqrt((w**2).sum(1, keepdims=True))
        _BASIS_CACHE[key] = torch.from_numpy(w.astype(np.float32))
    return _BASIS_CACHE[key]


def _render_chunk(meta: pd.DataFrame, cfg: SynthDermConfig, rng: np.random.Generator,
                  marker_rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Render the images of ``meta`` rows; returns uint8 images, uint8 masks and extra meta columns.

    Work that only one class needs (blobs, pigment network, speckles, ring)
    runs on that class's images only, so the cost is about one shape per image.
    The ink marks of marker mode draw from ``marker_rng``, so the rest of an
    image is the same as without them.
    """
    B, S = len(meta), cfg.image_size
    label = meta["label"].to_numpy()

    # --- per-image random parameters (drawn for every image, in a fixed order) ---
    cx, cy = rng.uniform(-0.2, 0.2, B), rng.uniform(-0.2, 0.2, B)
    radius = rng.uniform(0.28, 0.45, B)
    theta = rng.uniform(0.0, math.pi, B)
    aspect_round = np.sqrt(rng.uniform(1.0, 1.2, B))
    aspect_long = np.sqrt(rng.uniform(1.9, 2.6, B))
    harm_amp = rng.uniform(0.05, 0.14, (B, 4))
    harm_phase = rng.uniform(0.0, 2 * math.pi, (B, 4))
    kmax = 6
    nblob = rng.integers(3, kmax + 1, B)
    blob_ang = rng.uniform(0, 2 * math.pi, (B, kmax))
    blob_off = rng.uniform(0.25, 0.75, (B, kmax)) * radius[:, None]
    blob_r = rng.uniform(0.28, 0.42, (B, kmax)) * radius[:, None]
    ring_w = rng.uniform(0.22, 0.32, B) * radius
    fuzzy_cls = np.isin(label, [1, 4])
    soft = np.where(fuzzy_cls, rng.uniform(0.045, 0.075, B), rng.uniform(0.012, 0.02, B))
    kL = np.array([0.62, 0.35, 0.78, 0.80, 0.80])[label] * rng.uniform(0.94, 1.06, B)
    da = np.array([5.0, 0.0, 3.0, 32.0, 18.0])[label] + rng.uniform(-3, 3, B)
    db = np.array([8.0, -2.0, 10.0, 2.0, 4.0])[label] + rng.uniform(-3, 3, B)
    net_freq = rng.uniform(16.0, 22.0, B)
    net_phase = rng.uniform(0, 2 * math.pi, (B, 2))
    slope = rng.uniform(0.0, cfg.illumination, B)
    alpha = rng.uniform(0, 2 * math.pi, B)
    nhair = np.where(rng.uniform(size=B) < cfg.hair_prob, rng.integers(1, 4, B), 0)

    # --- geometry (coordinates in [-1, 1]) ------------------------------------
    coords = (torch.arange(S, dtype=torch.float32) + 0.5) * (2.0 / S) - 1.0
    X, Y = coords.view(1, 1, S), coords.view(1, S, 1)
    dx, dy = X - _col(cx), Y - _col(cy)  # (B,1,S), (B,S,1): cheap broadcasts
    ct, st = _col(np.cos(theta)), _col(np.sin(theta))
    u = dx * ct + dy * st
    v = dy * ct - dx * st
    r = _col(radius)

    d = torch.empty(B, S, S)
    ringness = None
    for k in range(len(CLASS_NAMES)):
        idx = np.flatnonzero(label == k)
        if idx.size == 0:
            continue
        ti = torch.from_numpy(idx)
        uk, vk, rk = u[ti], v[ti], r[ti]
        if k in (0, 4):  # round (nevus) / outer edge of the ring (annular)
            ar = _col(aspect_round[idx])
            rho = torch.sqrt((uk / ar) ** 2 + (vk * ar) ** 2)
            d[ti] = rho - rk
            if k == 4:
                w = _col(ring_w[idx])
                ringness = (ti, torch.sigmoid(-(torch.abs(rho - (rk - w / 2)) - w / 2) / _col(soft[idx])))
        elif k == 1:  # irregular-lobed: radius modulated by harmonics 2..5 of the angle
            phi = torch.atan2(vk, uk)
            mod = torch.ones_like(phi)
            for h in range(4):
                mod += _col(harm_amp[idx, h]) * torch.cos((h + 2) * phi + _col(harm_phase[idx, h]))
            d[ti] = torch.sqrt(uk**2 + vk**2) - rk * mod
        elif k == 2:  # elongated ellipse
            al = _col(aspect_long[idx])
            d[ti] = torch.sqrt((uk / al) ** 2 + (vk * al) ** 2) - rk
        else:  # cluster of blobs: normalised distance to the nearest blob
            on = np.arange(kmax)[None, :] < nblob[idx, None]
            # inactive blobs are moved far away instead of masked
            bx = np.where(on, cx[idx, None] + blob_off[idx] * np.cos(blob_ang[idx]), 50.0)
            by = np.where(on, cy[idx, None] + blob_off[idx] * np.sin(blob_ang[idx]), 50.0)
            br = blob_r[idx]
            qx = ((X.view(1, 1, 1, S) - _tensor(bx).view(-1, kmax, 1, 1)) / _tensor(br).view(-1, kmax, 1, 1)) ** 2
            qy = ((Y.view(1, 1, S, 1) - _tensor(by).view(-1, kmax, 1, 1)) / _tensor(br).view(-1, kmax, 1, 1)) ** 2
            q = (qx + qy).amin(dim=1)
            d[ti] = (torch.sqrt(q) - 1.0) * _col(br.mean(1))
    mask = torch.sigmoid(d.div_(-_col(soft)))  # lesion opacity in [0, 1]

    # --- skin colour field ------------------------------------------------------
    noise = _upsampled_noise(rng, B, 4, 6, S)  # skin L, a, b and lesion mottling
    amp = cfg.skin_noise
    skin_L = _col(meta["skin_L"].to_numpy()) + amp * 2.0 * noise[:, 0]
    skin_L += (0.8 * amp) * torch.from_numpy(rng.standard_normal((B, S, S), dtype=np.float32))
    skin_a = _col(meta["skin_a"].to_numpy()) + amp * noise[:, 1]
    skin_b = _col(meta["skin_b"].to_numpy()) + amp * noise[:, 2]

    # --- lesion colour as an offset from the local skin colour -----------------
    dL = skin_L * _col(kL - 1.0) + 2.0 * noise[:, 3]
    dA = _col(da).expand(B, S, S).clone()
    dB = _col(db).expand(B, S, S).clone()

    idx = np.flatnonzero(label == 1)  # melanoma: pigment network + blue-grey veil
    if idx.size:
        ti = torch.from_numpy(idx)
        uk, vk, f = u[ti], v[ti], _col(net_freq[idx])
        wu = uk + 0.12 * torch.sin(3.0 * vk + _col(net_phase[idx, 0]))
        wv = vk + 0.12 * torch.sin(3.0 * uk + _col(net_phase[idx, 1]))
        line = torch.minimum(torch.sin(f * wu).abs_(), torch.sin(f * wv).abs_())
        net = torch.exp(-((line / 0.35) ** 2))
        sL = skin_L[ti]
        veil = 0.7 * torch.sigmoid((_upsampled_noise(rng, idx.size, 1, 4, S)[:, 0] - 0.3) / 0.15)
        lesL = sL + dL[ti] - 12.0 * net * (sL / 60.0)
        lesL = lesL + veil * (0.75 * sL - lesL)
        dL[ti] = lesL - sL
        dA[ti] = dA[ti] + veil * (-12.0 - dA[ti])
        dB[ti] = dB[ti] + veil * (-20.0 - dB[ti])

    idx = np.flatnonzero(label == 2)  # keratosis: light (milia-like) and dark (comedo-like) dots
    if idx.size:
        ti = torch.from_numpy(idx)
        speck = torch.from_numpy(rng.random((idx.size, S, S), dtype=np.float32))
        dots = 22.0 * (speck > 0.955).float() - 16.0 * (speck < 0.045).float()
        dL[ti] = dL[ti] + dots * (skin_L[ti] / 60.0)

    if ringness is not None:  # annular: pale centre inside the ring
        ti, ring = ringness
        pale = 1.0 - ring
        dL[ti] = dL[ti] + pale * (0.08 * skin_L[ti] - dL[ti])
        dA[ti] = dA[ti] + pale * (-2.0 - dA[ti])
        dB[ti] = dB[ti] + pale * (-3.0 - dB[ti])

    cm = mask * _col(meta["contrast"].to_numpy())  # bias (a): contrast factor c
    L = skin_L.add_(cm * dL)
    A = skin_a + cm * dA
    Bc = skin_b + cm * dB

    # --- illumination gradient and hair ---------------------------------------
    L.mul_(1.0 + _col(slope * np.cos(alpha)) * X + _col(slope * np.sin(alpha)) * Y)
    idx = np.flatnonzero(nhair > 0)
    if idx.size:
        ti, n, hm = torch.from_numpy(idx), idx.size, 3
        on = _tensor(np.arange(hm)[None, :] < nhair[idx, None]).view(n, hm, 1, 1)
        p0x = _tensor(rng.uniform(-1, 1, (n, hm))).view(n, hm, 1, 1)
        p0y = _tensor(rng.uniform(-1, 1, (n, hm))).view(n, hm, 1, 1)
        beta = rng.uniform(0, math.pi, (n, hm))
        bend = _tensor(rng.uniform(-0.6, 0.6, (n, hm))).view(n, hm, 1, 1)
        hw = _tensor(rng.uniform(0.012, 0.022, (n, hm))).view(n, hm, 1, 1)
        cb, sb = _tensor(np.cos(beta)).view(n, hm, 1, 1), _tensor(np.sin(beta)).view(n, hm, 1, 1)
        hx, hy = X.view(1, 1, 1, S) - p0x, Y.view(1, 1, S, 1) - p0y
        along = hx * cb + hy * sb
        perp = hy * cb - hx * sb - bend * along**2
        hair = (on * torch.exp(-((perp / hw) ** 2))).amax(dim=1)
        for ch, target in ((L, 18.0), (A, 3.0), (Bc, 6.0)):
            ch[ti] = ch[ti] + hair * (target - ch[ti])

    idx = np.flatnonzero(meta["marker"].to_numpy() == 1)
    if idx.size:  # marker mode: a purple ink dot near the top-left corner (flips move it to the others)
        assert marker_rng is not None
        ti, n = torch.from_numpy(idx), idx.size
        mx = _col(marker_rng.uniform(-0.84, -0.72, n))
        my = _col(marker_rng.uniform(-0.84, -0.72, n))
        mr = _col(marker_rng.uniform(0.09, 0.12, n))
        ink = torch.sigmoid((mr - torch.sqrt((X - mx) ** 2 + (Y - my) ** 2)) / 0.015)
        for ch, target in ((L, 38.0), (A, 28.0), (Bc, -32.0)):
            ch[ti] = ch[ti] + ink * (target - ch[ti])

    images = lab_to_srgb_uint8(L, A, Bc).numpy()
    masks = (mask * 255.0).round_().to(torch.uint8).numpy()
    extra = {
        "lesion_x": cx,
        "lesion_y": cy,
        "lesion_radius": radius,
        "border": np.where(fuzzy_cls, "fuzzy", "sharp"),
        "hair_strokes": nhair.astype(np.int64),
    }
    return images, masks, extra


def _generate(cfg: SynthDermConfig) -> SynthDermData:
    rng = np.random.default_rng([cfg.seed, 0])
    meta = _sample_pool(cfg, rng)
    S = cfg.image_size
    images = np.empty((cfg.n, 3, S, S), np.uint8)
    masks = np.empty((cfg.n, S, S), np.uint8)
    extras: list[dict] = []
    # Small element-wise ops on a shared 2-core machine run several times faster
    # on one thread than with intra-op threads competing with other processes.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            for ci, start in enumerate(range(0, cfg.n, _CHUNK)):
                stop = min(start + _CHUNK, cfg.n)
                chunk_rng = np.random.default_rng([cfg.seed, 1, ci])
                marker_rng = np.random.default_rng([cfg.seed, 4, ci]) if cfg.group_cue == "marker" else None
                images[start:stop], masks[start:stop], extra = _render_chunk(meta.iloc[start:stop], cfg, chunk_rng,
                                                                             marker_rng)
                extras.append(extra)
    finally:
        torch.set_num_threads(threads)
    for key in extras[0]:
        meta[key] = np.concatenate([e[key] for e in extras])
    return SynthDermData(images=images, masks=masks, meta=meta, group_names=cfg.group_names)


def generate_synthderm(
    cfg: SynthDermConfig | None = None,
    *,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> SynthDermData:
    """Generate (or load from the cache) a synthderm pool.

    The cache holds ``synthderm_<key>.npz`` (compressed uint8 images and
    masks) and ``synthderm_<key>.csv`` (metadata) under
    :func:`~equiprune.data.cache.default_cache_dir`; ``key`` hashes the
    whole config, so any change of a field regenerates.
    """
    cfg = cfg or SynthDermConfig()
    cfg.validate()
    if not cache:
        return _generate(cfg)
    folder = default_cache_dir(cache_dir)
    key = config_key({"synthderm": dataclasses.asdict(cfg)})
    npz, csv = folder / f"synthderm_{key}.npz", folder / f"synthderm_{key}.csv"
    if npz.exists() and csv.exists():
        try:
            with np.load(npz) as z:
                images, masks = z["images"], z["masks"]
            meta = pd.read_csv(csv)
            if len(meta) == len(images) == cfg.n:
                return SynthDermData(images=images, masks=masks, meta=meta, group_names=cfg.group_names)
        except (OSError, ValueError, KeyError):
            pass  # unreadable cache: regenerate below
    data = _generate(cfg)
    atomic_write(csv, lambda p: data.meta.to_csv(p, index=False))
    atomic_write(npz, lambda p: _write_npz(p, images=data.images, masks=data.masks))
    return data


def _write_npz(path: str, **arrays: np.ndarray) -> None:
    """Like ``np.savez_compressed`` but with zlib level 1: the noisy images barely
    compress better at higher levels, and level 1 is about twice as fast."""
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, arr in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.ascontiguousarray(arr), allow_pickle=False)


def _cache_paths(cfg: SynthDermConfig, cache_dir: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """Where :func:`generate_synthderm` caches ``cfg`` (for tests and cleanup tools)."""
    folder = default_cache_dir(cache_dir)
    key = config_key({"synthderm": dataclasses.asdict(cfg)})
    return folder / f"synthderm_{key}.npz", folder / f"synthderm_{key}.csv"
