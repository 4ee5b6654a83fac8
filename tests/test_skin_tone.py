"""Skin tone from the pixels: the mask, the ITA, its cache, the flag, and --group-source ita / --groups ita6."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from equiprune.data import DataConfig, load_splits
from equiprune.data import skin_tone as st
from equiprune.data.colour import lab_to_srgb
from equiprune.data.synthderm import SynthDermConfig, generate_synthderm

pytestmark = pytest.mark.usefixtures("one_thread")


def _image(ita_deg: float, size: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Uniform skin of a known ITA with a dark lesion in the middle, a black corner and a purple ink dot in
    the border band; returns the uint8 image and the pixels that are truly skin."""
    b = 15.0
    L = 50 + b * np.tan(np.radians(ita_deg))
    lab = np.empty((size, size, 3))
    lab[:] = (L, 10.0, b)
    yy, xx = np.mgrid[:size, :size]
    lesion = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 3) ** 2
    lab[lesion] = (L * 0.55, 18.0, b + 4)
    corner = (yy < 5) & (xx < 5)
    lab[corner] = (4.0, 0.0, 0.0)
    ink = (yy >= size - 5) & (xx >= size // 2) & (xx < size // 2 + 4)
    lab[ink] = (35.0, 40.0, -45.0)
    rgb = np.round(lab_to_srgb(lab) * 255).astype(np.uint8).transpose(2, 0, 1)
    return rgb, ~(lesion | corner | ink)


@pytest.mark.parametrize("angle", [60.0, 35.0, 0.0, -40.0])
def test_mask_leaves_out_lesion_and_artefacts_and_ita_is_right(angle):
    rgb, truly_skin = _image(angle)
    mask = st.skin_mask(rgb)
    assert mask.sum() > 0.2 * mask.size
    assert not (mask & ~truly_skin).any()           # no lesion, corner or ink pixel counted as skin
    tone = st.image_ita(rgb[None])
    assert abs(tone.ita[0] - angle) < 1.5            # uint8 rounding only
    assert tone.category()[0] == st.ita_category(np.array([angle]))[0]


def test_skin_tone_shift_moves_the_skin_and_keeps_the_lesion():
    rgb, truly_skin = _image(50.0)
    out = st.shift_skin_tone(rgb, -20.0)
    assert abs(st.image_ita(out[None]).ita[0] - (-20.0)) < 2.0
    lesion = ~truly_skin
    lesion[:5, :5] = False  # the black corner is not lesion but is left alone too
    assert np.array_equal(out[:, lesion], rgb[:, lesion])
    import torch

    from equiprune.data.transforms import train_transform
    torch.manual_seed(0)
    t = train_transform("skin-tone", 40, normalize=False)
    outs = [t(torch.from_numpy(rgb)) for _ in range(12)]
    itas = st.image_ita(np.stack([(o * 255).round().byte().numpy() for o in outs])).ita
    assert (np.abs(itas - 50.0) > 8).sum() >= 2 and (np.abs(itas - 50.0) < 2).sum() >= 2  # some moved, some not


def test_skin_tone_mitigation_trains_on_shifted_skin_with_the_lesion_kept(monkeypatch):
    """`mitigate skin-tone`: its training split moves the skin, keeps the lesion, and `fit` draws from it."""
    import torch

    from equiprune.data.dataset import GroupDataset
    from equiprune.engine import TrainConfig
    from equiprune.methods.mitigate import run_mitigation
    from equiprune.methods.mitigate.skin_tone_augment import SkinToneConfig, build
    from equiprune.models import build_model

    pairs = [_image(a, size=32) for a in (60.0, 20.0, -10.0, 45.0)]
    images = np.stack([p[0] for p in pairs])
    meta = pd.DataFrame({"label": [0, 1, 0, 1], "group": [0, 1, 1, 0]})
    ds = GroupDataset(images, meta, ["a", "b"], ["light", "dark"])
    plugin = build(None, None, SkinToneConfig(p=1.0))
    shifted = plugin.train_data(ds)
    torch.manual_seed(0)
    for i, (_, truly_skin) in enumerate(pairs):
        out = (shifted[i][0] * 255).round().byte().numpy()
        lesion = ~truly_skin
        lesion[:5, :5] = False                       # the black corner is left alone too
        assert np.array_equal(out[:, lesion], images[i][:, lesion])
        assert np.abs(out[:, truly_skin].astype(int) - images[i][:, truly_skin]).mean() > 3   # the skin moved
    assert ds.transform is None                      # the split itself is untouched
    from equiprune.data.transforms import train_transform
    already = ds.with_transform(train_transform("skin-tone", 32))
    assert plugin.train_data(already) is already     # never applied twice
    calls = []
    original = st.SkinToneAugment.__call__
    monkeypatch.setattr(st.SkinToneAugment, "__call__", lambda self, img: calls.append(1) or original(self, img))
    splits = type("S", (), {"train": ds, "val": None, "test": ds, "num_classes": 2, "group_names": ["l", "d"]})()
    ft = TrainConfig(epochs=1, batch_size=4, optimizer="adam", lr=1e-3, select_on="last", progress=False, device="cpu")
    torch.manual_seed(0)
    res = run_mitigation(build_model("vgg11", 2, width=0.125, image_size=32), splits,
                         SkinToneConfig(p=1.0, finetune=ft))
    assert len(calls) == len(ds) and res.section["method"] == "skin-tone"


def test_an_image_without_skin_is_flagged_never_nan_downstream():
    black = np.zeros((2, 3, 16, 16), np.uint8)
    blue = black.copy()
    blue[:, 2] = 200                                 # b* far below 0: not skin
    tone = st.image_ita(np.concatenate([black, blue]))
    assert tone.flagged.all() and np.isnan(tone.ita).all()
    assert (tone.category() == 0).all()
    agree = st.agreement(np.array([1, 2, 3, 4]), tone.category())
    assert agree["n"] == 0 and agree["flagged"] == 4


def test_agreement_with_synthderm_true_type_and_cache(tmp_path, monkeypatch):
    pool = generate_synthderm(SynthDermConfig(n=300, image_size=32, seed=0), cache_dir=tmp_path)
    tone = st.estimate_skin_tone(pool.images, cache_dir=tmp_path)
    agree = st.agreement(pool.meta["fitzpatrick"].to_numpy(), tone.category())
    # measured 0.94 / 1.00 at n=600 (README); the bar leaves room for a smaller sample
    assert agree["exact"] >= 0.85 and agree["within_one"] >= 0.98, agree
    assert np.corrcoef(tone.ita, pool.meta["ita"])[0, 1] > 0.98
    monkeypatch.setattr(st, "image_ita", lambda *a, **k: pytest.fail("the cached ITA was computed again"))
    again = st.estimate_skin_tone(pool.images, cache_dir=tmp_path)
    np.testing.assert_array_equal(again.ita, tone.ita)


def test_group_source_ita_on_synthderm(tmp_path):
    cfg = DataConfig(name="synthderm", image_size=32, cache_dir=str(tmp_path), progress=False,
                     synthderm=SynthDermConfig(n=300), group_source="ita", ita_threshold=20.0)
    s = load_splits(cfg, two_groups=True)
    assert s.group_names == ["ITA > 20° (lighter)", "ITA ≤ 20° (darker)"]
    for d in (s.train, s.val, s.test):
        np.testing.assert_array_equal(d.groups, (d.meta["ita"] <= 20.0).astype(int))
        assert "given_group" in d.meta.columns
    with pytest.raises(ValueError, match="ita_threshold must be an angle"):
        DataConfig(group_source="ita", ita_threshold=95.0)
    with pytest.raises(ValueError, match="every split needs both"):
        load_splits(DataConfig(**{**cfg.__dict__, "ita_threshold": -80.0}))


def _csv_dataset(tmp_path: Path) -> tuple[Path, Path]:
    """A CSV + PNG folder from synthderm images, Fitzpatrick types written I-VI, one image all black."""
    from PIL import Image

    pool = generate_synthderm(SynthDermConfig(n=200, image_size=40, seed=3), cache_dir=tmp_path / "cache")
    root = tmp_path / "imgs"
    root.mkdir()
    roman = ["I", "II", "III", "IV", "V", "VI"]
    images = np.asarray(pool.images).copy()
    images[190] = 0  # a test image
    for i, img in enumerate(images):
        Image.fromarray(img.transpose(1, 2, 0)).save(root / f"img{i}.png")
    meta = pd.DataFrame({"file": [f"img{i}.png" for i in range(len(images))], "diagnosis": pool.meta["class_name"],
                         "skin_type": [roman[t - 1] for t in pool.meta["fitzpatrick"]],
                         "fitzpatrick": pool.meta["fitzpatrick"],
                         "fold": (["train"] * 120 + ["val"] * 40 + ["test"] * 40)})
    meta.to_csv(tmp_path / "table.csv", index=False)
    return tmp_path / "table.csv", root


def _cli(*args: str) -> int:
    """The CLI in this process (no interpreter start-up per call)."""
    from equiprune.cli import main
    return main(list(args))


def test_audit_groups_ita6_on_synthderm_and_a_csv_dataset(runs, tmp_path):
    # synthderm run: the six ITA categories, the confusion table and the agreement with the true type
    assert _cli("audit", "--run", str(runs["base"]), "--groups", "ita6", "--n-boot", "50", "--no-latency", "--quiet") == 0
    audit = json.loads((Path(runs["base"]) / "metrics.json").read_text())["audit"]
    assert audit["multigroup"]["column"] == "ita6"
    assert audit["skin_tone"]["fitzpatrick_agreement"]["within_one"] > 0.9
    assert "Skin tone estimated from the pixels" in (Path(runs["base"]) / "report.html").read_text()

    # a CSV dataset whose group is estimated from the pixels; the black image is flagged and listed
    table, root = _csv_dataset(tmp_path)
    code = _cli("audit", "--checkpoint", str(Path(runs["base"]) / "model.pt"), "--data", "csv", "--metadata",
               str(table), "--root", str(root), "--image-column", "file", "--label-column", "diagnosis",
               "--group-column", "skin_type", "--split-column", "fold",
               "--group-source", "ita", "--groups", "ita6", "--n-boot", "50", "--no-latency", "--quiet",
               "--out", str(tmp_path / "audit"))
    assert code == 0
    sec = json.loads((tmp_path / "audit" / "metrics.json").read_text())["audit"]
    assert sec["group_names"] == ["ITA > 28° (lighter)", "ITA ≤ 28° (darker)"]
    conf = sec["skin_tone"]["confusion"]
    assert set(conf["rows"]) <= {"I", "II", "III", "IV", "V", "VI"}     # the given group: the CSV's types
    assert sec["skin_tone"]["fitzpatrick_agreement"]["within_one"] > 0.9
    assert sec["skin_tone"]["flagged"] == ["img190.png"]            # listed, and left out of the groups
    assert sum(map(sum, conf["counts"])) == 39
    report = (tmp_path / "audit" / "report.html").read_text()
    assert "given group" in report and "img190.png" in report
