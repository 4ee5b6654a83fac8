"""`train --recipe NAME`: the papers' settings as defaults, explicit options winning, `--print-config`."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from equiprune.cli import main
from equiprune.methods.recipes import RECIPES, RecipeError, get_recipe, resolve_settings

DOCS = Path(__file__).resolve().parents[1] / "docs" / "RECIPES.md"


def _printed(capsys, *args: str) -> dict[str, tuple[str, str]]:
    assert main(["train", *args, "--print-config"]) == 0
    rows = {}
    for line in capsys.readouterr().out.splitlines():
        m = re.match(r"  (\w+)\s+(\S+)\s+(.*)$", line)
        if m:
            rows[m.group(1)] = (m.group(2), m.group(3))
    return rows


def test_scp_fitzpatrick_prints_the_published_settings_with_sources(capsys):
    rows = _printed(capsys, "--recipe", "scp-fitzpatrick17k")
    assert rows["data"][0] == "fitzpatrick17k" and rows["model"][0] == "vgg11_bn"
    assert rows["optimizer"][0] == "sgd" and rows["lr"][0] == "0.01" and rows["batch_size"][0] == "128"
    assert rows["schedule"][0] == "step" and rows["step_size"][0] == "100" and rows["weight_decay"][0] == "1e-05"
    assert rows["lr"][1].startswith("recipe scp-fitzpatrick17k: FME train.sh:")
    # every value the recipe sets names a file and line (or says it is equiprune's choice)
    for key, (_, origin) in rows.items():
        if origin.startswith("recipe"):
            assert re.search(r"\w+\.(py|sh):\d+|seeds/00\d line \d+|model\.py", origin), (key, origin)


def test_explicit_options_win_over_the_recipe(capsys):
    rows = _printed(capsys, "--recipe", "scp-isic2019", "--lr", "0.1", "--image-size", "224", "--epochs", "3")
    assert rows["lr"] == ("0.1", "command line") and rows["epochs"] == ("3", "command line")
    assert rows["image_size"] == ("224", "command line")
    assert rows["weights"][0] == "imagenet" and rows["momentum"][0] == "0.9"
    # without a recipe, equiprune's own defaults
    rows = _printed(capsys)
    assert rows["optimizer"][1] == "default" and rows["model"] == ("vgg11", "default")


def test_skew_recipe_marks_what_the_paper_does_not_state(capsys):
    rows = _printed(capsys, "--recipe", "skew-isic2019", "--model", "vit_b_16")
    assert rows["model"] == ("vit_b_16", "command line") and rows["image_size"][0] == "224"
    assert "not stated in the paper" in rows["lr"][1] and "equiprune" in rows["weights"][1]


def test_unknown_recipe_and_missing_out_are_clear_errors(capsys):
    assert main(["train", "--recipe", "scp-celeba", "--print-config"]) == 2
    assert "choose one of scp-fitzpatrick17k" in capsys.readouterr().err
    assert main(["train", "--epochs", "1"]) == 2
    assert "--out" in capsys.readouterr().err
    with pytest.raises(RecipeError):
        get_recipe("nope")


def test_resolution_order():
    recipe = RECIPES["scp-isic2019"]
    got = resolve_settings(recipe, {"lr": None, "epochs": 7}, {"lr": None, "epochs": 5, "seed_only": 1})
    assert got["lr"][0] == 0.01 and got["epochs"] == (7, "command line") and got["seed_only"] == (1, "default")


def test_docs_cite_every_recipe_value():
    text = DOCS.read_text()
    for name in RECIPES:
        assert f"`{name}`" in text
    for key in ("train_cnn.py:146", "train_cnn.py:147", "train.sh:3", "data.py:134", "data.py:105", "model.py:71"):
        assert key in text
