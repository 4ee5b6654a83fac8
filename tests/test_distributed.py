"""equiprune under torchrun: 2 CPU processes with the gloo backend on loopback.

One spawned pair of workers runs every engine check (DDP fit, resume, gathered
predictions, distributed SNNL, collectives, rank-0-only writes); the parent
process recomputes the single-process numbers on the same model. A second
test runs `python -m torch.distributed.run -m equiprune prune scp`.
"""
from __future__ import annotations

import json
import os
import pickle
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from conftest import TinyGroupDataset, TinySplits
from equiprune.engine import RunDir, RunError, TrainConfig, evaluate, fit, predict
from equiprune.engine.distributed import (DistributedError, DistributedWeightedSampler, init_distributed,
                                          round_robin_batches)
from equiprune.scoring import snnl_fair_scores, snnl_null_check

WORLD = 2
SPAWN_TIMEOUT = 150  # seconds; the machine is shared, so generous
LAYER = "features.4"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _loopback_env() -> dict[str, str]:
    env = {"MASTER_ADDR": "127.0.0.1", "EQUIPRUNE_DIST_BACKEND": "gloo", "OMP_NUM_THREADS": "1"}
    if any(name == "lo" for _, name in socket.if_nameindex()):
        env["GLOO_SOCKET_IFNAME"] = "lo"  # keep gloo on loopback even if the hostname resolves elsewhere
    return env


class TinyNet(nn.Module):
    """Two conv blocks with BatchNorm (buffers to keep in sync) and dropout (per-rank randomness)."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 12, 3, padding=1), nn.BatchNorm2d(12), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.3),
                                  nn.Linear(12, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _net() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet()


def _splits() -> TinySplits:
    # 51 test items: the evaluation sampler pads one duplicate that must be dropped.
    return TinySplits(TinyGroupDataset(150, seed=1), TinyGroupDataset(48, seed=2), TinyGroupDataset(51, seed=3))


def _cfg(epochs: int) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=16, lr=0.05, schedule="none", balanced_sampler=True,
                       select_on="val_f1", progress=False, amp=False)


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(_loopback_env())
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_WORLD_SIZE=str(WORLD), MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from equiprune.engine.distributed import (DistributedError, average_gradients, check_consistent,
                                              gather_concat, get_rank, get_world_size, on_main)

    out_dir = Path(out)
    res: dict = {"rank": get_rank(), "world": get_world_size()}
    splits = _splits()

    # DDP fit, uninterrupted; then the same run "killed" after epoch 1 and resumed.
    res["fit"] = _state(fit(_net(), splits, _cfg(2), run_dir=out_dir / "a").model)
    fit(_net(), splits, _cfg(1), run_dir=out_dir / "b")
    resumed = fit(_net(), splits, _cfg(2), run_dir=out_dir / "b")
    res["resumed"], res["resumed_from"] = _state(resumed.model), resumed.resumed_from
    res["history"] = resumed.history

    model = resumed.model
    res["preds"] = predict(model, splits.test, batch_size=8).to_dict()
    res["metrics"] = evaluate(model, splits.test, batch_size=8)[0]
    res["snnl_ref"] = snnl_fair_scores(model, LAYER, splits.train, batch_size=16, progress=False)
    res["snnl_paper"] = snnl_fair_scores(model, LAYER, splits.train, variant="paper", batch_size=16,
                                         progress=False)
    res["snnl_one_batch"] = snnl_fair_scores(model, LAYER, splits.train, batch_size=100, progress=False)
    res["snnl_null"] = snnl_null_check(model, LAYER, splits.train, batch_size=16, progress=False, draws=3,
                                       seed=5).null_scores

    res["gathered"] = gather_concat(np.full(rank + 1, rank, dtype=np.int64))
    outside = nn.Parameter(torch.zeros(2))  # a trained tensor outside the DDP model
    outside.grad = torch.full((2,), float(rank + 1))
    average_gradients([outside])
    res["avg_grad"] = outside.grad.tolist()
    try:
        check_consistent({"conv": 8 + rank}, "pruned shapes")
    except DistributedError as exc:
        res["mismatch"] = str(exc)
    rd = RunDir(out_dir / "cfg")
    rd.check_or_write_config({"kind": "train", "lr": 0.1})
    try:
        rd.check_or_write_config({"kind": "train", "lr": 0.2})
    except RunError as exc:
        res["config_error"] = str(exc)
    res["on_main"] = on_main(lambda: get_rank() * 10 + 7)
    # A mitigation method under DDP: FME (exits wired by hooks, a plugin loss with HSIC on every exit).
    from equiprune.methods.mitigate import run_mitigation
    from equiprune.methods.mitigate.fme import FMEConfig
    from equiprune.models import build_model
    torch.manual_seed(0)
    fme = run_mitigation(build_model("resnet18", 3, 0.125, 16), splits,
                         FMEConfig(finetune=_cfg(1), threshold=0.5, progress=False), run_dir=out_dir / "fme")
    res["fme"], res["fme_section"] = _state(fme.model), fme.section
    (out_dir / f"rank{rank}.pkl").write_bytes(pickle.dumps(res))


@pytest.fixture(scope="module")
def spawned(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    ctx = mp.start_processes(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=False,
                             start_method="spawn")
    deadline = time.monotonic() + SPAWN_TIMEOUT
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.terminate()
            pytest.fail(f"distributed workers did not finish within {SPAWN_TIMEOUT} s")
    ranks = [pickle.loads((out / f"rank{r}.pkl").read_bytes()) for r in range(WORLD)]
    return out, ranks


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_ddp_fit_keeps_ranks_identical_and_trains(spawned):
    out, (r0, r1) = spawned
    assert (r0["rank"], r1["rank"], r0["world"]) == (0, 1, WORLD)
    _assert_same_state(r0["fit"], r1["fit"])  # incl. BatchNorm running statistics
    init = _state(_net())
    assert not torch.equal(r0["fit"]["features.0.weight"], init["features.0.weight"])
    assert r0["history"] == r1["history"] and len(r0["history"]) == 2


def test_ddp_resume_equals_uninterrupted(spawned):
    _, (r0, r1) = spawned
    assert r0["resumed_from"] == 1 and r1["resumed_from"] == 1
    _assert_same_state(r0["fit"], r0["resumed"])
    _assert_same_state(r1["fit"], r1["resumed"])


def test_run_folder_written_once_by_rank0(spawned):
    out, _ = spawned
    lines = (out / "a" / "log.txt").read_text().splitlines()
    assert len(lines) == 2 and "epoch=1" in lines[0] and "epoch=2" in lines[1]
    state = torch.load(out / "a" / "train_state.pt", weights_only=True)
    assert state["epoch"] == 2 and state["world_size"] == WORLD and len(state["torch_rng_ranks"]) == WORLD
    assert json.loads((out / "cfg" / "config.json").read_text()) == {"kind": "train", "lr": 0.1}


def test_gathered_predictions_equal_single_process(spawned):
    _, ranks = spawned
    model = _net()
    model.load_state_dict(ranks[0]["resumed"])
    test = _splits().test
    single = predict(model, test, batch_size=8)
    single_metrics, _ = evaluate(model, test, batch_size=8)
    assert len(single) == 51
    for r in ranks:
        p = r["preds"]
        assert len(p["y_true"]) == 51  # the padding duplicate was dropped
        for key in ("y_true", "y_pred", "groups", "index"):
            assert np.array_equal(p[key], getattr(single, key)), key
        np.testing.assert_allclose(p["probs"], single.probs, atol=1e-6)
        assert r["metrics"] == single_metrics


def test_distributed_snnl_equals_single_process(spawned):
    _, (r0, r1) = spawned
    model = _net()
    model.load_state_dict(r0["resumed"])
    train = _splits().train
    for key, kw in (("snnl_ref", {}), ("snnl_paper", {"variant": "paper"}), ("snnl_one_batch", {})):
        bs = 100 if key == "snnl_one_batch" else 16
        single = snnl_fair_scores(model, LAYER, train, batch_size=bs, progress=False, **kw)
        assert single.shape == (12,)
        np.testing.assert_allclose(r0[key], single, rtol=1e-6, atol=1e-6)  # float32 sums; ranks use other thread counts
        assert np.array_equal(r0[key], r1[key]), "ranks must hold bit-identical scores to cut the same channels"
    # shuffled-group scorings: the permutation belongs to the batch, not to the rank
    null = snnl_null_check(model, LAYER, train, batch_size=16, progress=False, draws=3, seed=5).null_scores
    assert null.shape == (3, 12)
    np.testing.assert_allclose(r0["snnl_null"], null, rtol=1e-6, atol=1e-6)
    assert np.array_equal(r0["snnl_null"], r1["snnl_null"])


def test_a_mitigation_method_trains_identically_on_every_rank(spawned):
    out, (r0, r1) = spawned
    _assert_same_state(r0["fme"], r1["fme"])  # the multi-exit model, its exits included
    torch.manual_seed(0)
    from equiprune.models import attach_exits, build_model
    start = build_model("resnet18", 3, 0.125, 16)
    attach_exits(start, 3, image_size=16)
    init = _state(start)
    assert init.keys() == r0["fme"].keys()
    assert not torch.equal(r0["fme"]["exits.branches.0.5.weight"], init["exits.branches.0.5.weight"])
    assert r0["fme_section"] == r1["fme_section"] and len(r0["fme_section"]["exits"]["share"]) == 5
    assert (out / "fme" / "train_state.pt").exists()


def test_collectives_and_errors_reach_every_rank(spawned):
    _, ranks = spawned
    for r in ranks:
        assert r["gathered"].tolist() == [0, 1, 1]
        assert r["avg_grad"] == [1.5, 1.5]
        assert "differ across ranks" in r["mismatch"] and "rank 1" in r["mismatch"]
        assert "lr" in r["config_error"]
        assert r["on_main"] == 7  # rank 0's result everywhere


def test_weighted_sampler_ranks_share_one_global_draw():
    labels = np.array([0] * 90 + [1] * 10)
    w = 1.0 / np.bincount(labels)[labels]
    full = list(DistributedWeightedSampler(w, seed=3, num_replicas=1, rank=0))
    shares = [list(DistributedWeightedSampler(w, seed=3, num_replicas=2, rank=r)) for r in range(2)]
    assert len(shares[0]) == len(shares[1]) == 50
    assert shares[0] == full[0::2] and shares[1] == full[1::2]
    assert 0.3 < labels[full].mean() < 0.7  # class-balanced, not 10 % minority
    s = DistributedWeightedSampler(w, seed=3, num_replicas=2, rank=0)
    s.set_epoch(1)
    assert list(s) != shares[0]


def test_round_robin_batches_partition_the_reference_batches():
    ref = [b.tolist() for b in torch.utils.data.DataLoader(torch.arange(300), batch_size=128, drop_last=True)]
    shares = [round_robin_batches(300, 128, rank=r, world_size=3) for r in range(3)]
    assert shares == [[ref[0]], [ref[1]], []]
    assert round_robin_batches(300, 128, drop_last=False, rank=0, world_size=2)[-1] == list(range(256, 300))


def test_init_without_torchrun_env_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    for k in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(DistributedError, match="torchrun"):
        init_distributed()
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert init_distributed() is False


def test_prune_scp_under_torchrun(tmp_path):
    from equiprune.cli import main
    from equiprune.methods.runs import open_run
    from equiprune.data import scoring_dataset
    from equiprune.models import load_checkpoint

    base, out = tmp_path / "base", tmp_path / "scp"
    assert main(["train", "--data", "synthderm", "--synth-n", "400", "--image-size", "32", "--width", "0.125",
                 "--epochs", "1", "--out", str(base), "--quiet"]) == 0
    env = {**os.environ, **_loopback_env()}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(WORLD),
           "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
           "-m", "equiprune", "--", "prune", "scp", "--run", str(base), "--out", str(out),
           "--n", "2", "--max-iters", "1", "--finetune-epochs", "1", "--quiet"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=SPAWN_TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("kept iteration") == 1  # rank 1 prints nothing

    metrics = json.loads((out / "metrics.json").read_text())
    assert [r["iter"] for r in metrics["history"]] == [0, 1]  # each record written once
    log = (out / "log.txt").read_text()
    assert log.count("iteration 1: cut 2 channels") == 1 and log.count("iteration 0:") == 1

    parent_run = open_run(base)
    parent = parent_run.model
    pruned, _, _ = load_checkpoint(out / "model.pt")
    layer = metrics["snnl_scores"]["layer"]
    before = parent.get_submodule(layer).out_channels
    assert f"cut-response --run {base} --layer {layer} --out {out}-cuts" in proc.stdout  # the next check to run
    kept = metrics["selection"]["best_iter"]
    assert pruned.get_submodule(layer).out_channels == before - 2 * kept
    it1, _, _ = load_checkpoint(out / "iterations" / "1" / "model.pt")
    assert it1.get_submodule(layer).out_channels == before - 2

    # The distributed scores equal one process's scores on the baseline, and the cut is their two lowest.
    single = snnl_fair_scores(parent, layer, scoring_dataset(parent_run.splits(), "train"), progress=False)
    np.testing.assert_allclose(metrics["snnl_scores"]["before"], single, rtol=0, atol=1e-6)
    assert metrics["history"][1]["removed"] == sorted(np.argsort(single, kind="stable")[:2].tolist())


def test_cut_response_under_torchrun_equals_one_process(tmp_path):
    from equiprune.cli import main

    base = tmp_path / "base"
    assert main(["train", "--data", "synthderm", "--synth-n", "400", "--image-size", "32", "--width", "0.125",
                 "--epochs", "1", "--out", str(base), "--quiet"]) == 0
    args = ["prune", "cut-response", "--run", str(base), "--fractions", "0.25", "0.5", "--draws", "2", "--quiet"]
    assert main(args + ["--out", str(tmp_path / "single")]) == 0
    env = {**os.environ, **_loopback_env()}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(WORLD),
           "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
           "-m", "equiprune", "--", *args, "--out", str(tmp_path / "ddp")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=SPAWN_TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("report: ") == 1  # rank 1 prints nothing
    one = json.loads((tmp_path / "single" / "metrics.json").read_text())["cut_response"]
    ddp = json.loads((tmp_path / "ddp" / "metrics.json").read_text())["cut_response"]
    assert len(ddp["rows"]) == len(one["rows"]) == 1 + 2 * (3 + 2)
    for a, b in zip(one["rows"], ddp["rows"]):
        assert (a["k"], a["choice"], a["draw"]) == (b["k"], b["choice"], b["draw"])
        assert a["eodd"] == pytest.approx(b["eodd"], abs=1e-9) and a["f1"] == pytest.approx(b["f1"], abs=1e-9)
    np.testing.assert_allclose(ddp["snnl_scores"], one["snnl_scores"], rtol=0, atol=1e-6)
    assert (tmp_path / "ddp" / "report.html").exists()
