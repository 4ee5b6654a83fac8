"""SNNL-Fair channel scores and the simple baselines."""
from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from equiprune.scoring import (ScoringError, l1_channel_scores, random_channel_scores, snnl_fair_batch,
                               snnl_fair_scores)


# --- direct implementations, following the formula text literally (one channel, loops over i, j) ---

def _direct_reference(feats: np.ndarray, groups: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    b, k = feats.shape[:2]
    out = np.zeros(k)
    for c in range(k):
        m = [feats[i, c].reshape(-1).astype(np.float64) for i in range(b)]
        losses = []
        for i in range(b):
            num = 0.0
            den = 0.0
            for j in range(b):
                cos = float(m[i] @ m[j]) / (max(np.linalg.norm(m[i]), 1e-12) * max(np.linalg.norm(m[j]), 1e-12))
                e = math.exp(-(1.0 - cos) / temperature)
                if groups[j] == groups[i]:
                    num += e  # j == i included
                if j != i:
                    den += e
            losses.append(-math.log((num + 1e-9) / den))
        out[c] = sum(losses) / b
    return out


def _direct_paper(feats: np.ndarray, groups: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    b, k = feats.shape[:2]
    out = np.zeros(k)
    for c in range(k):
        m = [feats[i, c].reshape(-1).astype(np.float64) for i in range(b)]
        losses = []
        for i in range(b):
            # Decimal arithmetic: exp(-d) of large d is far below float range but exact here.
            num = Decimal(0)
            den = Decimal(0)
            for j in range(b):
                if j == i:
                    continue
                e = (-Decimal(float(np.sum((m[i] - m[j]) ** 2))) / Decimal(temperature)).exp()
                den += e
                if groups[j] == groups[i]:
                    num += e
            if any(groups[j] == groups[i] for j in range(b) if j != i):
                losses.append(-float((num / den).ln()))
        out[c] = sum(losses) / len(losses)
    return out


def _random_batch(seed: int, b: int = 12, k: int = 5, hw: int = 3, scale: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(b, k, hw, hw, generator=g) * scale
    groups = torch.tensor([0, 1] * (b // 2))[torch.randperm(b, generator=g)]
    return feats, groups


def test_reference_matches_direct_formula():
    feats, groups = _random_batch(0)
    feats[:, 2] = 0.0  # an all-zero map: normalised to zero, self-distance 1
    got = snnl_fair_batch(feats, groups, variant="reference").numpy()
    want = _direct_reference(feats.numpy(), groups.numpy())
    assert got.shape == (5,)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_reference_with_temperature_matches_direct_formula():
    feats, groups = _random_batch(1)
    got = snnl_fair_batch(feats, groups, variant="reference", temperature=0.3).numpy()
    np.testing.assert_allclose(got, _direct_reference(feats.numpy(), groups.numpy(), 0.3), atol=1e-5, rtol=0)


@pytest.mark.parametrize("temperature", [1.0, 7.5])
def test_paper_matches_direct_formula(temperature):
    # Small-scale features keep exp(-d) representable in the direct float64 loop.
    feats, groups = _random_batch(2, scale=0.4)
    got = snnl_fair_batch(feats, groups, variant="paper", temperature=temperature).numpy()
    np.testing.assert_allclose(got, _direct_paper(feats.numpy(), groups.numpy(), temperature), atol=1e-5, rtol=0)


def test_paper_leaves_out_a_sample_alone_in_its_group():
    feats, _ = _random_batch(3, b=10, scale=0.4)
    feats = feats[:9]
    groups = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2])  # group 2 has a single member
    got = snnl_fair_batch(feats, groups, variant="paper").numpy()
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, _direct_paper(feats.numpy(), groups.numpy()), atol=1e-5, rtol=0)


def test_paper_large_distances_stay_finite_and_exact():
    # Squared distances of ~100-400: exp(-d) underflows float32, so a naive ratio would give 0/0.
    feats, groups = _random_batch(4, scale=6.0)
    naive = torch.exp(-torch.cdist(feats[:, 0].flatten(1), feats[:, 0].flatten(1)) ** 2)
    assert (naive[~torch.eye(12, dtype=torch.bool)] == 0).all()
    got = snnl_fair_batch(feats, groups, variant="paper").numpy()
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, _direct_paper(feats.numpy(), groups.numpy()), rtol=1e-4)


def test_one_group_batch_follows_reference_code():
    feats, _ = _random_batch(5)
    groups = torch.zeros(12, dtype=torch.long)
    got = snnl_fair_batch(feats, groups, variant="reference").numpy()
    np.testing.assert_allclose(got, _direct_reference(feats.numpy(), groups.numpy()), atol=1e-5, rtol=0)
    # numerator = denominator + the self term, so the loss is negative
    assert np.all(got < 0)


@pytest.mark.parametrize("variant", ["reference", "paper"])
def test_group_separating_channel_scores_lower_than_noise(variant):
    g = torch.Generator().manual_seed(6)
    b = 32
    groups = torch.tensor([0, 1] * (b // 2))
    feats = torch.randn(b, 2, 4, 4, generator=g) * 0.3
    # channel 0: a group-specific pattern plus noise; channel 1: noise only
    patterns = torch.randn(2, 4, 4, generator=g)
    feats[:, 0] += patterns[groups]
    scores = snnl_fair_batch(feats, groups, variant=variant)
    assert scores[0] < scores[1]


@pytest.mark.parametrize("variant", ["reference", "paper"])
def test_channel_permutation_permutes_scores(variant):
    feats, groups = _random_batch(7, k=8, scale=0.5)
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(0))
    base = snnl_fair_batch(feats, groups, variant=variant)
    permuted = snnl_fair_batch(feats[:, perm], groups, variant=variant)
    torch.testing.assert_close(permuted, base[perm], atol=1e-6, rtol=0)


@pytest.mark.parametrize("variant", ["reference", "paper"])
def test_chunking_does_not_change_scores(variant):
    feats, groups = _random_batch(8, k=7, scale=0.5)
    whole = snnl_fair_batch(feats, groups, variant=variant)
    chunked = snnl_fair_batch(feats, groups, variant=variant, chunk_size=3)
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=0)


def test_bad_inputs_raise_clear_errors():
    feats, groups = _random_batch(9)
    with pytest.raises(ScoringError, match="variant"):
        snnl_fair_batch(feats, groups, variant="euclid")  # type: ignore[arg-type]
    with pytest.raises(ScoringError, match="one entry per sample"):
        snnl_fair_batch(feats, groups[:-1])
    with pytest.raises(ScoringError, match="temperature"):
        snnl_fair_batch(feats, groups, temperature=0.0)
    with pytest.raises(ScoringError, match="no sample shares"):
        snnl_fair_batch(feats[:3], torch.tensor([0, 1, 2]), variant="paper")


# --- dataset-level scores ---

class _ItemDataset(Dataset):
    def __init__(self, n: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.images = torch.randn(n, 3, 8, 8, generator=g)
        self.labels = torch.randint(0, 2, (n,), generator=g)
        self.groups = torch.tensor([i % 2 for i in range(n)])
        self.groups[0] = 1

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], int(self.labels[i]), int(self.groups[i]), i


class _Head(nn.Module):
    """Counts calls so the test can tell whether the forward ran past the scored layer."""

    def __init__(self):
        super().__init__()
        self.calls = 0
        self.fc = nn.Linear(4 * 6 * 6, 2)

    def forward(self, x):
        self.calls += 1
        return self.fc(x.flatten(1))


def _tiny_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), _Head())


def _expected(model, data, starts_stops, variant):
    with torch.no_grad():
        per_batch = [snnl_fair_batch(model[0](data.images[a:b]), data.groups[a:b], variant=variant).double()
                     for a, b in starts_stops]
    return torch.stack(per_batch).mean(0).numpy()


@pytest.mark.parametrize("variant", ["reference", "paper"])
def test_dataset_scores_average_fixed_order_batches_and_drop_last(variant):
    model, data = _tiny_model(), _ItemDataset(10)
    model.train()
    got = snnl_fair_scores(model, "0", data, variant=variant, batch_size=4, progress=False)
    assert got.dtype == np.float64 and got.shape == (4,)
    np.testing.assert_allclose(got, _expected(model, data, [(0, 4), (4, 8)], variant), atol=1e-6)
    assert model.training, "the model's train/eval mode must be restored"
    assert model[2].calls == 0, "the forward must stop after the scored layer"

    kept_tail = snnl_fair_scores(model, "0", data, variant=variant, batch_size=4, drop_last=False,
                                 progress=False)
    if variant == "reference":
        np.testing.assert_allclose(kept_tail, _expected(model, data, [(0, 4), (4, 8), (8, 10)], variant),
                                   atol=1e-6)
        assert not np.allclose(kept_tail, got)
    else:
        # the tail holds groups [0, 1]: no sample has a same-group neighbour, Eq. 1 is undefined,
        # so the batch is skipped
        assert data.groups[8:].tolist() == [0, 1]
        np.testing.assert_allclose(kept_tail, got, atol=1e-12)


def test_dataset_scores_errors():
    model, data = _tiny_model(), _ItemDataset(6)
    with pytest.raises(ScoringError, match="fewer than one scoring batch.*--score-batch-size"):
        snnl_fair_scores(model, "0", data, batch_size=8, progress=False)
    with pytest.raises(ScoringError, match="no layer"):
        snnl_fair_scores(model, "features.3", data, batch_size=4, progress=False)


# --- simple scores ---

def test_l1_scores_are_filter_l1_norms():
    conv = nn.Conv2d(2, 3, 3)
    with torch.no_grad():
        conv.weight.copy_(torch.arange(54, dtype=torch.float32).reshape(3, 2, 3, 3) - 30.0)
    model = nn.Sequential(conv)
    got = l1_channel_scores(model, "0")
    want = [sum(abs(v - 30.0) for v in range(18 * c, 18 * (c + 1))) for c in range(3)]
    np.testing.assert_allclose(got, want)
    with pytest.raises(ScoringError):
        l1_channel_scores(nn.Sequential(nn.ReLU()), "0")


def test_random_scores_reproducible():
    a, b, c = random_channel_scores(16, 1), random_channel_scores(16, 1), random_channel_scores(16, 2)
    assert a.shape == (16,) and np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.min() >= 0 and a.max() < 1


# --- premise check: scores against shuffled groups ---

class _PatternDataset(Dataset):
    """8 noise channels; channels 0 and 1 alone carry a group-specific spatial pattern."""

    def __init__(self, n: int = 256, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.groups = torch.randint(0, 2, (n,), generator=g)
        self.images = torch.randn(n, 8, 4, 4, generator=g)
        patterns = torch.randn(2, 2, 4, 4, generator=g) * 3
        self.images[:, :2] += patterns[self.groups]

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, i: int):
        return self.images[i], 0, int(self.groups[i]), i


def test_null_check_finds_the_group_channel_and_keeps_the_real_scores():
    from equiprune.scoring import snnl_null_check

    model, data = nn.Sequential(nn.Identity()), _PatternDataset()
    check = snnl_null_check(model, "0", data, batch_size=64, progress=False, draws=6, quantile=0.05)
    plain = snnl_fair_scores(model, "0", data, batch_size=64, progress=False)
    np.testing.assert_array_equal(check.scores, plain)
    assert check.null_scores.shape == (6, 8)
    assert check.scores[:2].max() < check.threshold  # the pattern channels are beyond chance
    assert 2 <= check.separating <= 4 and check.expected == pytest.approx(0.4)
    # shuffled groups score near the real noise channels, far above the pattern channels
    assert abs(check.null_scores.mean() - check.scores[2:].mean()) < 0.02
    again = snnl_null_check(model, "0", data, batch_size=64, progress=False, draws=6, quantile=0.05)
    np.testing.assert_array_equal(again.null_scores, check.null_scores)
    assert check.sentence("0").startswith(f"{check.separating} of 8 channels of 0 separate the groups")
    assert check.advice() == ""  # two channels of eight carry the groups: SCP's premise holds
    with pytest.raises(ScoringError, match="draws"):
        snnl_null_check(model, "0", data, batch_size=64, progress=False, draws=0)


def test_null_check_advice_names_a_failed_premise():
    from equiprune.scoring import SNNLNullCheck

    def check(separating, k=100):
        return SNNLNullCheck(scores=np.zeros(k), null_scores=np.zeros((2, k)), quantile=0.01, threshold=0.0,
                             separating=separating, expected=0.01 * k)

    assert "noise" in check(1).advice()
    assert check(10).advice() == ""
    assert "most channels carry the groups" in check(80).advice()
