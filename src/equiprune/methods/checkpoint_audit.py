"""Auditing a bare checkpoint: give it a run folder, then audit that folder like any other.

`equiprune audit --checkpoint model.pt --data NAME --out DIR` has no run
folder to read the data settings from, so ``checkpoint_run`` writes one:
config.json (kind ``audit``, the checkpoint path and digest, the data
settings, the architecture) and a byte-for-byte copy of the checkpoint as
model.pt. `audit_run` then does the audit unchanged, and the folder is an
ordinary run folder for `equiprune report`, `compare` and every `--run` verb.

A model trained elsewhere comes as a plain torchvision state dict, which
says nothing of its architecture: with a `StateDictArch` (``--arch NAME
[--num-classes K] [--width W]``) the file is read with
`models.weights.read_state_dict` (weights_only, ``module.`` prefixes,
``state_dict``/``model`` entries), loaded strictly into `build_model`'s
architecture (the head included: its class count must be the dataset's), and
model.pt is written as an equiprune checkpoint, so pruning, compression and
reprogramming read it like any trained run.
"""
from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ..data import DataConfig
from ..data.cache import atomic_write, file_sha256
from ..engine import RunDir, claim_run_folder, on_main
from ..models import ModelError, build_model, head_name, input_size
from ..models.weights import load_pretrained, read_state_dict
from .audit import AuditError, check_same_data
from .runs import load_announced, load_model_file, open_run, save_run_model

__all__ = ["StateDictArch", "checkpoint_run"]

#: Input size of a plain state dict when none is given: torchvision's ImageNet size.
PLAIN_IMAGE_SIZE = 224


@dataclass
class StateDictArch:
    """The architecture of a plain state dict (`build_model` arguments; `num_classes` None = the head's rows)."""

    name: str
    num_classes: int | None = None
    width: float = 1.0


def _plain_model(checkpoint: Path, spec: StateDictArch, image_size: int | None):
    """(model, arch) from a plain state dict: the weights loaded strictly into `spec`'s architecture."""
    state = read_state_dict(checkpoint)
    size = int(image_size or PLAIN_IMAGE_SIZE)
    probe = build_model(spec.name, 2, spec.width, size)
    head_key = head_name(probe) + ".weight"
    num_classes = spec.num_classes
    if num_classes is None:
        if head_key not in state:
            raise ModelError(f"{checkpoint} has no {head_key} (the head of {spec.name}); is --arch right? "
                             "Give --num-classes too if the file is of that architecture.")
        num_classes = int(state[head_key].shape[0])
    arch = {"name": spec.name, "num_classes": int(num_classes), "width": float(spec.width), "image_size": size}
    model = build_model(**arch)
    load_pretrained(model, state, str(checkpoint), replace_head=False)
    return model, arch


def _audit_image_size(model: Any, arch: dict[str, Any], extra: dict[str, Any], image_size: int | None,
                      checkpoint: Path) -> int:
    """The checkpoint's recorded input size (`models.input_size`), or `image_size` when given.

    A reprogrammed checkpoint's trigger fixes the size: another one is refused.
    """
    recorded = input_size(arch, model)
    if image_size is None or int(image_size) == recorded:
        return recorded
    trigger = extra.get("reprogram")
    if trigger and int(trigger.get("image_size", recorded)) != int(image_size):
        raise AuditError(f"{checkpoint} is reprogrammed with a trigger for {trigger['image_size']} px images; "
                         f"it cannot be audited at {image_size} px (leave out --image-size).")
    return int(image_size)


def _check_classes(arch: dict[str, Any], extra: dict[str, Any], splits: Any, data: DataConfig,
                   checkpoint: Path) -> list[str]:
    """Raise AuditError when the output count differs from the class count; notes on other class names."""
    n_model, n_data = int(arch["num_classes"]), int(splits.num_classes)
    if n_model != n_data:
        hint = " (is --label-level the one it was trained with?)" if data.name == "fitzpatrick17k" else ""
        raise AuditError(
            f"{checkpoint} predicts {n_model} classes but {data.name} has {n_data} "
            f"({', '.join(map(str, splits.classes[:8]))}{', ...' if n_data > 8 else ''}){hint}; audit a "
            "checkpoint on the dataset (and label coding) it was trained for.")
    saved = [str(c) for c in extra.get("classes") or []]
    if saved and saved != [str(c) for c in splits.classes]:
        return [f"the checkpoint's class names ({', '.join(saved)}) differ from the dataset's "
                f"({', '.join(map(str, splits.classes))}); outputs are matched to classes by position."]
    return []


def checkpoint_run(checkpoint: str | Path, data: DataConfig, out: str | Path,
                   image_size: int | None = None, plain: StateDictArch | None = None,
                   baseline_run: str | Path | None = None) -> RunDir:
    """Make `out` the run folder of `checkpoint` on `data`, ready for `audit_run`.

    Args:
        checkpoint: a model.pt written by equiprune (`save_checkpoint` / `save_run_model`).
        data: the dataset to audit on. Its ``image_size`` is replaced by the
            checkpoint's recorded input size, or by `image_size` when given
            (models with adaptive pooling accept other sizes).
        out: new run folder (running again with the same checkpoint and data
            re-uses it; other ones are an error).
        image_size: audit at this input size instead of the recorded one
            (with `plain`: the size to build the model for, default 224).
        plain: the architecture of a plain torchvision state dict; None = an
            equiprune checkpoint.
        baseline_run: the run the audit will compare with; its data are checked
            here, before `out` exists, so a refused baseline leaves no folder.

    Raises AuditError when the checkpoint's class count differs from the
    dataset's, or `out` is the folder holding the checkpoint; nothing is
    written then.
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise AuditError(f"checkpoint {checkpoint} does not exist; give the model.pt of a run folder "
                         "(or audit the folder itself with --run).")
    out = Path(out)
    if (out / RunDir.MODEL).resolve() == checkpoint.resolve():
        raise AuditError(f"--out {out} is the folder holding the checkpoint; audit that run folder with "
                         f"`equiprune audit --run {out}`, or give a new --out folder.")
    if plain is not None:
        model, arch = _plain_model(checkpoint, plain, image_size)
        extra: dict[str, Any] = {}
    else:
        try:  # fails early, with the loader's message, on a bad file
            model, arch, extra = load_model_file(checkpoint)
        except ModelError as exc:
            if "is not an equiprune checkpoint" not in str(exc):
                raise
            raise AuditError(f"{exc}. For a plain torchvision state dict give its architecture: --arch NAME "
                             "(and --num-classes K, --width W when they are not the head's rows and 1.0).") from None
    data = replace(data, image_size=_audit_image_size(model, arch, extra, image_size, checkpoint))
    if baseline_run is not None:  # before `out` is claimed or made: a refused baseline leaves no folder
        check_same_data(open_run(baseline_run).data_config, data, baseline_run, out)
    claim = claim_run_folder(out)  # noqa: F841  (busy or read-only: refused before any image is decoded)
    splits = load_announced(data, two_groups=True)
    notes = _check_classes(arch, extra, splits, data, checkpoint)

    rd = RunDir(out)
    config = {"kind": "audit", "checkpoint": str(checkpoint.resolve()), "data": asdict(data), "arch": dict(arch),
              # in settings, so `equiprune report` tells audits of different checkpoints apart
              "settings": {"checkpoint_sha256": file_sha256(checkpoint), "image_size": data.image_size,
                           "format": "state_dict" if plain is not None else "equiprune"}}
    rd.check_or_write_config(config, keys=["kind", "data", "arch", "settings"])
    if plain is not None:
        save_run_model(rd, model, arch, {"classes": [str(c) for c in splits.classes],
                                         "group_names": list(splits.group_names)})
    else:
        on_main(atomic_write, rd.model_path, lambda tmp: shutil.copyfile(checkpoint, tmp))
    for note in notes:
        rd.log(f"note: {note}")
    return rd
