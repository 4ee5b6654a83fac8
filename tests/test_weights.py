"""Starting from ImageNet weights or a user's state dict (`--weights`), freezing, and `audit --checkpoint --arch`.

State dicts are built here in torchvision's key format (the zoo keeps
torchvision's module names); nothing is downloaded: the ImageNet path is
tested with a file placed in a temporary TORCH_HOME's hub checkpoints folder,
and its offline failure with torch hub's downloader made to fail.
"""
from __future__ import annotations

import json
import urllib.error

import pytest
import torch
import torchvision

from equiprune.cli import main
from equiprune.engine import TrainConfig, fit
from equiprune.methods.runs import open_run
from equiprune.models import ModelError, build_model, load_checkpoint
from equiprune.models.weights import (WeightsError, head_name, imagenet_preprocessing, load_pretrained,
                                      read_state_dict)

pytestmark = pytest.mark.usefixtures("one_thread")

DATA = ["--data", "synthderm", "--synth-n", "300", "--image-size", "32", "--quiet", "--device", "cpu"]
FAST_AUDIT = ["--n-boot", "50", "--no-latency", "--quiet", "--device", "cpu"]


def _imagenet_like(name: str, width: float = 0.125, size: int = 32, seed: int = 1) -> dict[str, torch.Tensor]:
    """A state dict with torchvision's keys and a 1000-class head, as an ImageNet file has."""
    torch.manual_seed(seed)
    return build_model(name, 1000, width, size).state_dict()


def test_zoo_keys_are_torchvision_keys():
    ours = build_model("resnet18", 1000, 1.0, 224).state_dict()
    theirs = torchvision.models.resnet18().state_dict()
    assert list(ours) == list(theirs)
    assert all(ours[k].shape == theirs[k].shape for k in ours)


def test_read_state_dict_unwraps_prefixes_and_entries(tmp_path):
    sd = _imagenet_like("vgg11")
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "ddp.pth")
    torch.save({"model": sd}, tmp_path / "model.pth")
    for f in ("ddp.pth", "model.pth"):
        got = read_state_dict(tmp_path / f)
        assert list(got) == list(sd) and torch.equal(got["features.0.weight"], sd["features.0.weight"])


def test_pickled_module_is_refused_without_unpickling(tmp_path):
    torch.save(torch.nn.Linear(2, 2), tmp_path / "whole.pth")
    with pytest.raises(WeightsError, match=r"weights_only=True.*state_dict\(\)"):
        read_state_dict(tmp_path / "whole.pth")
    with pytest.raises(WeightsError, match="does not exist"):
        read_state_dict(tmp_path / "nope.pth")


def test_head_is_replaced_and_the_rest_loaded():
    sd = _imagenet_like("resnet18")
    model = build_model("resnet18", 5, 0.125, 32)
    report = load_pretrained(model, sd, "test")
    assert report.head_replaced == ["fc.bias", "fc.weight"]
    own = model.state_dict()
    assert torch.equal(own["layer4.1.conv2.weight"], sd["layer4.1.conv2.weight"])
    assert own["fc.weight"].shape == (5, sd["fc.weight"].shape[1])
    assert head_name(build_model("vit_tiny", 3, 0.5, 32)) == "heads.head"


def test_mismatch_names_keys_and_shapes():
    sd = _imagenet_like("vgg11", width=0.25)
    with pytest.raises(WeightsError, match=r"features\.0\.weight is 16x3x3x3 in the file, 8x3x3x3 in the model"):
        load_pretrained(build_model("vgg11", 5, 0.125, 32), sd, "f.pth")
    with pytest.raises(WeightsError, match=r"missing from the file, first conv1.weight"):
        load_pretrained(build_model("resnet18", 5, 0.125, 32), _imagenet_like("vgg11"), "f.pth")
    # A strict load (audit of a plain state dict) refuses a head of another class count.
    with pytest.raises(WeightsError, match=r"fc\.weight is 1000x64 in the file, 5x64 in the model"):
        load_pretrained(build_model("resnet18", 5, 0.125, 32), _imagenet_like("resnet18"), "f.pth",
                        replace_head=False)


def test_imagenet_preprocessing_is_the_weights_own():
    p = imagenet_preprocessing("vit_b_16")
    assert (p.image_size, p.resize_size) == (224, 256) and p.mean == (0.485, 0.456, 0.406)
    with pytest.raises(WeightsError, match="available for"):
        imagenet_preprocessing("vit_tiny")


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An empty TORCH_HOME, and torch hub's downloader failing as it does without network."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def no_network(url, dst, *a, **k):
        raise urllib.error.URLError("[Errno -2] Name or service not known")
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path / "torch_home" / "hub" / "checkpoints"


def test_imagenet_offline_is_one_clear_error(offline_hub, tmp_path, capsys):
    code = main(["train", "--model", "resnet18", "--width", "1", "--weights", "imagenet", *DATA,
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "resnet18-f37072fd.pth" in err and str(offline_hub) in err and "TORCH_HOME" in err
    assert not (tmp_path / "run").exists()  # nothing half-made
    assert main(["train", "--model", "resnet18", "--width", "0.5", "--weights", "imagenet", *DATA,
                 "--out", str(tmp_path / "run")]) == 2
    assert "--width 1.0" in capsys.readouterr().err


def test_imagenet_file_in_hub_cache_is_used_offline(offline_hub, tmp_path):
    offline_hub.mkdir(parents=True)
    sd = _imagenet_like("resnet18", width=1.0, size=64)
    torch.save(sd, offline_hub / "resnet18-f37072fd.pth")
    run = tmp_path / "run"
    # --image-size given: it overrides the weights' 224 px; 0 epochs keeps the loaded weights as they are.
    assert main(["train", "--model", "resnet18", "--width", "1", "--weights", "imagenet", "--epochs", "0",
                 "--data", "synthderm", "--synth-n", "120", "--image-size", "32", "--quiet", "--device", "cpu",
                 "--out", str(run)]) == 0
    model, arch, _ = load_checkpoint(run / "model.pt")
    assert torch.equal(model.state_dict()["layer3.0.conv1.weight"], sd["layer3.0.conv1.weight"])
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["weights"]["source"].startswith("imagenet") and cfg["weights"]["head_replaced"] == ["fc.bias",
                                                                                                   "fc.weight"]


def test_print_config_shows_the_weights_preprocessing(capsys):
    assert main(["train", "--model", "vgg11", "--weights", "imagenet", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "image_size       224             the ImageNet weights' preprocessing" in out
    assert "width            1               torchvision's size" in out  # not the CPU default 0.25


def test_freeze_epochs_train_only_the_head(tiny_splits):
    torch.manual_seed(0)
    model = build_model("resnet18", 3, 0.125, 16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(epochs=2, batch_size=32, freeze_epochs=1, head_lr=0.05, lr=1e-3, device="cpu",
                      progress=False, select_on="last")
    res = fit(model, tiny_splits, cfg)
    h = res.history
    assert [r["backbone_frozen"] for r in h] == [True, False] and h[0]["head_lr"] == pytest.approx(0.05 * 1.0)
    # After 2 epochs: the backbone moved in epoch 2 only, so compare with a run frozen throughout.
    torch.manual_seed(0)
    frozen = build_model("resnet18", 3, 0.125, 16)
    fit(frozen, tiny_splits, TrainConfig(epochs=1, batch_size=32, freeze_epochs=1, device="cpu", progress=False,
                                         select_on="last"))
    sd = frozen.state_dict()
    assert all(torch.equal(sd[k], before[k]) for k in sd if not k.startswith("fc."))  # BN stats too
    assert not torch.equal(sd["fc.weight"], before["fc.weight"])
    assert not torch.equal(res.model.state_dict()["conv1.weight"], before["conv1.weight"])
    assert all(p.requires_grad for p in res.model.parameters())


@pytest.mark.parametrize("arch,wrap", [("vgg11", "module"), ("resnet18", "state_dict")])
def test_user_state_dict_through_train_audit_prune_and_plain_audit(arch, wrap, tmp_path):
    """Done-when of issue 15: train --weights PATH, audit, prune scp, audit --checkpoint --arch, from the CLI."""
    sd = _imagenet_like(arch)
    saved = {f"module.{k}": v for k, v in sd.items()} if wrap == "module" else {"state_dict": sd}
    torch.save(saved, tmp_path / "start.pth")
    base, scp, plain = tmp_path / "base", tmp_path / "scp", tmp_path / "plain"
    assert main(["train", "--model", arch, "--width", "0.125", "--weights", str(tmp_path / "start.pth"),
                 "--epochs", "1", "--freeze-epochs", "1", "--head-lr", "0.01", *DATA, "--out", str(base)]) == 0
    trained, _, _ = load_checkpoint(base / "model.pt")
    head = head_name(trained)
    for k, v in trained.state_dict().items():  # frozen backbone: exactly the file's weights
        if not k.startswith(head + "."):
            assert torch.equal(v, sd[k]), k
    assert json.loads((base / "config.json").read_text())["weights"]["head_replaced"] == [f"{head}.bias",
                                                                                          f"{head}.weight"]
    assert main(["audit", "--run", str(base), *FAST_AUDIT]) == 0
    assert main(["prune", "scp", "--run", str(base), "--out", str(scp), "--max-iters", "1", "--null-draws", "0",
                 "--finetune-epochs", "1", "--quiet", "--device", "cpu"]) == 0
    assert open_run(scp).model is not None

    # The trained model as a plain torchvision state dict (DataParallel prefix), audited with --arch.
    torch.save({f"module.{k}": v for k, v in trained.state_dict().items()}, tmp_path / "mine.pth")
    assert main(["audit", "--checkpoint", str(tmp_path / "mine.pth"), "--arch", arch, "--width", "0.125",
                 "--data", "synthderm", "--synth-n", "300", "--image-size", "32", "--out", str(plain),
                 *FAST_AUDIT]) == 0
    by_run = json.loads((base / "metrics.json").read_text())["audit"]
    by_plain = json.loads((plain / "metrics.json").read_text())["audit"]
    assert by_plain["metrics"] == by_run["metrics"] and by_plain["confusion"] == by_run["confusion"]
    run = open_run(plain)  # an ordinary run folder: the model, the data, the class names
    assert run.arch["num_classes"] == trained.state_dict()[f"{head}.weight"].shape[0] and run.extra["classes"]
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in run.model.state_dict().items())
    assert json.loads((plain / "config.json").read_text())["settings"]["format"] == "state_dict"
    if arch == "resnet18":  # the audit folder is a run like any other: prune it
        assert main(["prune", "scp", "--run", str(plain), "--out", str(tmp_path / "plain-scp"), "--max-iters", "1",
                     "--null-draws", "0", "--finetune-epochs", "1", "--quiet", "--device", "cpu"]) == 0
        assert open_run(tmp_path / "plain-scp").config["parent"] == str(plain.resolve())


def test_plain_audit_errors_are_clear(runs, tmp_path, capsys):
    sd = _imagenet_like("resnet18")
    torch.save(sd, tmp_path / "r.pth")
    args = ["--data", "synthderm", "--synth-n", "300", "--image-size", "32", *FAST_AUDIT]
    # The head has 1000 rows; synthderm has 4 classes.
    assert main(["audit", "--checkpoint", str(tmp_path / "r.pth"), "--arch", "resnet18", "--width", "0.125",
                 *args, "--out", str(tmp_path / "a")]) == 2
    assert "predicts 1000 classes" in capsys.readouterr().err
    assert main(["audit", "--checkpoint", str(tmp_path / "r.pth"), "--arch", "vgg11", "--width", "0.125",
                 *args, "--out", str(tmp_path / "b")]) == 2
    assert "is --arch right" in capsys.readouterr().err
    # A plain state dict without --arch: the error says to give it.
    assert main(["audit", "--checkpoint", str(tmp_path / "r.pth"), *args, "--out", str(tmp_path / "c")]) == 2
    assert "--arch NAME" in capsys.readouterr().err
    with pytest.raises(ModelError):
        load_checkpoint(tmp_path / "r.pth")
