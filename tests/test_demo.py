"""The main job end to end at toy size: runs, head-to-head findings, report, resume."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from equiprune.metrics import group_fairness
from equiprune.methods.audit import AuditError
from equiprune.methods.paired_runs import paired_runs
from equiprune.pipelines.demo import DemoConfig, demo

TOY = DemoConfig(n=400, image_size=32, width=0.125, epochs=1, max_iters=1, seeds=(0,), controls=("random", "none"),
                 n_boot=40, progress=False)


@pytest.fixture(scope="module")
def toy_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return demo(TOY, out=out), out


def test_demo_writes_runs_report_and_findings(toy_demo):
    res, out = toy_demo
    assert set(res.runs) == {"snnl", "random", "none"}
    assert res.report is not None and res.report.exists()
    stored = json.loads((out / "findings.json").read_text())
    assert stored["findings"] == res.findings
    others = [h["other"] for h in stored["head_to_head"]]
    assert others == ["vanilla", "random channels", "fine-tune only"]
    assert res.findings[0].startswith("SCP against vanilla")
    assert any("cannot rank" in f for f in res.findings)  # one seed: the page says so
    # Issue 16: the mitigation benchmark's verdict on this data is one of the findings, citing its table.
    assert sum("benchmarks/results/mitigations.md" in f for f in res.findings) == 1
    kept = json.loads((out / "scp-seed0" / "metrics.json").read_text())["selection"]["best_iter"]
    assert f"SCP {kept};" in res.findings[-3]
    assert res.findings[-2].startswith("Premise check of the baseline:") and "separate the groups" in res.findings[-2]
    # The cut response of the baseline's layer, reusing SCP's before-scores, closes the findings.
    cuts = json.loads((res.cut_response / "metrics.json").read_text())["cut_response"]
    scp_scores = json.loads((out / "scp-seed0" / "metrics.json").read_text())["snnl_scores"]["before"]
    assert cuts["snnl_scores"] == scp_scores
    assert res.findings[-1].startswith("Cut response (") and cuts["findings"][0] in res.findings[-1]
    assert (res.cut_response / "report.html").exists()
    page = res.report.read_text()
    assert "Head to head" in page and "SCP vs random channels" in page
    md = (out / "compare.md").read_text()
    assert md.index("## Findings") < md.index("## Runs")  # the conclusions come first
    assert md.index("## Findings") < md.index("## Cut response of features.18") < md.index("## Runs")
    assert res.findings[0] in md
    assert len(res.scp_improves) == 1


def test_head_to_head_estimates_are_the_stored_predictions_difference(toy_demo):
    res, out = toy_demo
    h = next(h for h in res.head_to_head if h.other == "fine-tune only")
    scp = pd.read_csv(out / "scp-seed0" / "predictions_test.csv")
    ft = pd.read_csv(out / "none-seed0" / "predictions_test.csv")
    m_scp = group_fairness(scp["y_true"].to_numpy(), scp["y_pred"].to_numpy(), scp["group"].to_numpy())
    m_ft = group_fairness(ft["y_true"].to_numpy(), ft["y_pred"].to_numpy(), ft["group"].to_numpy())
    assert h.eodd.estimate == pytest.approx(m_scp.eodd - m_ft.eodd, abs=1e-12)
    assert h.f1.estimate == pytest.approx(m_scp.f1 - m_ft.f1, abs=1e-12)
    assert h.eodd.lo <= h.eodd.estimate <= h.eodd.hi or np.isnan(h.eodd.lo)


def test_demo_resumes_without_retraining(toy_demo):
    res, out = toy_demo
    before = (out / "baseline" / "log.txt").read_text().count("train_loss=")
    again = demo(TOY, out=out)
    assert (out / "baseline" / "log.txt").read_text().count("train_loss=") == before
    assert [h.eodd.estimate for h in again.head_to_head] == [h.eodd.estimate for h in res.head_to_head]


def test_paired_runs_refuses_runs_scored_on_other_items(toy_demo, tmp_path):
    _, out = toy_demo
    other = tmp_path / "other"
    other.mkdir()
    df = pd.read_csv(out / "scp-seed0" / "predictions_test.csv")
    df.iloc[::-1].to_csv(other / "predictions_test.csv", index=False)
    with pytest.raises(AuditError, match="same items"):
        paired_runs(out / "scp-seed0", other)
    with pytest.raises(AuditError, match="audit it first"):
        paired_runs(out / "scp-seed0", tmp_path)


def test_findings_count_the_papers_criterion_per_seed():
    from equiprune.metrics import PairedInterval
    from equiprune.pipelines.demo import HeadToHead, _findings

    def pi(a, b, lo, hi):
        return PairedInterval(estimate=b - a, lo=lo, hi=hi, p_value=0.01, excludes_zero=lo > 0 or hi < 0,
                              estimate_a=a, estimate_b=b)

    f1 = pi(0.90, 0.90, -0.01, 0.01)
    win = HeadToHead(0, "vanilla", eodd=pi(0.12, 0.09, -0.05, -0.01), f1=f1)
    noise = HeadToHead(1, "vanilla", eodd=pi(0.12, 0.10, -0.04, 0.01), f1=f1)
    costly = HeadToHead(2, "vanilla", eodd=pi(0.12, 0.11, -0.02, -0.001), f1=pi(0.90, 0.50, -0.5, -0.3))
    worse = HeadToHead(0, "random channels", eodd=pi(0.09, 0.12, 0.01, 0.05), f1=f1)
    assert [h.improves() for h in (win, noise, costly)] == [True, False, False]  # F1 collapse: FATE < 0
    lines = _findings([win, noise, costly, worse], (0, 1, 2))
    assert lines[0].endswith("on 1 of 3 seed(s) (0).")
    assert lines[1] == ("SCP against random channels: smaller Eodd on 0, larger on 1, not distinguishable on 0 "
                        "of 1 seed(s).")
    assert len(lines) == 2  # three seeds: no "cannot rank" caveat


def test_demo_takes_the_whole_generator_config(tmp_path, monkeypatch):
    """DemoConfig.synthderm replaces n and dark_contrast (the positive control of bench_demo.py uses it)."""
    from equiprune.data import SynthDermConfig
    from equiprune.pipelines import demo as demo_module

    seen = []

    def stop(data, *a, **k):
        seen.append(data.synthderm)
        raise RuntimeError("stop after the data settings")

    monkeypatch.setattr(demo_module, "train_from_config", stop)
    marker = SynthDermConfig(n=123, group_cue="marker", light_contrast=0.35)
    for cfg in (TOY, DemoConfig(**{**TOY.__dict__, "synthderm": marker})):
        with pytest.raises(RuntimeError, match="stop"):
            demo(cfg, out=tmp_path / "d")
    assert (seen[0].n, seen[0].dark_contrast, seen[0].group_cue) == (400, TOY.dark_contrast, "skin")
    assert seen[1] == marker
