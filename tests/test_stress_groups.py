"""stress-groups: corrupted training groups, RACOS attack, post/pre ratios, KS tests; the consensus scorer."""
from __future__ import annotations

import json

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
    with pytest.raises(ValueError, match="groupdro is a fine-tuning method"):
        sg.StressConfig(method="groupdro", finetune_epochs=0).validate()
    with pytest.raises(ValueError, match="must be in 3..500"):
        sg.StressConfig(budget=2).validate()
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


def test_mitigations_go_through_the_same_loop_and_see_the_corrupted_groups(runs, tmp_path, monkeypatch):
    from equiprune.methods import mitigate

    assert {"groupdro", "reweight", "scp", "fairprune"} <= set(sg.METHODS)
    assert not {"plain", "swa", "skin-tone", "postprocess"} & set(sg.METHODS)   # they never read training groups
    clean = open_run(runs["child_a"]).splits().train.groups
    seen = []
    original = mitigate.run_mitigation

    def spy(model, splits, cfg, run_dir=None):
        seen.append((cfg.finetune.epochs, int((splits.train.groups != clean).sum())))
        return original(model, splits, cfg, run_dir)
    monkeypatch.setattr(mitigate, "run_mitigation", spy)
    cfg = sg.StressConfig(method="groupdro", flips=(0.0, 0.3), **{**TINY, "finetune_epochs": 1})
    res = sg.stress_groups_from_run(runs["child_a"], cfg, tmp_path / "dro")
    by = {(r["attack"], r["flip"]): r for r in res.records}
    assert set(by) == {("none", 0.0), ("random", 0.3), ("adversarial", 0.3)}
    trace = by["adversarial", 0.3]["racos_trace"]
    # in order: the clean run, the random run, RACOS's one-epoch objectives, the adversarial run
    assert len(seen) == 3 + len(trace) and len(trace) >= 1
    assert [flipped for _, flipped in (seen[0], seen[1], seen[-1])] == [0, by["random", 0.3]["flipped"],
                                                                         by["adversarial", 0.3]["flipped"]]
    assert by["random", 0.3]["flipped"] > 0 and all(epochs == 1 for epochs, _ in seen)
    assert set(res.ratios) == {"random", "adversarial"} and res.ratios["random"]["eodd"][0] == pytest.approx(1.0)


def test_racos_is_reproducible_for_seed_0_whatever_the_global_rng(monkeypatch):
    """zoopt seeds numpy only for a truthy seed; the attack must not depend on what ran before it."""
    from types import SimpleNamespace

    groups = np.zeros(64, dtype=np.int64)
    splits = SimpleNamespace(train=SimpleNamespace(groups=groups))
    weights = np.random.default_rng(0).normal(size=64)
    monkeypatch.setattr(sg, "_Corrupted", lambda s, g: g)
    monkeypatch.setattr(sg, "_run", lambda m, g, *a, **k: (None, {"eodd": float(weights @ g)}))
    cfg = sg.StressConfig(budget=6, blocks=8, progress=False)
    items = np.arange(0, 64, 2)
    runs = []
    for noise in (1, 2):
        np.random.seed(noise)                           # a different global state before each attack
        runs.append(sg.adversarial_bits(None, splits, items, cfg, seed=0))
        assert np.random.get_state()[1][0] == np.random.RandomState(noise).get_state()[1][0]  # state given back
    assert np.array_equal(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]


def test_the_full_attacker_scores_the_model_the_whole_method_returns(monkeypatch):
    """attacker='full': every RACOS evaluation runs the method in full (cheap=False) and scores the model it
    returns on validation, not the loop's last history row (which may be a later iteration than the one kept)."""
    from types import SimpleNamespace

    splits = SimpleNamespace(train=SimpleNamespace(groups=np.zeros(32, dtype=np.int64)), val="val-split")
    calls = []

    def fake_run(model, groups, cfg, seed, cheap, arch=None):
        calls.append(cheap)
        return SimpleNamespace(score=float(groups.sum())), {"eodd": -1.0}   # the history row must be ignored

    monkeypatch.setattr(sg, "_Corrupted", lambda s, g: g)
    monkeypatch.setattr(sg, "_run", fake_run)
    monkeypatch.setattr(sg, "evaluate", lambda model, split: ({"eodd": model.score if split == "val-split" else 0},))
    items = np.arange(16)
    bits, trace = sg.adversarial_bits(None, splits, items, sg.StressConfig(budget=5, blocks=4, attacker="full"),
                                      seed=1)
    assert calls == [False] * 5 and min(trace) >= 0 and max(trace) == pytest.approx(bits.sum())
    calls.clear()
    _, trace = sg.adversarial_bits(None, splits, items, sg.StressConfig(budget=5, blocks=4), seed=1)
    assert calls == [True] * 5 and trace == [-1.0] * 5                  # the cheap proxy's own validation row
    with pytest.raises(ValueError, match="attacker must be one of"):
        sg.StressConfig(attacker="oracle").validate()


def test_unchanged_runs_are_counted_and_reported():
    t = {"eodd": 0.2, "eopp1": 0.3, "f1": 0.4}
    recs = [{"attack": "none", "flip": 0.0, "seed": 0, "test": t},
            {"attack": "random", "flip": 0.3, "seed": 0, "test": dict(t)},
            {"attack": "adversarial", "flip": 0.3, "seed": 0, "test": {**t, "eodd": 0.25}}]
    assert sg.unchanged_runs(recs) == (1, 2)
    assert any("1 of 2 runs with corrupted groups" in f for f in sg.stress_findings({"records": recs, "flips": [0, .3]}))


def test_cli_writes_the_report(runs, tmp_path, capsys):
    from equiprune.cli import main

    assert main(["stress-groups", "--run", str(runs["child_a"]), "--method", "fairprune", "--flip", "0,0.2",
                 "--attack", "random", "--seeds", "0", "--max-iters", "1", "--finetune-epochs", "0", "--quiet",
                 "--out", str(tmp_path / "s")]) == 0
    assert "random flips of 20% of the training groups" in capsys.readouterr().out
    assert (tmp_path / "s" / "report.html").exists()
    section = json.loads((tmp_path / "s" / "metrics.json").read_text())["stress_groups"]
    assert section["method"] == "fairprune" and len(section["records"]) == 2
