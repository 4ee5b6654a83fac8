"""A small deep clustering model trained here: an autoencoder, then DEC (Xie et al. 2016).

The thesis attacks CC, MiCE, NNM, SCAN, SPICE and RUC on CIFAR/STL (§2.3);
none of their weights can be fetched here and none trains on two shared CPU
cores, so the attacked model is the classic DEC recipe at toy size: an MLP
autoencoder on the pixels (reconstruction loss), k-means on its codes to place
k centroids, then a few epochs of DEC's self-training, which sharpens the
soft assignments q_ij = (1 + ||z_i - mu_j||^2)^-1 / sum_j' (...) towards the
target p_ij = (q_ij^2 / f_j) / sum_j' (...) by KL(P || Q) (Q's gradient only).

The memberships q are what a score-based attacker sees (the thesis's M);
their argmax is what a decision-based attacker sees (L).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.cluster import KMeans
from torch import nn

from .cfc import _soft_assign


@dataclass
class DeepClusterConfig:
    k: int = 10
    hidden: int = 256
    latent: int = 10
    ae_epochs: int = 40          # 1,000 MNIST images: NMI 0.50 with these settings, 0.40 with batches of 128
    dec_epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0


class DeepClusterer(nn.Module):
    """Encoder (MLP on the flattened image), decoder, and k centroids in the code space."""

    def __init__(self, shape: tuple[int, ...], cfg: DeepClusterConfig) -> None:
        super().__init__()
        self.shape = tuple(shape)
        d = int(np.prod(shape))
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(d, cfg.hidden), nn.ReLU(),
                                     nn.Linear(cfg.hidden, cfg.latent))
        self.decoder = nn.Sequential(nn.Linear(cfg.latent, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, d),
                                     nn.Sigmoid())
        self.centroids = nn.Parameter(torch.zeros(cfg.k, cfg.latent))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Soft cluster memberships (rows sum to 1)."""
        return _soft_assign(self.encoder(x), self.centroids)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x)).view(-1, *self.shape)


def dec_target(q: torch.Tensor) -> torch.Tensor:
    """DEC's sharpened target: p_ij proportional to q_ij^2 / (sum_i q_ij)."""
    p = q ** 2 / q.sum(0, keepdim=True)
    return (p / p.sum(1, keepdim=True)).detach()


def _batches(n: int, size: int, gen: torch.Generator):
    order = torch.randperm(n, generator=gen)
    return [order[i:i + size] for i in range(0, n, size)]


def train_deep_clusterer(X: np.ndarray, cfg: DeepClusterConfig | None = None) -> DeepClusterer:
    """Autoencoder pre-training, k-means initialisation of the centroids, DEC self-training."""
    cfg = cfg or DeepClusterConfig()
    if cfg.k < 2 or cfg.k > len(X):
        raise ValueError(f"k must be between 2 and the number of images ({len(X)}); got {cfg.k}")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    x = torch.as_tensor(X, dtype=torch.float32)
    model = DeepClusterer(x.shape[1:], cfg)
    opt = torch.optim.Adam(list(model.encoder.parameters()) + list(model.decoder.parameters()), lr=cfg.lr)
    for _ in range(cfg.ae_epochs):
        for idx in _batches(len(x), cfg.batch_size, gen):
            loss = nn.functional.mse_loss(model.reconstruct(x[idx]), x[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        z = model.encoder(x).numpy()
    km = KMeans(n_clusters=cfg.k, n_init=10, random_state=cfg.seed).fit(z)
    model.centroids.data = torch.tensor(km.cluster_centers_, dtype=torch.float32)
    fine_tune_dec(model, x, cfg.dec_epochs, cfg, gen)
    return model.eval()


def fine_tune_dec(model: DeepClusterer, x: torch.Tensor, epochs: int, cfg: DeepClusterConfig,
                  gen: torch.Generator, perturb=None) -> None:
    """DEC self-training: KL(P || Q) with P recomputed from the clean images each epoch.

    `perturb(x) -> x'` (the adversarial-retraining defense) adds the same loss
    on perturbed copies, with the *clean* images' target: a perturbed image
    should stay in its image's cluster.
    """
    params = list(model.encoder.parameters()) + [model.centroids]
    opt = torch.optim.Adam(params, lr=cfg.lr * 0.1)
    for _ in range(epochs):
        with torch.no_grad():
            target = dec_target(model(x))
        for idx in _batches(len(x), cfg.batch_size, gen):
            loss = nn.functional.kl_div(model(x[idx]).log(), target[idx], reduction="batchmean")
            if perturb is not None:
                loss = loss + nn.functional.kl_div(model(perturb(x[idx])).log(), target[idx], reduction="batchmean")
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()


def cluster_labels(model: DeepClusterer, X: np.ndarray | torch.Tensor, batch: int = 1024) -> np.ndarray:
    x = torch.as_tensor(X, dtype=torch.float32)
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch]).argmax(1) for i in range(0, len(x), batch)]).numpy()
