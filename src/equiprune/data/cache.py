"""On-disk caches: the cache folder, config hashing, and the decoded-image cache.

Real images are decoded and resized ONCE into a uint8 array
``(N, 3, S, S)`` saved as ``.npy`` under the cache folder and memory-mapped on
later loads; per-epoch augmentation then runs on uint8 tensors.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .atomic import atomic_write  # noqa: F401  (re-exported: older imports use data.cache.atomic_write)
from .errors import DataError

__all__ = ["default_cache_dir", "config_key", "build_image_cache", "decode_image", "NpyImages"]

#: Bump when the cached formats or the decode/resize procedure change.
CACHE_VERSION = 1


def default_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``cache_dir`` if given, else ``$EQUIPRUNE_CACHE``, else ``~/.cache/equiprune``."""
    if cache_dir is not None:
        path = Path(cache_dir)
    elif os.environ.get("EQUIPRUNE_CACHE"):
        path = Path(os.environ["EQUIPRUNE_CACHE"])
    else:
        path = Path.home() / ".cache" / "equiprune"
    path = path.expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"cannot create the cache folder {path} ({exc}); set EQUIPRUNE_CACHE or "
            "DataConfig.cache_dir (Python) to a writable folder"
        ) from exc
    return path


def config_key(obj: Any) -> str:
    """A short stable hash of a JSON-serialisable object (sorted keys)."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha1(f"v{CACHE_VERSION}:{text}".encode()).hexdigest()[:16]


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def decode_image(path: str | os.PathLike, size: int) -> np.ndarray:
    """Decode one image file to uint8 ``(3, size, size)``.

    The shorter side is resized to ``size`` (bilinear, antialiased) and the
    centre square is kept, so later random crops of the training preset see
    the same content as the papers' ``Resize`` + ``RandomCrop``.
    """
    from PIL import Image

    with Image.open(path) as img:
        # JPEG draft mode decodes at a reduced scale directly: much faster for big photos.
        img.draft("RGB", (size, size))
        img = img.convert("RGB")
        w, h = img.size
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        img = img.resize((nw, nh), Image.BILINEAR, reducing_gap=3.0)
        left, top = (nw - size) // 2, (nh - size) // 2
        img = img.crop((left, top, left + size, top + size))
        arr = np.asarray(img, dtype=np.uint8)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


class NpyImages:
    """Rows of a ``.npy`` image cache, opened lazily as a read-only memory map.

    Pickles as (path, rows), so DataLoader workers started with ``spawn`` do
    not copy the images.
    """

    def __init__(self, path: str | os.PathLike, rows: np.ndarray | None = None) -> None:
        self.path = str(path)
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        self._arr: np.ndarray | None = None

    def _array(self) -> np.ndarray:
        if self._arr is None:
            self._arr = np.load(self.path, mmap_mode="r")
        return self._arr

    def __len__(self) -> int:
        return len(self.rows) if self.rows is not None else len(self._array())

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self._array().shape[1:])

    def __getitem__(self, i):
        if isinstance(i, (int, np.integer)):
            return self._array()[int(self.rows[i]) if self.rows is not None else int(i)]
        idx = np.arange(len(self))[i] if isinstance(i, slice) else np.asarray(i, dtype=np.int64)
        return NpyImages(self.path, self.rows[idx] if self.rows is not None else idx)

    def __array__(self, dtype=None, copy=None):
        arr = self._array() if self.rows is None else self._array()[self.rows]
        return np.asarray(arr, dtype=dtype)

    def __getstate__(self) -> dict:
        return {"path": self.path, "rows": self.rows, "_arr": None}


def _file_signature(paths: Sequence[str]) -> list:
    sig = []
    for p in paths:
        try:
            st = os.stat(p)
            sig.append((p, st.st_size, int(st.st_mtime)))
        except OSError:
            sig.append((p, -1, -1))
    return sig


def build_image_cache(
    paths: Sequence[str],
    size: int,
    cache_dir: str | os.PathLike | None = None,
    desc: str = "decoding images",
    num_workers: int = 2,
    progress: bool = True,
) -> NpyImages:
    """Decode ``paths`` once into a uint8 ``(N, 3, size, size)`` array cached as ``.npy``.

    The cache key covers the file list (paths, sizes, modification times) and
    ``size``; the result (also on a cache hit) is a lazily memory-mapped
    :class:`NpyImages`. Unreadable files raise a
    :class:`DataError` naming every one of them.
    """
    paths = [str(p) for p in paths]
    folder = default_cache_dir(cache_dir)
    key = config_key({"paths": _file_signature(paths), "size": size})
    out = folder / f"images_{key}.npy"
    if out.exists():
        try:
            arr = np.load(out, mmap_mode="r")
            if arr.shape == (len(paths), 3, size, size) and arr.dtype == np.uint8:
                return NpyImages(out)
        except (OSError, ValueError):
            pass
        warnings.warn(f"ignoring unreadable image cache {out}; rebuilding it", stacklevel=2)

    bad: list[tuple[str, str]] = []

    def write(tmp: str) -> None:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), 3, size, size))

        def one(i: int) -> None:
            try:
                arr[i] = decode_image(paths[i], size)
            except Exception as exc:  # noqa: BLE001 - any decoder failure means a corrupt file
                bad.append((paths[i], f"{type(exc).__name__}: {exc}"))

        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover - tqdm is a dependency
            tqdm = None
        bar = tqdm(total=len(paths), desc=desc, unit="img", disable=not progress or tqdm is None) if tqdm else None
        # PIL releases the GIL while decoding, so threads give a real speed-up.
        with ThreadPoolExecutor(max_workers=max(1, num_workers)) as pool:
            for _ in pool.map(one, range(len(paths))):
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
        arr.flush()
        del arr
        if bad:
            bad.sort()
            shown = "; ".join(f"{os.path.basename(p)} ({why})" for p, why in bad[:5])
            more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
            raise DataError(
                f"{len(bad)} image file(s) in {os.path.dirname(bad[0][0])} could not be decoded: "
                f"{shown}{more}. Re-download these files, or delete them and set "
                "--missing-images drop (DataConfig.missing_images) to train without them."
            )

    atomic_write(out, write)
    return NpyImages(out)
