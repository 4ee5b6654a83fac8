"""The real-size path: full-width VGG-11 at 224 px, SNNL-Fair's bounded memory, and the GPU settings' wiring.

The smoke test runs once per suite on CPU (~15 s CPU, ~4.5 GB peak): one
training step from a state dict read as `--weights PATH` reads it, one
SNNL-Fair batch at features.18, one channel cut, save and reload. Speed is
measured by benchmarks/bench_scale.py, never here.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from equiprune.engine import TrainConfig, fit
from equiprune.engine.runtime import amp_dtype, autocast, loader_workers
from equiprune.models import build_model, load_checkpoint, save_checkpoint
from equiprune.models.weights import load_pretrained, resolve_weights
from equiprune.scoring.snnl import snnl_fair_scores
from equiprune.surgery import prune_channels

pytestmark = pytest.mark.usefixtures("one_thread")


class _Images(torch.utils.data.Dataset):
    """`n` random images with labels and two groups, items (image, label, group, index)."""

    def __init__(self, n: int, size: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 3, size, size, generator=g)
        self.labels = np.arange(n) % 3
        self.groups = np.arange(n) % 2

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.x[i], int(self.labels[i]), int(self.groups[i]), i


def test_full_size_vgg11_at_224_trains_scores_cuts_and_reloads(tmp_path):
    torch.manual_seed(0)
    arch = {"name": "vgg11", "num_classes": 3, "width": 1.0, "image_size": 224}
    model = build_model(**arch)
    # An ImageNet-shaped file in torchvision's keys (one full VGG-11 build is costly, so made from this one):
    # a 1000-class head and other first-layer weights, saved as DataParallel saves them.
    start = dict(model.state_dict())
    start["classifier.6.weight"], start["classifier.6.bias"] = torch.randn(1000, 4096), torch.zeros(1000)
    start["features.0.weight"] = torch.randn_like(start["features.0.weight"])
    assert start["classifier.0.weight"].shape == (4096, 25088)
    path = tmp_path / "vgg11_imagenet_like.pth"
    torch.save({f"module.{k}": v for k, v in start.items()}, path)
    conv_before = start["features.0.weight"].clone()
    del start

    state, source = resolve_weights(str(path), "vgg11", 1.0)  # exactly what `train --weights PATH` does
    report = load_pretrained(model, state, source)
    del state
    assert report.head_replaced == ["classifier.6.bias", "classifier.6.weight"]
    assert torch.equal(model.features[0].weight, conv_before)

    data = _Images(2, 224)
    cfg = TrainConfig(epochs=1, batch_size=2, optimizer="sgd", lr=1e-3, select_on="last", device="cpu",
                      progress=False)
    res = fit(model, SimpleNamespace(train=data, val=None, test=data), cfg)
    assert len(res.history) == 1 and np.isfinite(res.history[0]["train_loss"])
    assert not torch.equal(model.features[0].weight, conv_before)  # one step moved the weights

    scores = snnl_fair_scores(model, "features.18", data, batch_size=2, progress=False)
    assert scores.shape == (512,) and np.isfinite(scores).all()

    cut = int(np.argmin(scores))
    prune_channels(model, "features.18", [cut], example_inputs=torch.randn(1, 3, 224, 224))
    assert model.features[18].out_channels == 511 and model.classifier[0].in_features == 511 * 49

    save_checkpoint(tmp_path / "model.pt", model, arch)
    back, _, _ = load_checkpoint(tmp_path / "model.pt")
    x = data.x[:2]
    with torch.no_grad():
        assert torch.allclose(back.eval()(x), model.eval()(x), atol=1e-4)


PROBE = textwrap.dedent("""
    import resource, sys, torch
    from equiprune.models import build_model
    from equiprune.scoring.snnl import snnl_fair_scores

    torch.set_num_threads(1)

    class Lazy(torch.utils.data.Dataset):
        # images made on demand, so the dataset itself takes no memory
        def __init__(self, n): self.n = n
        def __len__(self): return self.n
        def __getitem__(self, i):
            return torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(i)), 0, i % 2, i

    def peak(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    torch.manual_seed(0)
    model = build_model("vgg11", 2, 0.5, 64).eval()
    snnl_fair_scores(model, "features.0", Lazy(64), batch_size=32, progress=False)
    small = peak()
    snnl_fair_scores(model, "features.0", Lazy(int(sys.argv[1])), batch_size=32, progress=False)
    print(small, peak())
""")


def test_snnl_scoring_memory_does_not_grow_with_the_dataset():
    """Peak RSS after scoring 64 images vs 1024: the features of one batch are all that is held.

    features.0 of VGG-11 x0.5 at 64 px is 32 channels x 64 x 64: 512 KiB per
    image, 512 MiB for 1024 images if they were kept, 16 MiB per batch of 32
    (docs/SCALE.md states the bound).
    """
    n = 1024
    out = subprocess.run([sys.executable, "-c", PROBE, str(n)], capture_output=True, text=True, timeout=300,
                         check=True)
    small, large = map(int, out.stdout.split())
    all_features = n * 32 * 64 * 64 * 4
    assert large - small < all_features / 8, (small, large)  # < 64 MiB of growth for 512 MiB of features


def test_gpu_settings_are_inert_on_cpu_and_wired_in_fit(monkeypatch, tiny_splits):
    cpu = torch.device("cpu")
    assert amp_dtype(cpu) is None and loader_workers(cpu, None) == 0 and loader_workers(cpu, 3) == 3
    with autocast(cpu):
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.float32
    compiled = []

    def fake_compile(module, *a, **k):  # torch.compile itself takes a minute on CPU; its wiring is what is tested
        compiled.append(module)
        return module
    monkeypatch.setattr(torch, "compile", fake_compile)
    model = build_model("resnet18", 3, 0.125, 16)
    fit(model, tiny_splits, TrainConfig(epochs=1, batch_size=32, compile=True, device="cpu", progress=False,
                                        select_on="last"))
    assert compiled == [model]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_mixed_precision_path(tiny_splits):
    dev = torch.device("cuda")
    assert amp_dtype(dev) in (torch.bfloat16, torch.float16) and loader_workers(dev, None) >= 1
    model = build_model("resnet18", 3, 0.25, 16)
    res = fit(model, tiny_splits, TrainConfig(epochs=1, batch_size=32, device="cuda", progress=False))
    assert np.isfinite(res.history[0]["train_loss"])
    scores = snnl_fair_scores(res.model.cuda(), "layer4.1.conv2", tiny_splits.test, batch_size=16, progress=False)
    assert np.isfinite(scores).all()
