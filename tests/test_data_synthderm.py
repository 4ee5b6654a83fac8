"""synthderm: colour maths, determinism, balance, the documented bias, caching, splits."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from equiprune.data import (
    DataConfig,
    DataError,
    SynthDermConfig,
    describe_splits,
    generate_synthderm,
    load_splits,
    srgb_to_lab,
)
from equiprune.data import synthderm as sd
from equiprune.data.colour import ITA_BANDS, fitzpatrick_from_ita, ita, lab_to_srgb, lab_to_srgb_uint8


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("EQUIPRUNE_CACHE", str(tmp_path / "cache"))


# ----------------------------------------------------------------------------- colour


def test_lab_to_srgb_matches_published_values():
    # sRGB primaries and greys in CIELAB (D65) as tabulated by colour references
    red = lab_to_srgb(np.array([53.2408, 80.0925, 67.2032]))
    np.testing.assert_allclose(red, [1.0, 0.0, 0.0], atol=2e-3)
    blue = lab_to_srgb(np.array([32.2970, 79.1875, -107.8602]))
    np.testing.assert_allclose(blue, [0.0, 0.0, 1.0], atol=2e-3)
    np.testing.assert_allclose(lab_to_srgb(np.array([100.0, 0.0, 0.0])), [1, 1, 1], atol=1e-3)
    # L* = 50 grey is sRGB 119 (18.4 % luminance)
    assert np.all(np.round(lab_to_srgb(np.array([50.0, 0.0, 0.0])) * 255) == 119)


def test_srgb_lab_round_trip_and_fast_path():
    rng = np.random.default_rng(0)
    rgb = rng.uniform(0.02, 0.98, size=(500, 3))
    np.testing.assert_allclose(lab_to_srgb(srgb_to_lab(rgb)), rgb, atol=1e-6)
    lab = srgb_to_lab(rgb).astype(np.float32)
    t = torch.from_numpy(lab).view(-1, 3, 1, 1)
    fast = lab_to_srgb_uint8(t[:, 0], t[:, 1], t[:, 2]).numpy()[:, :, 0, 0]  # (N, 3)
    slow = np.round(lab_to_srgb(lab.astype(np.float64)) * 255)
    assert np.abs(fast.astype(int) - slow).max() <= 1


def test_ita_bands():
    np.testing.assert_array_equal(
        fitzpatrick_from_ita(np.array([60.0, 55.0, 48.0, 30.0, 20.0, 0.0, -40.0])), [1, 2, 2, 3, 4, 5, 6]
    )
    assert ita(np.array(50.0), np.array(10.0)) == pytest.approx(0.0)
    assert ita(np.array(60.0), np.array(10.0)) == pytest.approx(45.0)


# ----------------------------------------------------------------------------- generator


def small(**kw) -> SynthDermConfig:
    base = dict(n=300, image_size=32, seed=1)
    base.update(kw)
    return SynthDermConfig(**base)


def test_deterministic_by_seed_and_shapes():
    a = generate_synthderm(small(), cache=False)
    b = generate_synthderm(small(), cache=False)
    c = generate_synthderm(small(seed=2), cache=False)
    assert a.images.shape == (300, 3, 32, 32) and a.images.dtype == np.uint8
    assert a.masks.shape == (300, 32, 32) and a.masks.dtype == np.uint8
    np.testing.assert_array_equal(a.images, b.images)
    assert a.meta.equals(b.meta)
    assert not np.array_equal(a.images, c.images)
    # images are not flat: lesions and texture give spatial variation
    assert a.images.reshape(300, 3, -1).std(-1).mean() > 3
    assert {"label", "group", "fitzpatrick", "ita", "contrast", "skin_L", "skin_a", "skin_b"} <= set(a.meta)


def test_class_balance_group_fraction_and_skin_bands():
    cfg = small(n=1000, dark_fraction=0.3, class_priors=(0.4, 0.3, 0.1, 0.1, 0.1),
                dark_class_priors=(0.1, 0.1, 0.2, 0.3, 0.3))
    m = generate_synthderm(cfg, cache=False).meta
    assert abs(m["group"].mean() - 0.3) < 0.01
    for g, pri in ((0, cfg.class_priors), (1, cfg.dark_class_priors)):
        frac = np.bincount(m.loc[m.group == g, "label"], minlength=5) / (m.group == g).sum()
        np.testing.assert_allclose(frac, pri, atol=0.01)
    # group 0 <=> types I-III, and every skin colour's ITA lies in its type's band
    assert ((m["fitzpatrick"] <= 3) == (m["group"] == 0)).all()
    np.testing.assert_array_equal(fitzpatrick_from_ita(m["ita"].to_numpy()), m["fitzpatrick"].to_numpy())
    lo = m["fitzpatrick"].map(lambda t: ITA_BANDS[t][0])
    assert (m["ita"] > lo).all()
    # the stored ITA is the one of the stored skin colour
    np.testing.assert_allclose(m["ita"], np.degrees(np.arctan2(m.skin_L - 50, m.skin_b)), atol=1e-9)


def _lesion_skin_delta_e(data) -> np.ndarray:
    """Per image: CIELAB distance between the mean lesion colour and the mean skin colour."""
    lab = srgb_to_lab(data.images.transpose(0, 2, 3, 1) / 255.0)
    out = []
    for img, m in zip(lab, data.masks):
        inside, outside = m > 230, m < 5
        out.append(np.linalg.norm(img[inside].mean(0) - img[outside].mean(0)))
    return np.array(out)


def test_contrast_bias_is_measurable_and_controlled_by_dark_contrast():
    common = dict(n=400, dark_fraction=0.5, hair_prob=0.0, contrast_jitter=0.0)
    biased = generate_synthderm(small(dark_contrast=0.45, **common), cache=False)
    fair = generate_synthderm(small(dark_contrast=1.0, **common), cache=False)
    g = biased.meta["group"].to_numpy()
    de_b, de_f = _lesion_skin_delta_e(biased), _lesion_skin_delta_e(fair)
    # (a) lower lesion-vs-skin contrast on dark skin
    assert np.median(de_b[g == 1]) < 0.7 * np.median(de_b[g == 0])
    # the knob acts on dark skin only, by about its factor
    ratio_dark = np.median(de_b[g == 1] / de_f[g == 1])
    assert 0.3 < ratio_dark < 0.6
    np.testing.assert_allclose(de_b[g == 0], de_f[g == 0], rtol=1e-6)
    np.testing.assert_allclose(biased.meta.loc[g == 1, "contrast"], 0.45)


def test_invalid_config_is_a_data_error():
    with pytest.raises(DataError, match="class_priors"):
        SynthDermConfig(class_priors=(0.5, 0.5))
    with pytest.raises(DataError, match="dark_fraction"):
        SynthDermConfig(dark_fraction=1.5)
    with pytest.raises(DataError, match="dark_contrast"):
        SynthDermConfig(dark_contrast=-0.1)


def test_cache_hit_on_second_call(tmp_path, monkeypatch):
    cfg = small(n=150)
    first = generate_synthderm(cfg, cache_dir=tmp_path)
    npz, csv = sd._cache_paths(cfg, tmp_path)
    assert npz.exists() and csv.exists()

    def boom(_cfg):
        raise AssertionError("generator called although the cache holds this config")

    monkeypatch.setattr(sd, "_generate", boom)
    second = generate_synthderm(cfg, cache_dir=tmp_path)
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.masks, second.masks)
    assert list(second.meta["label"]) == list(first.meta["label"])
    # another config is another key: the (patched) generator must run
    with pytest.raises(AssertionError, match="generator called"):
        generate_synthderm(small(n=150, dark_contrast=0.6), cache_dir=tmp_path)


# ----------------------------------------------------------------------------- splits


def test_load_splits_stratified_and_transforms(tmp_path):
    cfg = DataConfig(image_size=32, seed=3, cache_dir=str(tmp_path),
                     synthderm=SynthDermConfig(n=600, dark_fraction=0.25))
    s = load_splits(cfg)
    n = [len(s.train), len(s.val), len(s.test)]
    assert sum(n) == 600 and abs(n[0] - 420) <= 10 and abs(n[1] - 90) <= 8 and abs(n[2] - 90) <= 8
    pools = [set(d.meta["pool_index"]) for d in (s.train, s.val, s.test)]
    assert not (pools[0] & pools[1]) and not (pools[0] & pools[2]) and not (pools[1] & pools[2])
    for d in (s.train, s.val, s.test):
        assert abs(d.groups.mean() - 0.25) < 0.05
    assert s.num_classes == 5 and s.classes == list(sd.CLASS_NAMES)

    img, label, group, index = s.test[7]
    assert img.dtype == torch.float32 and img.shape == (3, 32, 32)
    assert (label, group) == (s.test.labels[7], s.test.groups[7]) and index == 7
    assert torch.equal(s.test[7][0], s.test[7][0])  # test transform is deterministic
    torch.manual_seed(0)
    outs = [s.train[0][0] for _ in range(8)]
    assert any(not torch.equal(outs[0], o) for o in outs[1:])  # training augmentation is random
    plain = s.train.with_transform(s.test.transform)
    assert torch.equal(plain[0][0], plain[0][0]) and plain.meta is s.train.meta

    table = describe_splits(s)
    assert table.loc["train", "total"].sum() == len(s.train)
    assert table.loc[("val", s.group_names[1]), "total"] == int((s.val.groups == 1).sum())
    assert list(table.columns) == s.classes + ["total"]


def test_data_config_json_round_trip_and_errors():
    cfg = DataConfig(synthderm=SynthDermConfig(n=100, dark_contrast=0.3), group_map={"a": 1})
    again = DataConfig.from_dict(json.loads(json.dumps(dataclasses.asdict(cfg))))
    assert again == cfg
    with pytest.raises(DataError, match="unknown dataset"):
        DataConfig(name="imagenet")
    with pytest.raises(DataError, match="unknown DataConfig field"):
        DataConfig.from_dict({"nme": "synthderm"})


def test_a_split_without_dark_skin_is_an_error(tmp_path):
    cfg = DataConfig(image_size=16, cache_dir=str(tmp_path), synthderm=SynthDermConfig(n=50, dark_fraction=0.0))
    with pytest.raises(DataError, match="no sample of group"):
        load_splits(cfg)


def test_marker_mode_the_group_is_seen_only_through_the_ink_mark():
    """The positive control: group = clinic; skin tone drawn apart from it; every clinic-B image marked."""
    plain = generate_synthderm(small(n=2000, dark_contrast=1.0), cache=False)
    marked = generate_synthderm(small(n=2000, dark_contrast=1.0, group_cue="marker"), cache=False)
    m = marked.meta
    assert marked.group_names == ["clinic A", "clinic B (ink mark)"] and plain.group_names[1] == "dark (IV-VI)"
    np.testing.assert_array_equal(m["marker"], m["group"])
    assert (plain.meta["marker"] == 0).all()
    # the same groups and classes as the default draws them, but skin tone independent of the group
    np.testing.assert_array_equal(m["group"], plain.meta["group"])
    np.testing.assert_array_equal(m["label"], plain.meta["label"])
    dark_type = m["fitzpatrick"] >= 4
    assert abs(dark_type.mean() - 0.2) < 0.01
    assert abs(dark_type[m.group == 0].mean() - dark_type[m.group == 1].mean()) < 0.06
    # the mark: purple (blue above green) in the top-left corner of marked images only
    corner = marked.images[:, :, :8, :8].astype(float)
    purple = (corner[:, 2] - corner[:, 1]).max(axis=(1, 2))   # blue minus green, at its most
    assert purple[m.marker == 1].min() > 40 > purple[m.marker == 0].max()
    # away from the corner the mark changes nothing: the rest of each image is the same picture
    same = marked.images[:, :, 8:, 8:] == plain.images[:, :, 8:, 8:]
    assert same[(m.fitzpatrick >= 4) == (plain.meta.fitzpatrick >= 4)].mean() > 0.99
    none = generate_synthderm(small(n=300, group_cue="marker", marker_prob=0.0), cache=False)
    assert (none.meta["marker"] == 0).all()
    for bad in (dict(group_cue="ruler"), dict(marker_prob=1.5)):
        with pytest.raises(DataError):
            small(**bad)
