"""Fairness reprogramming: trigger geometry, the projected update, the adversary, training, save/load."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from torch import nn
from torchvision import transforms

from equiprune.engine import predict
from equiprune.methods.reprogram import (IMAGENET_MEAN, IMAGENET_STD, Adversary, FrozenModelChangedError,
                                         ReprogramConfig, ReprogramError, ReprogrammedModel, Trigger,
                                         check_unchanged, export_reprogrammed, find_normalization,
                                         load_reprogrammed, projected_trigger_grad, run_reprogram)
from equiprune.models import build_model, load_checkpoint, save_checkpoint
from equiprune.report.reprogram_plots import write_reprogram_pictures

MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def to_pixels(x: torch.Tensor) -> torch.Tensor:
    return x * STD + MEAN


def to_normalised(p: torch.Tensor) -> torch.Tensor:
    return (p - MEAN) / STD


def frame_mask(h: int, s: int) -> torch.Tensor:
    m = torch.ones(h, h, dtype=torch.bool)
    m[s:h - s, s:h - s] = False
    return m


# ----------------------------------------------------------------------------- trigger geometry

def test_border_shrink_keeps_whole_image_inside_frame_and_sets_frame_to_trigger():
    h, s = 16, 4
    t = Trigger("border", image_size=h, size=s, shrink=True)
    # A constant-colour image stays that colour when shrunk: the interior is known exactly.
    colour = torch.tensor([0.2, 0.5, 0.8]).view(1, 3, 1, 1)
    px = colour.expand(2, 3, h, h).clone()
    with torch.no_grad():
        out = to_pixels(t(to_normalised(px)))
        tanh_w = torch.tanh(t.weight)
    inner = out[:, :, s:h - s, s:h - s]
    assert torch.allclose(inner, colour.expand_as(inner), atol=1e-5)
    frame = frame_mask(h, s)
    # Black padding plus the trigger: the frame shows tanh(W) itself.
    assert torch.allclose(out[:, :, frame], tanh_w[:, frame].expand(2, -1, -1), atol=1e-5)
    # A textured image: the interior is the image resized to the inner size.
    tex = torch.rand(1, 3, h, h)
    with torch.no_grad():
        out = to_pixels(t(to_normalised(tex)))
    expected = TF.resize(tex, [h - 2 * s, h - 2 * s], interpolation=transforms.InterpolationMode.BILINEAR,
                         antialias=True)
    assert torch.allclose(out[:, :, s:h - s, s:h - s], expected, atol=1e-5)


def test_border_without_shrink_changes_only_the_frame_pixels():
    h, s = 16, 2
    t = Trigger("border", image_size=h, size=s, shrink=False)
    px = torch.rand(3, 3, h, h)
    with torch.no_grad():
        out = to_pixels(t(to_normalised(px)))
        tanh_w = torch.tanh(t.weight)
    frame = frame_mask(h, s)
    assert torch.allclose(out[:, :, ~frame], px[:, :, ~frame], atol=1e-5)
    # The border trigger is added to the pixels under it.
    assert torch.allclose(out[:, :, frame], px[:, :, frame] + tanh_w[:, frame], atol=1e-5)
    assert (out[:, :, frame] - px[:, :, frame]).abs().min() > 0


@pytest.mark.parametrize("location,rows,cols", [("top_left", slice(0, 5), slice(0, 5)),
                                                ("bottom_right", slice(11, 16), slice(11, 16)),
                                                ("top_right", slice(0, 5), slice(11, 16))])
def test_patch_replaces_only_its_square(location, rows, cols):
    h, s = 16, 5
    t = Trigger("patch", image_size=h, size=s, location=location)
    px = torch.rand(2, 3, h, h)
    with torch.no_grad():
        out = to_pixels(t(to_normalised(px)))
        tanh_w = torch.tanh(t.weight)
    region = torch.zeros(h, h, dtype=torch.bool)
    region[rows, cols] = True
    assert torch.allclose(out[:, :, ~region], px[:, :, ~region], atol=1e-5)
    assert torch.allclose(out[:, :, region], tanh_w[:, region].expand(2, -1, -1), atol=1e-5)


def test_trigger_values_are_tanh_of_uniform_init_and_bad_geometry_is_refused():
    t = Trigger("patch", image_size=32, size=8, generator=torch.Generator().manual_seed(0))
    assert t.weight.min() >= -1 and t.weight.max() <= 1 and t.weight.std() > 0.4
    with pytest.raises(ReprogramError, match="border"):
        Trigger("border", image_size=16, size=8)
    with pytest.raises(ReprogramError, match="patch"):
        Trigger("patch", image_size=16, size=8)
    with pytest.raises(ReprogramError, match="location"):
        Trigger("patch", image_size=16, size=3, location="middle")
    with pytest.raises(ReprogramError, match="trigger must be"):
        Trigger("frame", image_size=16, size=3)


def test_zero_overlay_trigger_is_the_identity_and_zero_shrink_frame_is_black():
    x = to_normalised(torch.rand(2, 3, 16, 16))
    t = Trigger("border", image_size=16, size=3, shrink=False, init="zero")
    with torch.no_grad():
        assert torch.allclose(t(x), x, atol=1e-5)
        framed = to_pixels(Trigger("border", image_size=16, size=3, shrink=True, init="zero")(x))
    assert torch.allclose(framed[:, :, frame_mask(16, 3)], torch.zeros(1), atol=1e-6)
    with pytest.raises(ReprogramError, match="init"):
        Trigger("border", image_size=16, size=3, init="normal")


def test_find_normalization_reads_a_normalize_step():
    tf = transforms.Compose([transforms.ToDtype(torch.float32, scale=True),
                             transforms.Normalize((0.1, 0.2, 0.3), (0.4, 0.5, 0.6))]) \
        if hasattr(transforms, "ToDtype") else transforms.Compose([transforms.Normalize((0.1, 0.2, 0.3),
                                                                                       (0.4, 0.5, 0.6))])
    mean, std = find_normalization(tf)
    assert np.allclose(mean, (0.1, 0.2, 0.3)) and np.allclose(std, (0.4, 0.5, 0.6))
    assert find_normalization(None) is None
    assert find_normalization(transforms.Compose([transforms.CenterCrop(8)])) is None


# ----------------------------------------------------------------------------- update rule and adversary

def test_projection_step_on_a_hand_made_gradient():
    g_task = torch.tensor([1.0, 0.0])
    g_adv = torch.tensor([1.0, 1.0]) / math.sqrt(2)
    lam = 0.3
    out = projected_trigger_grad(g_task, g_adv, lam)
    # proj of (1,0) on the unit vector (1,1)/√2 is (0.5, 0.5); then minus λ·g_adv.
    expected = torch.tensor([0.5 - lam / math.sqrt(2), -0.5 - lam / math.sqrt(2)])
    assert torch.allclose(out, expected, atol=1e-7)
    # Without λ the direction is orthogonal to the adversary's gradient.
    assert abs(float(projected_trigger_grad(g_task, 3 * g_adv, 0.0) @ g_adv)) < 1e-7
    # A zero adversary gradient leaves the task gradient alone (no NaN).
    assert torch.equal(projected_trigger_grad(g_task, torch.zeros(2), 0.5), g_task)


def test_trigger_descent_step_increases_the_adversary_loss():
    # Adversary loss L(w) = -(w·a); its gradient is -a. With no task gradient,
    # a descent step along the projected direction must increase L.
    a = torch.tensor([0.3, -1.2, 0.7])
    w = torch.zeros(3, requires_grad=True)
    loss = -(w * a).sum()
    (g_adv,) = torch.autograd.grad(loss, w)
    w2 = w.detach() - 0.1 * projected_trigger_grad(torch.zeros(3), g_adv, lam=0.5)
    assert float(-(w2 * a).sum()) > float(loss.detach())


def test_adversary_input_for_eodd_and_dp():
    logits = torch.tensor([[0.0, math.log(3.0)], [math.log(3.0), 0.0]])
    y = torch.tensor([1, 1])
    # c starts at 1, so the softmax is of 2·logits: exp(2 ln 3) = 9 → (0.1, 0.9).
    eo = Adversary(num_classes=2, num_groups=2, with_y=True)
    enc = eo.encode(logits, y)
    expected = torch.tensor([[0.1, 0.9, 0.0, 0.9], [0.9, 0.1, 0.0, 0.1]])
    assert torch.allclose(enc, expected, atol=1e-6)
    assert eo(logits, y).shape == (2, 2) and eo.net[0].in_features == 4 and eo.net[0].out_features == 512
    dp = Adversary(num_classes=2, num_groups=3, with_y=False)
    assert torch.allclose(dp.encode(logits), expected[:, :2], atol=1e-6)
    assert dp(logits).shape == (2, 3)
    with pytest.raises(ValueError, match="true labels"):
        eo.encode(logits)


# ----------------------------------------------------------------------------- training, saving, loading

class TinyNet(nn.Module):
    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(32, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


def test_short_training_keeps_model_bit_identical_and_changes_trigger(tiny_splits):
    torch.manual_seed(0)
    model = TinyNet()
    model.features[1].running_mean.uniform_(-0.5, 0.5)  # BN buffers must not be updated either
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = ReprogramConfig.paper(trigger="border", size=2, epochs=2, batch_size=32, lr_trigger=0.05, lam=0.5,
                                select_on="last", device="cpu", progress=False)
    init = Trigger("border", 16, 2, generator=torch.Generator().manual_seed(cfg.seed)).weight.detach().clone()
    res = run_reprogram(model, tiny_splits, cfg)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert res.trigger.weight.shape == init.shape
    frame = frame_mask(16, 2)
    # The trained frame differs from its initial values; inside the frame the trigger is zero.
    assert (res.pattern[:, frame] - torch.tanh(init)[:, frame]).abs().max() > 1e-3
    assert torch.equal(res.pattern[:, ~frame], torch.zeros_like(res.pattern[:, ~frame]))
    assert [r["epoch"] for r in res.history] == [0, 1, 2]
    assert res.history[0]["trigger"] is False and "val_eodd" in res.history[2]
    assert all(math.isfinite(r["train_adv_loss"]) for r in res.history[1:])
    assert isinstance(res.model, ReprogrammedModel) and res.val["f1"] == res.history[2]["val_f1"]
    # The wrapper is usable wherever a model is.
    p = predict(res.model, tiny_splits.test, device="cpu")
    assert p.probs.shape == (len(tiny_splits.test), 3)
    # A change to the frozen model is detected.
    with torch.no_grad():
        model.classifier[2].bias[0] += 1e-6
    with pytest.raises(FrozenModelChangedError):
        check_unchanged(model, before)


def test_wrapper_stays_frozen_in_train_mode_and_refuses_a_second_trigger(tiny_splits):
    model = TinyNet()
    wrapped = ReprogrammedModel(Trigger("patch", 16, 4), model)
    wrapped.train()
    assert wrapped.trigger.training and not model.training
    assert not any(p.requires_grad for p in model.parameters())
    with pytest.raises(ReprogramError, match="already"):
        run_reprogram(wrapped, tiny_splits, ReprogramConfig(epochs=1, device="cpu", progress=False))


def test_save_reload_and_export_give_identical_outputs(tiny_splits, tmp_path):
    arch = {"name": "resnet18", "num_classes": 3, "width": 0.0625, "image_size": 16}
    torch.manual_seed(0)
    model = build_model(**arch)
    cfg = ReprogramConfig(trigger="patch", size=4, location="bottom_left", criterion="dp", epochs=1,
                          batch_size=64, lr_trigger=0.05, select_on="last", device="cpu", progress=False)
    run = tmp_path / "run"
    res = run_reprogram(model, tiny_splits, cfg, run_dir=run, arch=arch, extra={"classes": ["a", "b", "c"]})
    assert write_reprogram_pictures(res) == run / "trigger.png"  # the picture is the report's
    x = torch.stack([tiny_splits.test[i][0] for i in range(8)])
    with torch.no_grad():
        ref = res.model(x)
        plain = model(x)
    assert not torch.allclose(ref, plain)  # the trigger does something
    loaded, arch2, extra = load_reprogrammed(run / "model.pt")
    assert arch2 == arch and extra["classes"] == ["a", "b", "c"] and extra["reprogram"]["kind"] == "patch"
    with torch.no_grad():
        assert torch.equal(loaded(x), ref)
    out = export_reprogrammed(run, tmp_path / "export.pt")
    exported, _, _ = load_reprogrammed(out)
    with torch.no_grad():
        assert torch.equal(exported(x), ref)
    base, _, extra3 = load_checkpoint(out)  # the plain loader gives the frozen model and the trigger record
    base.eval()
    with torch.no_grad():
        assert torch.equal(base(x), plain)
    assert torch.equal(extra3["reprogram"]["weight"], res.trigger.weight.detach())
    payload = torch.load(run / "trigger.pt", weights_only=True)
    assert payload["size"] == 4 and payload["location"] == "bottom_left"
    assert (run / "trigger.png").stat().st_size > 1000
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(metrics["history"]) == 2 and metrics["selection"]["frozen_weights_unchanged"] is True
    # Running again with the same settings resumes a finished run: same trigger, no more epochs.
    again = run_reprogram(model, tiny_splits, cfg, run_dir=run, arch=arch)
    assert torch.equal(again.trigger.weight, res.trigger.weight) and len(again.history) == 2
    with pytest.raises(ValueError, match="other settings"):
        run_reprogram(model, tiny_splits, ReprogramConfig(**{**cfg.__dict__, "lam": 0.1}), run_dir=run, arch=arch)
    save_checkpoint(tmp_path / "plain.pt", model, arch)
    with pytest.raises(ReprogramError, match="no trigger"):
        load_reprogrammed(tmp_path / "plain.pt")


def test_config_validation_messages():
    for bad, msg in [({"criterion": "eo"}, "criterion"), ({"lam": -1.0}, "lam"), ({"train_fraction": 0}, "fraction"),
                     ({"select_on": "best"}, "select_on"), ({"mean": [0.5, 0.5, 0.5]}, "both")]:
        with pytest.raises(ReprogramError, match=msg):
            ReprogramConfig(**bad).validate()


def test_cli_parses_single_lambda_and_sweep():
    from equiprune.cli import build_parser

    p = build_parser()
    a = p.parse_args(["reprogram", "--run", "r", "--out", "o", "--trigger", "patch", "--size", "6",
                      "--criterion", "dp", "--lambda", "0.2", "--epochs", "3"])
    assert (a.trigger, a.size, a.criterion, a.lam, a.epochs, a.lambda_sweep) == ("patch", 6, "dp", 0.2, 3, None)
    a = p.parse_args(["reprogram", "--run", "r", "--out", "o", "--lambda-sweep", "0.05,0.1,0.2,0.5"])
    assert a.lambda_sweep == [0.05, 0.1, 0.2, 0.5]
    with pytest.raises(SystemExit):
        p.parse_args(["reprogram", "--run", "r", "--out", "o", "--lambda", "0.1", "--lambda-sweep", "0.1,0.2"])
