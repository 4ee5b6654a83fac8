"""stress-groups: corrupted training groups, RACOS attack, post/pre ratios, KS tests; the consensus scorer."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from equiprune.methods import stress_groups as sg
from equiprune.methods.planted import PlantConfig, plant_channels
from equiprune.methods.prune_loop import LoopConfig, run_prune_loop
from equiprune.methods.runs import open_run
from equiprune.methods.scp import scoring_dataset
from equiprune.scoring import ConsensusScorer

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(seeds=(0,), budget=3, blocks=4, max_iters=1, finetune_epochs=0, progress=False)


def test_consensus_scorer_agrees_on_the_planted_channels(runs):
    run = open_run(runs["child_a"])
    splits = run.splits()
    planted = plant_channels(run.model, splits, PlantConfig(k=4, seed=0, probe_samples=200))
    scorer = ConsensusScorer(scoring_dataset(splits, "train"), rounds=3, tau=0.67, k=lambda c: 4, seed=0,
                             snnl={"progress": False})
    scores = scorer(planted.model, planted.layer)
    chosen = set(np.flatnonzero(np.isfinite(scores)).tolist())
    assert chosen and len(chosen) <= 4 * 3 // 2       # at most what 2 of 3 resamples can agree on
    assert len(chosen & set(planted.channels)) >= 3, (chosen, planted.channels)
    with pytest.raises(ValueError, match="at least 2 bootstrap"):
        ConsensusScorer(splits.train, rounds=1, tau=0.5, k=lambda c: 1)


def test_the_loop_never_cuts_a_channel_scored_inf():
    from conftest import TinyGroupDataset, TinySplits

    from equiprune.models import build_model
    splits = TinySplits(*(TinyGroupDataset(48, size=32, seed=s) for s in (1, 2, 3)))
    model = build_model("vgg11", 3, width=0.125, image_size=32)
    res = run_prune_loop(model, splits, LoopConfig(n=4, max_iters=1, th_fair=-1.0, progress=False,
                                                        finetune=sg._finetune(0)),
                         lambda m, layer: np.full(m.get_submodule(layer).weight.shape[0], np.inf))
    assert res.removed == [[]] and res.history[-1]["channels"] == res.history[0]["channels"]


def test_attack_sets_and_flips():
    items = sg.attack_set(200, 0.1, seed=3)
    assert len(items) == 20 and len(set(items)) == 20
    assert np.array_equal(items, sg.attack_set(200, 0.1, seed=3)) and not np.array_equal(items, sg.attack_set(200, 0.1, 4))
    groups = np.zeros(200, dtype=np.int64)
    flipped = sg._flipped(groups, items, np.array([1, 0] * 10))
    assert flipped.sum() == 10 and set(np.flatnonzero(flipped)) <= set(items)
    with pytest.raises(ValueError, match="--consensus applies to SCP only"):
        sg.StressConfig(method="fairprune", consensus=3).validate()
    with pytest.raises(ValueError, match="flip fractions"):
        sg.StressConfig(flips=(0.0, 1.2)).validate()


def test_stress_groups_random_and_adversarial_with_resume(runs, tmp_path, monkeypatch):
    cfg = sg.StressConfig(method="scp", flips=(0.0, 0.3), **TINY)
    res = sg.stress_groups_from_run(runs["child_a"], cfg, tmp_path / "stress")
    recs = res.records
    assert len(recs) == 1 + 2                              # the clean run, then both attacks
    n = len(open_run(runs["child_a"]).splits().train)
    for r in recs:
        assert r["attack_set"] == (0 if r["flip"] == 0 else round(0.3 * n))
        assert 0 <= r["flipped"] <= r["attack_set"]
        assert set(r["test"]) >= {"eodd", "eopp1", "f1"}
    adv = [r for r in recs if r["attack"] == "adversarial"]
    assert all(1 <= len(r["racos_trace"]) <= cfg.budget + 1 for r in adv)
    for attack in ("random", "adversarial"):
        assert res.ratios[attack]["f1"][0] == pytest.approx(1.0)     # ρ = 0 is the "pre" itself
    assert set(res.ks["0.3"]) == {"eodd", "eopp1", "f1"}
    # resumed: nothing runs again
    monkeypatch.setattr(sg, "_run", lambda *a, **k: pytest.fail("a finished run was run again"))
    again = sg.stress_groups_from_run(runs["child_a"], cfg, tmp_path / "stress")
    assert again.records == recs


def test_cli_writes_the_report(runs, tmp_path):
    out = subprocess.run([sys.executable, "-m", "equiprune", "stress-groups", "--run", str(runs["child_a"]),
                          "--method", "fairprune", "--flip", "0,0.2", "--attack", "random", "--seeds", "0",
                          "--max-iters", "1", "--finetune-epochs", "0", "--quiet", "--out", str(tmp_path / "s")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "random flips of 20% of the training groups" in out.stdout
    assert (tmp_path / "s" / "report.html").exists()
    section = json.loads((tmp_path / "s" / "metrics.json").read_text())["stress_groups"]
    assert section["method"] == "fairprune" and len(section["records"]) == 2
