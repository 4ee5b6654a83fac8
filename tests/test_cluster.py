"""Fair clustering: metrics against hand computations, fair algorithms, the flip attack, CFC, antidote, CLI."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from equiprune.cluster import (ALGORITHMS, AntidoteConfig, CFCConfig, FlipAttackConfig, antidote, balance, cfc,
                               clustering_scores, entropy, flip_attack, social_cost)
from equiprune.cluster.algorithms import fairlets
from equiprune.cluster.antidote import cost_of
from equiprune.cluster.attack import toy_data
from equiprune.cluster.metrics import unsupervised_accuracy


def test_balance_and_entropy_by_hand():
    groups = np.array([0, 0, 1, 1, 0, 0, 1, 1])
    assert balance([0, 0, 0, 0, 1, 1, 1, 1], groups) == 1.0                 # both clusters mirror 50/50
    assert balance([0, 0, 1, 1, 1, 1, 1, 1], groups) == 0.0                 # cluster 0 has no group-1 point
    # cluster 0 = {0,0,1} (share of group 1: 1/3), cluster 1 = {1,0,0,1,1}: data share 1/2
    lab = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    assert balance(lab, groups) == pytest.approx(min(1 / 3 / 0.5, (2 / 3) ** -1 * 0.5, 0.5 / 0.6, 0.4 / 0.5))
    h0 = -(2 / 3 * np.log(2 / 3) + 2 / 5 * np.log(2 / 5))                   # group 0's share in clusters 0 and 1
    h1 = -(1 / 3 * np.log(1 / 3) + 3 / 5 * np.log(3 / 5))
    assert entropy(lab, groups) == pytest.approx((h0 + h1) / 2)
    assert unsupervised_accuracy([0, 0, 1, 1, 2], [2, 2, 0, 0, 1]) == 1.0
    X = np.array([[0.0], [1.0], [10.0], [14.0]])
    assert social_cost(X, np.array([[0.0], [12.0]]), np.array([0, 0, 1, 1])) == pytest.approx(4.0)


def _four_blobs(n=60, seed=0):
    """Groups are left/right: vanilla k = 2 splits by group; a fair split is top/bottom."""
    rng = np.random.default_rng(seed)
    centres = np.array([[-3, 2], [3, 2], [-3, -2], [3, -2]], float)
    X = np.vstack([c + rng.normal(scale=0.4, size=(n, 2)) for c in centres])
    groups = np.repeat([0, 1, 0, 1], n)
    X[:, 0] *= 2.5                      # make left/right the cheaper split for k-means
    return X, groups


@pytest.mark.parametrize("name", ["sfd", "fsc", "kfc"])
def test_fair_algorithms_beat_kmeans_on_balance(name):
    X, g = _four_blobs()
    assert balance(ALGORITHMS["kmeans"](X, g, 2).labels, g) < 0.2
    # FSC's default 3-nearest-neighbour graph falls apart into 5 components on four tight blobs, and the
    # spectrum is then degenerate; 10 neighbours give one component per blob
    kwargs = {"neighbors": 10} if name == "fsc" else {}
    assert balance(ALGORITHMS[name](X, g, 2, **kwargs).labels, g) > 0.7


def test_fairlets_mix_both_groups():
    X, g = _four_blobs(n=25, seed=1)
    g = g.copy()
    g[:30] = 1                                                                # unequal groups: 80 vs 20
    parts = fairlets(X, g, p=2, q=5)
    assert sum(len(f) for f in parts) == len(X) and len(np.unique(np.concatenate(parts))) == len(X)
    for f in parts:
        assert set(g[f]) == {0, 1}


def test_toy_attack_reproduces_the_thesis():
    """Thesis §4.1.3.5: SFD on the 20-point toy, 6 attack points: Balance 1.0 -> 0.5, Entropy 0.693 -> 0.617."""
    X, y = toy_data(0)
    rng = np.random.default_rng(11)                 # a membership draw with perfect pre-attack Balance
    g = rng.permutation(np.r_[np.zeros(10, int), np.ones(10, int)])
    attacked = np.sort(rng.choice(20, 6, replace=False))
    r = flip_attack(X, g, FlipAttackConfig(algorithm="sfd", k=2, budget=64, seed=11), y=y, attacked=attacked)
    assert r.pre["balance"] == 1.0 and r.pre["entropy"] == pytest.approx(np.log(2))
    assert r.post["balance"] == pytest.approx(0.5)
    assert r.post["entropy"] == pytest.approx(0.617, abs=0.002)
    assert min(r.evaluations) == r.post["balance"]


def test_cfc_runs_and_refuses_what_does_not_fit():
    X, g = _four_blobs(n=30)
    labels = cfc(X, g, 2, 0, CFCConfig(partitions=10, epochs=30, hidden=16)).labels
    assert len(labels) == len(X) and set(labels) <= {0, 1}
    with pytest.raises(ValueError, match="GB"):
        cfc(X, g, 2, 0, CFCConfig(max_memory_gb=1e-6))


def test_antidote_cost_is_measured_on_real_points_only():
    X, g = _four_blobs(n=20)
    cfg = AntidoteConfig(cost="social", start=2, budget=30, max_rounds=1)
    res = antidote(X, g, cfg)
    assert res.cost <= res.vanilla_cost
    assert res.cost == pytest.approx(cost_of(X, g, res.V, cfg))
    lo, hi = np.quantile(X, 0.05, axis=0), np.quantile(X, 0.95, axis=0)
    assert ((res.V >= lo - 1e-9) & (res.V <= hi + 1e-9)).all()


def test_kkt_antidote_for_sum_of_norms_clustering():
    """Algorithm 2: the returned centres are SON's optimum for U + V, the social cost drops, V stays in the box."""
    from equiprune.cluster.antidote_kkt import KKTAntidoteConfig, antidote_kkt, pair_matrix, social_cost_son, son
    rng = np.random.default_rng(0)
    U = np.vstack([rng.normal([0, 0], 0.02, (6, 2)), rng.normal([3, 1], 0.02, (2, 2))])   # group 1: 2 far points
    g = np.r_[np.zeros(6, int), np.ones(2, int)]
    cfg = KKTAntidoteConfig(lam=0.1, start=1, max_rounds=1, starts=1, inner=1)
    res = antidote_kkt(U, g, cfg)
    assert res.cost < res.vanilla_cost - 1e-3
    W = np.vstack([U, res.V])
    assert ((res.V >= U.min(0) - 1e-9) & (res.V <= U.max(0) + 1e-9)).all()
    # the cost is that of an exact SON solve on U + V, measured on U only
    assert res.cost == pytest.approx(social_cost_son(U, son(W, cfg.lam).mu[:len(U)], g), rel=1e-4)
    assert max(res.residuals.values()) < 1e-4
    # KKT <=> optimal (strongly convex): no small move of the centres lowers the SON objective
    D = pair_matrix(len(W))

    def objective(mu):
        return 0.5 * ((mu - W) ** 2).sum() + cfg.lam * np.linalg.norm(D @ mu, axis=1).sum()
    base = objective(res.mu)
    assert all(objective(res.mu + 1e-3 * rng.normal(size=W.shape)) > base - 1e-7 for _ in range(20))
    with pytest.raises(ValueError, match="limit of 10"):
        antidote_kkt(U, g, KKTAntidoteConfig(max_pair_variables=10))


def test_cli_fit_attack_antidote_and_bad_input(tmp_path, capsys):
    from equiprune.cli import main
    X, g = _four_blobs(n=10)
    df = pd.DataFrame(X, columns=["a", "b"]).assign(group=np.where(g == 1, "right", "left"),
                                                    label=np.repeat([0, 1, 2, 3], 10))
    df.to_csv(tmp_path / "t.csv", index=False)
    assert main(["cluster", "fit", "--features", str(tmp_path / "t.csv"), "--k", "2", "--out", str(tmp_path / "fit")]) == 0
    assert "sfd" in capsys.readouterr().out and (tmp_path / "fit" / "report.html").exists()
    assert main(["cluster", "attack", "--features", str(tmp_path / "t.csv"), "--algorithm", "sfd", "--k", "2",
                 "--fractions", "0.1", "--seeds", "0,1", "--budget", "5", "--quiet", "--out", str(tmp_path / "atk")]) == 0
    rows = pd.read_csv(tmp_path / "atk" / "attack.csv")
    assert set(rows.setting) == {"pre", "attack", "random"} and len(rows) == 6
    # Algorithm 2 from the CLI: sum-of-norms through its KKT conditions, on a subsample
    assert main(["cluster", "antidote", "--features", str(tmp_path / "t.csv"), "--clustering", "son", "--max-points",
                 "8", "--antidote-size", "1", "--rounds", "1", "--out", str(tmp_path / "kkt")]) == 0
    assert "social cost: vanilla" in capsys.readouterr().out
    assert "KKT conditions" in (tmp_path / "kkt" / "report.html").read_text()
    for bad, msg in ((df.assign(a=np.nan), "NaN"), (df.assign(group="left"), "one value"),
                     (df.assign(group=["x"] + ["left"] * 39), "single member")):
        bad.to_csv(tmp_path / "bad.csv", index=False)
        assert main(["cluster", "fit", "--features", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "b")]) == 2
        assert msg in capsys.readouterr().err
    assert main(["cluster", "fit", "--features", str(tmp_path / "t.csv"), "--k", "500", "--out", str(tmp_path / "k")]) == 2
    assert "larger than the number of points" in capsys.readouterr().err


def test_cluster_a_runs_penultimate_features(runs, tmp_path, capsys):
    from equiprune.cli import main
    assert main(["cluster", "fit", "--run", str(runs["base"]), "--split", "test", "--k", "3",
                 "--algorithms", "kmeans,sfd", "--out", str(tmp_path / "c")]) == 0
    clusters = pd.read_csv(tmp_path / "c" / "clusters.csv")
    assert set(clusters.columns) >= {"group", "kmeans", "sfd"} and clusters["sfd"].nunique() <= 3
    assert "sfd" in capsys.readouterr().out


def test_each_cluster_job_has_its_own_options(capsys):
    """`cluster JOB --help` teaches that job only; options of another job, or a missing source, are refused."""
    from equiprune.cli import main
    with pytest.raises(SystemExit) as exit_:
        main(["cluster", "attack", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "--fractions" in text and "--features" in text and "cluster attack --features" in text
    assert "--service" not in text and "--antidote-size" not in text and "--images" not in text
    with pytest.raises(SystemExit) as exit_:
        main(["cluster", "transfer", "--help"])
    text = capsys.readouterr().out
    assert "--service-stand-in" in text and "--images" in text and "--features" not in text
    for argv, msg in ((["cluster", "fit", "--out", "x"], "one of the arguments --features --run is required"),
                      (["cluster", "fit", "--features", "t.csv", "--service", "s", "--out", "x"], "--service"),
                      (["cluster", "transfer", "--images", "mnist", "--out", "x"], "--service"),
                      (["cluster", "metrics", "--features", "t.csv", "--out", "x"], "--clusters-column")):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2 and msg in capsys.readouterr().err
