"""Transfer of the deep-clustering attack to a clustering service (thesis §2.4, S10).

The thesis uploaded images to Face++'s album-clustering API, which returns
only group ids. Here the service is whatever the user points at, behind one
small interface: a Python callable ``service(images) -> labels`` (images
float32 N x C x H x W in [0, 1], labels one integer per image), or a command
(`CommandService`) that reads the images from an .npy file and writes the
labels to another: ``--service "python my_client.py {input} {output}"``.
Nothing is unpickled: both files are plain .npy arrays.

The attacker trains a surrogate locally, attacks it (the GAN of §2.3), and
sends the clean and the adversarial images to the service once each. A
service numbers its clusters afresh on every call, so the adversarial
clustering is matched to the clean one (Hungarian, most images agreeing)
before comparing:

* changed = share of images whose (matched) service cluster changed;
* transfer rate = among the images whose *surrogate* cluster the attack
  changed, the share whose service cluster changed too;
* NMI / ARI / ACC of the service's clusters against the labels, before and
  after (as the thesis's Fig. 2.13).
"""
from __future__ import annotations

import shlex
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from scipy.optimize import linear_sum_assignment

from .deep_attack import scores


class ServiceError(RuntimeError):
    """The clustering service failed or answered something that is not one label per image."""


@dataclass
class CommandService:
    """A command standing for the user's service: ``{input}`` = images .npy, ``{output}`` = labels .npy or .txt."""

    command: str
    timeout: float = 600.0

    def __post_init__(self) -> None:
        if "{input}" not in self.command or "{output}" not in self.command:
            raise ValueError(f"the service command must name {{input}} and {{output}}: {self.command!r}, e.g. "
                             "'python client.py {input} {output}'")

    def __call__(self, images: np.ndarray) -> np.ndarray:
        with tempfile.TemporaryDirectory() as tmp:
            src, dst = Path(tmp) / "images.npy", Path(tmp) / "labels.npy"
            np.save(src, np.asarray(images, np.float32))
            args = [a.replace("{input}", str(src)).replace("{output}", str(dst)) for a in shlex.split(self.command)]
            proc = subprocess.run(args, capture_output=True, text=True, timeout=self.timeout)
            if proc.returncode != 0:
                raise ServiceError(f"the service command exited with {proc.returncode}: {proc.stderr.strip()[-500:]}")
            if not dst.exists():
                txt = dst.with_suffix(".txt")
                if txt.exists():
                    return np.loadtxt(txt, dtype=np.int64, ndmin=1)
                raise ServiceError(f"the service command wrote no labels to {{output}} ({dst})")
            return np.load(dst, allow_pickle=False)


def query_service(service: Callable[[np.ndarray], np.ndarray], images: np.ndarray, what: str) -> np.ndarray:
    """Call the service, turning its failures and malformed answers into one clear error."""
    try:
        out = service(images)
    except ServiceError:
        raise
    except Exception as exc:   # the user's code: any failure is reported with what was sent
        raise ServiceError(f"the clustering service raised on the {what} images ({len(images)} images): "
                           f"{type(exc).__name__}: {exc}") from exc
    labels = np.asarray(out).reshape(-1)
    if len(labels) != len(images):
        raise ServiceError(f"the clustering service returned {len(labels)} labels for {len(images)} {what} images; "
                           "it must return one cluster id per image, in order")
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.equal(np.mod(labels, 1), 0)):
            raise ServiceError(f"the clustering service returned non-integer labels for the {what} images")
        labels = labels.astype(np.int64)
    return labels


def match_labels(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Renumber `other`'s clusters to agree with `reference` on as many items as possible (Hungarian)."""
    ref_ids, ri = np.unique(reference, return_inverse=True)
    oth_ids, oi = np.unique(other, return_inverse=True)
    table = np.zeros((len(oth_ids), len(ref_ids)))
    np.add.at(table, (oi, ri), 1)
    rows, cols = linear_sum_assignment(-table)
    mapping = {int(oth_ids[r]): int(ref_ids[c]) for r, c in zip(rows, cols)}
    fresh = iter(range(int(max(reference.max(), other.max())) + 1, 10 ** 9))
    return np.array([mapping[v] if v in mapping else mapping.setdefault(v, next(fresh)) for v in other.tolist()])


@dataclass
class TransferResult:
    images: int
    surrogate_changed: float       # share of images the attack moved on the surrogate
    service_changed: float         # share whose (matched) service cluster changed
    transfer_rate: float           # service changed, among the images moved on the surrogate
    service_before: dict[str, float]
    service_after: dict[str, float]
    nmi_clean_vs_adversarial: float


def transfer_rate(service_clean: np.ndarray, service_adv: np.ndarray, surrogate_clean: np.ndarray,
                  surrogate_adv: np.ndarray, y: np.ndarray | None = None) -> TransferResult:
    from sklearn.metrics import normalized_mutual_info_score
    moved_service = match_labels(service_clean, service_adv) != service_clean
    moved_surrogate = surrogate_adv != surrogate_clean
    rate = float(moved_service[moved_surrogate].mean()) if moved_surrogate.any() else float("nan")
    before = scores(y, service_clean) if y is not None else {}
    after = scores(y, service_adv) if y is not None else {}
    return TransferResult(int(len(service_clean)), float(moved_surrogate.mean()), float(moved_service.mean()), rate,
                          before, after, float(normalized_mutual_info_score(service_clean, service_adv)))
