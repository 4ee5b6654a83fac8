"""The audit's threshold-free and calibration section: numbers, terminal block, report section, findings."""
from __future__ import annotations

import argparse
import json
import math
import shutil

import numpy as np
import pytest

from equiprune.engine import predict
from equiprune.methods.audit import AuditConfig, AuditError, audit_model
from equiprune.methods.runs import open_run
from equiprune.metrics import group_scores
from equiprune.report.scores import tradeoff_findings

FAST = dict(n_boot=60, latency=False, device="cpu")


@pytest.fixture(scope="module")
def audited(runs):
    """child_b audited against child_a's predictions, also by Fitzpatrick type, without writing anything."""
    a, b = open_run(runs["child_a"]), open_run(runs["child_b"])
    test = b.splits().test
    base = predict(a.model, test, device="cpu")
    res = audit_model(b.model, test, AuditConfig(groups="fitzpatrick", **FAST), baseline=base)
    return res, base, test


def test_audit_scores_equal_group_scores_of_its_predictions(audited):
    res, base, test = audited
    p = res.predictions
    block = res.scores["two_groups"]
    ref = group_scores(p.y_true, p.probs, p.groups, y_pred=p.y_pred).values
    for k in ("auc_g0", "auc_g1", "worst_group_auc", "acc_g1", "ece_gap", "nll_g0", "fnr_gap", "eodd_at_spec"):
        assert block["values"][k] == pytest.approx(ref[k], abs=1e-12) or (math.isnan(ref[k]) and math.isnan(
            block["values"][k])), k
    # Per-group accuracy is the paper routine's acc_g0/acc_g1 (same decisions).
    assert block["values"]["acc_g0"] == pytest.approx(res.metrics["acc_g0"])
    iv = block["intervals"]["worst_group_acc"]
    assert iv["lo"] <= iv["estimate"] <= iv["hi"]
    # Paired against the baseline: this model minus the baseline, with the baseline's own numbers.
    bref = group_scores(base.y_true, base.probs, base.groups, y_pred=base.y_pred).values
    pe = block["paired"]["ece_gap"]
    assert pe["estimate_a"] == pytest.approx(bref["ece_gap"]) and pe["estimate_b"] == pytest.approx(ref["ece_gap"])
    assert pe["estimate"] == pytest.approx(ref["ece_gap"] - bref["ece_gap"])
    # By Fitzpatrick type: one group per type present in the test split.
    bc = res.scores["by_column"]
    types = np.unique(test.meta["fitzpatrick"].to_numpy()[p.index])
    assert bc["column"] == "fitzpatrick" and len(bc["group_ids"]) == len(types)
    assert bc["group_names"][0].startswith("type ")
    assert set(bc["reliability"]) == set(bc["group_names"])
    json.dumps(res.to_dict()["scores"])   # plain JSON data


def test_scores_can_be_left_out_and_bad_settings_are_refused(runs):
    b = open_run(runs["child_b"])
    res = audit_model(b.model, b.splits().test, AuditConfig(scores=False, **FAST))
    assert res.scores is None and res.to_dict()["scores"] is None
    with pytest.raises(AuditError, match="binning"):
        AuditConfig(ece_binning="quantile").validate()


def test_cli_audit_prints_the_scores_and_the_report_has_reliability_diagrams(runs, tmp_path, capsys):
    from equiprune.cli import audit as audit_cli

    run = tmp_path / "base"
    shutil.copytree(runs["base"], run)
    parser = argparse.ArgumentParser(prog="equiprune")
    audit_cli.register(parser.add_subparsers())
    args = parser.parse_args(["audit", "--run", str(run), "--n-boot", "40", "--no-latency", "--quiet",
                              "--device", "cpu", "--ece-binning", "adaptive"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    section = json.loads((run / "metrics.json").read_text())["audit"]["scores"]
    assert section["settings"]["binning"] == "adaptive"
    assert "threshold-free and calibration (ECE: 10 adaptive bins)" in out
    assert "worst-group AUC" in out and "ECE gap" in out
    # The 1-epoch base model predicts one class for both groups, so no rate gap: said in words.
    assert "largest error-rate gap" in out or "No class has a different FNR or FPR" in out
    for name in section["two_groups"]["group_names"]:
        assert any(line.startswith(name) for line in out.splitlines()), name
    html = (run / "report.html").read_text()
    md = (run / "report.md").read_text()
    assert html.index("Threshold-free and calibration") > html.index("Table 1")
    assert "Reliability diagram per group" in html
    assert (run / "plots" / "reliability-threshold-free-and-calibration.png").is_file()
    assert "## Threshold-free and calibration" in md


def _audit(eodd, auc_gap, ece_gap):
    def paired(est, lo, hi):
        return {"estimate": est, "lo": lo, "hi": hi, "excludes_zero": lo > 0 or hi < 0}

    return {"paired": {"eodd": paired(*eodd)},
            "scores": {"two_groups": {"paired": {"auc_gap": paired(*auc_gap), "ece_gap": paired(*ece_gap)}}}}


def test_a_method_that_narrows_eodd_while_widening_the_auc_or_ece_gap_is_called_out():
    (line,) = tradeoff_findings(_audit((-0.04, -0.07, -0.01), (0.03, 0.01, 0.05), (-0.01, -0.02, 0.0)),
                                "SCP", "vanilla")
    assert line.startswith("SCP narrows Eodd against vanilla (-0.040")
    assert "AUC gap by +0.030 [+0.010, +0.050] (beyond resampling noise)" in line and "ECE gap" not in line
    (line,) = tradeoff_findings(_audit((-0.04, -0.07, 0.01), (0.0, -0.01, 0.01), (0.02, -0.01, 0.05)))
    assert "ECE gap by +0.020" in line and "within resampling noise" in line and "within noise" in line
    # A benchmark's intervals over seeds say so (the same rule, another source of noise).
    (line,) = tradeoff_findings(_audit((-0.04, -0.07, -0.01), (0.03, 0.01, 0.05), (0.0, 0.0, 0.0)), "GroupDRO",
                                "plain fine-tuning", noise="seed noise")
    assert "AUC gap by +0.030 [+0.010, +0.050] (beyond seed noise)" in line and "resampling" not in line
    # Eodd widened, or no gap widened: nothing to call out.
    assert tradeoff_findings(_audit((0.04, 0.01, 0.07), (0.03, 0.01, 0.05), (0.02, 0.01, 0.05))) == []
    assert tradeoff_findings(_audit((-0.04, -0.07, -0.01), (-0.03, -0.05, -0.01), (0.0, -0.01, 0.01))) == []


def test_report_columns_select_threshold_free_numbers_and_refuse_unknown_ones(runs, tmp_path, capsys):
    import pandas as pd

    from equiprune.cli import report as report_cli
    from equiprune.engine import RunError
    from equiprune.methods.audit import audit_run
    from equiprune.report import compare_runs

    for name in ("base", "child_a"):
        shutil.copytree(runs[name], tmp_path / name)
    cfg = AuditConfig(**FAST)
    audit_run(tmp_path / "base", cfg)
    audit_run(tmp_path / "child_a", cfg, baseline_run=tmp_path / "base")
    parser = argparse.ArgumentParser(prog="equiprune")
    report_cli.register(parser.add_subparsers())
    args = parser.parse_args(["report", str(tmp_path / "base"), str(tmp_path / "child_a"), "--out",
                              str(tmp_path / "cmp"), "--columns", "worst_group_auc,ece_gap,eodd,fate_eodd"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "worst-group AUC" in out and "ECE gap" in out and "F1 Avg." not in out
    df = pd.read_csv(tmp_path / "cmp" / "compare_columns.csv")
    audit = json.loads((tmp_path / "child_a" / "metrics.json").read_text())["audit"]
    row = df.set_index("name").loc["child_a"]
    assert row["worst_group_auc"] == pytest.approx(audit["scores"]["two_groups"]["values"]["worst_group_auc"])
    assert row["eodd"] == pytest.approx(audit["metrics"]["eodd"])
    assert math.isnan(df.set_index("name").loc["base", "fate_eodd"])   # the baseline has no FATE
    html = (tmp_path / "cmp" / "compare.html").read_text()
    assert "Selected columns" in html and html.index("Selected columns") > html.index("Table 1")
    # Without --columns the page keeps Table 1 and adds MEDFAIR's worst-group table.
    res = compare_runs([tmp_path / "base", tmp_path / "child_a"], out_dir=tmp_path / "cmp2")
    html = res.html_path.read_text()
    assert "Threshold-free and calibration (worst group)" in html and "Selected columns" not in html
    with pytest.raises(RunError, match="unknown column.*auc_worst"):
        compare_runs([tmp_path / "base"], out_dir=tmp_path / "cmp3", columns=["auc_worst"])
