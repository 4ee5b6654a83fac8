"""Influence functions, trees and trimming (thesis §4.2) against direct computations."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from equiprune.influence import (FeatureTable, FeatureTableError, InfluenceConfig, TrimConfig, compute_influence,
                                 leave_one_out, load_feature_table, select_rows, trim_table)
from equiprune.influence.hessian import HessianSolver, hessian, hvp
from equiprune.influence.head import fit_head
from equiprune.influence.toy import run_toy
from equiprune.influence.trees import explain, interpretable_frame


def _table(n=400, C=3, seed=0, flip_minority=0.0) -> FeatureTable:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    g = (rng.random(n) < 0.35).astype(int)
    y = (X[:, 0] + 0.8 * X[:, 1] * (1 + g) + rng.normal(scale=0.8, size=n) > 0).astype(int)
    if C == 3:
        y = y + (X[:, 2] > 1).astype(int)
    if flip_minority:
        flip = (g == 1) & (y == 1) & (rng.random(n) < flip_minority)
        y[flip] = 0
    split = np.array(["train"] * (n // 2) + ["val"] * (n // 4) + ["test"] * (n - n // 2 - n // 4))
    return FeatureTable(X, y, g, split, np.arange(n), [f"c{i}" for i in range(C)], ["light", "dark"],
                        meta=pd.DataFrame({"site": rng.choice(["arm", "back"], n)}))


@pytest.fixture(scope="module")
def table():
    return _table()


@pytest.fixture(scope="module")
def result(table):
    return compute_influence(table, InfluenceConfig(lam=0.5))


@pytest.mark.parametrize("name", ["utility", "dp", "eop", "eopp1", "eodd", "robust"])
def test_influence_matches_leave_one_out_refits(table, result, name):
    rows = np.arange(0, 200, 5)  # 40 real refits without one sample each
    actual = leave_one_out(table, rows, name, InfluenceConfig(lam=0.5))
    estimate = result.values[name][rows]
    assert spearmanr(actual, estimate)[0] >= 0.9
    # sign convention: negative influence = removing the sample lowers the metric
    most_harmful = np.argsort(estimate)[:5]
    assert (actual[most_harmful] < 0).all()
    most_helpful = np.argsort(estimate)[-5:]
    assert (actual[most_helpful] > 0).all()


def test_dense_and_cg_solves_agree(table, result):
    head = result.head
    Zt = head.augment(table.part("train")[0])
    P = head.proba(table.part("train")[0])
    rhs = np.random.default_rng(1).normal(size=head.W.shape)
    dense = HessianSolver(Zt, P, head.lam, None, "dense").solve(rhs)
    cg = HessianSolver(Zt, P, head.lam, None, "cg", tol=1e-12).solve(rhs)
    assert np.allclose(dense, cg, rtol=1e-6, atol=1e-9)
    # the Hessian-vector product equals the dense Hessian times the vector
    assert np.allclose(hessian(Zt, P, head.lam) @ rhs.ravel(), hvp(rhs, Zt, P, head.lam).ravel())
    # a factor built before a Newton step, refined with products at the new head, solves the new head's H
    nudged = P * np.exp(np.random.default_rng(2).uniform(-1e-3, 1e-3, P.shape))
    old = HessianSolver(Zt, nudged / nudged.sum(1, keepdims=True), head.lam, None, "dense")
    assert not np.allclose(old.solve(rhs), dense, rtol=1e-9, atol=0)
    assert np.allclose(old.refined_at(Zt, P, head.lam, None).solve(rhs), dense, rtol=1e-10, atol=1e-13)


def test_dense_hessian_equals_its_definition_with_weights():
    """Block (a, b) = sum_i w_i (d_ab p_ia - p_ia p_ib) z_i z_i^T + lam: the syrk build, weights 0 included."""
    rng = np.random.default_rng(0)
    Z = np.c_[rng.normal(size=(30, 3)), np.ones(30)]
    P = rng.dirichlet(np.ones(4), size=30)
    sw = rng.random(30) * (rng.random(30) > 0.2)
    ref = sum(sw[i] * np.kron(np.diag(P[i]) - np.outer(P[i], P[i]), np.outer(Z[i], Z[i])) for i in range(30))
    assert np.allclose(hessian(Z, P, 0.3, sw), ref + 0.3 * np.eye(16), rtol=1e-12, atol=1e-12)


def test_head_is_at_the_optimum(table, result):
    """The fitted head's gradient vanishes (polished until no logit can be 1e-6 off), which LOO agreement relies on."""
    from equiprune.influence.head import _objective
    X, y, _ = table.part("train")
    Zt = result.head.augment(X)
    _, grad = _objective(result.head.W.ravel(), Zt, np.eye(3)[y], np.ones(len(y)), result.head.lam)
    assert np.abs(grad).max() < 1e-6


def test_select_rows_caps_at_negatives_and_per_group():
    values = np.array([-3.0, -2.0, -1.0, 0.5, 1.0, -0.5])
    groups = np.array([1, 1, 1, 0, 0, 0])
    assert list(select_rows(values, 10, groups)) == [0, 1, 2, 5]           # only the 4 negatives
    assert list(select_rows(values, 2, groups)) == [0, 1]
    assert len(select_rows(values, 10, groups, cap_at_negative=False)) == 6
    capped = select_rows(values, 10, groups, max_group_share=0.34)          # at most 1 per group of 3
    assert sorted(groups[capped].tolist()) == [0, 1]


def test_trimming_reports_controls_and_removed_counts():
    t = _table(n=800, C=2, seed=3, flip_minority=0.3)
    res = trim_table(t, TrimConfig(impact="eodd", budgets=(0.0, 0.03), random_seeds=(1, 2)))
    methods = set(res.rows["method"])
    assert methods == {"influence-eodd", "influence-utility", "random"}
    inf = res.rows[(res.rows.method == "influence-eodd") & (res.rows.budget == 0.03)].iloc[0]
    rnd = res.rows[(res.rows.method == "random") & (res.rows.budget == 0.03)]
    assert (rnd["removed"] == inf["removed"]).all()                          # same count as the method
    assert res.removed[res.removed.budget == 0.03]["removed"].sum() == inf["removed"]
    # downweight mode keeps every row: the refit differs from deletion
    dw = trim_table(t, TrimConfig(impact="eodd", budgets=(0.03,), mode="downweight", weight=0.5, controls=False))
    assert dw.rows.iloc[0]["removed"] == inf["removed"]


def test_trim_findings_speak_of_the_impacts_own_metric():
    from equiprune.api import trim_findings
    rows = pd.DataFrame({"method": ["influence-robust", "random", "random"], "seed": [0, 1, 2],
                         "budget": [0.05] * 3, "removed": [3] * 3, "eodd": [0.1, 0.2, 0.3],
                         "acc": [0.9] * 3, "robust_acc": [0.5, 0.2, 0.3]})
    text = trim_findings(rows, "robust")
    assert "test robust_acc is 0.500, above every random" in text
    assert "test eodd is 0.100, below every random" in trim_findings(rows.replace("influence-robust", "influence-eodd"),
                                                                     "eodd")


def test_tree_rules_name_the_harmful_cell():
    """Minority positives relabelled negative are harmful to the fairness gap: the worst rule names them."""
    t = _table(n=1200, C=2, seed=5, flip_minority=0.5)
    res = compute_influence(t, InfluenceConfig(impacts=("eopp1",), lam=0.5))
    tr = res.train_index
    frame = interpretable_frame(t.meta.iloc[tr].reset_index(drop=True), pd.Series(np.array(t.classes)[t.y[tr]]),
                                pd.Series(np.array(t.group_names)[t.g[tr]]))
    rules = explain(res.values["eopp1"], frame, max_depth=2)
    assert rules[0].mean_influence < 0
    assert "group = dark" in " ".join(rules[0].conditions)


def test_thesis_toy_robust_trimming_raises_adversarial_accuracy():
    r = run_toy("robust", budget=10, seed=0)
    assert len(r.removed) == 10
    assert r.after["robust_val_acc"] > r.before["robust_val_acc"]


def test_bad_tables_are_named(tmp_path):
    df = pd.DataFrame({"f0": [0.1, np.nan, 0.3, 0.2], "label": [0, 1, 0, 1], "group": [0, 1, 0, 1],
                       "split": ["train", "train", "val", "val"]})
    df.to_csv(tmp_path / "nan.csv", index=False)
    t = load_feature_table(tmp_path / "nan.csv")
    with pytest.raises(FeatureTableError, match="NaN"):
        t.check()
    with pytest.raises(FeatureTableError, match="no column 'diagnosis'"):
        load_feature_table(tmp_path / "nan.csv", label_column="diagnosis")
    df.assign(split="training").to_csv(tmp_path / "split.csv", index=False)
    with pytest.raises(FeatureTableError, match="train, val and test"):
        load_feature_table(tmp_path / "split.csv")
    df.head(0).to_csv(tmp_path / "empty.csv", index=False)
    with pytest.raises(FeatureTableError, match="no rows"):
        load_feature_table(tmp_path / "empty.csv")


def _cli(capsys, *args) -> tuple[int, str]:
    """`equiprune ARGS` in this process (no interpreter start-up): exit code and stderr."""
    from equiprune.cli import main
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def test_cli_influence_and_trim_on_a_feature_table(tmp_path, capsys):
    t = _table(n=400, C=2, seed=2, flip_minority=0.3)
    df = pd.DataFrame(t.X, columns=[f"f{i}" for i in range(5)])
    df["diagnosis"] = np.where(t.y == 1, "melanoma", "nevus")
    df["skin"] = np.where(t.g == 1, "<b>dark</b>", "light")
    df["split"] = t.split
    df.to_csv(tmp_path / "t.csv", index=False)
    common = ["--features", tmp_path / "t.csv", "--label-column", "diagnosis", "--group-column", "skin",
              "--group-map", "light=0,<b>dark</b>=1"]
    code, err = _cli(capsys, "influence", *common, "--impacts", "eodd,utility", "--out", tmp_path / "inf")
    assert code == 0, err
    out = pd.read_csv(tmp_path / "inf" / "influence.csv")
    assert len(out) == (t.split == "train").sum()
    assert {"influence_eodd", "influence_utility"} <= set(out.columns)
    assert not [p.name for p in (tmp_path / "inf").iterdir() if ".tmp" in p.name]   # atomic writes left nothing
    html = (tmp_path / "inf" / "report.html").read_text()
    assert "<b>dark</b>" not in html and "&lt;b&gt;dark&lt;/b&gt;" in html
    code, err = _cli(capsys, "trim", *common, "--budgets", "0,0.02", "--random-seeds", "1,2", "--quiet",
                     "--out", tmp_path / "tr")
    assert code == 0, err
    rows = pd.read_csv(tmp_path / "tr" / "trim.csv")
    assert set(rows.method) == {"influence-eodd", "influence-utility", "random"}
    # same command again resumes; other settings are refused
    code, err = _cli(capsys, "trim", *common, "--budgets", "0,0.05", "--quiet", "--out", tmp_path / "tr")
    assert code == 2 and "settings" in err
    code, err = _cli(capsys, "influence", "--features", tmp_path / "t.csv", "--out", tmp_path / "x")
    assert code == 2 and "no column 'label'" in err


def test_influence_on_a_run(runs, tmp_path, capsys, monkeypatch):
    from equiprune.influence import run_features
    t = run_features.features_from_run(runs["base"])
    assert t.network_pred is not None and len(t.network_pred) == len(t.y)
    assert set(np.unique(t.split)) == {"train", "val", "test"}
    # the extraction is cached: the same model and data are read back, not run through the network again
    monkeypatch.setattr(run_features, "penultimate", lambda *a, **k: pytest.fail("features extracted again"))
    again = run_features.features_from_run(runs["base"])
    assert np.array_equal(again.X, t.X) and np.array_equal(again.network_pred, t.network_pred)
    assert list(again.ids) == list(t.ids)
    code, err = _cli(capsys, "influence", "--run", runs["base"], "--impacts", "utility,eodd", "--out", tmp_path / "ri")
    assert code == 0, err
    sec = json.loads((tmp_path / "ri" / "metrics.json").read_text())["influence"]
    assert 0.0 <= sec["head_agreement"] <= 1.0
    cfg = json.loads((tmp_path / "ri" / "config.json").read_text())
    assert cfg["parent"] and cfg["kind"] == "influence"


def test_trim_a_run_fine_tunes_without_the_trimmed_images(runs, tmp_path, capsys):
    from equiprune.methods.runs import open_run
    out = tmp_path / "rt"
    code, err = _cli(capsys, "trim", "--run", runs["base"], "--budgets", "0.05", "--random-seeds", "1", "--quiet",
                     "--finetune-budget", "0.05", "--finetune-epochs", "1", "--out", out)
    assert code == 0, err
    child = open_run(out / "finetuned-eodd")
    cfg = child.config
    assert cfg["kind"] == "trim" and cfg["parent"]
    removed = json.loads((out / "finetuned-eodd" / "metrics.json").read_text())["finetune_done"]
    total = len(open_run(runs["base"]).splits().train)
    assert removed["kept"] + removed["removed"] == total and removed["removed"] > 0
    code, _ = _cli(capsys, "trim", "--features", "x.csv", "--finetune-budget", "0.05", "--out", tmp_path / "bad")
    assert code == 2


def test_anchoring_widens_dp_and_trimming_narrows_it():
    from equiprune.data.tabular import load_german
    from equiprune.influence.anchoring import AnchoringConfig, anchoring_attack, poisoning_defense
    X, y, g, _ = load_german()
    rows = {r.setting: r for r in poisoning_defense(X.to_numpy(), y, g, AnchoringConfig(method="nonrandom"))}
    assert abs(rows["NRAA"].dp) > abs(rows["before"].dp) + 0.05
    assert abs(rows["NRAA + trimming"].dp) < abs(rows["NRAA"].dp) / 2
    assert rows["NRAA + trimming"].removed <= round(0.1 * 660)            # budget: 10 % of the poisoned train split
    # the poison: favourable points of the advantaged group, unfavourable of the other, within tau of a target
    Xs = np.random.default_rng(0).normal(size=(200, 3))
    ys, gs = np.r_[np.ones(100, int), np.zeros(100, int)], np.r_[np.ones(60, int), np.zeros(100, int), np.ones(40, int)]
    Xp, yp, gp = anchoring_attack(Xs, ys, gs, AnchoringConfig(eps=0.1, tau=0.5))
    assert len(yp) == 20 and set(zip(yp.tolist(), gp.tolist())) == {(1, 1), (0, 0)}
    centre = Xp[yp == 1].mean(0)
    assert np.linalg.norm(Xp[yp == 1] - centre, axis=1).max() <= 1.0 + 1e-9


def test_evasion_attack_never_helps_and_apps_cli(tmp_path, capsys):
    from equiprune.data.tabular import load_german
    from equiprune.influence.scenarios import evasion
    X, y, g, _ = load_german()
    df = evasion(X.to_numpy(), y, g, fractions=(0.1, 0.5), seeds=(0,))
    assert (df["acc"] <= df["clean_acc"] + 1e-12).all()
    hit = df.groupby(["model", "attacked_fraction"])["acc"].mean().unstack()
    assert (hit[0.5] < hit[0.1]).all()                                    # more attacked points, lower accuracy
    code, err = _cli(capsys, "influence-apps", "poisoning", "--dataset", "german", "--seeds", "0",
                     "--out", tmp_path / "ap")
    assert code == 0, err
    summary = pd.read_csv(tmp_path / "ap" / "summary.csv")
    assert {"thesis_dp", "dp_mean"} <= set(summary.columns) and "NRAA + trimming" in set(summary.setting)


def test_val_from_replaces_the_validation_split(tmp_path):
    from equiprune.influence import Source
    t = _table(n=400, C=2, seed=4)
    cols = [f"f{i}" for i in range(5)]
    base = pd.DataFrame(t.X, columns=cols).assign(label=t.y, group=t.g, split=t.split)
    base.to_csv(tmp_path / "a.csv", index=False)
    shifted = base.sample(50, random_state=0).assign(f0=lambda d: d.f0 + 2.0).drop(columns="split")
    shifted.to_csv(tmp_path / "b.csv", index=False)
    loaded = Source(features=str(tmp_path / "a.csv"), val_from=str(tmp_path / "b.csv")).load()
    assert loaded.mask("val").sum() == 50 and loaded.mask("train").sum() == (t.split == "train").sum()
    assert np.allclose(loaded.part("val")[0][:, 0], shifted["f0"].to_numpy())
