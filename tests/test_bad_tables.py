"""Bad metadata tables refused with the row counts and the option to pass (issue 21, cases 3-5)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from equiprune.cli import main
from equiprune.data import DataConfig, DataError, load_splits


def _images(folder: Path, n: int) -> list[str]:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"im{i}.png" for i in range(n)]
    for name in names:
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(folder / name)
    return names


def _table(tmp_path: Path, n: int = 60, edit=None) -> DataConfig:
    names = _images(tmp_path / "imgs", n)
    df = pd.DataFrame({"image": names, "label": [("nevus", "melanoma")[i % 2] for i in range(n)],
                       "group": [(i // 2) % 2 for i in range(n)],
                       "split": [("train", "train", "train", "train", "val", "test")[(i // 4) % 6] if i < 48
                                 else ("train", "val", "test")[i % 3] for i in range(n)]})
    if edit is not None:
        df = edit(df)
    df.to_csv(tmp_path / "table.csv", index=False)
    return DataConfig(name="csv", metadata=str(tmp_path / "table.csv"), root=str(tmp_path / "imgs"),
                      split_column="split", image_size=16, cache_dir=str(tmp_path / "cache"), progress=False)


def test_clean_table_loads(tmp_path):
    splits = load_splits(_table(tmp_path))
    assert splits.classes == ["melanoma", "nevus"] and splits.warnings == []


# ------------------------------------------------------------ 3. a label only in val or test

def _label_only_in_test(df: pd.DataFrame) -> pd.DataFrame:
    rows = df.index[df["split"] == "test"][:3]
    df.loc[rows, "label"] = "lentigo"
    return df


def test_label_only_in_test_is_refused_naming_it(tmp_path):
    with pytest.raises(DataError, match=r"test split .* no training row has: 'lentigo' \(3 rows\).*--unknown-labels drop"):
        load_splits(_table(tmp_path, edit=_label_only_in_test))


def test_label_only_in_test_dropped_on_request(tmp_path):
    from dataclasses import replace
    cfg = replace(_table(tmp_path, edit=_label_only_in_test), unknown_labels="drop")
    with pytest.warns(UserWarning, match="dropped 3 row"):
        splits = load_splits(cfg)
    assert splits.classes == ["melanoma", "nevus"]  # no silent third class
    assert "lentigo" not in set(splits.test.meta["class_name"]) and splits.test.labels.max() == 1


def test_unknown_labels_on_the_command_line(tmp_path, capsys):
    cfg = _table(tmp_path, edit=_label_only_in_test)
    args = ["--data", "csv", "--metadata", cfg.metadata, "--root", cfg.root, "--split-column", "split",
            "--image-size", "16", "--quiet"]
    assert main(["train", *args, "--out", str(tmp_path / "run")]) == 2
    assert "--unknown-labels drop" in capsys.readouterr().err


# ------------------------------------------------------------ 4. train/test leakage

def test_test_rows_reusing_training_images_are_refused(tmp_path):
    def leak(df):
        train_images = df.loc[df["split"] == "train", "image"].tolist()[:12]
        rows = df.index[df["split"] == "test"][:12]
        df.loc[rows, "image"] = train_images[:len(rows)]
        return df
    with pytest.raises(DataError, match=r"same file\): \d+ test rows repeat train images.*--split-overlap allow"):
        load_splits(_table(tmp_path, edit=leak))


def test_same_pixels_under_another_name_are_found_and_allowed_with_a_warning(tmp_path):
    from dataclasses import replace
    cfg = _table(tmp_path)
    df = pd.read_csv(cfg.metadata)
    train_img, test_row = df.loc[df["split"] == "train", "image"].iloc[0], df.index[df["split"] == "test"][0]
    shutil.copy(Path(cfg.root) / train_img, Path(cfg.root) / "copy_of_train.png")
    df.loc[test_row, "image"] = "copy_of_train.png"
    df.to_csv(cfg.metadata, index=False)
    with pytest.raises(DataError, match=r"identical decoded pixels\): 1 test row repeats train images \(copy_of_train.png\)"):
        load_splits(cfg)
    with pytest.warns(UserWarning, match="share images"):
        splits = load_splits(replace(cfg, split_overlap="allow"))
    assert len(splits.warnings) == 1 and "optimistic" in splits.warnings[0]


# ------------------------------------------------------------ 5. a header-only table

def test_header_only_table_says_it_has_no_rows(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "table.csv").write_text("image,label,group\n")
    cfg = DataConfig(name="csv", metadata=str(tmp_path / "table.csv"), root=str(tmp_path / "imgs"),
                     cache_dir=str(tmp_path / "cache"), progress=False)
    with pytest.raises(DataError, match=r"table\.csv has no rows \(only a header line\)"):
        load_splits(cfg)


# ------------------------------------------------------------ 7. a run folder describes what it read

def test_relative_paths_tables_hash_and_a_changed_table(tmp_path, monkeypatch, capsys):
    cfg = _table(tmp_path)
    monkeypatch.chdir(tmp_path)
    args = ["--data", "csv", "--metadata", "table.csv", "--root", "imgs", "--split-column", "split",
            "--image-size", "32", "--width", "0.125", "--epochs", "1", "--quiet"]
    assert main(["train", *args, "--out", "run"]) == 0
    import json
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["data"]["root"] == str(tmp_path / "imgs") and config["data"]["metadata"] == cfg.metadata
    assert list(config["tables"]) == [cfg.metadata] and len(config["tables"][cfg.metadata]) == 64
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the run's data is found from another directory
    assert main(["audit", "--run", str(tmp_path / "run"), "--n-boot", "20", "--no-latency", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "metadata table" not in out
    # 8: a group of fewer than 30 test images is marked beside its numbers and warned
    assert "small sample" in out and "fewer than 30" in out
    # the table changes (one more row): a resume is refused, an audit is warned
    with open(cfg.metadata, "a") as fh:
        fh.write("im0.png,nevus,0,train\n")
    monkeypatch.chdir(tmp_path)
    assert main(["train", *args, "--out", "run"]) == 2
    assert "changed since" in capsys.readouterr().err
    assert main(["audit", "--run", str(tmp_path / "run"), "--n-boot", "20", "--no-latency", "--quiet"]) in (0, 2)
    captured = capsys.readouterr()
    assert "table.csv changed since this model was trained" in captured.out + captured.err


def test_a_name_matching_two_subfolders_is_an_error_naming_both(tmp_path):
    cfg = _table(tmp_path)
    for sub in ("a", "b"):
        (Path(cfg.root) / sub).mkdir()
        shutil.move(str(Path(cfg.root) / "im5.png"), str(Path(cfg.root) / sub / "im5.png")) if sub == "a" else \
            shutil.copy(Path(cfg.root) / "a" / "im5.png", Path(cfg.root) / sub / "im5.png")
    with pytest.raises(DataError, match=r"'im5.png'.*two folders.*a/im5.png and .*b/im5.png"):
        load_splits(cfg)


def test_a_symlink_leaving_the_root_is_refused(tmp_path):
    cfg = _table(tmp_path)
    outside = tmp_path / "outside.png"
    shutil.move(str(Path(cfg.root) / "im7.png"), str(outside))
    (Path(cfg.root) / "im7.png").symlink_to(outside)
    with pytest.raises(DataError, match=r"im7.png .* symbolic link to .*outside.png, outside the image folder"):
        load_splits(cfg)
    (Path(cfg.root) / "im7.png").unlink()
    shutil.move(str(outside), str(Path(cfg.root) / "real.png"))
    (Path(cfg.root) / "im7.png").symlink_to(Path(cfg.root) / "real.png")  # a link inside the root is fine
    assert len(load_splits(cfg).train) > 0


# ------------------------------------------------------------ 8. messages speak CLI

def test_messages_name_cli_options(tmp_path):
    cfg = _table(tmp_path)
    (Path(cfg.root) / "im3.png").unlink()
    with pytest.raises(DataError, match="--missing-images drop") as err:
        load_splits(cfg)
    assert "missing_images='drop'" not in str(err.value)


def test_a_settings_mismatch_names_only_what_differs(tmp_path):
    from equiprune.engine import RunDir, RunError, TrainConfig
    from dataclasses import asdict
    rd = RunDir(tmp_path / "run")
    big = {"kind": "train", "data": asdict(DataConfig()), "train": asdict(TrainConfig())}
    rd.check_or_write_config(big)
    changed = {**big, "train": asdict(TrainConfig(seed=1))}
    with pytest.raises(RunError) as err:
        rd.check_or_write_config(changed)
    msg = str(err.value)
    assert "train.seed: 0 -> 1" in msg and len(msg) < 250 and "lr" not in msg


def test_markdown_report_escapes_html(tmp_path):
    from equiprune.report.html import Image, Section, write_page
    _, md = write_page(tmp_path, "report", "<script>x</script>",
                       [Section("<b>g</b>", text="group <img src=x onerror=alert(1)>",
                                images=[Image("<i>cap</i>", b"\x89PNG", "p")])])
    text = md.read_text()
    assert "<script>" not in text and "<img" not in text and "<b>" not in text and "<i>" not in text
    assert "group &lt;img src=x onerror=alert(1)>" in text
