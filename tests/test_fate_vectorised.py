"""One FATE (scalar and per resample) and one list of gap metrics, shared by the audit, the table and the CLI."""
from __future__ import annotations

import numpy as np
import pytest

from equiprune.metrics import (FAIR_CRITERIA, FATE_CRITERIA, GAP_LABELS, GAP_METRICS, MetricsError,
                               bootstrap_samples, fate, fate_array, fate_samples, fate_scores_or_undefined,
                               group_fairness)


def test_fate_array_is_fate_elementwise_and_nan_where_undefined(rng):
    acc_m, acc_b = rng.uniform(0.3, 0.9, 50), rng.uniform(0.3, 0.9, 50)
    fc_m, fc_b = rng.uniform(0.0, 0.3, 50), rng.uniform(0.01, 0.3, 50)
    fc_b[:5] = 0.0
    acc_b[5:8] = 0.0
    out = fate_array(acc_m, acc_b, fc_m, fc_b, lam=0.7)
    assert np.isnan(out[:8]).all()
    for i in range(8, 50):
        assert out[i] == pytest.approx(fate(acc_m[i], acc_b[i], fc_m[i], fc_b[i], lam=0.7), rel=1e-12)
    with pytest.raises(MetricsError):
        fate(acc_m[0], acc_b[0], fc_m[0], fc_b[0])


def test_fate_samples_pair_resamples_and_undefined_criteria_give_none(rng):
    y = rng.integers(0, 3, 300)
    g = rng.integers(0, 2, 300)
    pm = np.where(rng.random(300) < 0.7, y, rng.integers(0, 3, 300))
    pb = np.where(rng.random(300) < 0.6, y, rng.integers(0, 3, 300))
    sm = bootstrap_samples(y, pm, g, n_boot=30, seed=1)
    sb = bootstrap_samples(y, pb, g, n_boot=30, seed=1)
    s = fate_samples(sm, sb, lam=1.0)
    assert list(s) == [f"fate_{fc}" for fc in FATE_CRITERIA]
    i = 3
    assert s["fate_eodd"][i] == pytest.approx(fate(sm["f1"][i], sb["f1"][i], sm["eodd"][i], sb["eodd"][i]))
    m, b = group_fairness(y, pm, g), group_fairness(y, pb, g)
    scores, why = fate_scores_or_undefined(m, b)
    assert why == {} and scores["fate_eopp1"] == pytest.approx(fate(m.f1, b.f1, m.eopp1, b.eopp1))
    # A baseline that is exactly fair on every criterion: FATE is undefined there, with the reason.
    perfect = group_fairness(y, y, g)
    scores, why = fate_scores_or_undefined(m, perfect)
    assert all(v is None for v in scores.values()) and set(why) == set(scores)
    assert "fc_b is 0" in why["fate_eodd"]


def test_one_list_of_gap_metrics_behind_the_cli_choices():
    from equiprune.cli import build_parser

    assert FAIR_CRITERIA == ("eodd", "eopp0", "eopp1") and set(FAIR_CRITERIA) == set(FATE_CRITERIA)
    assert set(GAP_METRICS) <= set(GAP_LABELS)
    parser = build_parser()
    import argparse

    def subparsers(p):
        return next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)).choices

    prune = subparsers(subparsers(parser)["prune"])

    def choices(p, flag):
        return tuple(next(a for a in p._actions if flag in a.option_strings).choices)

    assert choices(prune["scp"], "--fair-metric") == FAIR_CRITERIA
    assert choices(prune["fairprune"], "--fair-metric") == FAIR_CRITERIA
    assert choices(prune["cut-response"], "--fair-metric") == GAP_METRICS
