"""Per-group AUC, calibration and error rates (equiprune.metrics.group_scores) against independent computations."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.interpolate import interp1d
from sklearn.metrics import log_loss, roc_auc_score, roc_curve

from equiprune.metrics import (
    MetricsError,
    ScoreSettings,
    bootstrap_ci,
    bootstrap_group_scores,
    group_scores,
    paired_group_scores,
)
from equiprune.metrics.bootstrap import _resample_index_chunks
from equiprune.metrics.ranking import roc_curve_weighted, roc_plan


def softmax_case(seed: int, n: int = 600, c: int = 3, n_groups: int = 2, signal=(1.5, 0.7)):
    """Logits with class signal that differs by group (group k gets signal[k % len(signal)])."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    g = rng.integers(0, n_groups, n)
    logits = rng.normal(size=(n, c))
    logits[np.arange(n), y] += np.asarray(signal)[g % len(signal)]
    p = np.exp(logits)
    return y, p / p.sum(1, keepdims=True), g


def ece_loop(conf: np.ndarray, target: np.ndarray, edges: np.ndarray) -> float:
    """The textbook ECE: sum over bins (lo, hi] of |bin| / n * |mean conf - mean target| (first bin closed)."""
    total = 0.0
    for m in range(len(edges) - 1):
        lo, hi = edges[m], edges[m + 1]
        inside = ((conf > lo) | (m == 0) & (conf >= lo)) & (conf <= hi)
        if inside.any():
            total += inside.sum() / len(conf) * abs(conf[inside].mean() - target[inside].mean())
    return total


# ----------------------------------------------------------------------------- AUC


def test_binary_auc_per_group_equals_sklearn():
    y, p, g = softmax_case(0, c=2)
    r = group_scores(y, p, g)
    for k in (0, 1):
        assert r.values[f"auc_g{k}"] == pytest.approx(roc_auc_score(y[g == k], p[g == k, 1]), abs=1e-12)
    assert r.values["auc"] == pytest.approx(roc_auc_score(y, p[:, 1]), abs=1e-12)
    assert r.values["worst_group_auc"] == min(r.values["auc_g0"], r.values["auc_g1"])
    assert r.values["auc_gap"] == pytest.approx(abs(r.values["auc_g0"] - r.values["auc_g1"]))
    # The weaker signal was given to group 1.
    assert r.values["auc_g1"] < r.values["auc_g0"]


def test_multiclass_auc_is_one_vs_rest_macro_like_sklearn_with_ties():
    y, p, g = softmax_case(1, c=4, n_groups=3)
    p = np.round(p, 2)                       # many tied scores: ties count one half
    p = p / p.sum(1, keepdims=True)
    r = group_scores(y, p, g)
    for k in range(3):
        m = g == k
        ref = roc_auc_score(y[m], p[m], multi_class="ovr", average="macro", labels=[0, 1, 2, 3])
        assert r.values[f"auc_g{k}"] == pytest.approx(ref, abs=1e-12)
    vals = [r.values[f"auc_g{k}"] for k in range(3)]
    assert r.values["worst_group_auc"] == min(vals)
    assert r.values["auc_gap"] == pytest.approx(max(vals) - min(vals))


def test_a_group_with_one_class_has_no_auc_and_says_so():
    y, p, g = softmax_case(2, c=2)
    g = g.copy()
    g[(g == 1) & (y == 0)] = 0               # group 1 keeps only positives
    r = group_scores(y, p, g, group_names=["light", "dark"], class_names=["benign", "malignant"])
    assert math.isnan(r.values["auc_g1"])    # undefined, not 0.5
    assert r.values["worst_group_auc"] == r.values["auc_g0"]
    assert math.isnan(r.values["auc_gap"])
    assert any("AUC of dark is undefined" in n and "malignant" in n for n in r.notes)
    iv = bootstrap_group_scores(y, p, g, n_boot=20)["auc_g1"]
    assert math.isnan(iv.estimate) and math.isnan(iv.lo)


def test_constant_predictor_has_auc_one_half_and_ece_equal_to_the_base_rate_gap():
    rng = np.random.default_rng(3)
    y = (rng.random(400) < 0.3).astype(int)
    g = rng.integers(0, 2, 400)
    p = np.tile([0.6, 0.4], (400, 1))
    r = group_scores(y, p, g)
    for k in (0, 1):
        assert r.values[f"auc_g{k}"] == 0.5
        assert r.values[f"ece_g{k}"] == pytest.approx(abs(0.4 - y[g == k].mean()), abs=1e-12)


# ----------------------------------------------------------------------------- calibration


def test_ece_equal_width_matches_a_direct_loop_binary_and_top_label():
    edges = np.linspace(0, 1, 11)
    y, p, g = softmax_case(4, c=2)
    r = group_scores(y, p, g)
    for k in (0, 1):
        m = g == k
        assert r.values[f"ece_g{k}"] == pytest.approx(ece_loop(p[m, 1], y[m].astype(float), edges), abs=1e-12)
    y, p, g = softmax_case(5, c=3)
    pred = p.argmax(1)
    r = group_scores(y, p, g)
    for k in (0, 1):
        m = g == k
        conf, hit = p[m].max(1), (pred[m] == y[m]).astype(float)
        assert r.values[f"ece_g{k}"] == pytest.approx(ece_loop(conf, hit, edges), abs=1e-12)
    assert r.values["ece_gap"] == pytest.approx(abs(r.values["ece_g0"] - r.values["ece_g1"]))


def test_adaptive_ece_uses_equal_mass_bins_per_group():
    y, p, g = softmax_case(6, c=2, n=500)
    r = group_scores(y, p, g, settings=ScoreSettings(binning="adaptive", n_bins=5))
    for k in (0, 1):
        m = g == k
        conf = p[m, 1]
        edges = np.r_[0.0, np.quantile(conf, [0.2, 0.4, 0.6, 0.8]), 1.0]
        assert r.values[f"ece_g{k}"] == pytest.approx(ece_loop(conf, y[m].astype(float), edges), abs=1e-12)
        counts = r.reliability[f"group {k}"]["count"]
        assert max(counts) - min(counts) <= 1     # equal mass (no ties in continuous scores)


def test_a_perfectly_calibrated_predictor_has_zero_ece():
    # In every bin the confidence equals the fraction of positives exactly; both groups alike.
    levels = (0.1, 0.3, 0.5, 0.8)
    conf = np.repeat(levels, 10)
    y = np.concatenate([np.r_[np.ones(round(10 * c)), np.zeros(10 - round(10 * c))] for c in levels]).astype(int)
    p = np.c_[1 - conf, conf]
    r = group_scores(np.r_[y, y], np.r_[p, p], np.r_[np.zeros(40, int), np.ones(40, int)])
    assert r.values["ece_g0"] == pytest.approx(0.0, abs=1e-12)
    assert r.values["ece_g1"] == pytest.approx(0.0, abs=1e-12)
    curve = r.reliability["group 0"]
    assert curve["confidence"] == pytest.approx(curve["accuracy"])
    assert curve["count"] == [10, 10, 10, 10]


def test_nll_per_group_equals_sklearn_log_loss():
    y, p, g = softmax_case(7, c=3)
    r = group_scores(y, p, g)
    for k in (0, 1):
        m = g == k
        assert r.values[f"nll_g{k}"] == pytest.approx(log_loss(y[m], p[m], labels=[0, 1, 2]), rel=1e-9)
    assert r.values["worst_group_nll"] == max(r.values["nll_g0"], r.values["nll_g1"])


# ----------------------------------------------------------------------------- rates


def test_fnr_fpr_per_group_and_class_and_the_largest_gap_is_named():
    y, p, g = softmax_case(8, c=3)
    pred = p.argmax(1)
    r = group_scores(y, p, g, group_names=["light", "dark"], class_names=["a", "b", "c"])
    for k in (0, 1):
        for c in range(3):
            m = g == k
            fnr = np.mean(pred[m & (y == c)] != c)
            fpr = np.mean(pred[m & (y != c)] == c)
            assert r.values[f"fnr_g{k}_c{c}"] == pytest.approx(fnr)
            assert r.values[f"fpr_g{k}_c{c}"] == pytest.approx(fpr)
    gaps = {(rate, c): abs(r.values[f"{rate}_g0_c{c}"] - r.values[f"{rate}_g1_c{c}"])
            for rate in ("fnr", "fpr") for c in range(3)}
    (rate, c), gap = max(gaps.items(), key=lambda kv: kv[1])
    lg = r.largest_gap
    assert (lg["rate"], lg["class"], lg["class_name"]) == (rate, c, "abc"[c])
    assert lg["gap"] == pytest.approx(gap)
    assert r.values[f"{rate}_gap"] == pytest.approx(gap)
    assert lg["value_hi"] - lg["value_lo"] == pytest.approx(gap)
    # FNR of the weak-signal group (dark) is the higher one: underdiagnosis.
    assert lg["name_hi"] == "dark" or rate == "fpr"


def test_an_absent_class_has_undefined_rates_not_zero():
    y = np.array([0, 1, 0, 1, 0, 0])
    g = np.array([0, 0, 0, 1, 1, 1])
    p = np.eye(2)[[0, 1, 1, 1, 0, 1]].astype(float)
    r = group_scores(y, p, g)
    # group 1 has one positive (predicted right) and two negatives (one false alarm)
    assert r.values["fnr_g1_c1"] == 0.0 and r.values["fpr_g1_c1"] == 0.5
    y2 = np.array([0, 1, 0, 0, 0, 0])          # group 1: no positive of class 1
    r2 = group_scores(y2, p, g)
    assert math.isnan(r2.values["fnr_g1_c1"])


def test_eodd_at_specificity_follows_medfair():
    y, p, g = softmax_case(9, c=2, n=800)
    r = group_scores(y, p, g)
    s = p[:, 1]
    fpr, tpr, thr = roc_curve(y, s)
    t = float(interp1d(1 - fpr, np.minimum(thr, 1.0))(0.8))
    pred = s > t
    rates = [(pred[(g == k) & (y == 0)].mean(), pred[(g == k) & (y == 1)].mean()) for k in (0, 1)]
    ref = 0.5 * (abs(rates[0][0] - rates[1][0]) + abs(rates[0][1] - rates[1][1]))
    assert r.values["eodd_at_spec"] == pytest.approx(ref, abs=1e-12)
    # The library's own threshold (not the test's reference) puts the pooled specificity at 0.8, within one
    # negative's step of the ROC curve.
    from equiprune.metrics.ranking import roc_plan, threshold_at_specificity
    lib_t = threshold_at_specificity(roc_plan(y == 1, s), 0.8)
    assert 1 - np.mean(s[y == 0] > lib_t) == pytest.approx(0.8, abs=2 / np.sum(y == 0))


def test_weighted_roc_curve_equals_sklearn_on_the_expanded_sample():
    rng = np.random.default_rng(10)
    for t in range(6):
        y = rng.integers(0, 2, 150)
        s = np.round(rng.random(150), 1 if t % 2 else 4)
        w = rng.integers(0, 3, 150).astype(float)
        k = w > 0
        ref = roc_curve(np.repeat(y[k], w[k].astype(int)), np.repeat(s[k], w[k].astype(int)))
        got = roc_curve_weighted(roc_plan(y == 1, s), w)
        for a, b in zip(ref, got):
            np.testing.assert_allclose(a, b)


# ----------------------------------------------------------------------------- groups and bootstrap


def test_more_than_two_groups_worst_and_gap():
    y, p, g = softmax_case(11, c=2, n=900, n_groups=3, signal=(2.0, 1.0, 0.2))
    g = g * 2 + 1                                # arbitrary ids: 1, 3, 5
    r = group_scores(y, p, g, group_names={1: "I-II", 3: "III-IV", 5: "V-VI"})
    accs = [r.values[f"acc_g{k}"] for k in (1, 3, 5)]
    assert r.values["worst_group_acc"] == min(accs) == r.values["acc_g5"]
    assert r.values["acc_gap"] == pytest.approx(max(accs) - min(accs))
    assert r.group_names == ["I-II", "III-IV", "V-VI"]
    assert r.values["eodd_at_spec"] > 0


def test_bootstrap_estimates_equal_the_full_data_and_a_resample_equals_the_resampled_data():
    y, p, g = softmax_case(12, c=3, n=300)
    ci = bootstrap_group_scores(y, p, g, n_boot=50, seed=4)
    full = group_scores(y, p, g).values
    for k, v in full.items():
        assert ci[k].estimate == v or (math.isnan(v) and math.isnan(ci[k].estimate))
    assert ci["worst_group_auc"].lo < ci["worst_group_auc"].estimate < ci["worst_group_auc"].hi
    # The vectorised resamples: one resample recomputed directly on the drawn samples.
    from equiprune.metrics.group_scores import group_score_samples
    _, samples = group_score_samples(y, [(p, None)], g, 5, 4)
    (idx,) = list(_resample_index_chunks(g, 5, np.random.default_rng(4), True, values=range(2)))
    for r in (0, 3):
        direct = group_scores(y[idx[r]], p[idx[r]], g[idx[r]]).values
        for k in ("auc_g0", "worst_group_acc", "ece_g1", "nll_gap", "fnr_gap", "eodd_at_spec"):
            assert samples[0][k][r] == pytest.approx(direct[k], abs=1e-12), k


def test_two_group_resamples_are_those_of_the_paper_metrics():
    y, p, g = softmax_case(13, c=3, n=300)
    pred = p.argmax(1)
    a = bootstrap_group_scores(y, p, g, n_boot=200, seed=7)
    b = bootstrap_ci(y, pred, g, n_boot=200, seed=7)
    for k in ("acc_g0", "acc_g1"):
        assert (a[k].lo, a[k].hi) == pytest.approx((b[k].lo, b[k].hi), abs=1e-12)


def test_paired_scores_of_a_model_with_itself_are_zero_and_a_worse_calibration_is_detected():
    y, p, g = softmax_case(14, c=2, n=600)
    same = paired_group_scores(y, p, p, g, n_boot=50)
    assert same["ece_g0"].estimate == 0 and same["ece_g0"].lo == same["ece_g0"].hi == 0
    hot = p ** 3 / (p ** 3).sum(1, keepdims=True)     # same ranking, overconfident
    pb = paired_group_scores(y, p, hot, g, n_boot=200)
    assert pb["auc_g0"].estimate == pytest.approx(0.0, abs=1e-12)
    assert pb["ece"].excludes_zero and pb["ece"].estimate > 0
    assert pb["ece"].estimate_b == pytest.approx(group_scores(y, hot, g).values["ece"])


def test_bad_input_is_refused_with_a_clear_message():
    y, p, g = softmax_case(15, c=2, n=50)
    with pytest.raises(MetricsError, match="probabilities"):
        group_scores(y, np.log(p), g)
    with pytest.raises(MetricsError, match="shape"):
        group_scores(y, p[:, 1], g)
    with pytest.raises(MetricsError, match="binning"):
        group_scores(y, p, g, settings=ScoreSettings(binning="quantile"))


def test_paired_run_scores_reads_two_runs_stored_predictions(tmp_path):
    import pandas as pd

    from equiprune.methods.audit import AuditConfig, AuditError
    from equiprune.methods.paired_runs import paired_run_scores

    y, p, g = softmax_case(16, c=3, n=300)
    hot = p ** 3 / (p ** 3).sum(1, keepdims=True)
    for name, probs in (("a", p), ("b", hot)):
        (tmp_path / name).mkdir()
        df = pd.DataFrame({"index": np.arange(300), "y_true": y, "y_pred": probs.argmax(1), "group": g})
        for j in range(3):
            df[f"prob_{j}"] = probs[:, j]
        df.to_csv(tmp_path / name / "predictions_test.csv", index=False)
    got = paired_run_scores(tmp_path / "a", tmp_path / "b", AuditConfig(n_boot=80))
    ref = paired_group_scores(y, p, hot, g, n_boot=80)
    for k in ("worst_group_auc", "ece_gap", "fnr_gap"):
        assert (got[k].estimate, got[k].lo, got[k].hi) == pytest.approx((ref[k].estimate, ref[k].lo, ref[k].hi))
    pd.read_csv(tmp_path / "b" / "predictions_test.csv").drop(columns=["prob_1", "prob_2"]).to_csv(
        tmp_path / "b" / "predictions_test.csv", index=False)
    with pytest.raises(AuditError, match="no class probabilities"):
        paired_run_scores(tmp_path / "a", tmp_path / "b", AuditConfig(n_boot=10))
