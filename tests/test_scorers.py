"""The scorer contract: every scorer is built with its data and called as scorer(model, layer)."""
import numpy as np
import pytest
import torch
from torch import nn

from equiprune.scoring import (ChannelScorer, FixedScores, HessianSaliencyScorer, KnownFirst, L1Scorer, Negated,
                               RandomScorer, ScoringError, SkewnessScorer, SNNLFairScorer, channel_saliency,
                               fairprune_saliency, group_hessians, l1_channel_scores, random_channel_scores,
                               scorer_at, skewness_channel_scores, snnl_fair_scores)
from conftest import TinyGroupDataset


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(6, 3))


@pytest.fixture(scope="module")
def data():
    return TinyGroupDataset(48, size=8, seed=0)


def test_every_scorer_returns_what_its_function_computes(data):
    model = _model()
    scorers = {
        "snnl": (SNNLFairScorer(data, batch_size=16, progress=False),
                 snnl_fair_scores(model, "0", data, batch_size=16, progress=False)),
        "l1": (L1Scorer(), l1_channel_scores(model, "0")),
        "random": (RandomScorer(seed=2), random_channel_scores(6, seed=2000)),
        "skew": (SkewnessScorer(data, batch_size=16, progress=False),
                 skewness_channel_scores(model, "0", data, batch_size=16, progress=False)),
    }
    for name, (scorer, expected) in scorers.items():
        assert isinstance(scorer, ChannelScorer), name
        got = scorer(model, "0")
        assert got.dtype == np.float64 and got.shape == (6,), name
        np.testing.assert_allclose(got, expected, err_msg=name)


def test_hessian_scorer_sums_the_layers_own_saliency_per_channel(data):
    model = _model()
    scorer = HessianSaliencyScorer(data, privileged=1, unprivileged=0, max_samples_per_group=8, batch_size=8,
                                   progress=False)
    hs = group_hessians(model, data, groups=(0, 1), params=["0.weight", "0.bias"], max_samples_per_group=8,
                        batch_size=8, progress=False)
    expected = channel_saliency(fairprune_saliency(model, hs[0], hs[1], beta=0.33), model, "0")
    np.testing.assert_allclose(scorer(model, "0"), expected, rtol=1e-6)
    with pytest.raises(ScoringError, match="privileged"):
        HessianSaliencyScorer(data)


def test_iteration_hook_random_draws_and_known_scores():
    model = _model()
    base = RandomScorer(seed=1)
    first, second = scorer_at(base, 1)(model, "0"), scorer_at(base, 2)(model, "0")
    assert not np.array_equal(first, second)                       # a new draw per iteration
    np.testing.assert_array_equal(first, scorer_at(RandomScorer(seed=1), 1)(model, "0"))  # reproducible
    known = KnownFirst(L1Scorer(), np.arange(6.0), at=1)
    np.testing.assert_array_equal(scorer_at(known, 1)(model, "0"), np.arange(6.0))
    np.testing.assert_array_equal(scorer_at(known, 2)(model, "0"), l1_channel_scores(model, "0"))
    np.testing.assert_array_equal(Negated(FixedScores([1.0, -2.0, 0, 0, 0, 0]))(model, "0")[:2], [-1.0, 2.0])
    with pytest.raises(ScoringError, match="output channels"):
        FixedScores(np.zeros(4))(model, "0")
    plain = lambda m, layer: np.zeros(6)  # noqa: E731 - a bare callable is a scorer too
    assert scorer_at(plain, 3) is plain


def test_skewness_scorer_puts_constant_channels_first(data):
    model = _model()
    with torch.no_grad():  # channel 2 outputs a constant map
        model[0].weight[2].zero_()
    scores = SkewnessScorer(data, batch_size=16, progress=False)(model, "0")
    assert scores[2] == -np.inf and np.isfinite(np.delete(scores, 2)).all()
