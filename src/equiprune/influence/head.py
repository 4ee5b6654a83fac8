"""The convex surrogate head that influence functions need.

Influence functions (Koh & Liang 2017; thesis §4.2.2) assume a strictly convex,
twice-differentiable training loss. An image network is neither, so, as the
thesis does for its MLPs, equiprune fits a multinomial logistic regression with
an L2 penalty on *fixed* features (a run's penultimate layer, or a user's
feature table) and computes influence for that head only.

The objective is the **sum** of per-sample cross-entropies plus
``lam / 2 * ||W||^2`` over every weight, bias included (the bias is a constant
feature, so the softmax's redundant direction is pinned by the penalty and the
Hessian is positive definite). The Hessian is therefore the *summed* one, which
is what makes the sign convention hold: ``I(-x_i) ~ f(without x_i) - f(all)``.

sklearn's LogisticRegression is not used because it switches to a sigmoid
parameterisation for two classes and drops absent classes, both of which would
break the Hessian; the fit is a few lines of scipy L-BFGS, polished by Newton
steps only when it stopped short of the optimum that leave-one-out refits and
influence need. "Short" is measured, not guessed: the objective is
lam-strongly convex, so ``||W - W*|| <= ||grad|| / lam`` and no training logit
is further than ``max_i ||z_i|| * ||grad|| / lam`` from its value at the exact
optimum; the polish runs while that bound exceeds ``logit_tol``. The
Hessian a Newton step factorises is handed on to influence
(:func:`fit_head_with_solver`), so a head is factorised once, not once for
the polish and again for the impact functions.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize

from .hessian import HessianSolver

# A dense Hessian factorised before a Newton step that moved no logit further
# than this still serves the new head, with refined solves (hessian.py).
REUSE_SHIFT = 1e-3


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class LogisticHead:
    """A fitted head: ``W`` is (classes, features + 1); the last column is the bias.

    ``mean``/``scale`` standardise the raw features with the training split's
    statistics (part of the head, so influence is for the standardised head).
    """

    W: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    lam: float

    @property
    def num_classes(self) -> int:
        return self.W.shape[0]

    @property
    def num_params(self) -> int:
        return self.W.size

    def augment(self, X: np.ndarray) -> np.ndarray:
        """Standardised features with a constant 1 appended (the bias input)."""
        Z = (np.asarray(X, dtype=np.float64) - self.mean) / self.scale
        return np.hstack([Z, np.ones((Z.shape[0], 1))])

    def proba(self, X: np.ndarray) -> np.ndarray:
        return softmax(self.augment(X) @ self.W.T)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.proba(X).argmax(axis=1)


def _objective(w_flat: np.ndarray, Zt: np.ndarray, Y: np.ndarray, sw: np.ndarray, lam: float
               ) -> tuple[float, np.ndarray]:
    W = w_flat.reshape(Y.shape[1], Zt.shape[1])
    logits = Zt @ W.T
    m = logits.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(logits - m).sum(axis=1))
    loss = float(np.dot(sw, lse - (logits * Y).sum(axis=1)) + 0.5 * lam * np.dot(w_flat, w_flat))
    P = np.exp(logits - lse[:, None])
    grad = ((P - Y) * sw[:, None]).T @ Zt + lam * W
    return loss, grad.ravel()


def logit_error_bound(grad: np.ndarray, z_norm_max: float, lam: float) -> float:
    """Largest possible distance of any training logit from its value at the exact optimum.

    Strong convexity (modulus lam) gives ``||W - W*||_2 <= ||grad||_2 / lam``;
    Cauchy-Schwarz turns that into ``|z_i . (w_c - w*_c)| <= ||z_i|| ||grad|| / lam``
    (`z_norm_max` is the largest ``||z_i||``).
    """
    return float(z_norm_max * np.linalg.norm(grad) / lam)


def _fit(X: np.ndarray, y: np.ndarray, num_classes: int, lam: float, sample_weight: np.ndarray | None,
         init: LogisticHead | None, newton_steps: int, logit_tol: float, solver: str, cg_tol: float
         ) -> tuple[LogisticHead, np.ndarray, HessianSolver | None, float]:
    """The fitted head, its training inputs, the last Newton step's solver (or None) and how far that step moved the logits."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if lam <= 0:
        raise ValueError(f"the head's L2 strength must be positive (got {lam}); it keeps the Hessian invertible")
    if init is not None:
        mean, scale = init.mean, init.scale
    else:
        mean = X.mean(axis=0)
        scale = X.std(axis=0)
        scale[scale < 1e-12] = 1.0
    head = LogisticHead(np.zeros((num_classes, X.shape[1] + 1)) if init is None else init.W.copy(), mean, scale, lam)
    Zt = head.augment(X)
    Y = np.eye(num_classes)[y]
    sw = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if sw is not None and (sw < 0).any():
        raise ValueError("sample weights must be non-negative")
    sw_or_one = np.ones(len(y)) if sw is None else sw
    res = optimize.minimize(_objective, head.W.ravel(), args=(Zt, Y, sw_or_one, lam), jac=True, method="L-BFGS-B",
                            options={"maxiter": 5000, "gtol": 1e-9, "ftol": 1e-15})
    w, shape = res.x, head.W.shape
    hess, shift = None, np.inf
    z_norm_max = float(np.sqrt(np.einsum("ij,ij->i", Zt, Zt).max()))
    for _ in range(newton_steps):
        _, g = _objective(w, Zt, Y, sw_or_one, lam)
        if logit_error_bound(g, z_norm_max, lam) <= logit_tol:
            break
        hess = HessianSolver(Zt, softmax(Zt @ w.reshape(shape).T), lam, sw, solver, cg_tol)
        step = hess.solve(g.reshape(shape))
        w = w - step.ravel()
        shift = float(np.abs(Zt @ step.T).max())  # how far the logits moved since this Hessian was built
    head.W = w.reshape(shape)
    return head, Zt, hess, shift


def fit_head(X: np.ndarray, y: np.ndarray, num_classes: int, lam: float = 1.0,
             sample_weight: np.ndarray | None = None, init: LogisticHead | None = None,
             newton_steps: int = 3, logit_tol: float = 1e-6) -> LogisticHead:
    """Fit the L2 multinomial logistic head to convergence (every training logit within `logit_tol` of the optimum).

    ``init`` warm-starts (and reuses the standardisation of) an earlier head,
    which is what leave-one-out refits and trimming retrains want: the head's
    input space stays the same, only the weights move.
    """
    # Nobody reuses this polish's Hessian, so it is inexact Newton by conjugate gradients (each step shrinks
    # the gradient about 1e4-fold for a few Hessian-vector products) instead of a dense build per refit.
    return _fit(X, y, num_classes, lam, sample_weight, init, newton_steps, logit_tol, "cg", 1e-4)[0]


def fit_head_with_solver(X: np.ndarray, y: np.ndarray, num_classes: int, lam: float = 1.0,
                         sample_weight: np.ndarray | None = None, solver: str = "auto", cg_tol: float = 1e-8,
                         newton_steps: int = 3, logit_tol: float = 1e-6) -> tuple[LogisticHead, HessianSolver]:
    """`fit_head` plus a Hessian solver at the fitted head, for influence.

    If the Newton polish factorised a dense H and its step moved no logit by
    more than `REUSE_SHIFT`, that factor is reused, its solves refined with
    exact Hessian-vector products at the fitted head
    (:meth:`HessianSolver.refined_at`); otherwise H is built once at the
    fitted head. So one factorisation per call (unless the polish needed a
    second Newton step).
    """
    head, Zt, hess, shift = _fit(X, y, num_classes, lam, sample_weight, None, newton_steps, logit_tol, solver,
                                 cg_tol)
    P = softmax(Zt @ head.W.T)
    if hess is not None and hess.kind == "dense" and shift <= REUSE_SHIFT:
        return head, hess.refined_at(Zt, P, lam, sample_weight)
    return head, HessianSolver(Zt, P, lam, sample_weight, solver, cg_tol)
