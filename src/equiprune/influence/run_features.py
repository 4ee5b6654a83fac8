"""A run's penultimate-layer features as a feature table.

The surrogate head of the influence functions sits where the network's own
classifier head sits: its input is the output of everything before the last
Linear layer. Features are taken on *un-augmented* images (augmentation would
break the fixed-sample assumption of influence functions), in eval mode, with
the network's own predictions kept so the report can say how well the
surrogate head agrees with the network.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

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


def features_from_run(run: str | Path, batch_size: int = 256) -> FeatureTable:
    """Train/val/test penultimate features of a run's model, with the datasets' metadata."""
    loaded = open_run(run)
    splits = loaded.splits()
    test_tf = splits.test.transform
    parts = {"train": splits.train.with_transform(test_tf), "val": splits.val, "test": splits.test}
    X, y, g, split, ids, pred, metas = [], [], [], [], [], [], []
    for name, ds in parts.items():
        f, p = penultimate(loaded.model, ds, batch_size)
        X.append(f)
        pred.append(p)
        y.append(np.asarray(ds.labels))
        g.append(np.asarray(ds.groups))
        split += [name] * len(ds)
        meta = ds.meta.reset_index(drop=True)
        ident = next((c for c in ("image", "path", "file", "pool_index") if c in meta.columns), None)
        ids += [f"{name}:{v}" for v in (meta[ident] if ident else range(len(ds)))]
        metas.append(meta[[c for c in meta.columns if c not in NOT_INTERPRETABLE]])
    return FeatureTable(np.concatenate(X), np.concatenate(y), np.concatenate(g), np.asarray(split),
                        np.asarray(ids), list(splits.classes), list(splits.group_names),
                        pd.concat(metas, ignore_index=True), source=str(run), network_pred=np.concatenate(pred))
