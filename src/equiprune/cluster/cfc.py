"""Consensus Fair Clustering (CFC), the thesis's defense against the flip attack (§4.1.4–4.1.5, S6).

Stage 1, consensus: r basic partitions, each k-means on a random subset of the
samples and features (then applied to every sample), summed into the
co-association matrix S_uv = number of partitions that put u and v together.
A few poisoned memberships rarely decide a subset's clustering, and the
partitions do not read the groups at all.

Stage 2, a fair graph embedding (Graph-MLP style: an MLP, no message passing)
trained with three losses:

* contrastive (Eq. 4.2): positives weighted by the R-hop co-association
  gamma = (S / r)^R, cosine similarity with temperature;
* fair clustering (Eq. 4.3): Student-t soft assignments P to learnable
  centroids and a per-group DEC target Q (q ~ p^2 / f_g, with f_g the group's
  soft cluster sizes), KL(Q || P) per group with Q detached (the code's DEC
  convention; the thesis writes KL(P || Q), see thesis-systems.md §7.8);
* structure preservation (Eq. 4.4): per group, the squared difference between
  P P^T and J J^T, J the one-hot labels of SFD, so the embedding cannot
  collapse.

Hard labels are argmax P. Where the thesis and its code differ the code is
followed (the contrastive temperature as exp(sim / temperature) with the code's
default 1.0; 400 epochs; Adam, lr 0.01, weight decay 5e-4; encoder Linear ->
GELU -> LayerNorm -> Dropout(0.6) -> Linear). The n x n matrices are dense:
memory ~ 16 float32 n x n buffers (64 n^2 bytes; 57 n^2 measured at 1,500 points), refused above
``max_memory_gb``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.cluster import KMeans

from .algorithms import Clustering, sfd


@dataclass
class CFCConfig:
    partitions: int = 100        # r
    sample_fraction: float = 0.7
    feature_fraction: float = 0.7
    hops: int = 2                # R
    alpha: float = 10.0          # fair-clustering loss weight (DIGITS setting)
    beta: float = 50.0           # structure-preservation loss weight (DIGITS setting)
    temperature: float = 1.0
    hidden: int = 256
    dropout: float = 0.6
    epochs: int = 400
    lr: float = 0.01
    weight_decay: float = 5e-4
    max_memory_gb: float = 4.0
    progress: bool = False


def memory_bytes(n: int) -> int:
    """Peak bytes of the dense n x n matrices (S, gamma, similarities, the autograd copies and gradients).

    Measured: the process's peak memory grew by 129 MB for 1,500 points (57 n^2 bytes); 16 float32 buffers
    (64 n^2 bytes) leave a margin.
    """
    return 16 * n * n * 4


def co_association(X: np.ndarray, k: int, cfg: CFCConfig, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n, d = X.shape
    S = np.zeros((n, n), dtype=np.float32)
    for i in range(cfg.partitions):
        rows = rng.choice(n, max(k, int(cfg.sample_fraction * n)), replace=False)
        cols = rng.choice(d, max(1, int(cfg.feature_fraction * d)), replace=False)
        km = KMeans(n_clusters=k, n_init=1, random_state=int(rng.integers(2 ** 31))).fit(X[np.ix_(rows, cols)])
        lab = km.predict(X[:, cols])
        S += (lab[:, None] == lab[None, :])
    return S


def _soft_assign(Z: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    q = 1.0 / (1.0 + torch.cdist(Z, centroids) ** 2)
    return q / q.sum(1, keepdim=True)


def cfc(X: np.ndarray, groups: np.ndarray, k: int, seed: int = 0, cfg: CFCConfig | None = None) -> Clustering:
    cfg = cfg or CFCConfig()
    X = np.asarray(X, np.float32)
    n = len(X)
    need = memory_bytes(n)
    if need > cfg.max_memory_gb * 2 ** 30:
        raise ValueError(f"CFC keeps dense {n} x {n} matrices: about {need / 2 ** 30:.1f} GB for {n} samples, "
                         f"above the limit of {cfg.max_memory_gb:g} GB (CFCConfig.max_memory_gb); subsample to "
                         f"at most {int(np.sqrt(cfg.max_memory_gb * 2 ** 30 / memory_bytes(1)))} samples "
                         "(--max-points on the command line)")
    torch.manual_seed(seed)
    S = torch.from_numpy(co_association(X, k, cfg, seed)) / cfg.partitions
    gamma = torch.linalg.matrix_power(S, cfg.hops)
    gamma.fill_diagonal_(0)
    J = torch.nn.functional.one_hot(torch.from_numpy(sfd(X, groups, k, seed).labels), k).float()
    g = torch.from_numpy(np.asarray(groups))
    gvals = torch.unique(g)
    x = torch.from_numpy(X)
    enc = torch.nn.Sequential(torch.nn.Linear(X.shape[1], cfg.hidden), torch.nn.GELU(),
                              torch.nn.LayerNorm(cfg.hidden), torch.nn.Dropout(cfg.dropout),
                              torch.nn.Linear(cfg.hidden, cfg.hidden))
    with torch.no_grad():
        enc.eval()
        init = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(enc(x).numpy()).cluster_centers_
    centroids = torch.nn.Parameter(torch.tensor(init, dtype=torch.float32))
    opt = torch.optim.Adam(list(enc.parameters()) + [centroids], lr=cfg.lr, weight_decay=cfg.weight_decay)
    eye = torch.eye(n, dtype=torch.bool)
    for _ in range(cfg.epochs):
        enc.train()
        Z = enc(x)
        Zn = torch.nn.functional.normalize(Z, dim=1)
        sim = torch.exp((Zn @ Zn.T) / cfg.temperature).masked_fill(eye, 0.0)
        l_c = -torch.log((gamma * sim).sum(1) / sim.sum(1) + 1e-12).mean()
        P = _soft_assign(Z, centroids)
        l_f = torch.zeros(())
        l_p = torch.zeros(())
        for v in gvals:
            m = g == v
            Pg = P[m]
            f = Pg.sum(0)
            target = (Pg ** 2 / f)
            target = (target / target.sum(1, keepdim=True)).detach()
            l_f = l_f + torch.nn.functional.kl_div(Pg.log(), target, reduction="batchmean") / len(gvals)
            l_p = l_p + ((Pg @ Pg.T - J[m] @ J[m].T) ** 2).mean()
        loss = l_c + cfg.alpha * l_f + cfg.beta * l_p
        opt.zero_grad()
        loss.backward()
        opt.step()
    enc.eval()
    with torch.no_grad():
        labels = _soft_assign(enc(x), centroids).argmax(1).numpy().astype(np.int64)
    centers = np.stack([X[labels == c].mean(0) if (labels == c).any() else np.full(X.shape[1], np.nan)
                        for c in range(k)])
    return Clustering(labels, centers)


from .algorithms import ALGORITHMS  # noqa: E402  (CFC joins the one registry: `cluster attack --algorithm cfc`)

ALGORITHMS["cfc"] = cfc
