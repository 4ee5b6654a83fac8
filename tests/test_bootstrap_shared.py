"""bootstrap_ci and paired_bootstrap share one resample-and-percentile path: pin what they must agree on."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from equiprune.metrics import METRIC_NAMES, bootstrap_ci, bootstrap_samples, paired_bootstrap


def _case(seed: int, n0: int = 300, n1: int = 120, c: int = 4):
    rng = np.random.default_rng(seed)
    g = np.r_[np.zeros(n0, np.int64), np.ones(n1, np.int64)]
    y = rng.integers(0, c, n0 + n1)
    a = np.where(rng.random(n0 + n1) < np.where(g == 0, 0.85, 0.6), y, rng.integers(0, c, n0 + n1))
    b = np.where(rng.random(n0 + n1) < 0.3, y, a)  # b fixes some of a's errors
    return y, a, b, g


def _pct(x: np.ndarray, alpha: float) -> tuple[float, float]:
    lo, hi = np.percentile(x[~np.isnan(x)], [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


@pytest.mark.parametrize("stratify", [True, False])
def test_ci_is_the_percentile_interval_of_bootstrap_samples(stratify):
    y, a, _, g = _case(1)
    ci = bootstrap_ci(y, a, g, n_boot=300, seed=7, alpha=0.1, stratify=stratify)
    s = bootstrap_samples(y, a, g, n_boot=300, seed=7, stratify=stratify)
    for k in METRIC_NAMES:
        assert (ci[k].lo, ci[k].hi) == pytest.approx(_pct(s[k], 0.1), abs=1e-12), k
        assert ci[k].std == pytest.approx(float(np.nanstd(s[k])), abs=1e-12), k


def test_paired_is_b_minus_a_on_the_same_resamples():
    y, a, b, g = _case(2)
    res = paired_bootstrap(y, a, b, g, n_boot=300, seed=3, alpha=0.05)
    sa = bootstrap_samples(y, a, g, n_boot=300, seed=3)
    sb = bootstrap_samples(y, b, g, n_boot=300, seed=3)
    ca, cb = bootstrap_ci(y, a, g, n_boot=300, seed=3), bootstrap_ci(y, b, g, n_boot=300, seed=3)
    for k in METRIC_NAMES:
        r = res[k]
        assert (r.lo, r.hi) == pytest.approx(_pct(sb[k] - sa[k], 0.05), abs=1e-12), k
        assert r.estimate_a == ca[k].estimate and r.estimate_b == cb[k].estimate, k
        assert r.estimate == pytest.approx(cb[k].estimate - ca[k].estimate, abs=1e-15), k
    # b fixes errors of a, so its accuracy gain is positive and the interval says so.
    assert res["acc"].estimate > 0 and res["acc"].lo > 0 and res["acc"].excludes_zero


def test_lost_group_warning_names_the_callers_file():
    y, a, b, g = _case(3, n0=80, n1=1)
    for call in (lambda: bootstrap_ci(y, a, g, n_boot=100, stratify=False),
                 lambda: paired_bootstrap(y, a, b, g, n_boot=100, stratify=False),
                 lambda: bootstrap_samples(y, a, g, n_boot=100, stratify=False)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call()
        assert [w.filename for w in caught if issubclass(w.category, RuntimeWarning)] == [__file__]
