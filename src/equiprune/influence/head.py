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
break the Hessian below; the fit is a few lines of scipy L-BFGS polished by
Newton steps so that leave-one-out refits agree with the influence estimate.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize

# Heads with at most this many parameters get a dense Hessian and Cholesky;
# larger ones (e.g. Fitzpatrick-17k's 114 classes) use conjugate gradients.
DENSE_LIMIT = 5000


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


def hessian(Zt: np.ndarray, P: np.ndarray, lam: float, sw: np.ndarray | None = None) -> np.ndarray:
    """Dense ``sum_i w_i (diag p_i - p_i p_i^T) (x) z_i z_i^T + lam I`` in row-major vec(W) order."""
    n, d1 = Zt.shape
    C = P.shape[1]
    sw = np.ones(n) if sw is None else sw
    H = np.empty((C * d1, C * d1))
    for a in range(C):
        for b in range(a, C):
            coef = sw * ((P[:, a] if a == b else 0.0) - P[:, a] * P[:, b])
            block = (Zt * coef[:, None]).T @ Zt
            H[a * d1:(a + 1) * d1, b * d1:(b + 1) * d1] = block
            if b != a:
                H[b * d1:(b + 1) * d1, a * d1:(a + 1) * d1] = block.T
    H[np.diag_indices_from(H)] += lam
    return H


def hvp(V: np.ndarray, Zt: np.ndarray, P: np.ndarray, lam: float, sw: np.ndarray | None = None) -> np.ndarray:
    """Hessian-vector product without forming H: O(n * classes * features)."""
    A = Zt @ V.T                                   # (n, C): z_i . v_c
    B = P * A - P * (P * A).sum(axis=1, keepdims=True)
    if sw is not None:
        B = B * sw[:, None]
    return B.T @ Zt + lam * V


def hessian_diagonal(Zt: np.ndarray, P: np.ndarray, lam: float, sw: np.ndarray | None = None) -> np.ndarray:
    coef = P * (1.0 - P)
    if sw is not None:
        coef = coef * sw[:, None]
    return (coef.T @ (Zt ** 2)) + lam


def fit_head(X: np.ndarray, y: np.ndarray, num_classes: int, lam: float = 1.0,
             sample_weight: np.ndarray | None = None, init: LogisticHead | None = None,
             newton_steps: int = 3) -> LogisticHead:
    """Fit the L2 multinomial logistic head to convergence.

    ``init`` warm-starts (and reuses the standardisation of) an earlier head,
    which is what leave-one-out refits and trimming retrains want: the head's
    input space stays the same, only the weights move.
    """
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
    sw = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    res = optimize.minimize(_objective, head.W.ravel(), args=(Zt, Y, sw, lam), jac=True, method="L-BFGS-B",
                            options={"maxiter": 5000, "gtol": 1e-9, "ftol": 1e-15})
    w = res.x
    if head.num_params <= DENSE_LIMIT:  # polish: L-BFGS stops short of the exact optimum LOO needs
        for _ in range(newton_steps):
            _, g = _objective(w, Zt, Y, sw, lam)
            if np.abs(g).max() < 1e-10:
                break
            P = softmax(Zt @ w.reshape(num_classes, -1).T)
            w = w - np.linalg.solve(hessian(Zt, P, lam, sw), g)
    head.W = w.reshape(num_classes, -1)
    return head
