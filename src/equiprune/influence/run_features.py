"""A run's penultimate-layer features as a feature table.

The surrogate head of the influence functions sits where the network's own
classifier head sits: its input is the output of everything before the last
Linear layer. Features are taken on *un-augmented* images (augmentation would
break the fixed-sample assumption of influence functions), in eval mode, with
the network's own predictions kept so the report can say how well the
surrogate head agrees with the network.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..data.atomic import atomic_write
from ..data.cache import config_key, default_cache_dir, file_sha256
from ..engine import make_loader
from ..methods.runs import open_run
from .table import FeatureTable

# Columns of a dataset's metadata that are bookkeeping, not something a rule should name.
NOT_INTERPRETABLE = ("pool_index", "index", "class_name", "label", "group", "image", "path", "file", "md5hash",
                     "url", "split")


def head_layer(model: nn.Module) -> str:
    """Module path of the classifier head: the last nn.Linear in module order."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise ValueError("the model has no Linear layer to take penultimate features from")
    return names[-1]


@torch.inference_mode()
def penultimate(model: nn.Module, dataset, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(features, network predictions) for every item of `dataset`, in order."""
    module = model.get_submodule(head_layer(model))
    feats: list[torch.Tensor] = []
    handle = module.register_forward_pre_hook(lambda _m, inp: feats.append(inp[0].flatten(1).double().cpu()))
    preds = []
    was = model.training
    model.eval()
    try:
        for batch in make_loader(dataset, batch_size):
            preds.append(model(batch[0]).argmax(1).cpu())
    finally:
        handle.remove()
        model.train(was)
    return torch.cat(feats).numpy(), torch.cat(preds).numpy()


def _cache_file(loaded) -> Path:
    """Where a run's features are cached: keyed by the model file's bytes and the data settings.

    In the data cache folder (``DataConfig.cache_dir`` / ``$EQUIPRUNE_CACHE``),
    not the run folder: `influence` and `trim` on one run are two processes
    writing child folders, and the run folder has one writer. A retrained or
    pruned model, or other data settings, get another key.
    """
    key = config_key({"model": file_sha256(loaded.run.model_path), "data": asdict(loaded.data_config),
                      "what": "penultimate features, un-augmented, eval mode"})
    return default_cache_dir(loaded.data_config.cache_dir) / "features" / f"penultimate-{key}.npz"


def _cached(path: Path, sizes: dict[str, int]) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError):
        return None  # absent or unreadable: extract again
    ok = all(f"{s}_X" in out and len(out[f"{s}_X"]) == n and len(out[f"{s}_pred"]) == n for s, n in sizes.items())
    return out if ok else None


def features_from_run(run: str | Path, batch_size: int = 256, cache: bool = True) -> FeatureTable:
    """Train/val/test penultimate features of a run's model, with the datasets' metadata.

    The forward pass over every image is the slow part (minutes for ISIC's
    25,000 images), so with `cache` the features and predictions are kept in
    the data cache (:func:`_cache_file`) and the next `influence` or `trim` on
    the same model reads them instead.
    """
    loaded = open_run(run)
    splits = loaded.splits()
    test_tf = splits.test.transform
    parts = {"train": splits.train.with_transform(test_tf), "val": splits.val, "test": splits.test}
    path = _cache_file(loaded) if cache else None
    stored = _cached(path, {k: len(ds) for k, ds in parts.items()}) if path is not None else None
    fresh: dict[str, np.ndarray] = {}
    X, y, g, split, ids, pred, metas = [], [], [], [], [], [], []
    for name, ds in parts.items():
        if stored is not None:
            f, p = stored[f"{name}_X"], stored[f"{name}_pred"]
        else:
            f, p = penultimate(loaded.model, ds, batch_size)
            fresh[f"{name}_X"], fresh[f"{name}_pred"] = f.astype(np.float32), p
        X.append(f)
        pred.append(p)
        y.append(np.asarray(ds.labels))
        g.append(np.asarray(ds.groups))
        split += [name] * len(ds)
        meta = ds.meta.reset_index(drop=True)
        ident = next((c for c in ("image", "path", "file", "pool_index") if c in meta.columns), None)
        ids += [f"{name}:{v}" for v in (meta[ident] if ident else range(len(ds)))]
        metas.append(meta[[c for c in meta.columns if c not in NOT_INTERPRETABLE]])
    if path is not None and fresh:
        def save(tmp: str) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, **fresh)
        atomic_write(path, save)
    return FeatureTable(np.concatenate(X), np.concatenate(y), np.concatenate(g), np.asarray(split),
                        np.asarray(ids), list(splits.classes), list(splits.group_names),
                        pd.concat(metas, ignore_index=True), source=str(run), network_pred=np.concatenate(pred))
