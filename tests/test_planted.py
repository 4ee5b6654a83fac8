"""The planted positive control at toy size: SNNL-Fair must find channels known to cause the gap."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from equiprune.methods.planted import PlantConfig, PlantError, plant_channels, plant_from_run, planted_recall
from equiprune.methods.runs import open_run
from equiprune.methods.scp import scoring_dataset
from equiprune.scoring import l1_channel_scores, snnl_fair_scores

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def planted(runs):
    """child_a (a probe-head VGG that predicts several classes) with 4 channels planted, and its splits."""
    run = open_run(runs["child_a"])
    splits = run.splits()
    result = plant_channels(run.model, splits, PlantConfig(k=4, seed=0, probe_samples=200))
    return run, splits, result


def test_snnl_fair_ranks_the_planted_channels_lowest(planted):
    _run, splits, res = planted
    scores = snnl_fair_scores(res.model, res.layer, scoring_dataset(splits, "train"), progress=False)
    recall = planted_recall(scores, res.channels)
    # By construction the planted channels are the group's detectors: SCP's scorer must see them.
    assert recall["recall"] >= 0.75, recall
    assert recall["of"] == 64 and len(recall["ranks"]) == 4


def test_the_planted_channels_are_the_whole_cause_of_the_added_gap(planted):
    run, splits, res = planted
    assert res.val["planted"]["eodd"] > res.val["beta0"]["eodd"]
    assert res.beta > 0
    # Zeroing the planted channels gives back the beta-0 model's predictions exactly: nothing else changed.
    assert res.val["ablated"] == res.val["beta0"]
    # The other group is (almost) untouched by the push.
    other = f"acc_g{1 - res.minority}"
    assert res.val["beta0"][other] - res.val["planted"][other] <= 0.02 + 1e-9


def test_planted_filters_are_invisible_to_l1_and_the_rest_is_unchanged(planted):
    run, _splits, res = planted
    l1 = l1_channel_scores(res.model, res.layer)
    original = np.sort(l1_channel_scores(run.model, res.layer))
    assert np.allclose(l1[res.channels], original[(len(original) - 1) // 2], rtol=1e-5)  # the lower median
    before, after = run.model.get_submodule(res.layer).weight, res.model.get_submodule(res.layer).weight
    keep = [c for c in range(before.shape[0]) if c not in res.channels]
    assert torch.equal(before[keep], after[keep])
    assert planted_recall(np.arange(64.0), [0, 1, 5, 9])["recall"] == 0.5  # recall counts the lowest k only


def test_run_folder_and_refusals(runs, tmp_path, monkeypatch):
    res = plant_from_run(runs["child_a"], PlantConfig(k=2, seed=1, probe_samples=100), tmp_path / "planted")
    again = open_run(tmp_path / "planted")
    assert again.extra["planted"]["channels"] == res.channels
    assert again.config["kind"] == "planted"
    import equiprune.methods.planted as planted_module
    monkeypatch.setattr(planted_module, "plant_channels", lambda *a, **k: pytest.fail("planted again"))
    assert plant_from_run(runs["child_a"], PlantConfig(k=2, seed=1, probe_samples=100),
                          tmp_path / "planted").channels == res.channels     # resumed: the stored plant
    with pytest.raises(ValueError, match="k .planted channels. must be >= 1"):
        PlantConfig(k=0).validate()
    with pytest.raises(PlantError, match="VGG-style"):
        plant_channels(again.model, again.splits(), PlantConfig(layer="features.16"))
