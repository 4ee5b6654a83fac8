"""Fair summaries (SumBal, FVS-LP, proportional review sets) and the spill-over attack (thesis §3.2, §2.2)."""
from __future__ import annotations

import numpy as np
import pytest

from equiprune.cluster.spillover import co_membership_change, comd, spillover_attack
from equiprune.cluster.summarize import (f_beta, fvs_lp, load_h5_videos, representative_subset, sumbal,
                                         synthetic_video, user_summary)


def test_sumbal_worked_example_of_the_thesis():
    """A in 20 % of the video and 40 % of the summary (0.5); B in 50 % and 30 % (0.6): SumBal 0.5, A violates."""
    H = np.zeros((20, 2))
    H[0:4, 0] = 1
    H[4:14, 1] = 1
    value, who = sumbal(np.array([0, 1, 2, 3, 4, 5, 6, 14, 15, 16]), H, ["A", "B"])
    assert value == pytest.approx(0.5) and who == "A"
    assert sumbal(np.array([14, 15]), H, ["A", "B"])[0] == 0.0            # both groups missing


def test_fvs_lp_and_review_sets_keep_proportions():
    v = synthetic_video(n=300, seed=1)
    sel = fvs_lp(v.presence, 45)
    assert sumbal(sel, v.presence)[0] > 0.9
    top = np.argsort(-v.user_scores.mean(0))[:45]
    assert f_beta(top, v.user_scores) > f_beta(sel, v.user_scores)        # FVS-LP optimises fairness only
    g = (v.presence[:, 0] > 0).astype(int)
    chosen = representative_subset(v.features, g, 20)
    assert len(chosen) == 20
    for grp in (0, 1):
        assert abs((g[chosen] == grp).sum() - 20 * (g == grp).mean()) <= 1
    with pytest.raises(ValueError, match="larger than the set"):
        fvs_lp(v.presence, 301)
    imp = v.user_scores.mean(0)                                            # same constraints, most important frames
    both = fvs_lp(v.presence, 45, importance=imp)
    assert imp[both].sum() > imp[sel].sum() and sumbal(both, v.presence)[0] > 0.9


def test_f_beta_by_hand():
    scores = np.array([[5, 4, 3, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.0]])
    assert user_summary(scores[0]).sum() == 3                               # 15 % of 20 frames
    assert f_beta(np.array([0, 1, 2]), scores) == 1.0
    assert f_beta(np.array([0, 10]), scores) == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))


def test_h5_loader_reads_the_benchmark_layout(tmp_path):
    import h5py
    v = synthetic_video(n=50, seed=2)
    with h5py.File(tmp_path / "v.h5", "w") as f:
        grp = f.create_group("video_1")
        grp["features"] = v.features
        grp["user_summary"] = v.user_scores
    videos = load_h5_videos(tmp_path / "v.h5")
    assert len(videos) == 1 and videos[0].features.shape == v.features.shape


def test_spillover_on_digits_moves_other_points_within_depth_bounds():
    from sklearn.datasets import load_digits
    d = load_digits()
    X = d.data[(d.target == 1) | (d.target == 4)].astype(float)
    r = spillover_attack(X, "ward", budget=25)
    assert len(r.spilled) > 0 and r.target not in r.spilled
    assert r.depth_quantile >= 0.1 - 1e-9                                   # stays as deep as the rule demands
    assert co_membership_change(np.array([0, 0, 1]), np.array([0, 0, 1])) == 0.0
    assert co_membership_change(np.array([0, 0, 1]), np.array([0, 1, 1])) == pytest.approx(-2.0)
    one_d = np.r_[np.random.default_rng(0).normal(0, 1, (10, 1)), np.random.default_rng(1).normal(5, 1, (10, 1))]
    with pytest.raises(ValueError, match="perturbation budget is zero"):   # every move goes below the deepest point
        spillover_attack(one_d, "kmeans", budget=2, quantile=1.0)
    X2 = np.r_[np.zeros((5, 2)), np.ones((5, 2))]
    assert comd(X2[:1], X2 + np.random.default_rng(0).normal(scale=0.1, size=X2.shape), np.r_[[0] * 5, [1] * 5]) > 0


def test_cli_summarize_and_spillover(tmp_path, capsys):
    import pandas as pd
    from equiprune.cli import main
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(0, 1, (60, 3)), rng.normal(4, 1, (60, 3))]
    df = pd.DataFrame(X, columns=["a", "b", "c"]).assign(group=rng.choice(["light", "dark"], 120, p=[0.7, 0.3]))
    df.to_csv(tmp_path / "t.csv", index=False)
    assert main(["summarize", "--features", str(tmp_path / "t.csv"), "--k", "10", "--out", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "FVS-LP" in out and (tmp_path / "s" / "summary.csv").exists()
    assert main(["cluster", "attack-spillover", "--features", str(tmp_path / "t.csv"), "--spillover-budget", "10",
                 "--out", str(tmp_path / "sp")]) == 0
    assert main(["summarize", "--features", str(tmp_path / "t.csv"), "--k", "500", "--out", str(tmp_path / "x")]) == 2
    assert "larger than the set" in capsys.readouterr().err
