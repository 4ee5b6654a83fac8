"""FairPrune / OBD as methods: masks, fine-tuning, structured removal, groups, resume, CLI."""
import json
import math

import numpy as np
import pytest
import torch
from torch.utils.data import Subset

from equiprune.engine import TrainConfig, evaluate
from equiprune.methods import fairprune as fp
from equiprune.methods.fairprune import (FairPruneConfig, FairPruneError, default_privileged, parameter_saliency,
                                         resolve_privileged, run_fairprune, run_obd)
from equiprune.models import build_model, load_checkpoint, save_checkpoint
from equiprune.scoring import HessianSaliencyScorer
from equiprune.scoring.saliency import channel_saliency, resolve_params
from conftest import TinyGroupDataset, TinySplits

ARCH = {"name": "vgg11", "num_classes": 3, "width": 0.125, "image_size": 32}


@pytest.fixture
def splits32():
    return TinySplits(TinyGroupDataset(96, size=32, seed=1), TinyGroupDataset(48, size=32, seed=2),
                      TinyGroupDataset(48, size=32, seed=3))


def _model():
    torch.manual_seed(0)
    return build_model(**ARCH)


def _ft(epochs=1):
    return TrainConfig(epochs=epochs, batch_size=32, lr=1e-3, optimizer="adam", select_on="last", progress=False)


def _cfg(**kw):
    base = dict(privileged=1, max_samples_per_group=12, batch_size=12, finetune=None, progress=False)
    return FairPruneConfig(**{**base, **kw})


def _scored(model):
    names = resolve_params(model, "weights")
    params = dict(model.named_parameters())
    return {n: params[n].detach() for n in names}


def test_pruned_weights_are_zero_after_finetune_save_and_reload(tmp_path, splits32):
    start = _model()
    before = {n: p.clone() for n, p in _scored(start).items()}
    res = run_fairprune(start, splits32, _cfg(pr=0.35, finetune=_ft(1)), run_dir=tmp_path / "run", arch=ARCH)
    total = sum(p.numel() for p in before.values())
    expected = math.floor(0.35 * total + 0.5)
    assert res.scored_elements == total and sum(res.pruned.values()) == expected
    # the caller's model is left alone
    assert all(torch.equal(p, before[n]) for n, p in _scored(start).items())

    save_checkpoint(tmp_path / "m.pt", res.model, ARCH)
    reloaded, _, _ = load_checkpoint(tmp_path / "m.pt")
    masks = torch.load(tmp_path / "run" / "masks.pt", weights_only=True)
    now = _scored(reloaded)
    assert sum(int((p == 0).sum()) for p in now.values()) == expected
    moved = 0
    for n, p in now.items():
        assert torch.all(p[masks[n]] == 0), n                 # pruned entries stayed zero through fine-tuning
        moved += int((p[~masks[n]] != before[n][~masks[n]]).sum())
    assert moved > 0.5 * (total - expected)                  # and fine-tuning really trained the others
    # the returned model is plain: the torch prune parametrisation was folded away
    assert not any(n.endswith("_orig") for n, _ in res.model.named_parameters())


def test_masks_hold_during_fit_and_fold(splits32):
    from equiprune.engine import fit

    model = _model()
    names = resolve_params(model, "weights")
    params = dict(model.named_parameters())
    rng = torch.Generator().manual_seed(0)
    masks = {n: torch.rand(params[n].shape, generator=rng) < 0.5 for n in names}
    fp.apply_parameter_masks(model, masks)
    model = fit(model, splits32, _ft(1)).model
    fp.fold_parameter_masks(model)
    after = dict(model.named_parameters())
    assert set(names) <= set(after)
    for n in names:
        assert torch.all(after[n][masks[n]] == 0)
        assert torch.count_nonzero(after[n][~masks[n]]) == int((~masks[n]).sum())


def test_global_selection_prunes_smallest_saliency(splits32):
    cfg = _cfg(pr=0.2)
    model = _model()
    sal = parameter_saliency(model, splits32.train, cfg, privileged=1, unprivileged=0)
    res = run_fairprune(model, splits32, cfg, arch=ARCH)
    pruned_vals = torch.cat([sal[n][p == 0] for n, p in _scored(res.model).items()])
    kept_vals = torch.cat([sal[n][p != 0] for n, p in _scored(res.model).items()])
    assert pruned_vals.max() <= kept_vals.min()
    assert res.history[-1]["pruned"] == pruned_vals.numel()


def test_layer_scope_prunes_same_fraction_everywhere(splits32):
    res = run_fairprune(_model(), splits32, _cfg(pr=0.3, scope="layer"), arch=ARCH)
    for n, p in _scored(res.model).items():
        assert int((p == 0).sum()) == math.floor(0.3 * p.numel() + 0.5), n


def test_structured_removes_lowest_channels(splits32):
    model = _model()
    cfg = _cfg(pr=0.25, structured=True)
    layer = "features.18"
    sal = parameter_saliency(model, splits32.train, cfg, 1, 0, params=[f"{layer}.weight", f"{layer}.bias"])
    expected = sorted(np.argsort(channel_saliency(sal, model, layer), kind="stable")[:16].tolist())
    res = run_fairprune(model, splits32, cfg, arch=ARCH)
    assert res.layer == layer and res.channels_removed == 16
    assert res.loop.removed[0] == expected
    assert res.model.get_submodule(layer).out_channels == 48
    assert model.get_submodule(layer).out_channels == 64  # input model untouched
    out = res.model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 3)


def _one_group_splits(splits):
    tr = TinyGroupDataset(24, size=32, seed=1)
    tr.groups = np.zeros_like(tr.groups)
    return TinySplits(tr, splits.val, splits.test)


def test_obd_equals_fairprune_beta0_on_one_group(splits32):
    sp = _one_group_splits(splits32)
    obd = run_obd(_model(), sp, _cfg(pr=0.35, max_samples_per_group=None), arch=ARCH)
    fair = run_fairprune(_model(), sp, _cfg(pr=0.35, beta=0.0, privileged=1, max_samples_per_group=None), arch=ARCH)
    assert obd.privileged is None and fair.unprivileged == 0
    for (n, a), b in zip(_scored(obd.model).items(), _scored(fair.model).values()):
        assert torch.equal(a == 0, b == 0), n
    # on mixed data: OBD on group 0's items alone is FairPrune with beta = 0 and group 0 unprivileged,
    # and beta > 0 brings in the other group's curvature
    mixed = TinySplits(TinyGroupDataset(32, size=32, seed=4), splits32.val, splits32.test).train
    mixed_obd = parameter_saliency(_model(), Subset(mixed, np.flatnonzero(mixed.groups == 0).tolist()),
                                   _cfg(method="obd", max_samples_per_group=None))
    beta0 = parameter_saliency(_model(), mixed, _cfg(beta=0.0, max_samples_per_group=None), 1, 0)
    beta1 = parameter_saliency(_model(), mixed, _cfg(beta=0.33, max_samples_per_group=None), 1, 0)
    for n in beta0:
        torch.testing.assert_close(beta0[n], mixed_obd[n], rtol=1e-4, atol=1e-12)
    assert all(not torch.allclose(beta0[n], beta1[n], rtol=1e-3, atol=0.0) for n in beta0)


def test_privileged_defaults_and_resolution(splits32):
    assert default_privileged("fitzpatrick17k") == 1
    assert default_privileged("isic2019") == 0
    assert default_privileged("synthderm") == 0
    assert default_privileged("ham10000") is None and default_privileged(None) is None
    model = _model()
    assert resolve_privileged(_cfg(privileged=None, dataset="fitzpatrick17k"), model, splits32)[:2] == (1, 0)
    assert resolve_privileged(_cfg(privileged=None, dataset="isic2019"), model, splits32)[:2] == (0, 1)
    assert resolve_privileged(_cfg(privileged=0), model, splits32)[:2] == (0, 1)
    val, _ = evaluate(model, splits32.val)
    better = 0 if val["acc_g0"] >= val["acc_g1"] else 1
    for cfg in (_cfg(privileged="auto"), _cfg(privileged=None, dataset="csv")):
        priv, unpriv, why = resolve_privileged(cfg, model, splits32)
        assert (priv, unpriv) == (better, 1 - better) and "accuracy" in why
    assert resolve_privileged(_cfg(method="obd"), model, splits32)[:2] == (None, None)
    with pytest.raises(FairPruneError, match="not in the data"):
        resolve_privileged(_cfg(privileged=3), model, splits32)


@pytest.mark.parametrize("bad", [dict(pr=0.0), dict(pr=1.0), dict(beta=-0.1), dict(estimator="hutchinson"),
                                 dict(privileged="dark"), dict(iters=0), dict(select="first"), dict(method="snip")])
def test_bad_settings_are_refused(bad):
    with pytest.raises(FairPruneError):
        _cfg(**bad).validate()


def test_iterative_masks_grow_and_resume_skips_finished(tmp_path, splits32, monkeypatch):
    cfg = _cfg(pr=0.3, iters=2, th_acc=1.0, th_fair=-1.0, select="last")
    res = run_fairprune(_model(), splits32, cfg, run_dir=tmp_path, arch=ARCH)
    fr = [r["target_fraction"] for r in res.history]
    assert fr == pytest.approx([0.0, 0.15, 0.3]) and res.best_iter == 2
    m1 = torch.load(tmp_path / "iterations" / "1" / "masks.pt", weights_only=True)
    m2 = torch.load(tmp_path / "iterations" / "2" / "masks.pt", weights_only=True)
    assert all(torch.all(m2[n] | ~m1[n]) for n in m1)  # everything pruned at 1 is still pruned at 2
    assert sum(int(m.sum()) for m in m2.values()) == res.history[-1]["pruned"]
    assert json.loads((tmp_path / "metrics.json").read_text())["fairprune"]["best_iter"] == 2

    monkeypatch.setattr(HessianSaliencyScorer, "parameter_saliency",
                        lambda *a, **k: pytest.fail("finished iterations re-ran"))
    again = run_fairprune(_model(), splits32, cfg, run_dir=tmp_path, arch=ARCH)
    assert again.best_iter == 2 and len(again.history) == 3
    for a, b in zip(_scored(res.model).values(), _scored(again.model).values()):
        assert torch.equal(a, b)


def test_best_selection_can_return_unpruned(splits32):
    # th_acc < 0 makes every pruned iteration ineligible, so "best" falls back to iteration 0
    res = run_fairprune(_model(), splits32, _cfg(pr=0.3, iters=2, th_acc=-1.0, select="best"), arch=ARCH)
    assert res.best_iter == 0 and len(res.history) == 2 and "macro-F1" in res.stop_reason
    assert all(int((p == 0).sum()) == 0 for p in _scored(res.model).values())


def test_cli_builds_configs():
    from equiprune.cli import build_parser
    from equiprune.cli.prune_fairprune import config_from_args

    p = build_parser()
    a = p.parse_args(["prune", "fairprune", "--run", "r", "--out", "o", "--privileged", "1", "--iters", "3",
                      "--beta", "0.5", "--structured", "--finetune-epochs", "0", "--max-samples-per-group", "0"])
    c = config_from_args(a)
    assert (c.method, c.privileged, c.iters, c.beta, c.structured) == ("fairprune", 1, 3, 0.5, True)
    assert c.finetune is None and c.max_samples_per_group is None
    b = config_from_args(p.parse_args(["prune", "obd", "--run", "r", "--out", "o", "--pr", "0.2"]))
    assert (b.method, b.pr, b.beta, b.privileged) == ("obd", 0.2, 0.0, None)
    assert b.finetune is not None and b.finetune.epochs == 2
    with pytest.raises(ValueError, match="group id"):
        config_from_args(p.parse_args(["prune", "fairprune", "--run", "r", "--out", "o", "--privileged", "dark"]))
