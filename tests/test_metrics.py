"""Tests of equiprune.metrics: paper metrics, FATE, multi-group helpers.

Expected numbers come from (a) confusion matrices worked out by hand in the
comments, (b) a deliberately naive loop transcription of docs/METRICS.md written here,
independent of the vectorised code, (c) sklearn and fairlearn.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from equiprune.metrics import (
    METRIC_NAMES,
    MetricsError,
    fate,
    fate_scores,
    group_fairness,
    intersect_groups,
    multigroup_gaps,
    multigroup_table,
)

# ----------------------------------------------------------------- naive reference


def naive_reference(y, p, g, num_classes=None):
    """Direct transcription of docs/METRICS.md with python loops (no numpy vectorisation)."""
    y = [int(v) for v in y]
    p = [int(v) for v in p]
    g = [int(v) for v in g]
    C = num_classes if num_classes is not None else max(max(y), max(p)) + 1

    def div(a, b):
        return a / b if b != 0 else 0.0

    rates = {}  # (group, class) -> (tpr, tnr, fpr, pred_rate)
    for grp in (0, 1):
        rows = [i for i in range(len(y)) if g[i] == grp]
        for c in range(C):
            tp = fn = fp = tn = 0
            npred = 0
            for i in rows:
                if p[i] == c:
                    npred += 1
                if y[i] == c and p[i] == c:
                    tp += 1
                elif y[i] == c and p[i] != c:
                    fn += 1
                elif y[i] != c and p[i] == c:
                    fp += 1
                else:
                    tn += 1
            rates[grp, c] = (div(tp, tp + fn), div(tn, tn + fp), div(fp, tn + fp), div(npred, len(rows)))

    out = {}
    eopp0 = eopp1 = eodd = dp = 0.0
    s_eopp0 = s_eopp1 = s_eodd = s_dp = 0.0
    for c in range(C):
        tpr0, tnr0, fpr0, pr0 = rates[0, c]
        tpr1, tnr1, fpr1, pr1 = rates[1, c]
        eopp0 += abs(tnr0 - tnr1)
        eopp1 += abs(tpr0 - tpr1)
        eodd += abs((tpr0 - tpr1) + (fpr0 - fpr1))
        dp += abs(pr0 - pr1)
        s_eopp0 += tnr0 - tnr1
        s_eopp1 += tpr0 - tpr1
        s_eodd += (tpr0 - tpr1) + (fpr0 - fpr1)
        s_dp += pr0 - pr1
    out["eopp0"] = eopp0 / C
    out["eopp1"] = eopp1 / C
    out["eodd"] = eodd / C / 2
    out["dp"] = dp
    out["eopp0_signed"] = s_eopp0 / C
    out["eopp1_signed"] = s_eopp1 / C
    out["eodd_signed"] = s_eodd / C / 2
    out["dp_signed"] = s_dp
    out["acc"] = sum(a == b for a, b in zip(y, p)) / len(y)
    for grp in (0, 1):
        rows = [i for i in range(len(y)) if g[i] == grp]
        out[f"acc_g{grp}"] = sum(y[i] == p[i] for i in rows) / len(rows)
        out[f"n_g{grp}"] = len(rows)
    out["num_classes"] = C
    out["n"] = len(y)
    return out


def random_case(seed, n=300, C=5, p_correct=0.6, p_g1=0.35, drop_class_in_g1=None):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, n)
    g = (rng.random(n) < p_g1).astype(np.int64)
    p = np.where(rng.random(n) < p_correct, y, rng.integers(0, C, n))
    if drop_class_in_g1 is not None:
        # make one class absent from group 1 (in truth and prediction)
        m = (g == 1) & ((y == drop_class_in_g1) | (p == drop_class_in_g1))
        g[m] = 0
    return y, p, g


# ------------------------------------------------------------------- hand-computed


# Example A, C = 3 (derived from the data: max label/pred = 2).
#   group 0: y = [0, 0, 1, 2], p = [0, 1, 1, 2]
#     class 0: TP1 FN1 FP0 TN2 -> TPR 1/2, TNR 1,   FPR 0
#     class 1: TP1 FN0 FP1 TN2 -> TPR 1,   TNR 2/3, FPR 1/3
#     class 2: TP1 FN0 FP0 TN3 -> TPR 1,   TNR 1,   FPR 0
#     predicted-class rates 1/4, 2/4, 1/4; accuracy 3/4
#   group 1: y = [0, 1, 1, 1], p = [0, 0, 1, 2]
#     class 0: TP1 FN0 FP1 TN2 -> TPR 1,   TNR 2/3, FPR 1/3
#     class 1: TP1 FN2 FP0 TN1 -> TPR 1/3, TNR 1,   FPR 0
#     class 2: TP0 FN0 FP1 TN3 -> TPR 0/0 = 0, TNR 3/4, FPR 1/4
#     predicted-class rates 2/4, 1/4, 1/4; accuracy 2/4
#   dTPR = [-1/2, 2/3, 1], dTNR = [1/3, -1/3, 1/4], dFPR = [-1/3, 1/3, -1/4]
#   eopp1 = (1/2 + 2/3 + 1)/3 = 13/18          eopp1_signed = (-1/2 + 2/3 + 1)/3 = 7/18
#   eopp0 = (1/3 + 1/3 + 1/4)/3 = 11/36        eopp0_signed = (1/4)/3 = 1/12
#   dTPR + dFPR = [-5/6, 1, 3/4]
#   eodd = (5/6 + 1 + 3/4)/3/2 = 31/72         eodd_signed = (-5/6 + 1 + 3/4)/6 = 11/72
#   (|dTPR| + |dFPR| would give 37/72: class 2 has opposite signs, so this
#    distinguishes "add then abs" from "abs then add")
#   dp = |1/4 - 2/4| + |2/4 - 1/4| + 0 = 1/2
#   sklearn macro within group 0 (labels 0,1,2 present):
#     precision (1, 1/2, 1) -> 5/6; recall (1/2, 1, 1) -> 5/6;
#     F1 = 2TP/(true+pred) = (2/3, 2/3, 1) -> 7/9
#   within group 1 (labels 0,1,2 present, 2 only as a prediction):
#     precision (1/2, 1, 0) -> 1/2; recall (1, 1/3, 0) -> 4/9; F1 (2/3, 1/2, 0) -> 7/18
#   overall: y = [0,0,1,2,0,1,1,1], p = [0,1,1,2,0,0,1,2]
#     true counts (3, 4, 1), pred counts (3, 3, 2), TP (2, 2, 1); accuracy 5/8
#     precision (2/3, 2/3, 1/2) -> 11/18; recall (2/3, 1/2, 1) -> 13/18
#     F1 (2/3, 4/7, 2/3) -> 40/63
EX_A = dict(
    y=[0, 0, 1, 2, 0, 1, 1, 1],
    p=[0, 1, 1, 2, 0, 0, 1, 2],
    g=[0, 0, 0, 0, 1, 1, 1, 1],
)
EX_A_EXPECTED = {
    "eopp0": 11 / 36,
    "eopp1": 13 / 18,
    "eodd": 31 / 72,
    "dp": 1 / 2,
    "eopp0_signed": 1 / 12,
    "eopp1_signed": 7 / 18,
    "eodd_signed": 11 / 72,
    "dp_signed": 0.0,
    "acc": 5 / 8,
    "acc_g0": 3 / 4,
    "acc_g1": 1 / 2,
    "precision": 11 / 18,
    "recall": 13 / 18,
    "f1": 40 / 63,
    "precision_g0": 5 / 6,
    "precision_g1": 1 / 2,
    "precision_avg": 2 / 3,
    "precision_diff": 1 / 3,
    "recall_g0": 5 / 6,
    "recall_g1": 4 / 9,
    "recall_avg": 23 / 36,
    "recall_diff": 7 / 18,
    "f1_g0": 7 / 9,
    "f1_g1": 7 / 18,
    "f1_avg": 7 / 12,
    "f1_diff": 7 / 18,
    "num_classes": 3,
    "n": 8,
    "n_g0": 4,
    "n_g1": 4,
}


def test_hand_computed_every_metric():
    r = group_fairness(EX_A["y"], EX_A["p"], EX_A["g"])
    d = r.to_dict()
    assert list(d) == list(METRIC_NAMES)
    assert set(EX_A_EXPECTED) == set(d)
    for k, v in EX_A_EXPECTED.items():
        assert d[k] == pytest.approx(v, abs=1e-12), k
    # per-class arrays (rows = group) for plotting
    np.testing.assert_allclose(r.tpr, [[1 / 2, 1, 1], [1, 1 / 3, 0]], atol=1e-12)
    np.testing.assert_allclose(r.tnr, [[1, 2 / 3, 1], [2 / 3, 1, 3 / 4]], atol=1e-12)
    np.testing.assert_allclose(r.fpr, [[0, 1 / 3, 0], [1 / 3, 0, 1 / 4]], atol=1e-12)
    np.testing.assert_allclose(r.ppr, [[1 / 4, 1 / 2, 1 / 4], [1 / 2, 1 / 4, 1 / 4]], atol=1e-12)
    np.testing.assert_array_equal(r.support, [[2, 1, 1], [1, 3, 0]])


# Example B: a class absent from group 1, and C from the data vs num_classes.
#   group 0: y = [0, 1], p = [0, 1];  group 1: y = [0, 0], p = [0, 0]; C = 2
#   group 0: class 0 TPR 1 TNR 1 FPR 0; class 1 TPR 1 TNR 1 FPR 0
#   group 1: class 0 TP2 FN0 FP0 TN0 -> TPR 1, TNR 0/0 = 0, FPR 0/0 = 0
#            class 1 TP0 FN0 FP0 TN2 -> TPR 0/0 = 0, TNR 1, FPR 0
#   eopp1 = (0 + 1)/2 = 1/2, eopp0 = (1 + 0)/2 = 1/2, eodd = (0 + 1)/2/2 = 1/4
#   dp = |1/2 - 1| + |1/2 - 0| = 1
#   with num_classes = 4 the extra classes have TPR 0, TNR 1, FPR 0 in both groups,
#   so they add zero gaps but enter the means: eopp1 = 1/4, eopp0 = 1/4, eodd = 1/8.
#   sklearn macro F1 of group 1 averages over the labels present there ({0}) -> 1.
EX_B = dict(y=[0, 1, 0, 0], p=[0, 1, 0, 0], g=[0, 0, 1, 1])


def test_absent_class_still_counts_and_num_classes_dilutes():
    r = group_fairness(EX_B["y"], EX_B["p"], EX_B["g"])
    assert r.num_classes == 2
    assert (r.eopp1, r.eopp0, r.eodd, r.dp) == pytest.approx((1 / 2, 1 / 2, 1 / 4, 1.0))
    assert r.f1_g1 == pytest.approx(1.0)  # not 1/2: sklearn ignores the absent label
    assert r.precision_g1 == pytest.approx(1.0)
    r4 = group_fairness(EX_B["y"], EX_B["p"], EX_B["g"], num_classes=4)
    assert r4.num_classes == 4
    assert (r4.eopp1, r4.eopp0, r4.eodd, r4.dp) == pytest.approx((1 / 4, 1 / 4, 1 / 8, 1.0))
    # accuracy-type numbers do not depend on C
    assert r4.f1_g1 == r.f1_g1 and r4.acc == r.acc


def test_c_comes_from_predictions_too():
    # labels only 0/1 but a prediction of class 3: C = 4, classes 2 and 3 enter the means
    y = [0, 1, 0, 1]
    p = [0, 1, 3, 1]
    g = [0, 0, 1, 1]
    assert group_fairness(y, p, g).num_classes == 4
    ref = naive_reference(y, p, g)
    assert group_fairness(y, p, g).eopp0 == pytest.approx(ref["eopp0"], abs=1e-12)


# ------------------------------------------------------------ naive loop reference


@pytest.mark.parametrize(
    "seed,C,drop,num_classes",
    [(0, 2, None, None), (1, 3, None, None), (2, 5, None, None), (3, 7, 2, None),
     (4, 4, 3, None), (5, 5, None, 8), (6, 6, 0, 9)],
)
def test_matches_naive_reference(seed, C, drop, num_classes):
    y, p, g = random_case(seed, C=C, drop_class_in_g1=drop)
    if drop is not None:
        assert not np.any((g == 1) & (y == drop))  # the quirk is really exercised
    ref = naive_reference(y, p, g, num_classes)
    got = group_fairness(y, p, g, num_classes=num_classes).to_dict()
    for k, v in ref.items():
        assert abs(got[k] - v) < 1e-12, (k, got[k], v)


def test_sklearn_precision_recall_f1_semantics():
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    for seed in range(6):
        # small groups so that some labels are missing from a group's y_true or y_pred
        y, p, g = random_case(seed, n=40, C=6, p_correct=0.4, drop_class_in_g1=seed % 6)
        r = group_fairness(y, p, g)
        for grp in (0, 1):
            m = g == grp
            pr, rc, f1, _ = precision_recall_fscore_support(
                y[m], p[m], average="macro", zero_division=0
            )
            assert getattr(r, f"precision_g{grp}") == pytest.approx(pr, abs=1e-12)
            assert getattr(r, f"recall_g{grp}") == pytest.approx(rc, abs=1e-12)
            assert getattr(r, f"f1_g{grp}") == pytest.approx(f1, abs=1e-12)
            assert getattr(r, f"acc_g{grp}") == pytest.approx(accuracy_score(y[m], p[m]), abs=1e-12)
        pr, rc, f1, _ = precision_recall_fscore_support(y, p, average="macro", zero_division=0)
        assert (r.precision, r.recall, r.f1) == pytest.approx((pr, rc, f1), abs=1e-12)
        assert r.f1_avg == pytest.approx((r.f1_g0 + r.f1_g1) / 2)
        assert r.recall_diff == pytest.approx(abs(r.recall_g0 - r.recall_g1))


def test_per_class_rates_match_fairlearn():
    from fairlearn.metrics import MetricFrame, false_positive_rate, true_positive_rate

    y, p, g = random_case(11, n=500, C=4)
    r = group_fairness(y, p, g)
    for c in range(4):
        mf = MetricFrame(
            metrics={"tpr": true_positive_rate, "fpr": false_positive_rate},
            y_true=(y == c).astype(int),
            y_pred=(p == c).astype(int),
            sensitive_features=g,
        )
        bg = mf.by_group
        for grp in (0, 1):
            assert r.tpr[grp, c] == pytest.approx(bg.loc[grp, "tpr"], abs=1e-12)
            assert r.fpr[grp, c] == pytest.approx(bg.loc[grp, "fpr"], abs=1e-12)
            assert r.tnr[grp, c] == pytest.approx(1 - bg.loc[grp, "fpr"], abs=1e-12)


# ------------------------------------------------------------- binary identities


@pytest.mark.parametrize("seed", range(5))
def test_binary_identities(seed):
    y, p, g = random_case(100 + seed, n=400, C=2, p_correct=0.5)
    # rates of the positive class computed here from masks, not from the result
    def rates(grp):
        m = g == grp
        pos, neg = m & (y == 1), m & (y == 0)
        tpr = np.sum(pos & (p == 1)) / np.sum(pos)
        tnr = np.sum(neg & (p == 0)) / np.sum(neg)
        return tpr, tnr, 1 - tnr

    (tpr0, tnr0, fpr0), (tpr1, tnr1, fpr1) = rates(0), rates(1)
    r = group_fairness(y, p, g)
    assert r.num_classes == 2
    expected_eopp = (abs(tpr0 - tpr1) + abs(tnr0 - tnr1)) / 2
    assert r.eopp0 == pytest.approx(expected_eopp, abs=1e-12)
    assert r.eopp1 == pytest.approx(expected_eopp, abs=1e-12)
    assert r.eodd == pytest.approx(abs((tpr0 - tpr1) + (fpr0 - fpr1)) / 2, abs=1e-12)
    # for C = 2 the two per-class dp terms are equal
    pr0, pr1 = np.mean(p[g == 0] == 1), np.mean(p[g == 1] == 1)
    assert r.dp == pytest.approx(2 * abs(pr0 - pr1), abs=1e-12)
    assert abs(r.dp_signed) < 1e-12


def test_signed_variants_flip_when_groups_swap():
    y, p, g = random_case(7, C=4)
    a = group_fairness(y, p, g)
    b = group_fairness(y, p, 1 - g)
    for k in ("eopp0", "eopp1", "eodd"):
        assert getattr(b, f"{k}_signed") == pytest.approx(-getattr(a, f"{k}_signed"), abs=1e-12)
        assert getattr(b, k) == pytest.approx(getattr(a, k), abs=1e-12)
    assert a.acc_g0 == pytest.approx(b.acc_g1)
    assert a.eopp1_signed != 0  # the check above is not 0 == -0


# ------------------------------------------------------------------ inputs/errors


def test_torch_and_list_inputs():
    torch = pytest.importorskip("torch")
    y, p, g = random_case(3, C=4)
    ref = group_fairness(y, p, g).to_dict()
    assert group_fairness(y.tolist(), p.tolist(), g.tolist()).to_dict() == ref
    assert group_fairness(torch.tensor(y), torch.tensor(p), torch.tensor(g)).to_dict() == ref
    # bool groups and float class indices that are whole numbers are accepted
    assert group_fairness(y.astype(float), p, g.astype(bool)).to_dict() == ref


@pytest.mark.parametrize(
    "kwargs,fragment",
    [
        (dict(y_true=[0, 1, 1], y_pred=[0, 1], groups=[0, 1, 1]), "same length"),
        (dict(y_true=[], y_pred=[], groups=[]), "empty"),
        (dict(y_true=[0, 1, 1], y_pred=[0, 1, 0], groups=[1, 1, 1]), "only group 1"),
        (dict(y_true=[0, 1, 1], y_pred=[0, 1, 0], groups=[0, 1, 2]), "multigroup"),
        (dict(y_true=[0, -1, 1], y_pred=[0, 1, 0], groups=[0, 1, 1]), ">= 0"),
        (dict(y_true=[0, 1, 1], y_pred=[0.5, 1, 0], groups=[0, 1, 1]), "integer"),
        (dict(y_true=[0, 1, 1], y_pred=np.ones((3, 4)), groups=[0, 1, 1]), "argmax"),
        (dict(y_true=["a", "b"], y_pred=[0, 1], groups=[0, 1]), "integer"),
        (dict(y_true=[0, 3, 1], y_pred=[0, 1, 0], groups=[0, 1, 1], num_classes=3), "num_classes"),
    ],
)
def test_errors(kwargs, fragment):
    with pytest.raises(MetricsError, match=fragment):
        group_fairness(**kwargs)
    assert issubclass(MetricsError, ValueError)


# ------------------------------------------------------------------------- FATE


def test_fate_formula_and_errors():
    # (0.8 - 0.75)/0.75 - 1 * (0.05 - 0.10)/0.10 = 1/15 + 1/2
    assert fate(0.8, 0.75, 0.05, 0.10) == pytest.approx(1 / 15 + 0.5)
    assert fate(0.8, 0.75, 0.05, 0.10, lam=2.0) == pytest.approx(1 / 15 + 1.0)
    # a fairer but less accurate model can still lose
    assert fate(0.5, 0.75, 0.09, 0.10) < 0
    with pytest.raises(MetricsError, match="fc_b is 0"):
        fate(0.8, 0.75, 0.05, 0.0)
    with pytest.raises(MetricsError, match="acc_b is 0"):
        fate(0.8, 0.0, 0.05, 0.1)
    with pytest.raises(MetricsError, match="finite"):
        fate(float("nan"), 0.7, 0.05, 0.1)


def test_fate_scores_uses_macro_f1():
    y, p, g = random_case(20, C=4, p_correct=0.5)
    base = group_fairness(y, p, g)
    better = np.where(g == 1, y, p)  # fix group 1 entirely
    mit = group_fairness(y, better, g)
    s = fate_scores(mit, base)
    assert set(s) == {"fate_eopp0", "fate_eopp1", "fate_eodd"}
    expected = (mit.f1 - base.f1) / base.f1 - (mit.eodd - base.eodd) / base.eodd
    assert s["fate_eodd"] == pytest.approx(expected)
    assert all(math.isfinite(v) for v in s.values())


# ------------------------------------------------------------------ multi-group


def test_multigroup_table_matches_sklearn_and_two_group_metrics():
    from sklearn.metrics import precision_recall_fscore_support

    rng = np.random.default_rng(5)
    n, C = 600, 4
    y = rng.integers(0, C, n)
    grp = rng.integers(0, 6, n)  # six Fitzpatrick types
    p = np.where(rng.random(n) < 0.3 + 0.12 * grp, y, rng.integers(0, C, n))
    names = [f"FST{i + 1}" for i in range(6)]
    t = multigroup_table(y, p, grp, group_names=names)
    assert list(t.index) == list(range(6))
    assert list(t["name"]) == names
    for k in range(6):
        m = grp == k
        pr, rc, f1, _ = precision_recall_fscore_support(y[m], p[m], average="macro", zero_division=0)
        assert t.loc[k, "n"] == m.sum()
        assert t.loc[k, "accuracy"] == pytest.approx(np.mean(y[m] == p[m]))
        assert (t.loc[k, "precision"], t.loc[k, "recall"], t.loc[k, "f1"]) == pytest.approx((pr, rc, f1))

    gaps = multigroup_gaps(y, p, grp, group_names=names)
    # pairwise numbers are the paper metrics of the pair with C from the full data
    for _, row in gaps.pairwise.iterrows():
        a, b = int(row.group_a), int(row.group_b)
        m = (grp == a) | (grp == b)
        two = group_fairness(y[m], p[m], (grp[m] == b).astype(int), num_classes=C)
        for k in ("eopp0", "eopp1", "eodd", "dp", "eopp0_signed", "eodd_signed"):
            assert row[k] == pytest.approx(getattr(two, k), abs=1e-12), (a, b, k)
    assert len(gaps.pairwise) == 15
    # max-min gap and worst pair, checked against the table directly
    acc = t["accuracy"]
    g_acc = gaps.gaps.loc["accuracy"]
    assert g_acc["gap"] == pytest.approx(acc.max() - acc.min())
    assert (g_acc["group_a"], g_acc["group_b"]) == (acc.idxmax(), acc.idxmin())
    assert g_acc["group_a"] == 5 and g_acc["group_b"] == 0  # accuracy rises with the type
    worst = gaps.pairwise.loc[gaps.pairwise["eopp1"].idxmax()]
    assert gaps.gaps.loc["eopp1", "gap"] == pytest.approx(worst["eopp1"])
    assert gaps.gaps.loc["eopp1", "name_a"] == worst["name_a"]


def test_multigroup_min_group_size_and_errors():
    y = [0, 1, 0, 1, 1, 0, 1]
    p = [0, 1, 1, 1, 0, 0, 1]
    grp = [0, 0, 0, 1, 1, 1, 2]
    gaps = multigroup_gaps(y, p, grp, min_group_size=2)
    assert 2 in gaps.table.index  # kept in the table
    assert set(gaps.pairwise["group_a"]) | set(gaps.pairwise["group_b"]) == {0, 1}
    with pytest.raises(MetricsError, match="at least two groups"):
        multigroup_gaps(y, p, grp, min_group_size=4)


def test_intersect_groups():
    tone = np.array([0, 1, 2, 2, 0, 1])
    sex = np.array(["f", "m", "m", "f", "m", "f"])
    ig = intersect_groups(tone, sex, names_a=["light", "mid", "dark"])
    # sorted distinct values: tone (0, 1, 2), sex ("f", "m") -> id = 2 * tone + (sex == "m")
    np.testing.assert_array_equal(ig.ids, 2 * tone + (sex == "m"))
    assert ig.names == ["light|f", "light|m", "mid|f", "mid|m", "dark|f", "dark|m"]
    assert [ig.names[i] for i in ig.ids[:2]] == ["light|f", "mid|m"]
    with pytest.raises(MetricsError, match="same length"):
        intersect_groups(tone, sex[:3])
