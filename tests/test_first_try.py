"""Issue 22: a new user's own CSV data on the first try (group coding, help texts, warnings, verdicts)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from equiprune.cli import main


def _own_csv(root: Path, n: int = 240) -> list[str]:
    """A user's table: a text skin column light/dark, a train/val/test column, 3 classes of 32-px PNGs."""
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "imgs").mkdir(parents=True)
    rows = []
    for i in range(n):
        label, skin = i % 3, ("light", "light", "dark")[(i // 3) % 3]
        img = rng.integers(0, 60, (32, 32, 3)).astype(np.uint8)
        img[:, :, label] += 150                          # the class is the bright channel
        if skin == "dark":
            img //= 2
        Image.fromarray(img).save(root / "imgs" / f"im{i}.png")
        rows.append({"file": f"im{i}.png", "diagnosis": ("nevus", "melanoma", "bcc")[label], "skin": skin,
                     "part": ("train", "train", "train", "val", "test")[(i // 9) % 5]})
    pd.DataFrame(rows).to_csv(root / "table.csv", index=False)
    return ["--data", "csv", "--metadata", str(root / "table.csv"), "--root", str(root / "imgs"),
            "--image-column", "file", "--label-column", "diagnosis", "--group-column", "skin",
            "--split-column", "part", "--image-size", "32"]


@pytest.fixture(scope="module")
def own_run(tmp_path_factory, one_thread):
    """One trained run on the user's CSV, with the group map the refusal asks for."""
    root = tmp_path_factory.mktemp("own")
    data = _own_csv(root)
    out = root / "base"
    code = main(["train", *data, "--group-map", "light=0", "dark=1", "--group-names", "light", "dark",
                 "--width", "0.125", "--epochs", "2", "--lr", "2e-3", "--quiet", "--out", str(out)])
    assert code == 0
    return root, data, out


# ----------------------------------------------------------------------------- 1. group coding

def test_a_two_valued_text_column_without_a_map_is_refused_with_the_map_to_pass(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EQUIPRUNE_CACHE", str(tmp_path / "cache"))
    data, out = _own_csv(tmp_path, n=60), tmp_path / "run"
    assert main(["train", *data, "--width", "0.125", "--epochs", "1", "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "two text values, 'dark' and 'light'" in err
    assert "--group-map dark=0 light=1 --group-names dark light" in err
    assert "--group-map light=0 dark=1" in err
    assert not out.exists() and not (tmp_path / "cache").exists()


def test_every_verb_prints_the_group_coding_first_and_the_report_shows_it(own_run, capsys):
    import equiprune.methods.runs as runs

    root, _, out = own_run
    cfg = json.loads((out / "config.json").read_text())
    line = "groups: 0 = light (skin = light); 1 = dark (skin = dark) [--group-map]"
    assert cfg["group_coding"] == line
    runs._announced.clear()
    capsys.readouterr()
    assert main(["audit", "--run", str(out), "--n-boot", "50", "--quiet"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == line
    page = (out / "report.html").read_text()
    assert "group coding" in page and "0 = light (skin = light)" in page


def test_standard_codings_are_named():
    from equiprune.data import DataConfig
    from equiprune.data.loaders import group_coding

    assert "synthderm's coding" in group_coding(DataConfig(name="synthderm")).describe()
    assert group_coding(DataConfig(name="synthderm")).describe().startswith("groups: 0 = light (I-III)")


# ----------------------------------------------------------------------------- 10. settings messages, baselines

def test_a_settings_mismatch_names_only_the_fields_that_differ(own_run, capsys):
    root, data, out = own_run
    code = main(["train", *data, "--group-map", "light=0", "dark=1", "--group-names", "light", "dark",
                 "--width", "0.125", "--epochs", "2", "--lr", "2e-3", "--seed", "1", "--quiet", "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert "other settings (data.seed: 0 -> 1; train.seed: 0 -> 1). Use a new --out" in err and len(err) < 300


def test_augmentation_is_not_other_data_and_a_refused_baseline_leaves_no_folder(own_run, tmp_path, capsys):
    import shutil

    root, data, out = own_run
    other = tmp_path / "no-augment"
    shutil.copytree(out, other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["data"]["augment"] = "none"
    (other / "config.json").write_text(json.dumps(cfg))
    assert main(["audit", "--run", str(out), "--baseline", str(other), "--n-boot", "50", "--quiet"]) == 0
    capsys.readouterr()
    cfg["data"]["image_size"] = 40     # other images: refused, naming the one differing field
    (other / "config.json").write_text(json.dumps(cfg))
    new = tmp_path / "checkpoint-audit"
    code = main(["audit", "--checkpoint", str(out / "model.pt"), *data, "--group-map", "light=0", "dark=1",
                 "--group-names", "light", "dark", "--baseline", str(other), "--n-boot", "50", "--quiet",
                 "--out", str(new)])
    err = capsys.readouterr().err
    assert code == 2 and "(baseline -> this run: image_size: 40 -> 32)" in err
    assert not new.exists()
