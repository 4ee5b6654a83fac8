"""The GAN-based black-box evasion attack on deep clustering (thesis §2.3, S9), and adversarial retraining.

A generator G maps an image x to a perturbation delta = G(x); a discriminator
D tells clean images from perturbed ones. With M_i the clean memberships
(one query per image before the attack) and C the black box:

* L_attack = E ||M_i - C(x_i + G(x_i))||                       (to maximise)
* L_constraint = E min{eps - ||G(x_i)||, 0}                    (<= 0; 0 inside the budget)
* L_gan = E [log D(x_i) + log(1 - D(x_i + G(x_i)))]
* max_D min_G  L_gan - alpha_a L_attack - alpha_c L_constraint  (the thesis's saddle point)

C is a black box, so the gradient of L_attack with respect to the perturbed
image is estimated from queries (`blackbox.nes_gradient`) and chained into
G; ``gradient="exact"`` backpropagates through a model the attacker owns (a
local surrogate, §2.4). ``mode="decision"`` sees labels only: M_i and C(.)
are one-hot rows. The thesis gives alpha_a, alpha_c and eps only in an
appendix of its source paper; the defaults here are ours.

Applied perturbations are G(x) scaled back onto the eps-ball (L2) and the
image kept in [0, 1], so the reported norm never exceeds the budget.

The defense (`adversarial_retrain`) is the thesis's footnote 7: fine-tune the
model with its DEC loss also on the generator's adversarial images, then
attack it again with a fresh generator (an adaptive attacker). RUC, the
robust add-on the thesis evaluates, is not built.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from sklearn import metrics as skm
from torch import nn

from .blackbox import BlackBox, membership_distance, nes_gradient
from .metrics import unsupervised_accuracy


@dataclass
class DeepAttackConfig:
    eps: float = 3.0              # L2 budget of a perturbation (pixels in [0, 1])
    mode: str = "score"           # score (memberships) or decision (labels only)
    gradient: str = "nes"         # nes (queries only) or exact (a surrogate the attacker owns)
    alpha_attack: float = 10.0
    alpha_constraint: float = 10.0
    steps: int = 300
    batch_size: int = 64
    lr: float = 1e-3
    nes_samples: int = 10
    nes_sigma: float = 0.05
    nes_resolution: int | None = 8
    width: int = 16               # generator / discriminator channels
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.eps > 0:
            raise ValueError(f"the perturbation budget eps must be positive (got {self.eps}): with eps = 0 no image "
                             "can change; pass --eps, e.g. 3.0 for 28 x 28 images in [0, 1]")
        if self.mode not in ("score", "decision"):
            raise ValueError(f"--mode must be score or decision (got {self.mode!r})")
        if self.gradient not in ("nes", "exact"):
            raise ValueError(f"gradient must be nes or exact (got {self.gradient!r})")
        if self.steps < 1:
            raise ValueError(f"--steps must be at least 1 (got {self.steps})")


class Generator(nn.Module):
    def __init__(self, channels: int, width: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(width, channels, 3, padding=1), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.25 * self.net(x)


class Discriminator(nn.Module):
    def __init__(self, channels: int, width: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
                                 nn.Conv2d(width, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


def attack_losses(reference: torch.Tensor, memberships: torch.Tensor, delta: torch.Tensor, d_real: torch.Tensor,
                  d_fake: torch.Tensor, eps: float, alpha_attack: float, alpha_constraint: float) -> dict[str, torch.Tensor]:
    """The thesis's three losses and the saddle-point objective, each a batch mean."""
    norms = delta.flatten(1).norm(dim=1)
    l_attack = membership_distance(reference, memberships).mean()
    l_constraint = torch.clamp(eps - norms, max=0.0).mean()
    l_gan = (torch.log(d_real + 1e-12) + torch.log(1 - d_fake + 1e-12)).mean()
    return {"attack": l_attack, "constraint": l_constraint, "gan": l_gan,
            "objective": l_gan - alpha_attack * l_attack - alpha_constraint * l_constraint}


def project(delta: torch.Tensor, eps: float) -> torch.Tensor:
    """Scale each perturbation back onto the L2 ball of radius eps."""
    norms = delta.flatten(1).norm(dim=1).clamp(min=1e-12)
    return delta * torch.clamp(eps / norms, max=1.0).view(-1, *([1] * (delta.dim() - 1)))


def perturb(generator: Generator, x: torch.Tensor, eps: float) -> torch.Tensor:
    return (x + project(generator(x), eps)).clamp(0, 1)


def scores(y: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {"nmi": float(skm.normalized_mutual_info_score(y, labels)),
            "ari": float(skm.adjusted_rand_score(y, labels)), "acc": unsupervised_accuracy(y, labels)}


@dataclass
class DeepAttackResult:
    mode: str
    before: dict[str, float]       # NMI / ARI / ACC of the clean images' clusters against the labels
    after: dict[str, float]        # the same for the adversarial images
    changed: float                 # share of images whose cluster changed
    queries: int                   # batched queries to the black box while training G
    image_queries: int
    mean_norm: float
    max_norm: float
    clusters_after: int            # clusters still used (the thesis's "clustering breakdown")
    changed_random: float = float("nan")   # the control: random directions of the same norms
    history: list[dict[str, float]] = field(default_factory=list)
    generator: Generator | None = field(default=None, repr=False)

    def summary(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("generator")
        d.pop("history")
        return d


def train_generator(box: BlackBox, X: np.ndarray, cfg: DeepAttackConfig, model: nn.Module | None = None,
                    progress: bool = False) -> tuple[Generator, list[dict[str, float]]]:
    """Solve the saddle point by alternating Adam steps on D and G; `model` only for gradient='exact'."""
    if cfg.gradient == "exact" and model is None:
        raise ValueError("gradient='exact' needs the surrogate model itself")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    x_all = torch.as_tensor(X, dtype=torch.float32)
    reference = torch.cat([box(x_all[i:i + cfg.batch_size]) for i in range(0, len(x_all), cfg.batch_size)])
    G, D = Generator(x_all.shape[1], cfg.width), Discriminator(x_all.shape[1], cfg.width)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr)
    history = []
    steps = range(cfg.steps)
    if progress:
        from tqdm import tqdm
        steps = tqdm(steps, desc=f"{cfg.mode}-based attack", unit="step")
    for step in steps:
        idx = torch.randint(len(x_all), (min(cfg.batch_size, len(x_all)),), generator=gen)
        x, ref = x_all[idx], reference[idx]
        delta = G(x)
        x_adv = (x + delta).clamp(0, 1)
        # D ascends L_gan
        loss_d = -(torch.log(D(x) + 1e-12) + torch.log(1 - D(x_adv.detach()) + 1e-12)).mean()
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        # G descends L_gan - a_a L_attack - a_c L_constraint
        if cfg.gradient == "exact":
            memberships = model(x_adv)
            if cfg.mode == "decision":   # labels only: a straight-through one-hot keeps a gradient
                hard = nn.functional.one_hot(memberships.argmax(1), memberships.shape[1]).float()
                memberships = hard + memberships - memberships.detach()
            terms = attack_losses(ref, memberships, delta, D(x), D(x_adv), cfg.eps, cfg.alpha_attack,
                                  cfg.alpha_constraint)
            loss_g = terms["objective"]
        else:
            with torch.no_grad():
                memberships = box(x_adv)
                grad = nes_gradient(box, x_adv, ref, cfg.nes_samples, cfg.nes_sigma, cfg.nes_resolution, gen)
            terms = attack_losses(ref, memberships, delta, D(x), D(x_adv), cfg.eps, cfg.alpha_attack,
                                  cfg.alpha_constraint)
            # the attack term's value is from queries; its gradient reaches G through the NES estimate
            surrogate = (grad * x_adv).flatten(1).sum(1).mean()
            loss_g = terms["objective"] - cfg.alpha_attack * (surrogate - surrogate.detach())
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        history.append({"step": step, "queries": box.queries, **{k: float(v.detach()) for k, v in terms.items()}})
    return G.eval(), history


def adversarial_images(G: Generator, X: np.ndarray, eps: float, batch: int = 512) -> torch.Tensor:
    x = torch.as_tensor(X, dtype=torch.float32)
    with torch.no_grad():
        return torch.cat([perturb(G, x[i:i + batch], eps) for i in range(0, len(x), batch)])


def random_like(X: np.ndarray, x_adv: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The control: each image moved in a random direction by its adversarial perturbation's norm."""
    x = torch.as_tensor(X, dtype=torch.float32)
    u = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    norms = (x_adv - x).flatten(1).norm(dim=1)
    u = u / u.flatten(1).norm(dim=1).view(-1, *([1] * (x.dim() - 1))) * norms.view(-1, *([1] * (x.dim() - 1)))
    return (x + u).clamp(0, 1)


def evaluate(model: nn.Module, G: Generator, X: np.ndarray, y: np.ndarray, eps: float) -> dict[str, Any]:
    """The defender's measurement (not counted as queries): scores before/after, changed share, norms,
    and the share changed by random perturbations of the same norms (the control)."""
    from .deep_model import cluster_labels
    x = torch.as_tensor(X, dtype=torch.float32)
    x_adv = adversarial_images(G, X, eps)
    before, after = cluster_labels(model, x), cluster_labels(model, x_adv)
    rand = cluster_labels(model, random_like(X, x_adv))
    norms = (x_adv - x).flatten(1).norm(dim=1)
    return {"before": scores(y, before), "after": scores(y, after), "changed": float((before != after).mean()),
            "mean_norm": float(norms.mean()), "max_norm": float(norms.max()),
            "clusters_after": int(len(np.unique(after))), "changed_random": float((before != rand).mean())}


def run_deep_attack(model: nn.Module, X: np.ndarray, y: np.ndarray, cfg: DeepAttackConfig,
                    progress: bool = False) -> DeepAttackResult:
    """Attack `model` through a black box in cfg.mode, then score its clusters before and after."""
    k = int(model.centroids.shape[0]) if hasattr(model, "centroids") else None
    if cfg.mode == "decision":
        box = BlackBox.from_labels(lambda x: model(x).argmax(1), k)
    else:
        box = BlackBox(lambda x: model(x), k)
    G, history = train_generator(box, X, cfg, model=model if cfg.gradient == "exact" else None, progress=progress)
    e = evaluate(model, G, X, y, cfg.eps)
    return DeepAttackResult(cfg.mode, e["before"], e["after"], e["changed"], box.queries, box.images,
                            e["mean_norm"], e["max_norm"], e["clusters_after"], e["changed_random"], history, G)


def adversarial_retrain(model: nn.Module, G: Generator, X: np.ndarray, eps: float, epochs: int = 5,
                        seed: int = 0) -> nn.Module:
    """The defense: DEC fine-tuning with the generator's adversarial images kept in their clean clusters."""
    import copy

    from .deep_model import DeepClusterConfig, fine_tune_dec
    defended = copy.deepcopy(model)
    G = G.eval()
    fine_tune_dec(defended, torch.as_tensor(X, dtype=torch.float32), epochs, DeepClusterConfig(seed=seed),
                  torch.Generator().manual_seed(seed), perturb=lambda xb: perturb(G, xb, eps).detach())
    return defended
