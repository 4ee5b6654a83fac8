"""The head's Hessian: built densely, applied to vectors, and solved.

The summed Hessian of the head's objective is

    H = sum_i w_i (diag p_i - p_i p_i^T) (x) z_i z_i^T + lam I

(row-major vec(W) order: block (a, b) is ``sum_i w_i (d_ab p_ia - p_ia p_ib) z_i z_i^T``).
Influence solves it once per impact function, and the head's Newton polish
solves it too, so it is built and factorised once per fitted head and every
right-hand side reuses the factor (:class:`HessianSolver`).

The dense build is the expensive step (O(n d^2 C^2 / 2)), so it uses two
exact savings: every off-diagonal block is ``-A^T A`` with
``A = sqrt(w p_a p_b) * Z`` (a symmetric rank-n update, BLAS ``syrk``, half
the work of a general product), and each diagonal block is minus the sum of
the off-diagonal blocks of its row (the rows of ``diag p - p p^T`` sum to
zero), so it costs nothing. For two classes that is a single ``syrk``.
Beyond ``DENSE_LIMIT`` parameters (e.g. Fitzpatrick-17k's 114 classes: a
dense H would take 25 GiB) H is only applied, to vectors, by conjugate
gradients.
"""
from __future__ import annotations

import numpy as np
from scipy import linalg
from scipy.linalg import blas
from scipy.sparse.linalg import LinearOperator, cg

# Heads with at most this many parameters get a dense Hessian and Cholesky;
# larger ones (e.g. Fitzpatrick-17k's 114 classes) use conjugate gradients.
DENSE_LIMIT = 5000


def _weights(n: int, sw: np.ndarray | None) -> np.ndarray:
    return np.ones(n) if sw is None else np.asarray(sw, dtype=np.float64)


def hessian(Zt: np.ndarray, P: np.ndarray, lam: float, sw: np.ndarray | None = None) -> np.ndarray:
    """Dense ``sum_i w_i (diag p_i - p_i p_i^T) (x) z_i z_i^T + lam I`` in row-major vec(W) order.

    Sample weights must be non-negative (they are: deletion is weight 0,
    down-weighting a weight in (0, 1]); the square roots below rely on it.
    """
    n, d1 = Zt.shape
    C = P.shape[1]
    sw = _weights(n, sw)
    if (sw < 0).any():
        raise ValueError("sample weights must be non-negative")
    H = np.zeros((C * d1, C * d1))
    Zf = np.asfortranarray(Zt.T)      # (d1, n): syrk(trans=0) of a scaled copy gives Z^T diag(s^2) Z
    for a in range(C):
        for b in range(a + 1, C):
            s = np.sqrt(sw * P[:, a] * P[:, b])
            upper = blas.dsyrk(-1.0, Zf * s, trans=0, lower=0)   # -sum_i w p_a p_b z z^T, upper triangle
            block = np.triu(upper) + np.triu(upper, 1).T
            H[a * d1:(a + 1) * d1, b * d1:(b + 1) * d1] = block
            H[b * d1:(b + 1) * d1, a * d1:(a + 1) * d1] = block
            H[a * d1:(a + 1) * d1, a * d1:(a + 1) * d1] -= block
            H[b * d1:(b + 1) * d1, b * d1:(b + 1) * d1] -= block
    H[np.diag_indices_from(H)] += lam
    return H


def hvp(V: np.ndarray, Zt: np.ndarray, P: np.ndarray, lam: float, sw: np.ndarray | None = None) -> np.ndarray:
    """Hessian-vector product without forming H: O(n * classes * features)."""
    A = Zt @ V.T                                   # (n, C): z_i . v_c
    B = P * A - P * (P * A).sum(axis=1, keepdims=True)
    if sw is not None:
        B = B * sw[:, None]
    return B.T @ Zt + lam * V


def hvp_many(U: np.ndarray, Zt: np.ndarray, P: np.ndarray, lam: float, sw: np.ndarray | None,
             shape: tuple[int, int]) -> np.ndarray:
    """Hessian-vector products for a stack of flattened vectors (k, C * d1): two matrix products for all k."""
    k = len(U)
    C, d1 = shape
    V = U.reshape(k * C, d1)
    A = (Zt @ V.T).reshape(len(Zt), k, C)                       # z_i . v_kc
    B = P[:, None, :] * (A - (P[:, None, :] * A).sum(axis=2, keepdims=True))
    if sw is not None:
        B = B * np.asarray(sw)[:, None, None]
    return (B.reshape(len(Zt), k * C).T @ Zt).reshape(k, C * d1) + lam * U


def hessian_diagonal(Zt: np.ndarray, P: np.ndarray, lam: float, sw: np.ndarray | None = None) -> np.ndarray:
    coef = P * (1.0 - P)
    if sw is not None:
        coef = coef * sw[:, None]
    return (coef.T @ (Zt ** 2)) + lam


class HessianSolver:
    """Solves ``H u = b`` for a fitted head: one dense Cholesky reused for every b, or conjugate gradients.

    ``kind``: auto (dense up to DENSE_LIMIT parameters, else cg), dense or cg.
    """

    def __init__(self, Zt: np.ndarray, P: np.ndarray, lam: float, sw: np.ndarray | None, kind: str = "auto",
                 tol: float = 1e-8) -> None:
        self.shape = P.shape[1], Zt.shape[1]
        d = self.shape[0] * self.shape[1]
        self.kind = ("dense" if d <= DENSE_LIMIT else "cg") if kind == "auto" else kind
        self.tol = tol
        self.exact: tuple | None = None   # (Zt, P, lam, sw) of the head the factor is refined for, if another one
        if self.kind == "dense":
            self.factor = linalg.cho_factor(hessian(Zt, P, lam, sw), overwrite_a=True, check_finite=False)
        else:
            self.op = LinearOperator((d, d), dtype=np.float64,
                                     matvec=lambda v: hvp(v.reshape(self.shape), Zt, P, lam, sw).ravel())
            diag = hessian_diagonal(Zt, P, lam, sw).ravel()
            self.precond = LinearOperator((d, d), dtype=np.float64, matvec=lambda v: v / diag)

    def refined_at(self, Zt: np.ndarray, P: np.ndarray, lam: float, sw: np.ndarray | None) -> "HessianSolver":
        """Use this dense factor for the Hessian at a nearby head (probabilities `P`), refining every solve.

        A Newton step moves the head a little after H was factorised. Rather
        than factorising again, each solve is corrected by iterative
        refinement, ``u += H_old^{-1} (b - H_new u)``, with exact
        Hessian-vector products at the new head: if no logit moved by more
        than s, ``H_old`` and ``H_new`` agree within a factor ``exp(+-2s)``,
        so each refinement shrinks the error by about 2s (a few steps reach
        machine precision for the s <= 1e-3 this is used for).
        """
        if self.kind != "dense":
            raise ValueError("only a dense factor is refined; build a new CG solver at the new head")
        self.exact = (Zt, P, lam, sw)
        return self

    def solve(self, b: np.ndarray) -> np.ndarray:
        """``H^{-1} b`` for one right-hand side of the head's shape (classes, features + 1)."""
        return self.solve_many(b[None])[0]

    def solve_many(self, B: np.ndarray) -> np.ndarray:
        """``H^{-1} b`` for a stack of right-hand sides, (k, classes, features + 1); dense: one triangular pass."""
        B = np.asarray(B, dtype=np.float64)
        flat = B.reshape(len(B), -1)
        if self.kind == "dense":
            U = linalg.cho_solve(self.factor, flat.T, check_finite=False).T
            for _ in range(8 if self.exact is not None else 0):   # refinement only for a factor of a nearby H
                R = flat - hvp_many(U, *self.exact, shape=self.shape)
                if np.abs(R).max() <= 1e-13 * np.abs(flat).max():
                    break
                U = U + linalg.cho_solve(self.factor, R.T, check_finite=False).T
            return U.reshape(B.shape)
        out = []
        for b in flat:
            u, info = cg(self.op, b, rtol=self.tol, maxiter=2000, M=self.precond)
            if info > 0:
                raise RuntimeError("conjugate gradients did not converge in 2000 steps; raise --lam")
            out.append(u)
        return np.asarray(out).reshape(B.shape)
