"""The `equiprune` command end to end: train, kill, resume; help texts; clear errors."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from equiprune.cli import main

TINY = ["--data", "synthderm", "--synth-n", "400", "--image-size", "32", "--model", "vgg11", "--width", "0.125",
        "--optimizer", "adam", "--quiet"]


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "equiprune", *args]


def test_help_teaches(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for verb in ("demo", "train", "audit", "prune", "compress", "reprogram", "report"):
        assert verb in out
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "examples:" in capsys.readouterr().out


def test_bad_input_is_a_clear_error(tmp_path, capsys):
    code = main(["train", "--data", "fitzpatrick17k", "--root", str(tmp_path / "nowhere"), "--out",
                 str(tmp_path / "r"), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err
    assert main(["audit", "--run", str(tmp_path / "missing")]) == 2


def test_kill_and_resume_continues_from_last_epoch(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(_cmd("train", *TINY, "--epochs", "4", "--out", str(out)), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = out / "train_state.pt"
    deadline = time.time() + 240
    while not state.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert state.exists(), "no epoch finished before the kill"
    # The state file, not the log, says how far it got: the kill may land after an epoch's log line
    # and before its state is saved, and that epoch is then (correctly) trained again.
    import torch
    epochs_before = torch.load(state, weights_only=True)["epoch"]
    assert 0 < epochs_before < 4
    done = subprocess.run(_cmd("train", *TINY, "--epochs", "4", "--out", str(out)), env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    log = (out / "log.txt").read_text()
    assert f"resuming training after epoch {epochs_before}" in log
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert (out / "model.pt").exists() and "test accuracy" in done.stdout
    # the same command on a finished run does nothing more
    again = subprocess.run(_cmd("train", *TINY, "--epochs", "4", "--out", str(out)), env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "already finished" in (out / "log.txt").read_text()
    # other settings in the same folder are refused
    other = subprocess.run(_cmd("train", *TINY, "--epochs", "5", "--out", str(out)), env=env,
                           capture_output=True, text=True, timeout=300)
    assert other.returncode == 2 and "other settings" in other.stderr


def _skin_type_csv(tmp_path: Path, n: int = 120) -> list[str]:
    """A CSV whose group column holds Fitzpatrick types as Roman numerals, with placeholder images."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    rng = np.random.default_rng(0)
    (tmp_path / "imgs").mkdir()
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(tmp_path / "imgs" / f"im{i}.png")
    pd.DataFrame({"file": [f"im{i}.png" for i in range(n)],
                  "diagnosis": [("nevus", "melanoma")[i % 2] for i in range(n)],
                  "skin_type": [("I", "II", "III", "IV", "V", "VI")[(i // 2) % 6] for i in range(n)],
                  }).to_csv(tmp_path / "table.csv", index=False)
    return ["--data", "csv", "--metadata", str(tmp_path / "table.csv"), "--root", str(tmp_path / "imgs"),
            "--image-column", "file", "--label-column", "diagnosis", "--group-column", "skin_type",
            "--image-size", "32", "--width", "0.125", "--epochs", "1", "--quiet"]


def test_a_many_valued_group_column_is_mapped_to_two_groups_on_the_command_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EQUIPRUNE_CACHE", str(tmp_path / "cache"))
    args, out = _skin_type_csv(tmp_path), tmp_path / "run"
    assert main(["train", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "'skin_type'" in err and "gives 6 group(s) (I, II, III, IV, V, VI)" in err
    assert "--group-map I,II,III=0 IV,V,VI=1" in err
    # Refused before a folder or an image cache exists, so the corrected command starts clean.
    assert not out.exists() and not (tmp_path / "cache").exists()
    assert main(["train", *args, "--group-map", "I,II", "--out", str(out)]) == 2
    assert "VALUES=GROUP" in capsys.readouterr().err and not out.exists()
    assert main(["train", *args, "--group-map", "I,II,III=0", "IV,V,VI=1", "--group-names", "light", "dark",
                 "--out", str(out)]) == 0
    data = json.loads((out / "config.json").read_text())["data"]
    assert data["group_map"] == {"I": 0, "II": 0, "III": 0, "IV": 1, "V": 1, "VI": 1}
    assert data["group_names"] == ["light", "dark"]
    from equiprune.methods.runs import open_run

    test = open_run(out).splits().test     # a child verb sees the same two groups
    assert set(test.groups.tolist()) == {0, 1}
    assert all((g == 1) == (t in ("IV", "V", "VI")) for g, t in zip(test.groups, test.meta.skin_type))


def test_parse_group_map():
    from equiprune.cli.common import parse_group_map

    assert parse_group_map(None) is None
    assert parse_group_map(["female=0", "male=1"]) == {"female": 0, "male": 1}
    assert parse_group_map(["1, 2,3=0", "4,5,6,-1=1"]) == {"1": 0, "2": 0, "3": 0, "4": 1, "5": 1, "6": 1, "-1": 1}
    for bad, msg in ((["I,II"], "VALUES=GROUP"), (["=0"], "VALUES=GROUP"), (["I=x"], "VALUES=GROUP"),
                     (["I,,II=0"], "empty value"), (["I=0", "I=1"], "in group 0 and in group 1")):
        with pytest.raises(ValueError, match=msg):
            parse_group_map(bad)


@pytest.mark.parametrize("bad, message", [(["--lr", "-1"], "lr must be > 0, got -1.0"),
                                          (["--weight-decay", "-0.1"], "weight_decay must be >= 0, got -0.1"),
                                          (["--batch-size", "0"], "argument --batch-size: must be >= 1, got 0"),
                                          (["--epochs", "-1"], "argument --epochs: must be >= 0, got -1")])
def test_a_mistyped_training_option_leaves_no_folder_behind(tmp_path, capsys, bad, message):
    out = tmp_path / "run"
    try:
        code = main(["train", *TINY, "--synth-n", "200", "--epochs", "1", *bad, "--out", str(out)])
    except SystemExit as exc:   # what argparse itself refuses
        code = exc.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()   # so the corrected command is not refused as "other settings"


def test_synthderm_marker_mode_from_the_command_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EQUIPRUNE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    assert main(["train", *TINY, "--synth-n", "300", "--epochs", "1", "--synth-group-cue", "marker",
                 "--out", str(out)]) == 0
    assert "clinic A" in capsys.readouterr().out   # the test line names the groups
    data = json.loads((out / "config.json").read_text())["data"]
    assert data["synthderm"]["group_cue"] == "marker"
    from equiprune.methods.runs import open_run

    test = open_run(out).splits().test
    assert (test.meta["marker"] == test.groups).all()
