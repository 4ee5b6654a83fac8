"""Reprogramming on run folders: one λ through the API, a λ sweep through the CLI (tiny synthderm)."""
from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch

from equiprune import api
from equiprune.engine import RunDir, predict
from equiprune.methods.audit import AuditConfig
from equiprune.methods.reprogram import (ReprogramConfig, ReprogramError, load_reprogrammed,
                                         reprogram_from_run)
from equiprune.metrics import group_fairness
from equiprune.models import build_model, load_checkpoint, save_checkpoint

data = pytest.importorskip("equiprune.data")


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("reprogram_runs")
    dc = data.DataConfig(name="synthderm", image_size=16, cache_dir=str(root / "cache"), progress=False,
                         synthderm=data.SynthDermConfig(n=240))
    splits = data.load_splits(dc)
    arch = {"name": "resnet18", "num_classes": splits.num_classes, "width": 0.0625, "image_size": 16}
    torch.manual_seed(0)
    model = build_model(**arch)
    rd = RunDir(root / "base")
    rd.write_config({"kind": "train", "data": asdict(dc), "arch": arch})
    save_checkpoint(rd.model_path, model, arch, {"classes": list(splits.classes)})
    return root, rd.path, splits


def test_reprogram_from_run_writes_a_complete_run_and_compares_with_the_frozen_model(base_run):
    root, base, splits = base_run
    cfg = ReprogramConfig(trigger="border", size=2, epochs=1, lr_trigger=0.01, select_on="last", device="cpu",
                          progress=False)
    acfg = AuditConfig(n_boot=50, device="cpu", latency=False)
    out = root / "repro"
    res = api.reprogram(base, cfg, out, audit_cfg=acfg)  # reprogram_from_run and its trigger.png
    for name in ("config.json", "metrics.json", "model.pt", "trigger.pt", "trigger.png", "log.txt"):
        assert (out / name).exists(), name
    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == "reprogram" and config["parent"] == str(base.resolve())
    assert config["settings"]["trigger"] == "border" and "device" not in config["settings"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert [r["epoch"] for r in metrics["history"]] == [0, 1]
    assert "summary" in metrics["reprogram_audit"] and "test" in metrics
    # The paired change is reprogrammed minus frozen, on the test split.
    frozen, _, _ = load_checkpoint(base / "model.pt")
    fp = predict(frozen, splits.test, device="cpu")
    rp = predict(res.result.model, splits.test, device="cpu")
    f_eodd = group_fairness(fp.y_true, fp.y_pred, fp.groups).eodd
    r_eodd = group_fairness(rp.y_true, rp.y_pred, rp.groups).eodd
    assert res.summary["eodd"] == pytest.approx(r_eodd)
    assert res.summary["eodd_change"] == pytest.approx(r_eodd - f_eodd)
    assert res.summary["eodd_change_lo"] <= res.summary["eodd_change_hi"]
    assert res.summary["eodd_reduced"] == (res.summary["eodd_change_hi"] < 0)
    # model.pt applies the trigger when loaded.
    wrapped, _, _ = load_reprogrammed(out / "model.pt")
    lp = predict(wrapped, splits.test, device="cpu")
    assert np.array_equal(lp.y_pred, rp.y_pred) and np.allclose(lp.probs, rp.probs, atol=1e-6)
    # Every verb that opens the run folder gets the trigger applied; pruning it is refused.
    from equiprune.engine import RunError
    from equiprune.methods.audit import audit_run
    from equiprune.methods.reprogram import ReprogrammedModel
    from equiprune.methods.runs import open_run, start_child_run
    assert isinstance(open_run(out).model, ReprogrammedModel)
    assert audit_run(out, acfg).metrics["eodd"] == pytest.approx(r_eodd)
    with pytest.raises(RunError, match="reprogrammed run"):
        start_child_run(out, root / "pruned", kind="scp-snnl", settings={})
    # A trigger that does not fit is refused before any folder is written.
    with pytest.raises(ReprogramError, match="does not fit"):
        reprogram_from_run(base, ReprogramConfig(size=8, device="cpu"), root / "bad", audit_cfg=acfg)
    assert not (root / "bad").exists()
    # A reprogrammed run is not reprogrammed a second time.
    with pytest.raises(ReprogramError, match="already"):
        reprogram_from_run(out, cfg, root / "twice", audit_cfg=acfg)


def test_lambda_sweep_cli_writes_one_run_per_lambda_and_the_tradeoff_plot(base_run, capsys):
    from equiprune.cli import main

    root, base, _ = base_run
    out = root / "sweep"
    status = main(["reprogram", "--run", str(base), "--out", str(out), "--trigger", "patch", "--size", "4",
                   "--lambda-sweep", "0.05,0.5", "--epochs", "1", "--lr-trigger", "0.01", "--n-boot", "50",
                   "--device", "cpu", "--quiet"])
    assert status == 0
    printed = capsys.readouterr().out
    assert "λ=0.05" in printed and "λ=0.5" in printed and "interval excluding 0" in printed
    for lam in ("0.05", "0.5"):
        sub = out / f"lambda_{lam}"
        assert (sub / "model.pt").exists() and (sub / "trigger.png").exists()
        assert json.loads((sub / "config.json").read_text())["settings"]["lam"] == float(lam)
    assert (out / "tradeoff.png").stat().st_size > 1000 and (out / "trigger.png").exists()
    sweep = json.loads((out / "metrics.json").read_text())["sweep"]
    assert [r["lam"] for r in sweep["rows"]] == [0.05, 0.5]
    assert all(r["f1_lo"] <= r["f1"] <= r["f1_hi"] for r in sweep["rows"])
    assert json.loads((out / "config.json").read_text())["kind"] == "reprogram-sweep"
    # The two λ runs share the frozen model, so their frozen (epoch 0) records agree.
    h = [json.loads((out / f"lambda_{lam}" / "metrics.json").read_text())["history"][0] for lam in ("0.05", "0.5")]
    assert h[0]["val_f1"] == h[1]["val_f1"]
