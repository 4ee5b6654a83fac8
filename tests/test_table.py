"""The Table 1 pipeline: run folders, skipping finished runs, audits, FATE against baseline and parent."""
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from equiprune.data import DataConfig, SynthDermConfig
from equiprune.engine import TrainConfig
from equiprune.pipelines import table as tbl
from equiprune.methods.audit import AuditConfig
from equiprune.methods.fairprune import FairPruneConfig
from equiprune.methods.runs import save_run_model, start_child_run
from equiprune.methods.scp import SCPConfig
from equiprune.pipelines.table import TableConfig, TableError, fate_against, run_table
from equiprune.methods.train import ModelConfig

METHODS = ("vanilla", "fairprune", "scp-fairprune", "finetune")


def _tiny(seeds=(0, 1), methods=METHODS, **kw) -> TableConfig:
    ft = TrainConfig(epochs=1, batch_size=32, optimizer="adam", lr=1e-3, select_on="last", progress=False)
    base = dict(
        seeds=tuple(seeds), methods=tuple(methods),
        fairprune=FairPruneConfig(max_samples_per_group=8, batch_size=8, finetune=None, progress=False),
        scp=SCPConfig(n=2, max_iters=1, th_acc=1.0, th_fair=-1.0, finetune=ft, progress=False),
        audit=AuditConfig(n_boot=40, latency=False),
        data=DataConfig(image_size=32, synthderm=SynthDermConfig(n=200), progress=False),
        model=ModelConfig(name="vgg11", width=0.125),
        train=TrainConfig(epochs=0, progress=False),  # an untrained vanilla model is enough for bookkeeping
        reports=False, progress=False)
    return TableConfig(**{**base, **kw})


@pytest.fixture
def fake_runners(monkeypatch):
    """Replace the methods by a cheap one: the parent model with its output classes rotated and jittered.

    Rotating keeps the predictions as varied as the parent's (so the gaps stay
    non-zero and FATE defined) while changing which class each image gets.
    """
    calls = []

    def make(method):
        def run(parent, out, seed, cfg):
            calls.append((method, seed, Path(parent).name))
            par, rd = start_child_run(parent, out, kind=f"fake-{method}", settings={"method": method})
            gen = torch.Generator().manual_seed(1000 * seed + len(calls))
            last = par.model.classifier[-1]
            with torch.no_grad():
                last.weight.copy_(torch.roll(last.weight, 1, 0) + 1e-3 * torch.randn(last.weight.shape, generator=gen))
                last.bias.copy_(torch.roll(last.bias, 1, 0))
            save_run_model(rd, par.model, par.arch, par.extra)
        return run

    for m in tbl.RUNNERS:
        monkeypatch.setitem(tbl.RUNNERS, m, make(m))
    return calls


def test_table_bookkeeping(tmp_path, fake_runners):
    res = run_table(tmp_path / "t", _tiny())
    out = tmp_path / "t"
    # every (method, seed) has its folder; vanilla retrained per seed; chains start from FairPrune
    expected = {(m, s) for m in METHODS for s in (0, 1)}
    assert set(res.runs) == expected
    assert {p.name for p in res.runs.values()} == {f"{m}-seed{s}" for m, s in expected}
    assert sorted(c for c in fake_runners) == sorted(
        [(m, s, f"vanilla-seed{s}") for m in ("fairprune", "finetune") for s in (0, 1)]
        + [("scp-fairprune", s, f"fairprune-seed{s}") for s in (0, 1)])
    assert all((p / "model.pt").exists() and (p / "predictions_test.csv").exists() for p in res.runs.values())

    f = pd.read_csv(res.csv_path)
    assert len(f) == 8 and set(f["method"]) == set(METHODS)
    chain = f[f["method"] == "scp-fairprune"]
    assert all(Path(p).name == f"fairprune-seed{s}" for p, s in zip(chain["parent"], chain["seed"]))
    assert all(Path(b).name == f"vanilla-seed{s}" for b, s in zip(chain["baseline"], chain["seed"]))
    for _, r in f[f["method"] != "vanilla"].iterrows():
        audit = json.loads((Path(r["run_dir"]) / "metrics.json").read_text())["audit"]
        for fc in ("eopp0", "eopp1", "eodd"):
            mine, theirs = r[f"fate_{fc}_vs_baseline"], audit["fate"].get(f"fate_{fc}")
            if theirs is None:
                assert math.isnan(mine)
                continue
            # computed from the stored predictions, it must agree with the audit's FATE and interval
            assert mine == pytest.approx(theirs, rel=1e-8, abs=1e-9)
            iv = audit["fate_intervals"][f"fate_{fc}"]
            assert r[f"fate_{fc}_vs_baseline_lo"] == pytest.approx(iv["lo"], rel=1e-8, abs=1e-9)
            assert r[f"fate_{fc}_vs_baseline_hi"] == pytest.approx(iv["hi"], rel=1e-8, abs=1e-9)
            same = r["method"] != "scp-fairprune"
            if same:
                assert r[f"fate_{fc}_vs_parent"] == pytest.approx(mine, abs=1e-12)
    # for the chain, FATE vs the parent is the FairPrune run's FATE taken out of the whole chain's
    finite = chain[np.isfinite(chain["fate_eodd_vs_parent"]) & np.isfinite(chain["fate_eodd_vs_baseline"])]
    assert len(finite) and not np.allclose(finite["fate_eodd_vs_parent"], finite["fate_eodd_vs_baseline"])
    for _, r in finite.iterrows():
        direct = fate_against(r["run_dir"], r["parent"], AuditConfig(n_boot=40))["fate_eodd"]["estimate"]
        assert r["fate_eodd_vs_parent"] == pytest.approx(direct)

    s = pd.read_csv(res.summary_csv_path).set_index("method")
    assert (s["n_seeds"] == 2).all()
    for m in METHODS:
        v = f.loc[f["method"] == m, "f1"].to_numpy()
        assert s.loc[m, "f1_mean"] == pytest.approx(v.mean()) and s.loc[m, "f1_sd"] == pytest.approx(v.std(ddof=1))
    md = res.md_path.read_text()
    assert "FATE against the vanilla baseline and against the parent" in md and "Mean ± sd over seeds" in md
    assert res.html_path.exists() and (out / "compare" / "compare.csv").exists()
    assert len(pd.read_csv(out / "compare" / "compare.csv")) == 8

    # a second call skips everything that finished and runs only what is new (here: seed 2)
    fake_runners.clear()
    more = run_table(out, _tiny(seeds=(0, 1, 2), methods=("vanilla", "finetune")))
    assert fake_runners == [("finetune", 2, "vanilla-seed2")]
    assert {p.name for p in more.ran} == {"vanilla-seed2", "finetune-seed2"} and len(more.skipped) == 4
    assert len(more.frame) == 6


def test_table_refuses_other_settings_and_bad_input(tmp_path, fake_runners):
    cfg = _tiny(seeds=(0,), methods=("vanilla", "finetune"))
    run_table(tmp_path, cfg)
    with pytest.raises(TableError, match="other settings"):
        run_table(tmp_path, replace(cfg, fairprune=replace(cfg.fairprune, beta=0.5)))
    with pytest.raises(TableError, match="unknown method"):
        run_table(tmp_path / "x", _tiny(methods=("vanilla", "magic")))
    with pytest.raises(TableError, match="model.pt"):
        run_table(tmp_path / "y", _tiny(), base_run=tmp_path / "nothing")


def test_existing_baseline_is_used_once(tmp_path, fake_runners):
    first = run_table(tmp_path / "a", _tiny(seeds=(0,), methods=("vanilla",)))
    base = first.runs[("vanilla", 0)]
    res = run_table(tmp_path / "b", _tiny(seeds=(3, 4), methods=("vanilla", "finetune")), base_run=base)
    assert [k for k in res.runs if k[0] == "vanilla"] == [("vanilla", 3)]
    assert res.runs[("vanilla", 3)] == base
    assert {c[2] for c in fake_runners} == {base.name}
    assert not (tmp_path / "b" / "vanilla-seed3").exists()


def test_scp_fairprune_pulls_in_its_parent():
    cfg = _tiny(methods=("scp-fairprune", "vanilla"))
    assert cfg.ordered_methods() == ["vanilla", "fairprune", "scp-fairprune"]


def test_cli_builds_table_config():
    import argparse

    from equiprune.cli import compare

    p = argparse.ArgumentParser()
    compare.register(p.add_subparsers())
    a = p.parse_args(["compare", "--out", "o", "--seeds", "0", "1", "--methods", "vanilla", "fairprune",
                      "--pr", "0.2", "--finetune-epochs", "0", "--n-boot", "99", "--quiet"])
    c = compare.config_from_args(a)
    assert c.seeds == (0, 1) and c.methods == ("vanilla", "fairprune")
    assert TableConfig().seeds == (0, 1, 2)  # several seeds unless asked otherwise
    assert p.parse_args(["compare", "--out", "o"]).seeds == [0, 1, 2]
    assert c.fairprune.pr == 0.2 and c.fairprune.finetune is None and c.audit.n_boot == 99
    assert c.progress is False and c.scp.finetune.epochs == 0
    c.validate()
    with pytest.raises(SystemExit):
        p.parse_args(["compare", "--out", "o", "--methods", "magic"])


@pytest.mark.slow
def test_real_methods_end_to_end(tmp_path):
    cfg = _tiny(seeds=(0,), methods=tbl.TABLE_METHODS, train=TrainConfig(epochs=2, batch_size=32, optimizer="adam",
                                                                         lr=1e-3, progress=False))
    res = run_table(tmp_path, cfg)
    f = res.frame.set_index("method")
    assert set(f.index) == set(tbl.TABLE_METHODS)
    assert f.loc["fairprune", "sparsity"] == pytest.approx(0.35, abs=1e-4)
    assert f.loc["obd", "sparsity"] == pytest.approx(0.35, abs=1e-4)
    assert f.loc["fairprune", "privileged"] == 0  # synthderm: light skin
    assert Path(f.loc["scp-fairprune", "parent"]).name == "fairprune-seed0"
