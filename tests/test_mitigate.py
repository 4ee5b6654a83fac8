"""Mitigation methods (issue 16): each method's key quantity against a direct computation, and the verbs."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from conftest import TinyGroupDataset, TinySplits
from equiprune.engine import TrainConfig, predict
from equiprune.methods.mitigate import get_method, method_names, run_mitigation
from equiprune.methods.mitigate.base import cell_weights
from equiprune.models import (DomainHeads, GroupInputError, GroupOffsetLinear, build_model, feed_groups,
                              load_checkpoint, save_checkpoint, takes_group)

ARCH = {"name": "vgg11", "num_classes": 3, "width": 0.125, "image_size": 32}


def _model():
    torch.manual_seed(0)
    return build_model(**ARCH)


@pytest.fixture(scope="module")
def splits32():
    return TinySplits(TinyGroupDataset(128, size=32, seed=1), TinyGroupDataset(64, size=32, seed=2),
                      TinyGroupDataset(64, size=32, seed=3))


def _ft(epochs=1):
    return TrainConfig(epochs=epochs, batch_size=32, lr=1e-3, optimizer="adam", select_on="last", progress=False,
                       device="cpu")


# ----------------------------------------------------------------------------- key quantities


def test_balanced_cell_weights_give_every_cell_the_same_total_and_kamiran_matches_its_formula():
    y = np.array([0, 0, 0, 1, 1, 0, 1, 1, 1, 1])
    g = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    w = cell_weights(y, g, 2, 2, "balanced")
    totals = [w[(g == k) & (y == c)].sum() for k in (0, 1) for c in (0, 1)]
    assert np.allclose(totals, totals[0]) and np.isclose(w.mean(), 1.0)
    w = cell_weights(y, g, 2, 2, "independent")
    p = lambda m: m.mean()  # noqa: E731
    direct = np.array([p(g == gi) * p(y == yi) / p((g == gi) & (y == yi)) for yi, gi in zip(y, g)])
    assert np.allclose(w, direct / direct.mean())


def test_groupdro_weight_rises_on_the_worst_cell():
    from equiprune.methods.mitigate.groupdro import cell_losses, update_weights

    losses = torch.tensor([0.2, 0.4, 3.0, 3.2, 0.1, 0.5])
    cells = torch.tensor([0, 0, 2, 2, 1, 3])
    per_cell, counts = cell_losses(losses, cells, 4)
    assert torch.allclose(per_cell, torch.tensor([0.3, 0.1, 3.1, 0.5])) and counts.tolist() == [2, 1, 2, 1]
    q0 = torch.full((4,), 0.25)
    q = update_weights(q0, per_cell, eta=0.1)
    direct = q0 * torch.exp(0.1 * per_cell)
    assert torch.allclose(q, direct / direct.sum())
    assert q.argmax() == 2 and q[2] > 0.25 > q[1]


def test_gradient_reversal_flips_the_gradient_reaching_the_features_but_not_the_adversarys():
    from equiprune.methods.mitigate.adversarial import grad_reverse

    torch.manual_seed(0)
    adv = nn.Linear(5, 2)
    f = torch.randn(8, 5)
    g = torch.randint(0, 2, (8,))
    grads = {}
    for name, fn in (("plain", lambda t: t), ("reversed", lambda t: grad_reverse(t, 0.7))):
        feat = f.clone().requires_grad_(True)
        adv.zero_grad()
        F.cross_entropy(adv(fn(feat)), g).backward()
        grads[name] = (feat.grad.clone(), adv.weight.grad.clone())
    assert torch.allclose(grads["reversed"][0], -0.7 * grads["plain"][0])
    assert torch.allclose(grads["reversed"][1], grads["plain"][1])  # the adversary itself still learns the group


def test_unbiased_hsic_equals_the_brute_force_u_statistic():
    from equiprune.methods.mitigate.hsic import hsic_unbiased

    torch.manual_seed(1)
    n = 6
    k = torch.rand(n, n, dtype=torch.float64)
    k = k + k.T
    l = torch.rand(n, n, dtype=torch.float64)
    l = l + l.T
    pairs = [(i, j) for i, j in itertools.permutations(range(n), 2)]
    e_kl = np.mean([k[i, j] * l[i, j] for i, j in pairs])
    e_k_l = np.mean([k[i, j] * l[q, r] for i, j, q, r in itertools.permutations(range(n), 4)])
    e_kl3 = np.mean([k[i, j] * l[i, q] for i, j, q in itertools.permutations(range(n), 3)])
    assert float(hsic_unbiased(k, l)) == pytest.approx(e_kl + e_k_l - 2 * e_kl3, rel=1e-10)


def test_hsic_penalty_is_larger_when_features_carry_the_group():
    from equiprune.methods.mitigate.hsic import class_conditional_hsic

    torch.manual_seed(0)
    g = torch.tensor([0, 1] * 16)
    y = torch.tensor([0] * 16 + [1] * 16)
    noise = torch.randn(32, 4)
    leaky = noise + 3.0 * g[:, None].float()
    assert class_conditional_hsic(leaky, y, g, 2, 2) > class_conditional_hsic(noise, y, g, 2, 2) + 0.05


def test_mfd_mmd_equals_a_direct_computation():
    from equiprune.methods.mitigate.mfd import mfd_mmd

    torch.manual_seed(2)
    s, t = torch.randn(10, 3, dtype=torch.float64), torch.randn(10, 3, dtype=torch.float64)
    y = torch.tensor([0, 0, 0, 1, 1, 1, 1, 0, 1, 0])
    g = torch.tensor([0, 1, 0, 1, 0, 1, 1, 0, 0, 1])
    scale = 2 * float(np.mean([float(((a - b) ** 2).sum()) for a in t for b in s]))
    kern = lambda a, b: float(torch.exp(-((a - b) ** 2).sum() / scale))  # noqa: E731
    mean_k = lambda A, B: np.mean([kern(a, b) for a in A for b in B])  # noqa: E731
    direct = 0.0
    for c in (0, 1):
        for k in (0, 1):
            T, S = t[y == c], s[(y == c) & (g == k)]
            direct += mean_k(T, T) + mean_k(S, S) - 2 * mean_k(T, S)
    assert float(mfd_mmd(s, t, y, g, 2, 2)) == pytest.approx(0.5 * direct, rel=1e-9)


def test_domain_heads_start_as_the_parent_classifier_and_predict_without_the_group(splits32):
    from equiprune.methods.mitigate.domain_independent import DomainIndependentConfig

    model = _model()
    before = predict(model, splits32.test).probs
    res = run_mitigation(model, splits32, DomainIndependentConfig(finetune=_ft(0)))
    assert isinstance(res.model.classifier[6], DomainHeads) and not takes_group(res.model)
    assert np.allclose(predict(res.model, splits32.test).probs, before, atol=1e-5)
    res = run_mitigation(_model(), splits32, DomainIndependentConfig(finetune=_ft(1)))
    x = torch.stack([splits32.test[i][0] for i in range(16)])
    res.model.eval()
    out = res.model(x)  # no group anywhere: the heads' logits are summed
    assert torch.allclose(out, res.model.classifier[6].last_per_group.sum(1))


def test_group_offsets_need_the_group_survive_a_checkpoint_and_apply_per_group(tmp_path):
    model = _model()
    layer = GroupOffsetLinear.from_linear(model.classifier[6], 2)
    model.classifier[6] = layer
    with torch.no_grad():
        layer.offsets[1, 2] = 50.0
    x = torch.randn(4, 3, 32, 32)
    model.eval()
    with pytest.raises(GroupInputError, match="needs each item's group"):
        model(x)
    with feed_groups(model, torch.tensor([0, 1, 0, 1])):
        pred = model(x).argmax(1)
    assert pred[1] == 2 and pred[3] == 2
    save_checkpoint(tmp_path / "m.pt", model, ARCH)
    loaded, _, _ = load_checkpoint(tmp_path / "m.pt")
    loaded.eval()
    with feed_groups(loaded, torch.tensor([0, 1, 0, 1])):
        assert torch.equal(loaded(x).argmax(1), pred)
    assert torch.equal(loaded.classifier[6].offsets, layer.offsets)


class _NoTestSplits(TinySplits):
    """Splits whose test split cannot be touched."""

    def __getattribute__(self, name):
        if name == "test":
            raise AssertionError("the post-processing read the test split")
        return super().__getattribute__(name)


def test_postprocess_lowers_validation_eodd_within_the_f1_tolerance_and_never_reads_test():
    from equiprune.methods.mitigate.postprocess import PostprocessConfig, fit_offsets

    rng = np.random.default_rng(0)
    n = 400
    g = (rng.random(n) < 0.4).astype(int)
    y = rng.integers(0, 2, n)
    # group 1's scores are shifted towards class 0: a gap the offsets can close
    margin = np.where(y == 1, 1.0, -1.0) + rng.normal(0, 1, n) - 1.2 * g
    logp = np.stack([np.zeros(n), margin], 1)
    offsets, info = fit_offsets(logp, y, g, 2, tolerance=0.01)
    assert info["val_eodd_after"] < 0.5 * info["val_eodd_before"]
    assert info["val_f1_after"] >= info["val_f1_before"] - 0.01
    assert offsets[1, 1] > offsets[0, 1]  # group 1 gets the larger push towards class 1

    splits = _NoTestSplits(TinyGroupDataset(64, size=32, seed=1), TinyGroupDataset(96, size=32, seed=2),
                           TinyGroupDataset(8, size=32, seed=3))
    res = run_mitigation(_model(), splits, PostprocessConfig())
    assert res.section["val_eodd_after"] <= res.section["val_eodd_before"]
    assert res.fit is None and takes_group(res.model)


def test_multiclass_postprocess_never_raises_validation_eodd(splits32):
    from equiprune.methods.mitigate.postprocess import fit_offsets

    rng = np.random.default_rng(1)
    logp = np.log(rng.dirichlet(np.ones(3), 120))
    y, g = rng.integers(0, 3, 120), (rng.random(120) < 0.5).astype(int)
    _, info = fit_offsets(logp, y, g, 2, tolerance=0.02, grid=9, rounds=1)
    assert info["val_eodd_after"] <= info["val_eodd_before"]
    assert info["val_f1_after"] >= info["val_f1_before"] - 0.02


def test_swa_keeps_the_average_of_the_snapshots(splits32):
    from equiprune.methods.mitigate.swa import SWAConfig, WeightAverage

    snaps = []
    orig = WeightAverage._add

    def recording(self, model):
        snaps.append({k: v.detach().clone() for k, v in model.named_parameters()})
        orig(self, model)

    WeightAverage._add = recording
    try:
        res = run_mitigation(_model(), splits32, SWAConfig(start=0.0, finetune=_ft(3)))
    finally:
        WeightAverage._add = orig
    assert len(snaps) == 3 and res.section["snapshots"] == 3
    for k, p in res.model.named_parameters():
        assert torch.allclose(p, torch.stack([s[k] for s in snaps]).mean(0), atol=1e-6)


def test_fairadabn_routes_each_item_through_its_groups_statistics(splits32):
    from equiprune.methods.mitigate.fairadabn import FairAdaBNConfig, parity_loss
    from equiprune.models import GroupBatchNorm2d

    torch.manual_seed(0)
    gbn = GroupBatchNorm2d(3, 2)
    x = torch.randn(10, 3, 4, 4)
    x[5:] = 3.0 * x[5:] + 2.0
    g = torch.tensor([0] * 5 + [1] * 5)[torch.randperm(10)]
    with feed_groups(gbn, g):
        out = gbn.train()(x)
    for k in (0, 1):  # training: each group normalised by its own batch statistics
        xs = x[g == k]
        direct = (xs - xs.mean((0, 2, 3), keepdim=True)) / torch.sqrt(xs.var((0, 2, 3), unbiased=False,
                                                                            keepdim=True) + 1e-5)
        assert torch.allclose(out[g == k], direct, atol=1e-5)
    assert not torch.allclose(gbn.bns[0].running_mean, gbn.bns[1].running_mean)
    gbn.eval()
    with feed_groups(gbn, g):
        out = gbn(x)
    for k in (0, 1):  # inference: each item with its group's running statistics
        assert torch.allclose(out[g == k], gbn.bns[k](x[g == k]), atol=1e-6)
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    p = F.softmax(logits, 1)
    assert float(parity_loss(logits, torch.tensor([0, 1, 1]))) == pytest.approx(
        float((p[0] - p[1:].mean(0)).abs().sum()))

    torch.manual_seed(0)
    model = build_model("vgg11_bn", 3, 0.125, 32)
    res = run_mitigation(model, splits32, FairAdaBNConfig(finetune=_ft(1)))
    assert takes_group(res.model) and len(res.section["group_batchnorm_layers"]) == 8
    assert len(predict(res.model, splits32.test)) == len(splits32.test)


# ----------------------------------------------------------------------------- the verbs


@pytest.fixture(scope="module")
def base_run(tmp_path_factory, one_thread):
    from equiprune.data import DataConfig
    from equiprune.data.synthderm import SynthDermConfig
    from equiprune.methods.train import ModelConfig, train_from_config

    root = tmp_path_factory.mktemp("mitigate")
    data = DataConfig(name="synthderm", image_size=32, seed=0, cache_dir=str(root / "cache"), progress=False,
                      synthderm=SynthDermConfig(n=240))
    train_from_config(data, ModelConfig("vgg11", 0.125), _ft(1), root / "base")
    return root


@pytest.mark.parametrize("method", method_names())
def test_every_method_runs_from_the_cli_on_a_synthderm_baseline(base_run, method, capsys):
    from equiprune.cli import main
    from equiprune.methods.runs import open_run

    out = base_run / method
    argv = ["mitigate", method, "--run", str(base_run / "base"), "--out", str(out), "--quiet"]
    if get_method(method).trains:
        argv += ["--epochs", "1", "--batch-size", "32"]
    if method == "fairadabn":  # the baseline is VGG-11 without batch norm: a clear refusal, no folder
        assert main(argv) == 2 and "needs a model with batch-norm layers" in capsys.readouterr().err
        assert not out.exists()
        return
    assert main(argv) == 0, capsys.readouterr().err
    cfg = json.loads((out / "config.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert cfg["kind"] == f"mitigate-{method}" and cfg["parent"] == str((base_run / "base").resolve())
    assert metrics["mitigation"]["group_at_inference"] == get_method(method).group_at_inference
    run = open_run(out)
    assert takes_group(run.model) == get_method(method).group_at_inference
    test = predict(run.model, run.splits().test)  # every verb predicts through engine.predict
    assert np.isclose((test.y_pred == test.y_true).mean(), metrics["test"]["acc"])
    assert main(argv) == 0 and "already finished" in (out / "log.txt").read_text()


def test_an_interrupted_groupdro_run_resumes_with_its_cell_weights(base_run, monkeypatch):
    from equiprune.methods.mitigate import mitigate_from_run
    from equiprune.methods.mitigate.groupdro import GroupDRO, GroupDROConfig

    cfg = GroupDROConfig(finetune=_ft(2), progress=False)
    out = base_run / "dro-resume"
    seen = {}
    orig_end = GroupDRO.end_epoch

    def stop_after_first(self, model, epoch):
        seen[epoch] = self.q.clone()
        if epoch == 1:
            raise KeyboardInterrupt
    monkeypatch.setattr(GroupDRO, "end_epoch", stop_after_first)
    with pytest.raises(KeyboardInterrupt):
        mitigate_from_run(base_run / "base", cfg, out)
    loaded = {}
    orig_load = GroupDRO.load_state_dict

    def recording_load(self, state):
        loaded.update(state)
        orig_load(self, state)
    monkeypatch.setattr(GroupDRO, "end_epoch", orig_end)
    monkeypatch.setattr(GroupDRO, "load_state_dict", recording_load)
    res = mitigate_from_run(base_run / "base", cfg, out)
    assert torch.allclose(loaded["q"], seen[0])  # resumed with epoch 1's weights, not uniform ones
    assert len(res.fit.history) == 2 and res.fit.resumed_from == 1


def test_train_with_a_method_from_scratch(base_run, capsys):
    from equiprune.cli import main

    out = base_run / "scratch-dro"
    argv = ["train", "--data", "synthderm", "--synth-n", "240", "--image-size", "32", "--width", "0.125",
            "--epochs", "1", "--batch-size", "32", "--method", "groupdro", "--method-opt", "eta=0.05", "--quiet",
            "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["method"] == {"name": "groupdro", "settings": {"seed": 0, "progress": False, "eta": 0.05}}
    assert "cell_weights" in json.loads((out / "metrics.json").read_text())["mitigation"]
    assert main(argv[:-2] + ["--method-opt", "etta=1", "--out", str(base_run / "bad")]) == 2
    assert "has no setting etta" in capsys.readouterr().err and not (base_run / "bad").exists()
    assert main(["train", "--method", "mfd", "--out", str(base_run / "bad2")]) == 2
    assert "distils from a trained model" in capsys.readouterr().err


def test_report_and_audit_take_a_mitigated_run(base_run):
    from equiprune import api
    from equiprune.methods.audit import AuditConfig

    run = base_run / "postprocess"
    if not (run / "model.pt").exists():
        pytest.skip("needs the parametrised CLI test's postprocess run")
    res = api.audit(run, AuditConfig(n_boot=50, latency=False))
    assert res.fate  # against the chain's baseline
    page = api.report([base_run / "base", run], out=base_run / "page")
    assert page.html_path.exists() and len(page.runs) == 2
    assert "Post-processing" in page.md_path.read_text() or "postprocess" in page.md_path.read_text()


# ----------------------------------------------------------------------------- FME and ME-FairPrune


def test_early_exit_takes_the_first_confident_exit_and_the_final_exit_otherwise(splits32):
    from equiprune.models import attach_exits, early_exit, exit_heads

    # Exit 0 confident for item 0, exit 2 for item 1 (exit 0 not), nobody for item 2 (only the final is).
    big = 10.0
    z = [torch.tensor([[big, 0, 0], [0, 0, 0], [0, 0, 0]]), torch.tensor([[0, big, 0], [0, 0, 0], [0, 0, 0]]),
         torch.tensor([[0, 0, 0], [0, 0, big], [0, 0, 0]]), torch.tensor([[0, 0, big], [big, 0, 0], [0, big, 0]])]
    out, index = early_exit(z, 0.8)
    assert index.tolist() == [0, 2, 3] and torch.equal(out, torch.stack([z[0][0], z[2][1], z[3][2]]))
    # On a model: every item's output against a per-item walk through its exits' confidences.
    model = _model()
    heads = attach_exits(model, 3)
    model.eval()
    x = splits32.test.x[:24]
    with torch.no_grad():
        for branch in heads.branches[:2]:  # exits 0 and 1 output uniform scores: never confident
            branch[-1].weight.zero_()
            branch[-1].bias.zero_()
        model(x)
        # θ at the median confidence of exit 2: about half the items leave there, the rest at the final exit
        heads.threshold = float(F.softmax(heads.last_logits[2], 1).max(1).values.median()) + 1e-6
        out = model(x)
    logits = heads.last_logits
    direct = []
    for i in range(len(x)):
        k = next((k for k in range(len(logits) - 1) if F.softmax(logits[k][i], 0).max() >= heads.threshold),
                 len(logits) - 1)
        direct.append(k)
    assert heads.last_index.tolist() == direct and 2 in direct and len(logits) - 1 in direct
    assert torch.equal(out, torch.stack([logits[k][i] for i, k in enumerate(direct)]))
    assert exit_heads(model) is heads and takes_group(model) is False


def test_fme_loss_equals_a_direct_computation(splits32):
    from equiprune.methods.mitigate.fme import FMEConfig, build
    from equiprune.methods.mitigate.hsic import gaussian_kernel, hsic_unbiased

    model = _model()
    plugin = build(model, splits32, FMEConfig(lam=0.5, weights="ramp"))
    model.eval()  # no dropout: the direct pass below sees the same function
    x, y, g = splits32.train.x[:30], torch.as_tensor(splits32.train.labels[:30]), \
        torch.as_tensor(splits32.train.groups[:30])
    with torch.no_grad():
        loss, _ = plugin.loss(model, x, y, g)
        stages, final = {}, {}
        hooks = [model.get_submodule(p).register_forward_hook(lambda m, i, o, p=p: stages.__setitem__(p, o))
                 for p in plugin.heads.points]
        hooks.append(model.classifier[6].register_forward_hook(lambda m, i, o: final.update(f=i[0], z=o)))
        model(x)
        for h in hooks:
            h.remove()
    terms = []
    for p, branch in zip(plugin.heads.points, plugin.heads.branches):
        f = branch[1](branch[0](stages[p]))
        terms.append((branch[2:](f), f.flatten(1)))
    terms.append((final["z"], final["f"]))
    direct = 0.0
    for w, (z, f) in zip((0.3, 0.45, 0.6, 0.75, 0.9), terms):
        ce = -torch.log_softmax(z, 1)[torch.arange(len(y)), y].mean()
        hsic = sum(hsic_unbiased(gaussian_kernel(f[y == c]), gaussian_kernel(F.one_hot(g[y == c], 2).float()))
                   for c in range(3) if int((y == c).sum()) >= 4)
        direct += w * (ce + 0.5 * hsic)
    assert float(loss.detach()) == pytest.approx(float(direct.detach()), rel=1e-5)
    plugin.tap.remove()
    # The fresh exits train at exit_lr with the final classifier, the backbone at the budget's lr.
    from equiprune.engine.train import _optimizer
    budget = _ft()
    budget.lr = 1e-4
    opt, _ = _optimizer(model.parameters(), plugin.train_config(budget), model)
    exits = {id(p) for p in plugin.heads.parameters()}
    assert [g["lr"] for g in opt.param_groups] == [1e-4, 1e-3]
    assert exits <= {id(p) for p in opt.param_groups[1]["params"]}
    assert not exits & {id(p) for p in opt.param_groups[0]["params"]}


def test_me_fairprune_cuts_channels_of_the_multi_exit_model_and_it_reloads(base_run):
    from equiprune.methods.mitigate import mitigate_from_run
    from equiprune.methods.mitigate.me_fairprune import MEFairPruneConfig
    from equiprune.methods.runs import open_run
    from equiprune.models import exit_heads

    out = base_run / "me-fairprune"   # made by the parametrised CLI test when the whole module runs
    if not (out / "model.pt").exists():
        mitigate_from_run(base_run / "base", MEFairPruneConfig(finetune=_ft(1), progress=False), out)
    section = json.loads((out / "metrics.json").read_text())["mitigation"]
    parent, run = open_run(base_run / "base"), open_run(out)
    heads = exit_heads(run.model)
    before, after = parent.model.features[18].out_channels, run.model.features[18].out_channels
    assert section["fairprune"]["channels_removed"] == before - after > 0
    assert heads is not None and heads.branches[3][0].in_channels == after  # the last exit's input shrank too
    assert exit_heads(parent.model) is None and len(section["exits"]["share"]) == 5


def test_scp_on_an_fme_run_cuts_the_backbone_and_the_last_exit_follows(base_run):
    """The SCP paper's SCP-X: `prune scp --run <fme run>` through the existing chaining."""
    from equiprune.methods.mitigate import mitigate_from_run
    from equiprune.methods.mitigate.fme import FMEConfig
    from equiprune.methods.runs import open_run
    from equiprune.methods.scp import SCPConfig, scp_from_run
    from equiprune.models import exit_heads

    fme = base_run / "fme"   # made by the parametrised CLI test when the whole module runs
    if not (fme / "model.pt").exists():
        mitigate_from_run(base_run / "base", FMEConfig(finetune=_ft(1), progress=False), fme)
    scp_from_run(fme, SCPConfig(scorer="random", n=3, max_iters=1, select="last", th_acc=1.0,
                                      finetune=None, progress=False), base_run / "scp-fme")
    model = open_run(base_run / "scp-fme").model
    assert model.features[18].out_channels == open_run(fme).model.features[18].out_channels - 3  # the backbone's
    assert exit_heads(model).branches[3][0].in_channels == model.features[18].out_channels
