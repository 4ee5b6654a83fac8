"""Checkpoints that load with ``torch.load(weights_only=True)``, pruned models included.

A checkpoint is a plain dict: the architecture recipe (`arch`, the arguments of
`build_model`), the state dict, and the `structure`: for every module the size
attributes that pruning can change (channel counts, feature counts, head
counts). Loading rebuilds the unpruned architecture, shrinks each module to the
recorded sizes and then loads the weights, so no code is ever unpickled.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.atomic import atomic_write
from .zoo import ModelError, build_model

FORMAT_VERSION = 1

# Attributes that structural pruning (Torch-Pruning, head pruning) rewrites.
_SIZE_ATTRS = (
    "in_channels", "out_channels", "in_features", "out_features", "num_features",
    "normalized_shape", "embed_dim", "kdim", "vdim", "head_dim", "num_heads", "hidden_dim",
    "groups", "_qkv_same_embed_dim",
)

# Module classes that surgery may substitute for torchvision ones; they must
# offer `from_structure(attrs) -> nn.Module`. Only classes registered here are
# ever instantiated on load.
_REPLACEMENT_TYPES: dict[str, type[nn.Module]] = {}


def register_module_type(cls: type[nn.Module]) -> type[nn.Module]:
    """Allow checkpoints to contain modules of `cls` (used as a class decorator)."""
    _REPLACEMENT_TYPES[cls.__name__] = cls
    return cls


def _plain(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [int(v) for v in value]
    if isinstance(value, bool):
        return value
    return int(value)


def model_structure(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Per module path: its class name and the size attributes it has."""
    out: dict[str, dict[str, Any]] = {}
    for name, module in model.named_modules():
        attrs = {a: _plain(getattr(module, a)) for a in _SIZE_ATTRS
                 if isinstance(getattr(module, a, None), (int, bool, tuple, list))}
        extra = getattr(module, "structure_attrs", None)
        if callable(extra):
            attrs.update(extra())
        if attrs or type(module).__name__ in _REPLACEMENT_TYPES:
            out[name] = {"type": type(module).__name__, "attrs": attrs}
    return out


def _permanent_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """State dict with any torch.nn.utils.prune masks folded into the weights."""
    sd = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if key.endswith("_mask") and key[:-5] + "_orig" in sd:
            continue
        if key.endswith("_orig") and key[:-5] + "_mask" in sd:
            out[key[:-5]] = (value * sd[key[:-5] + "_mask"]).detach().clone()
        else:
            out[key] = value.detach().clone()
    return out


def save_checkpoint(path: str | Path, model: nn.Module, arch: dict[str, Any],
                    extra: dict[str, Any] | None = None) -> Path:
    """Write model weights, architecture recipe and pruned sizes to `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT_VERSION,
        "arch": dict(arch),
        "structure": model_structure(model),
        "state_dict": {k: v.cpu() for k, v in _permanent_state_dict(model).items()},
        "extra": dict(extra or {}),
    }
    return save_tensors(path, payload)


def save_file(obj: Any, path: str | Path) -> None:
    """``torch.save`` through an open file, so a full disk surfaces as ENOSPC rather than only
    torch's ``enforce fail at inline_container.cc`` (`atomic_write` turns it into one sentence)."""
    with open(path, "wb") as fh:
        torch.save(obj, fh)


def save_tensors(path: str | Path, obj: Any) -> Path:
    """``torch.save(obj)`` to `path` atomically, under a unique temporary name (`atomic_write`)."""
    return atomic_write(path, lambda tmp: save_file(obj, tmp))


def load_file(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``, with an empty, truncated or pickled file said in one sentence.

    Raises ModelError naming the file and what to do, instead of torch's
    ``PytorchStreamReader failed``, ``EOFError`` or a weights-only unpickling error.
    """
    import pickle
    import zipfile

    path = Path(path)
    if not path.exists():
        raise ModelError(f"checkpoint {path} does not exist")
    size = path.stat().st_size
    if size == 0:
        raise ModelError(f"{path} is empty (0 bytes): it was not written completely. Run the command that "
                         "wrote it again (a run folder resumes), or copy the file again.")
    try:
        with warnings.catch_warnings():  # int8 tensors trigger torch's own TypedStorage deprecation notice
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelError(f"{path} holds Python objects beyond tensors and plain values, which equiprune never "
                         "unpickles (a pickled model or code); save the model with equiprune's "
                         "save_checkpoint.") from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as exc:
        raise ModelError(f"{path} is truncated or is not a PyTorch checkpoint ({size} bytes; torch says: "
                         f"{str(exc).splitlines()[0][:120]}). Run the command that wrote it again (a run "
                         "folder resumes), or copy the file again.") from exc


def _apply_structure(model: nn.Module, structure: dict[str, dict[str, Any]]) -> None:
    for name, rec in structure.items():
        try:
            module = model.get_submodule(name) if name else model
        except AttributeError:
            module = None
        if module is None or type(module).__name__ != rec["type"]:
            cls = _REPLACEMENT_TYPES.get(rec["type"])
            if cls is None:
                raise ModelError(
                    f"checkpoint has a {rec['type']} at {name!r} but the architecture has "
                    f"{type(module).__name__ if module is not None else 'nothing'} there; "
                    "was it saved from a different model? (Compressed or pruned ViT checkpoints need "
                    "`import equiprune.methods.compress` / `import equiprune.surgery` first; "
                    "`equiprune.methods.runs.open_run` does both.)")
            new = cls.from_structure(rec["attrs"])
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, new)
            continue
        for attr, value in rec["attrs"].items():
            if hasattr(module, attr):
                setattr(module, attr, tuple(value) if isinstance(value, list) else value)


def _reshape_tensors(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """Give every parameter and buffer the shape stored in the checkpoint."""
    for key, value in state_dict.items():
        owner_name, _, attr = key.rpartition(".")
        try:
            owner = model.get_submodule(owner_name) if owner_name else model
        except AttributeError:
            continue
        current = getattr(owner, attr, None)
        if not isinstance(current, torch.Tensor) or current.shape == value.shape:
            continue
        fresh = torch.empty(value.shape, dtype=value.dtype)
        if isinstance(current, nn.Parameter):
            setattr(owner, attr, nn.Parameter(fresh, requires_grad=current.requires_grad))
        else:
            owner.register_buffer(attr, fresh)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu"
                    ) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """Rebuild the model saved by `save_checkpoint`; returns (model, arch, extra)."""
    path = Path(path)
    payload = load_file(path, map_location)
    if not isinstance(payload, dict) or "arch" not in payload or "state_dict" not in payload:
        raise ModelError(f"{path} is not an equiprune checkpoint (no 'arch'/'state_dict' entries)")
    arch = payload["arch"]
    model = build_model(**{k: arch[k] for k in ("name", "num_classes", "width", "image_size")})
    _apply_structure(model, payload.get("structure", {}))
    state_dict = payload["state_dict"]
    _reshape_tensors(model, state_dict)
    result = model.load_state_dict(state_dict, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ModelError(
            f"checkpoint {path} does not fit architecture {arch.get('name')!r}: "
            f"{len(result.missing_keys)} missing weights (e.g. {result.missing_keys[:3]}), "
            f"{len(result.unexpected_keys)} unexpected (e.g. {result.unexpected_keys[:3]})")
    for module in list(model.modules()):
        # A registered module wired to the rest of the model by hooks (a multi-exit network's internal
        # classifiers, `multi_exit.ExitHeads`) reconnects itself once the whole model is rebuilt.
        relink = getattr(module, "relink", None)
        if callable(relink):
            relink(model)
    return model, arch, payload.get("extra", {})


def load_state_into(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a checkpoint's weights into an existing model, with a readable error on mismatch."""
    payload = load_file(path)
    state_dict = payload["state_dict"] if isinstance(payload, dict) and "state_dict" in payload else payload
    own = model.state_dict()
    wrong = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in state_dict.items()
             if k in own and own[k].shape != v.shape]
    missing = [k for k in own if k not in state_dict]
    if wrong or missing:
        detail = "; ".join(f"{k}: file {a} vs model {b}" for k, a, b in wrong[:3])
        raise ModelError(
            f"{path} does not fit this model: {len(wrong)} shape mismatches ({detail}), "
            f"{len(missing)} missing weights. Was it saved from another architecture or width?")
    model.load_state_dict(state_dict)
    return model
