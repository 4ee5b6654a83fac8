"""`equiprune audit` end to end: a tiny model trained on synthderm (the `runs` fixture of conftest),
audited from its run folder."""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from equiprune.engine import RunDir
from equiprune.methods.audit import AuditConfig, AuditError, audit_run
from equiprune import api
from equiprune.methods.runs import open_run
from equiprune.metrics import fate, group_fairness

FAST = dict(n_boot=100, latency=False, device="cpu")


def _saved_predictions(run: Path, split: str = "test") -> pd.DataFrame:
    return pd.read_csv(run / f"predictions_{split}.csv")


def test_audit_run_writes_files_and_numbers_equal_metrics_of_saved_predictions(runs):
    run = runs["base"]
    history_before = RunDir(run).read_metrics()["history"]
    res = api.audit(run, AuditConfig(n_boot=100, device="cpu"))
    for f in ("predictions_test.csv", "metrics.json", "report.html", "report.md"):
        assert (run / f).is_file(), f
    df = _saved_predictions(run)
    ref = group_fairness(df.y_true, df.y_pred, df.group).to_dict()
    section = json.loads((run / "metrics.json").read_text())["audit"]
    for k, v in ref.items():
        assert section["metrics"][k] == pytest.approx(v, abs=1e-12), k
        assert section["intervals"][k]["estimate"] == pytest.approx(v, abs=1e-12), k
    assert section["intervals"]["f1"]["lo"] <= section["intervals"]["f1"]["hi"]
    # The CSV matches the data: labels and groups of the rows it names, probabilities that argmax to y_pred.
    test = open_run(run).splits().test
    assert np.array_equal(df.y_true.to_numpy(), test.labels[df["index"].to_numpy()])
    assert np.array_equal(df.group.to_numpy(), test.groups[df["index"].to_numpy()])
    probs = df[[c for c in df.columns if c.startswith("prob_")]].to_numpy()
    assert probs.shape[1] == 5 and np.array_equal(probs.argmax(1), df.y_pred.to_numpy())
    assert np.allclose(probs.sum(1), 1.0, atol=1e-5)
    # A vanilla run has no baseline; cost is measured (latency on by default here).
    assert res.fate == {} and section["baseline"] is None
    assert section["cost"]["params"] > 0 and section["cost"]["latency_ms"] > 0
    # The training history is kept beside the new section.
    assert RunDir(run).read_metrics()["history"] == history_before
    html = (run / "report.html").read_text()
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html)
    assert all(s.startswith("data:image/png;base64,") for s in re.findall(r'<img[^>]*src="([^"]+)"', html))
    assert "Training history" in html  # the 1-epoch history is plotted


def test_fate_against_explicit_baseline_equals_fate_of_metric_dicts(runs):
    audit_run(runs["child_a"], AuditConfig(**FAST), baseline_run=runs["base"])
    res = audit_run(runs["child_b"], AuditConfig(**FAST), baseline_run=runs["child_a"])
    a, b = _saved_predictions(runs["child_a"]), _saved_predictions(runs["child_b"])
    assert np.array_equal(a["index"], b["index"])
    ma = group_fairness(a.y_true, a.y_pred, a.group)
    mb = group_fairness(b.y_true, b.y_pred, b.group)
    assert not np.array_equal(a.y_pred, b.y_pred)
    for fc in ("eopp0", "eopp1", "eodd"):
        expected = fate(mb.f1, ma.f1, getattr(mb, fc), getattr(ma, fc))
        assert res.fate[f"fate_{fc}"] == pytest.approx(expected, rel=1e-12)
        iv = res.fate_intervals[f"fate_{fc}"]
        assert iv["lo"] <= iv["hi"]
    assert res.baseline_source == "argument" and Path(res.baseline_path) == runs["child_a"].resolve()
    assert res.paired["f1"]["estimate"] == pytest.approx(mb.f1 - ma.f1)
    assert res.baseline_metrics["eodd"] == pytest.approx(ma.eodd)


def test_child_run_uses_baseline_from_config(runs):
    res = audit_run(runs["child_a"], AuditConfig(**FAST))
    assert res.baseline_source == "config.json"
    assert Path(res.baseline_path) == runs["base"].resolve()
    assert any("baseline taken from config.json" in n for n in res.notes)
    base = _saved_predictions(runs["base"]) if (runs["base"] / "predictions_test.csv").exists() else None
    if base is not None:  # written by the first test when the whole file runs
        mb = group_fairness(base.y_true, base.y_pred, base.group)
        assert res.baseline_metrics["f1"] == pytest.approx(mb.f1)
    # Each criterion is either a finite FATE or undefined with a note saying why.
    for fc in ("eopp0", "eopp1", "eodd"):
        v = res.fate[f"fate_{fc}"]
        assert (v is not None and np.isfinite(v)) or any(f"FATE({fc})" in n for n in res.notes)


def test_audit_by_fitzpatrick_column_on_val(runs):
    res = audit_run(runs["child_b"], AuditConfig(split="val", groups="fitzpatrick", **FAST))
    section = RunDir(runs["child_b"]).read_metrics()["audit_val"]
    names = [r["name"] for r in section["multigroup"]["table"]]
    assert names == sorted(names, key=lambda n: ["I", "II", "III", "IV", "V", "VI"].index(n.split()[-1]))
    assert len(names) >= 4
    df = _saved_predictions(runs["child_b"], "val")
    assert "meta_fitzpatrick" in df
    # Every prediction is counted once across the per-type rows.
    assert sum(r["n"] for r in section["multigroup"]["table"]) == len(df) == res.metrics["n"]
    # Light types I-III are group 0 in synthderm.
    assert set(df.loc[df.group == 0, "meta_fitzpatrick"]) <= {1, 2, 3}


def test_audit_errors(runs, tmp_path):
    with pytest.raises(AuditError, match="does not exist"):
        audit_run(runs["base"], AuditConfig(**FAST), baseline_run=tmp_path / "missing")
    with pytest.raises(ValueError, match="config.json|does not exist"):
        audit_run(tmp_path, AuditConfig(**FAST))
    with pytest.raises(AuditError, match="not found"):
        audit_run(runs["base"], AuditConfig(groups="no_such_column", **FAST))


def test_cli_audit_prints_table_and_report_path(runs, capsys):
    from equiprune.cli import audit as audit_cli

    parser = argparse.ArgumentParser(prog="equiprune")
    audit_cli.register(parser.add_subparsers())
    args = parser.parse_args(["audit", "--run", str(runs["child_b"]), "--baseline", str(runs["child_a"]),
                              "--n-boot", "50", "--no-latency", "--quiet", "--device", "cpu"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert re.search(r"^F1\s+\d\.\d{3} \[\d\.\d{2}, \d\.\d{2}\]", out, re.M)
    assert "FATE vs baseline" in out and re.search(r"^Eodd\s+\S+ \[", out, re.M)
    assert f"report: {runs['child_b'] / 'report.html'}" in out
    assert f"against the baseline {runs['child_a'].resolve()}" in out


def test_a_baseline_audited_since_its_model_last_changed_is_not_predicted_again(runs, tmp_path, monkeypatch):
    import shutil

    import torch

    from equiprune.methods import audit as audit_module
    from equiprune.methods.runs import save_run_model

    base, child = tmp_path / "base", tmp_path / "child"
    shutil.copytree(runs["base"], base)
    shutil.copytree(runs["child_a"], child)
    for f in base.glob("predictions_*.csv"):
        f.unlink()
    calls = []
    real = audit_module.predict
    monkeypatch.setattr(audit_module, "predict", lambda model, *a, **k: calls.append(1) or real(model, *a, **k))
    cfg = AuditConfig(**FAST)
    fresh = audit_run(child, cfg, baseline_run=base)
    assert len(calls) == 2                       # the baseline was never audited: both models predict
    audit_run(base, cfg)
    assert RunDir(base).read_metrics()["audit"]["model_sha256"]
    calls.clear()
    reused = audit_run(child, cfg, baseline_run=base)
    assert len(calls) == 1                       # only the child: the baseline's stored predictions serve
    assert reused.fate == fresh.fate and reused.paired == fresh.paired
    assert reused.baseline_metrics == fresh.baseline_metrics
    assert "baseline predictions read from its audit" in (child / "log.txt").read_text()
    # A changed baseline model is predicted again, whatever its stored audit says.
    loaded = open_run(base)
    with torch.no_grad():
        loaded.model.classifier[6].bias.add_(5.0 * torch.arange(loaded.model.classifier[6].bias.numel()))
    save_run_model(loaded.run, loaded.model, loaded.arch, loaded.extra)
    calls.clear()
    changed = audit_run(child, cfg, baseline_run=base)
    assert len(calls) == 2
    assert changed.baseline_metrics != fresh.baseline_metrics
