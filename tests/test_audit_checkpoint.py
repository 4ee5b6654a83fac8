"""`equiprune audit --checkpoint FILE --data ... --out DIR`: a bare model.pt audited on a dataset named here.

Uses the tiny synthderm runs of conftest (`runs`): the numbers must equal those
of `audit --run` on the same model and data.
"""
from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from equiprune.cli import main
from equiprune.data import DataConfig, SynthDermConfig
from equiprune.engine import RunDir, RunError
from equiprune.methods.audit import AuditConfig, AuditError
from equiprune.methods.checkpoint_audit import checkpoint_run
from equiprune.methods.runs import open_run
from equiprune.models import build_model, save_checkpoint
from equiprune import api
from equiprune.report import compare_runs

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = ["--n-boot", "100", "--no-latency", "--quiet", "--device", "cpu"]
# The data of the conftest runs, as `audit --checkpoint` options (image size: the checkpoint's, 32).
DATA = ["--data", "synthderm", "--synth-n", "300", "--data-seed", "0"]


def _audit(folder) -> dict:
    return json.loads((folder / "metrics.json").read_text())["audit"]


def test_checkpoint_audit_equals_run_audit_of_the_same_model(runs, tmp_path, capsys):
    run = shutil.copytree(runs["child_b"], tmp_path / "run")  # a copy: the session's folders stay as they were
    assert main(["audit", "--run", str(run), *FAST]) == 0
    out = tmp_path / "ck"
    assert main(["audit", "--checkpoint", str(runs["child_b"] / "model.pt"), *DATA, "--out", str(out), *FAST]) == 0
    printed = capsys.readouterr().out
    assert f"report: {out / 'report.html'}" in printed and f"metrics: {out / 'metrics.json'}" in printed

    by_run, by_ckpt = _audit(run), _audit(out)
    assert by_ckpt["metrics"] == by_run["metrics"] and by_ckpt["intervals"] == by_run["intervals"]
    assert by_ckpt["signed_gaps"] == by_run["signed_gaps"] and by_ckpt["confusion"] == by_run["confusion"]
    assert len(set(by_run["confusion"]["counts"][0][0])) > 1  # not a one-class model: the check has teeth
    pd.testing.assert_frame_equal(pd.read_csv(out / "predictions_test.csv"), pd.read_csv(run / "predictions_test.csv"))
    # No baseline is recorded for a bare checkpoint (the run folder's chain has one).
    assert by_ckpt["baseline"] is None and by_run["baseline"] is not None

    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == "audit" and config["checkpoint"] == str((runs["child_b"] / "model.pt").resolve())
    assert config["data"]["image_size"] == 32 == config["arch"]["image_size"]
    same = lambda d: {k: v for k, v in d.items() if k not in ("cache_dir", "progress")}  # noqa: E731
    assert same(config["data"]) == same(json.loads((run / "config.json").read_text())["data"])
    assert (out / "model.pt").read_bytes() == (runs["child_b"] / "model.pt").read_bytes()
    assert config["checkpoint"] in (out / "report.html").read_text()


def test_report_tells_checkpoint_audits_apart(runs, tmp_path):
    cfg = AuditConfig(n_boot=20, latency=False, device="cpu")
    data = DataConfig(name="synthderm", progress=False, synthderm=SynthDermConfig(n=300))
    for name in ("child_a", "child_b"):
        api.audit_checkpoint(runs[name] / "model.pt", data, tmp_path / name, cfg)
    res = compare_runs([tmp_path / "child_a", tmp_path / "child_b"], out_dir=tmp_path / "cmp", cfg=cfg)
    # Two checkpoints on the same data and architecture are two models, not two seeds of one.
    assert list(res.table.names) == ["child_a", "child_b"]
    assert res.summary is None and len({e.group for e in res.runs}) == 2
    assert res.html_path.is_file()


def test_image_size_follows_the_checkpoint_unless_given(runs, tmp_path):
    data = DataConfig(name="synthderm", image_size=64, progress=False, synthderm=SynthDermConfig(n=300))
    rd = checkpoint_run(runs["base"] / "model.pt", data, tmp_path / "auto")
    assert rd.read_config()["data"]["image_size"] == 32  # the DataConfig's 64 is not used
    rd = checkpoint_run(runs["base"] / "model.pt", data, tmp_path / "given", image_size=48)
    assert rd.read_config()["data"]["image_size"] == 48 and rd.read_config()["arch"]["image_size"] == 32
    assert open_run(rd.path).splits().test[0][0].shape[-1] == 48
    # The same folder again: resumed; other data: refused.
    checkpoint_run(runs["base"] / "model.pt", data, tmp_path / "auto")
    with pytest.raises(RunError, match="other settings"):
        checkpoint_run(runs["base"] / "model.pt", data, tmp_path / "auto", image_size=48)


def test_class_count_mismatch_and_bad_folders_are_refused_before_writing(runs, tmp_path):
    ckpt = tmp_path / "three.pt"
    arch = {"name": "vgg11", "num_classes": 3, "width": 0.125, "image_size": 32}
    save_checkpoint(ckpt, build_model(**arch), arch)
    data = DataConfig(name="synthderm", progress=False, synthderm=SynthDermConfig(n=300))
    with pytest.raises(AuditError, match=r"three\.pt predicts 3 classes but synthderm has 5 \("):
        checkpoint_run(ckpt, data, tmp_path / "out")
    with pytest.raises(AuditError, match="does not exist"):
        checkpoint_run(tmp_path / "missing.pt", data, tmp_path / "out")
    with pytest.raises(AuditError, match="--run"):
        checkpoint_run(runs["base"] / "model.pt", data, runs["base"])
    assert not (tmp_path / "out").exists()
    # A training run folder is never overwritten by an audit.
    with pytest.raises(RunError, match="other settings"):
        checkpoint_run(runs["base"] / "model.pt", data, shutil.copytree(runs["child_a"], tmp_path / "child"))
    assert RunDir(tmp_path / "child").read_config()["kind"] == "test-child"


@pytest.mark.parametrize("argv, message", [
    (["--run", "RUN", "--data", "synthderm"], "only with --checkpoint: --data"),
    (["--run", "RUN", "--image-size", "48", "--out", "x"], "only with --checkpoint: --image-size, --out"),
    (["--checkpoint", "CKPT", "--out", "x"], "--checkpoint needs --data"),
    (["--checkpoint", "CKPT", "--data", "synthderm"], "--checkpoint needs --out"),
])
def test_cli_option_mixes(runs, capsys, argv, message):
    argv = [str(runs["base"]) if a == "RUN" else str(runs["base"] / "model.pt") if a == "CKPT" else a for a in argv]
    assert main(["audit", *argv, *FAST]) == 2
    assert message in capsys.readouterr().err


def test_cli_run_and_checkpoint_are_exclusive(runs, capsys):
    with pytest.raises(SystemExit):
        main(["audit", "--run", str(runs["base"]), "--checkpoint", str(runs["base"] / "model.pt")])
    assert "not allowed with" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["audit", "--n-boot", "10"])
    assert "one of the arguments --run --checkpoint is required" in capsys.readouterr().err
