"""Real-dataset loaders on the REAL shipped metadata tables, with tiny placeholder JPEGs."""
from __future__ import annotations

import gzip
import shutil
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from equiprune.data import DataConfig, DataError, describe_splits, load_splits, load_tables
from equiprune.data import cache as cache_mod

TABLES = Path(str(resources.files("equiprune.data") / "tables"))


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("EQUIPRUNE_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def raw():
    """The shipped tables read directly with pandas (independent of the loader code)."""
    read = lambda n: pd.read_csv(TABLES / f"{n}.csv.gz", low_memory=False)  # noqa: E731
    return {n: read(n) for n in ("fitzpatrick17k", "fitzpatrick17k_vali", "fitzpatrick17k_test",
                                 "isic2019_train", "isic2019_val", "isic2019_test")}


@pytest.fixture(scope="module")
def fitz():
    return load_tables(DataConfig(name="fitzpatrick17k"))


def write_jpegs(folder: Path, names, size: int = 16, seed: int = 0) -> None:
    """Random pixels drawn from the seed and the name, so no two names (in any split) share an image:
    load_splits refuses images shared by splits."""
    import zlib

    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        rng = np.random.default_rng([seed, zlib.crc32(str(name).encode())])
        Image.fromarray(rng.integers(0, 256, (size, size + 4, 3), dtype=np.uint8)).save(folder / name)


def pick_rows(df: pd.DataFrame, per_group: int) -> list[str]:
    """Image names of the first ``per_group`` rows of each group."""
    return [n for g in (0, 1) for n in df.loc[df.group == g, "image"].head(per_group)]


# ----------------------------------------------------------------------------- Fitzpatrick-17k


def test_fitzpatrick_split_sizes_labels_and_groups(fitz, raw):
    full, vali, test = raw["fitzpatrick17k"], raw["fitzpatrick17k_vali"], raw["fitzpatrick17k_test"]
    assert (len(fitz.train), len(fitz.val), len(fitz.test)) == (len(full) - len(vali) - len(test), 1657, 1657)
    assert 13_000 < len(fitz.train) < 13_400
    assert not set(fitz.train.md5hash) & (set(vali.md5hash) | set(test.md5hash))
    assert len(fitz.classes) == 114 and fitz.expected == "<md5hash>.jpg"
    # validation/test labels are the papers' `low` index
    np.testing.assert_array_equal(fitz.val["label"], vali["low"])
    # training labels use the same name -> index mapping as the papers' split files
    ref = dict(zip(pd.concat([vali, test]).label, pd.concat([vali, test]).low))
    names = full.set_index("md5hash").loc[fitz.train.md5hash, "label"]
    np.testing.assert_array_equal(fitz.train["label"], names.map(ref).to_numpy())
    assert (fitz.train["class_name"].to_numpy() == names.to_numpy()).all()
    # groups: I-III -> 0, IV-VI and unknown (-1) -> 1
    trf = full.set_index("md5hash").loc[fitz.train.md5hash, "fitzpatrick_scale"].to_numpy()
    np.testing.assert_array_equal(fitz.train["group"], np.isin(trf, [4, 5, 6, -1]).astype(int))
    assert (fitz.test.loc[fitz.test.fitzpatrick == -1, "group"] == 1).all()
    assert (fitz.test.fitzpatrick == -1).sum() > 0


def test_fitzpatrick_label_levels_and_group_override():
    mid = load_tables(DataConfig(name="fitzpatrick17k", label_level="mid"))
    high = load_tables(DataConfig(name="fitzpatrick17k", label_level="high"))
    assert len(mid.classes) == 9 and "malignant melanoma" in mid.classes
    assert sorted(high.classes) == ["benign", "malignant", "non-neoplastic"]
    assert mid.train["label"].max() == 8 and high.train["label"].max() == 2
    # a column that only the full table has is brought to the split rows
    cent = load_tables(DataConfig(name="fitzpatrick17k", group_column="fitzpatrick_centaur"))
    assert cent.val["group"].isin([0, 1]).all() and "fitzpatrick_centaur" in cent.val


def copy_tables(dst: Path, names) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for n in names:
        with gzip.open(TABLES / f"{n}.csv.gz") as src, open(dst / f"{n}.csv", "wb") as out:
            shutil.copyfileobj(src, out)
    return dst


def small_fitz_tables(dst: Path, raw) -> Path:
    """The real vali/test tables and the real full table cut to those rows + 300 training rows."""
    dst.mkdir(parents=True, exist_ok=True)
    vali, test, full = raw["fitzpatrick17k_vali"], raw["fitzpatrick17k_test"], raw["fitzpatrick17k"]
    held = full.md5hash.isin(set(vali.md5hash) | set(test.md5hash))
    small = pd.concat([full[held], full[~held].head(300)])
    small.to_csv(dst / "fitzpatrick17k.csv", index=False)
    vali.to_csv(dst / "fitzpatrick17k_vali.csv", index=False)
    test.to_csv(dst / "fitzpatrick17k_test.csv", index=False)
    return dst


def test_fitzpatrick_metadata_errors(tmp_path, raw):
    meta = small_fitz_tables(tmp_path / "meta", raw)
    assert len(load_tables(DataConfig(name="fitzpatrick17k", metadata=str(meta))).train) == 300

    full = pd.read_csv(meta / "fitzpatrick17k.csv")
    full.drop(columns=["md5hash"]).to_csv(meta / "fitzpatrick17k.csv", index=False)
    with pytest.raises(DataError, match=r"fitzpatrick17k\.csv lacks column\(s\) \['md5hash'\].*fitzpatrick_scale"):
        load_tables(DataConfig(name="fitzpatrick17k", metadata=str(meta)))

    extra = full.iloc[:1].assign(md5hash="f" * 32, label="not a disease")
    pd.concat([full, extra]).to_csv(meta / "fitzpatrick17k.csv", index=False)
    with pytest.raises(DataError, match="not known classes: \\['not a disease'\\]"):
        load_tables(DataConfig(name="fitzpatrick17k", metadata=str(meta)))

    full.to_csv(meta / "fitzpatrick17k.csv", index=False)
    vali = pd.read_csv(meta / "fitzpatrick17k_vali.csv")
    vali.loc[0, "low"] = (vali.loc[0, "low"] + 1) % 114  # one name now has two indices
    vali.to_csv(meta / "fitzpatrick17k_vali.csv", index=False)
    with pytest.raises(DataError, match="one-to-one"):
        load_tables(DataConfig(name="fitzpatrick17k", metadata=str(meta)))

    (meta / "fitzpatrick17k_test.csv").unlink()
    with pytest.raises(DataError, match="fitzpatrick17k_test.csv .*not found"):
        load_tables(DataConfig(name="fitzpatrick17k", metadata=str(meta)))


def test_fitzpatrick_images_missing_drop_cache_and_corrupt(fitz, tmp_path, monkeypatch):
    root = tmp_path / "images"
    chosen = {s: pick_rows(getattr(fitz, s), 6) for s in ("train", "val", "test")}
    for s, names in chosen.items():
        # train images in a subfolder: the folder is searched recursively
        write_jpegs(root / ("part_1" if s == "train" else ""), names)
    cfg = DataConfig(name="fitzpatrick17k", root=str(root), image_size=16, cache_dir=str(tmp_path / "c"), progress=False)

    with pytest.raises(DataError) as err:
        load_splits(cfg)
    msg = str(err.value)
    n_missing = len(fitz.train) + len(fitz.val) + len(fitz.test) - 36
    assert f"{n_missing} images of fitzpatrick17k are missing" in msg
    assert f"{len(fitz.train) - 12} of {len(fitz.train)} train" in msg and f"{len(fitz.val) - 12} of 1657 val" in msg
    assert str(root) in msg and "<md5hash>.jpg" in msg and "--missing-images drop" in msg
    first_missing = fitz.train.loc[~fitz.train.image.isin(chosen["train"]), "image"].iloc[0]
    assert first_missing in msg

    cfg.missing_images = "drop"
    with pytest.warns(UserWarning, match="dropped"):
        s = load_splits(cfg)
    assert (len(s.train), len(s.val), len(s.test)) == (12, 12, 12)
    assert sorted(s.train.meta.image) == sorted(chosen["train"])
    assert list(np.bincount(s.val.groups)) == [6, 6] and s.num_classes == 114
    img, label, group, idx = s.val[3]
    assert img.shape == (3, 16, 16) and img.dtype == torch.float32
    row = s.val.meta.iloc[3]
    assert label == row.label and group == (0 if row.fitzpatrick in (1, 2, 3) else 1)
    assert describe_splits(s)["total"].sum() == 36
    stored = s.train.images[0]
    assert stored.shape == (3, 18, 18) and stored.dtype == np.uint8  # round(16 * 1.15)

    def no_decode(*a, **k):
        raise AssertionError("decoded again although the cache holds these files")

    monkeypatch.setattr(cache_mod, "decode_image", no_decode)
    with pytest.warns(UserWarning):
        again = load_splits(cfg)
    np.testing.assert_array_equal(np.asarray(again.test.images), np.asarray(s.test.images))
    monkeypatch.undo()
    monkeypatch.setenv("EQUIPRUNE_CACHE", str(tmp_path / "cache"))

    bad = chosen["test"][2]
    (root / bad).write_bytes(b"this is not a jpeg")
    with pytest.warns(UserWarning), pytest.raises(DataError, match=f"could not be decoded: {bad}"):
        load_splits(cfg)


def test_group_missing_from_a_split_is_an_error(fitz, tmp_path):
    root = tmp_path / "images"
    write_jpegs(root, pick_rows(fitz.train, 4) + pick_rows(fitz.test, 4)
                + list(fitz.val.loc[fitz.val.group == 0, "image"].head(4)))
    cfg = DataConfig(name="fitzpatrick17k", root=str(root), image_size=16, missing_images="drop", progress=False)
    with pytest.warns(UserWarning), pytest.raises(DataError, match=r"val split of fitzpatrick17k has no sample of group\(s\) 1"):
        load_splits(cfg)


def test_root_must_exist(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_splits(DataConfig(name="fitzpatrick17k", root=str(tmp_path / "nope")))
    with pytest.raises(DataError, match="needs --root"):
        load_splits(DataConfig(name="isic2019"))


# ----------------------------------------------------------------------------- ISIC 2019


def test_isic_tables_and_group_override(raw):
    t = load_tables(DataConfig(name="isic2019"))
    assert (len(t.train), len(t.val), len(t.test)) == (14904, 4965, 4971)
    assert t.classes == ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC"]
    np.testing.assert_array_equal(t.train["group"], (raw["isic2019_train"]["sex"] == "male").astype(int))
    np.testing.assert_array_equal(t.test["label"], raw["isic2019_test"]["low"])
    assert t.group_names == ["female", "male"]
    by_sex = load_tables(DataConfig(name="isic2019", group_column="sex"))
    np.testing.assert_array_equal(by_sex.val["group"], t.val["group"])
    skin = load_tables(DataConfig(name="isic2019", group_column="fitzpatrick"))
    np.testing.assert_array_equal(skin.train["group"], (raw["isic2019_train"]["fitzpatrick"] >= 4).astype(int))
    custom = load_tables(DataConfig(name="isic2019", group_column="fitzpatrick",
                                    group_map={str(k): int(k == 6) for k in range(1, 7)}))
    assert custom.train["group"].sum() == (raw["isic2019_train"]["fitzpatrick"] == 6).sum()
    with pytest.raises(DataError, match="does not cover"):
        load_tables(DataConfig(name="isic2019", group_column="fitzpatrick", group_map={"1": 0}))
    with pytest.raises(DataError, match="group column 'skin' is not in the train table"):
        load_tables(DataConfig(name="isic2019", group_column="skin"))


def test_isic_images_with_max_rows(tmp_path):
    t = load_tables(DataConfig(name="isic2019"))
    root = tmp_path / "isic"
    for s in ("train", "val", "test"):
        write_jpegs(root, pick_rows(getattr(t, s), 10))
    cfg = DataConfig(name="isic2019", root=str(root), image_size=16, missing_images="drop", max_rows=8,
                     augment="paper", progress=False)
    with pytest.warns(UserWarning):
        s = load_splits(cfg)
    assert len(s.train) == len(s.val) == len(s.test) == 8
    assert s.train[0][0].shape == (3, 16, 16)
    assert set(s.test.meta.image) <= set(pick_rows(t.test, 10))


def test_isic_label_out_of_range(tmp_path):
    meta = copy_tables(tmp_path / "m", ("isic2019_train", "isic2019_val", "isic2019_test"))
    df = pd.read_csv(meta / "isic2019_val.csv")
    df.loc[5, "low"] = 9
    df.to_csv(meta / "isic2019_val.csv", index=False)
    with pytest.raises(DataError, match=r"isic2019_val\.csv have label\(s\) in column 'low' outside 0\.\.7"):
        load_tables(DataConfig(name="isic2019", metadata=str(meta)))


# ----------------------------------------------------------------------------- HAM10000 and csv


def make_ham(folder: Path, n_lesions: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    dx = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
    for i in range(n_lesions):
        sex = ["male", "female"][i % 2] if i % 15 else "unknown"
        for j in range(1 + i % 3):
            rows.append(dict(lesion_id=f"HAM_{i:07d}", image_id=f"ISIC_{i:05d}{j}", dx=dx[i % 3 + (i % 2) * 3],
                             dx_type="histo", age=float(rng.integers(20, 80)), sex=sex, localization="back"))
    df = pd.DataFrame(rows)
    folder.mkdir(parents=True, exist_ok=True)
    df.to_csv(folder / "HAM10000_metadata.csv", index=False)
    write_jpegs(folder / "HAM10000_images_part_1", (df.image_id + ".jpg").tolist())
    return df


def test_ham10000_split_by_lesion(tmp_path):
    df = make_ham(tmp_path / "ham")
    cfg = DataConfig(name="ham10000", root=str(tmp_path / "ham"), image_size=16, progress=False, seed=4)
    unknown = int((df.sex == "unknown").sum())
    with pytest.warns(UserWarning, match=f"dropped {unknown} of {len(df)} rows with unknown sex"):
        s = load_splits(cfg)
    sets = [set(d.meta.lesion_id) for d in (s.train, s.val, s.test)]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert len(s.train) + len(s.val) + len(s.test) == len(df) - unknown
    assert len(s.train) > len(s.val) and len(s.train) > len(s.test)
    np.testing.assert_array_equal(s.train.groups, (s.train.meta.sex == "male").astype(int))
    assert s.classes == sorted(df.dx.unique())
    with pytest.warns(UserWarning):
        again = load_tables(cfg)
    assert list(again.val.image_id) == list(s.val.meta.image_id)  # seeded


def test_generic_csv_loader(tmp_path):
    root = tmp_path / "imgs"
    n = 40
    df = pd.DataFrame({
        "file": [f"img{i}" for i in range(n)],
        "diagnosis": np.where(np.arange(n) % 2, "benign", "malignant"),
        "tone": np.where(np.arange(n) % 4 < 2, "light", "dark"),
        "fold": np.array(["train"] * 24 + ["valid"] * 8 + ["test"] * 8),
    })
    df.to_csv(tmp_path / "t.csv", index=False)
    write_jpegs(root, [f"img{i}.png" for i in range(n)])
    cfg = DataConfig(name="csv", root=str(root), metadata=str(tmp_path / "t.csv"), image_column="file",
                     label_column="diagnosis", group_column="tone", group_map={"light": 0, "dark": 1},
                     group_names=["light", "dark"], split_column="fold", image_ext=".png", image_size=16,
                     progress=False)
    s = load_splits(cfg)
    assert (len(s.train), len(s.val), len(s.test)) == (24, 8, 8)
    assert s.classes == ["benign", "malignant"] and s.group_names == ["light", "dark"]
    np.testing.assert_array_equal(s.val.groups, (s.val.meta.tone == "dark").astype(int))
    np.testing.assert_array_equal(s.val.labels, (s.val.meta.diagnosis == "malignant").astype(int))

    no_split = DataConfig(**{**cfg.__dict__, "split_column": None})
    s2 = load_splits(no_split)
    assert len(s2.train) + len(s2.val) + len(s2.test) == n

    df.assign(fold=df.fold.replace("test", "holdout")).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match="split column 'fold'.*holdout"):
        load_splits(cfg)
    df.drop(columns="tone").to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match=r"t\.csv lacks column\(s\) \['tone'\]; its columns are"):
        load_splits(cfg)


def test_two_groups_are_required_before_any_image_is_read(tmp_path):
    """A group column with more values is fine for the data layer, but training asks for two first."""
    types = ["I", "II", "III", "IV", "V", "VI"]
    df = pd.DataFrame({"file": [f"img{i}.png" for i in range(60)], "diagnosis": ["a", "b"] * 30,
                       "skin_type": [types[i % 6] for i in range(60)]})
    df.to_csv(tmp_path / "t.csv", index=False)
    (tmp_path / "imgs").mkdir()   # no image in it: the check must come first
    cfg = DataConfig(name="csv", root=str(tmp_path / "imgs"), metadata=str(tmp_path / "t.csv"), image_column="file",
                     label_column="diagnosis", group_column="skin_type", image_size=16, progress=False)
    with pytest.raises(DataError, match=r"'skin_type' of .*t\.csv gives 6 group\(s\) \(I, II, III, IV, V, VI\)"):
        load_splits(cfg, two_groups=True)
    with pytest.raises(DataError, match="missing"):   # without the check it goes on to the images
        load_splits(cfg)
    write_jpegs(tmp_path / "imgs", df.file)
    assert len(load_splits(cfg).group_names) == 6
    two = DataConfig(**{**cfg.__dict__, "group_map": {t: int(i >= 3) for i, t in enumerate(types)}})
    s = load_splits(two, two_groups=True)
    np.testing.assert_array_equal(s.test.groups, s.test.meta.skin_type.isin(["IV", "V", "VI"]).astype(int))
