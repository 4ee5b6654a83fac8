"""The compression sweep: bookkeeping, resume, table and plots; end to end from a run folder and the CLI."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from conftest import TinyGroupDataset, TinySplits

from equiprune.engine import RunDir, TrainConfig, fit
from equiprune.methods.audit import AuditConfig
from equiprune.methods.compress import CompressError, sweep as sweep_mod
from equiprune.methods.compress.sweep import (CompressConfig, point_label, run_compress_sweep, sweep_table,
                                              widened_gaps)
from equiprune.report.compress_report import table_markdown, write_sweep_outputs
from equiprune.models import build_model

SIZE = 32
FAST_AUDIT = dict(n_boot=50, latency=False, device="cpu")


# Tiny models: one intra-op thread is faster than two fighting over shared cores.
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def splits() -> TinySplits:
    return TinySplits(TinyGroupDataset(128, size=SIZE, seed=1), TinyGroupDataset(48, size=SIZE, seed=2),
                      TinyGroupDataset(96, size=SIZE, seed=3))


@pytest.fixture(scope="module")
def model(splits):
    torch.manual_seed(0)
    m = build_model("resnet18", 3, width=0.125, image_size=SIZE)
    cfg = TrainConfig(epochs=1, batch_size=32, optimizer="adam", lr=3e-3, select_on="last", progress=False,
                      device="cpu")
    return fit(m, splits, cfg).model.eval()


ARCH = {"name": "resnet18", "num_classes": 3, "width": 0.125, "image_size": SIZE}


def _cfg(method: str = "prune-global", sweep=(0.3, 0.6), **kw) -> CompressConfig:
    return CompressConfig(method=method, sweep=list(sweep), audit=AuditConfig(**FAST_AUDIT), latency=False,
                          progress=False, **kw)


def test_sweep_writes_points_records_table_and_plots(model, splits, tmp_path):
    res = write_sweep_outputs(run_compress_sweep(model, _cfg(), tmp_path / "sw", splits=splits, arch=ARCH))
    rd = RunDir(tmp_path / "sw")
    hist = rd.read_metrics()["history"]
    assert [r["point"] for r in hist] == ["0.3", "0.6"] == [r["point"] for r in res.records]
    # Each point: a run folder with a reloadable model at the requested sparsity and an audit section.
    for r in hist:
        pdir = tmp_path / "sw" / "points" / r["point"]
        assert (pdir / "model.pt").is_file() and (pdir / "config.json").is_file()
        pm = json.loads((pdir / "metrics.json").read_text())
        assert pm["audit"]["metrics"]["f1"] == pytest.approx(r["metrics"]["f1"])
        assert set(pm["audit"]["paired"]) >= {"eodd", "f1"}
        assert r["details"]["achieved_sparsity"] == pytest.approx(float(r["point"]), abs=1e-3)
    assert hist[1]["cost"]["nonzero_params"] < hist[0]["cost"]["nonzero_params"]
    # paired differences are compressed minus uncompressed
    unc = rd.read_metrics()["uncompressed"]
    for r in hist:
        assert r["paired"]["eodd"]["estimate"] == pytest.approx(r["metrics"]["eodd"] - unc["metrics"]["eodd"])
    table = pd.read_csv(tmp_path / "sw" / "sweep_table.csv")
    assert list(table["point"].astype(str)) == ["uncompressed", "0.3", "0.6"]
    for col in ("size_mb", "latency_ms", "nonzero_params", "f1_g0", "f1_g1", "eodd", "eodd_lo", "eodd_hi",
                "eopp1", "eopp1_lo", "eopp1_hi", "d_eodd", "d_eodd_lo", "d_eodd_hi", "fate_eodd", "widened"):
        assert col in table.columns, col
    assert table.loc[1, "eodd"] == pytest.approx(hist[0]["metrics"]["eodd"])
    md = (tmp_path / "sw" / "sweep_table.md").read_text()
    assert md.count("\n| ") == 4  # header + uncompressed + two points
    # Latency was not measured, so there is no latency plot.
    assert [p.name for p in res.plots] == ["fairness_vs_size.png", "fairness_vs_nonzero_params.png"]
    assert all(p.stat().st_size > 1000 for p in res.plots)
    assert rd.read_metrics()["sweep"]["points"] == ["0.3", "0.6"]


def test_sweep_resumes_without_recomputing_finished_points(model, splits, tmp_path, monkeypatch):
    out = tmp_path / "sw"
    calls: list[str] = []
    real = sweep_mod.compress

    def counting(m, s, cfg, value, **kw):
        calls.append(point_label(value))
        if point_label(value) == "0.6" and len(calls) == 2:
            raise KeyboardInterrupt  # interrupted in the middle of the second point
        return real(m, s, cfg, value, **kw)

    monkeypatch.setattr(sweep_mod, "compress", counting)
    with pytest.raises(KeyboardInterrupt):
        run_compress_sweep(model, _cfg(), out, splits=splits, arch=ARCH)
    assert [r["point"] for r in RunDir(out).read_metrics()["history"]] == ["0.3"]
    res = run_compress_sweep(model, _cfg(sweep=(0.3, 0.6, 0.8)), out, splits=splits, arch=ARCH)
    assert calls == ["0.3", "0.6", "0.6", "0.8"]  # 0.3 was not compressed again
    assert [r["point"] for r in res.records] == ["0.3", "0.6", "0.8"]
    assert json.loads((out / "config.json").read_text())["sweep"] == ["0.3", "0.6", "0.8"]
    # A point saved but not yet audited (interrupted between the two) is reloaded, not recomputed.
    rd = RunDir(out)
    rd.set_history(rd.read_metrics()["history"][:-1])
    calls.clear()
    res2 = run_compress_sweep(model, _cfg(sweep=(0.3, 0.6, 0.8)), out, splits=splits, arch=ARCH)
    assert calls == []
    assert res2.records[-1]["metrics"]["f1"] == pytest.approx(res.records[-1]["metrics"]["f1"])
    # Other settings in the same folder are refused.
    with pytest.raises(ValueError, match="other settings"):
        run_compress_sweep(model, _cfg(skip_final=True), out, splits=splits, arch=ARCH)


def test_widened_marks_only_intervals_entirely_above_zero():
    paired = {"eodd": {"estimate": 0.05, "lo": 0.01, "hi": 0.09}, "eopp1": {"estimate": 0.04, "lo": -0.01, "hi": 0.1},
              "dp": {"estimate": -0.08, "lo": -0.12, "hi": -0.02}, "f1": {"estimate": 0.1, "lo": 0.05, "hi": 0.2}}
    assert widened_gaps(paired) == ["eodd"]  # f1 is not a gap; dp narrowed


def test_table_marks_widened_gaps(model, splits, tmp_path):
    res = run_compress_sweep(model, _cfg(sweep=(0.5,)), None, splits=splits, arch=ARCH)
    rec = dict(res.records[0])
    rec["paired"] = {**rec["paired"], "eodd": {"estimate": 0.2, "lo": 0.1, "hi": 0.3, "p_value": 0.01}}
    rec["widened"] = ["eodd"]
    table = sweep_table([rec], res.uncompressed)
    assert table.loc[1, "widened"] == "eodd" and table.loc[0, "widened"] == ""
    md = table_markdown(table, ["light", "dark"], "t")
    row = [line for line in md.splitlines() if line.startswith("| 0.5 ")][0]
    assert row.count("▲") == 2  # the Eodd value and its paired difference
    assert "F1 light" in md and "F1 dark" in md


def test_bad_sweep_settings_fail_before_any_work(model, splits, tmp_path):
    with pytest.raises(CompressError, match="modes"):
        run_compress_sweep(model, _cfg("quant", sweep=("int4",)), tmp_path / "q", splits=splits)
    with pytest.raises(CompressError, match=r"sparsity must be in \[0, 1\)"):
        run_compress_sweep(model, _cfg(sweep=(0.5, 1.5)), tmp_path / "p", splits=splits)
    with pytest.raises(CompressError, match="repeats"):
        _cfg(sweep=(0.5, 0.50)).validate()
    assert not (tmp_path / "p").exists() and not (tmp_path / "q").exists()


# ----------------------------------------------------------------------------- from a run folder


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    from equiprune.data import DataConfig
    from equiprune.data.synthderm import SynthDermConfig
    from equiprune.methods.train import ModelConfig, train_from_config

    root = tmp_path_factory.mktemp("compress_runs")
    data = DataConfig(name="synthderm", image_size=SIZE, seed=0, cache_dir=str(root / "cache"), progress=False,
                      synthderm=SynthDermConfig(n=200))
    train_from_config(data, ModelConfig("vgg11", 0.125),
                      TrainConfig(epochs=1, batch_size=32, optimizer="adam", lr=2e-3, progress=False, device="cpu"),
                      root / "base")
    return root


def test_cli_sweep_points_are_auditable_run_folders(base_run, capsys, monkeypatch):
    from equiprune.cli import main
    from equiprune.methods import audit as audit_module
    from equiprune.methods.audit import audit_run

    out = base_run / "quant"
    status = main(["compress", "--run", str(base_run / "base"), "--method", "quant", "--sweep", "dynamic,static",
                   "--calibration-size", "32", "--n-boot", "50", "--no-latency", "--device", "cpu", "--quiet",
                   "--out", str(out)])
    assert status == 0
    printed = capsys.readouterr().out
    assert "sweep_table.md" in printed and "points audited" in printed
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["kind"] == "compress" and cfg["parent"] == str((base_run / "base").resolve())
    point = out / "points" / "static"
    pcfg = json.loads((point / "config.json").read_text())
    assert pcfg["data"] == cfg["data"] and pcfg["baseline"] == str((base_run / "base").resolve())
    rec = {r["point"]: r for r in json.loads((out / "metrics.json").read_text())["history"]}["static"]
    # A point as another audit's baseline: the sweep stored its predictions with its model's hash, so they serve.
    calls = []
    real = audit_module.predict
    monkeypatch.setattr(audit_module, "predict", lambda m, *a, **k: calls.append(1) or real(m, *a, **k))
    vs_static = audit_run(out / "points" / "dynamic", AuditConfig(n_boot=50, device="cpu", latency=False),
                          baseline_run=point)
    assert len(calls) == 1 and vs_static.baseline_metrics["f1"] == pytest.approx(rec["metrics"]["f1"])
    monkeypatch.undo()
    # `equiprune audit --run` on a point: its int8 model reloads and scores as the sweep recorded.
    res = audit_run(point, AuditConfig(n_boot=50, device="cpu", latency=False))
    assert res.metrics["f1"] == pytest.approx(rec["metrics"]["f1"])
    assert res.fate  # against the chain's baseline, the input run
    assert rec["cost"]["size_bytes"] < 0.4 * rec["details"]["float_size_bytes"]
    # bad input: a clear error and exit status 2
    assert main(["compress", "--run", str(base_run / "base"), "--method", "lowrank", "--sweep", "x",
                 "--out", str(base_run / "bad"), "--quiet"]) == 2
    assert "must be numbers" in capsys.readouterr().err
