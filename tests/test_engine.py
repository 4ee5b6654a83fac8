import json

import numpy as np
import pytest
import torch

from equiprune.engine import (RunDir, RunError, TrainConfig, class_balanced_sampler, extract_features, fit,
                              make_loader, predict)
from equiprune.models import build_model
from conftest import TinyGroupDataset, TinySplits


@pytest.fixture
def splits32():
    return TinySplits(TinyGroupDataset(160, size=32, seed=1), TinyGroupDataset(64, size=32, seed=2),
                      TinyGroupDataset(64, size=32, seed=3))


def _model():
    torch.manual_seed(0)
    return build_model("vgg11_bn", 3, width=0.125, image_size=32)


def test_fit_learns_and_predict_shapes(splits32):
    cfg = TrainConfig(epochs=4, batch_size=32, lr=1e-3, optimizer="adam", progress=False, select_on="val_acc")
    res = fit(_model(), splits32, cfg)
    assert len(res.history) == 4 and 1 <= res.best_epoch <= 4
    preds = predict(res.model, splits32.test)
    assert preds.probs.shape == (64, 3) and np.allclose(preds.probs.sum(1), 1, atol=1e-5)
    assert (preds.y_pred == preds.y_true).mean() > 0.6  # chance is 1/3
    assert np.array_equal(preds.groups, splits32.test.groups) and np.array_equal(preds.index, np.arange(64))


def test_resume_equals_uninterrupted(tmp_path, splits32):
    base = dict(batch_size=32, lr=0.02, schedule="none", progress=False, select_on="last")
    straight = fit(_model(), splits32, TrainConfig(epochs=2, **base), run_dir=tmp_path / "a").model
    fit(_model(), splits32, TrainConfig(epochs=1, **base), run_dir=tmp_path / "b")  # "killed" after epoch 1
    resumed = fit(_model(), splits32, TrainConfig(epochs=2, **base), run_dir=tmp_path / "b")
    assert resumed.resumed_from == 1 and len(resumed.history) == 2
    for (k, a), b in zip(straight.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k


def test_frozen_params_do_not_move(splits32):
    m = _model()
    head = list(m.classifier.parameters())
    feats_before = [p.detach().clone() for p in m.features.parameters()]
    fit(m, splits32, TrainConfig(epochs=1, batch_size=32, progress=False, select_on="last"), params=head)
    # BatchNorm running stats move in train mode; the trainable weights must not
    for p, q in zip(m.features.parameters(), feats_before):
        assert torch.equal(p, q)


def test_extract_features_stops_at_layer(splits32):
    m = _model().eval()
    calls = []
    m.classifier.register_forward_hook(lambda *a: calls.append(1))
    loader = make_loader(splits32.val, 32)
    batches = list(extract_features(m, "features.10", loader))
    assert not calls, "the classifier must not run"
    assert len(batches) == 2
    f, y, g = batches[0]
    x = torch.stack([splits32.val[i][0] for i in range(32)])
    with torch.no_grad():
        ref = m.features[:11](x)
    assert torch.allclose(f, ref, atol=1e-5)
    assert torch.equal(y, torch.as_tensor(splits32.val.labels[:32]))


def test_class_balanced_sampler_balances():
    labels = np.array([0] * 900 + [1] * 100)
    s = class_balanced_sampler(labels, generator=torch.Generator().manual_seed(0))
    drawn = labels[list(iter(s))]
    assert 0.4 < drawn.mean() < 0.6


def test_rundir_config_guard_and_metrics(tmp_path):
    rd = RunDir(tmp_path / "r")
    assert rd.check_or_write_config({"kind": "train", "lr": 0.1}) is False
    assert rd.check_or_write_config({"kind": "train", "lr": 0.1}) is True
    with pytest.raises(RunError, match="lr"):
        rd.check_or_write_config({"kind": "train", "lr": 0.2})
    rd.append_history({"epoch": 1, "x": float("nan")})
    rd.set_section("test", {"acc": np.float64(0.5)})
    data = json.loads((rd.path / "metrics.json").read_text())
    assert data == {"history": [{"epoch": 1, "x": None}], "test": {"acc": 0.5}}
    with pytest.raises(RunError, match="does not exist"):
        RunDir(tmp_path / "missing", create=False)


def test_bad_train_config():
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="rmsprop").validate()


def test_nhwc_inference_restores_layout_and_changes_no_prediction():
    from equiprune.engine.runtime import nhwc_inference, to_layout

    torch.manual_seed(0)
    model = build_model("vgg11", 3, width=0.125, image_size=32).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.inference_mode():
        plain = model(x)
        with nhwc_inference(model) as layout:
            assert layout == torch.channels_last
            assert model.features[0].weight.is_contiguous(memory_format=torch.channels_last)
            fast = model(to_layout(x, layout))
    assert torch.allclose(plain, fast, atol=1e-5)
    w = model.features[0].weight
    assert w.is_contiguous() and not w.is_contiguous(memory_format=torch.channels_last)
    # a model already in NHWC (as during `fit`) stays NHWC
    model.to(memory_format=torch.channels_last)
    with nhwc_inference(model):
        pass
    assert not model.features[0].weight.is_contiguous()
    # converted inside inference mode (as `predict` does), the model must still train
    model.to(memory_format=torch.contiguous_format)
    with torch.inference_mode():
        with nhwc_inference(model) as layout:
            model(to_layout(x, layout))
    model.train()
    model(x).sum().backward()
    assert model.features[0].weight.grad is not None


def test_config_check_tolerates_fields_of_other_versions_but_not_changes(tmp_path):
    rd = RunDir(tmp_path / "r")
    old = {"kind": "scp", "settings": {"ratio": 0.05, "finetune": {"epochs": 1}}}
    rd.write_config(old)
    # a setting added by a later version (absent from the stored run) does not block a resume
    assert rd.check_or_write_config({"kind": "scp", "settings": {"ratio": 0.05, "keep_zeros": False,
                                                                 "finetune": {"epochs": 1, "warmup": 0}}})
    with pytest.raises(RunError, match="other settings"):
        rd.check_or_write_config({"kind": "scp", "settings": {"ratio": 0.1, "finetune": {"epochs": 1}}})
    with pytest.raises(RunError, match="other settings"):
        rd.check_or_write_config({"kind": "scp", "settings": {"ratio": 0.05, "finetune": {"epochs": 2}}})
