"""Shared fixtures: tiny in-memory datasets that follow the data contract."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("EQUIPRUNE_CACHE", os.path.join(os.path.dirname(__file__), "..", ".cache", "test"))
torch.set_num_threads(min(2, torch.get_num_threads()))


class TinyGroupDataset(torch.utils.data.Dataset):
    """Items (image, label, group, index): class = which quadrant is bright, group shifts the colour."""

    def __init__(self, n: int, size: int = 16, seed: int = 0, num_classes: int = 3) -> None:
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, num_classes, (n,), generator=g).numpy()
        self.groups = (torch.rand(n, generator=g) < 0.4).long().numpy()
        x = 0.3 * torch.randn(n, 3, size, size, generator=g)
        h = size // 2
        for c in range(num_classes):
            sel = torch.as_tensor(self.labels == c)
            r, q = divmod(c, 2)
            x[sel, :, r * h:(r + 1) * h, q * h:(q + 1) * h] += 1.5
        x[torch.as_tensor(self.groups == 1), 0] += 0.8
        self.x = x
        self.classes = [f"c{i}" for i in range(num_classes)]
        self.group_names = ["light", "dark"]
        self.transform = None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.x[i], int(self.labels[i]), int(self.groups[i]), i

    def with_transform(self, t):
        return self


@dataclass
class TinySplits:
    train: TinyGroupDataset
    val: TinyGroupDataset
    test: TinyGroupDataset

    @property
    def classes(self):
        return self.train.classes

    @property
    def group_names(self):
        return self.train.group_names

    @property
    def num_classes(self):
        return len(self.train.classes)


@pytest.fixture
def tiny_splits() -> TinySplits:
    return TinySplits(TinyGroupDataset(192, seed=1), TinyGroupDataset(96, seed=2), TinyGroupDataset(96, seed=3))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny-model tests (two fight over a shared 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------- tiny synthderm run folders


def _probe_head(model: torch.nn.Module, train, ridge: float, subset: np.ndarray) -> None:
    """Turn the VGG head into a ridge-regression linear probe of the pooled conv features.

    The first two Linear layers become identities on the feature dimensions (the
    features are post-ReLU, so the ReLUs pass them unchanged) and the last one
    holds the probe. This gives a model that predicts several classes without
    minutes of training, in the architecture `load_checkpoint` rebuilds.
    """
    model.eval()
    with torch.no_grad():
        x = torch.stack([train[int(i)][0] for i in subset])
        f = model.avgpool(model.features(x)).flatten(1).double()
        y = torch.nn.functional.one_hot(torch.as_tensor(train.labels[subset]), 5).double()
        mu, sd = f.mean(0), f.std(0) + 1e-6
        z = (f - mu) / sd
        w = torch.linalg.solve(z.T @ z + ridge * torch.eye(z.shape[1], dtype=z.dtype), z.T @ (y - y.mean(0)))
        d = f.shape[1]
        for layer in (model.classifier[0], model.classifier[3]):
            layer.weight.zero_()
            layer.weight[:d, :d] = torch.eye(d)
            layer.bias.zero_()
        last = model.classifier[6]
        last.weight.zero_()
        last.weight[:, :d] = (w / sd[:, None]).T.float()
        last.bias.copy_((y.mean(0) - (mu / sd) @ w).float())


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A 1-epoch vgg11 (width 0.125, 32 px) baseline, and two children of it.

    The children stand in for mitigated models: their heads are linear probes
    fitted on different halves of the training split, so their predictions
    spread over the classes and differ from each other (a 1-epoch model may
    predict a single class, which makes every gap 0 and FATE against it
    undefined; that case is covered too).
    """
    # Imported here, so test modules that never use these runs do not load the training stack.
    from equiprune.data import DataConfig
    from equiprune.data.synthderm import SynthDermConfig
    from equiprune.engine import RunDir, TrainConfig
    from equiprune.methods.runs import child_config, open_run, save_run_model
    from equiprune.methods.train import ModelConfig, train_from_config

    root = tmp_path_factory.mktemp("audit_runs")
    data = DataConfig(name="synthderm", image_size=32, seed=0, cache_dir=str(root / "cache"), progress=False,
                      synthderm=SynthDermConfig(n=300))
    train_from_config(data, ModelConfig("vgg11", 0.125),
                      TrainConfig(epochs=1, batch_size=32, optimizer="adam", lr=2e-3, progress=False, device="cpu"),
                      root / "base")
    parent = open_run(root / "base")
    train = parent.splits().train
    train = train.with_transform(parent.splits().test.transform)
    halves = np.array_split(np.random.default_rng(0).permutation(len(train)), 2)
    out = {"base": root / "base"}
    for name, subset, ridge in (("child_a", halves[0], 1.0), ("child_b", halves[1], 10.0)):
        model = open_run(root / "base").model
        _probe_head(model, train, ridge, subset)
        rd = RunDir(root / name)
        rd.write_config(child_config(parent, "test-child", {"probe": name, "ridge": ridge}))
        save_run_model(rd, model, parent.arch, parent.extra)
        out[name] = rd.path
    return out
