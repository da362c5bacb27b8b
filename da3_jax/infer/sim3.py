"""Sim(3) Lie group in JAX for pose graphs: 4x4 matrices, exp / log on sim(3), and a
Levenberg–Marquardt pose-graph optimiser.

Conventions: a Sim(3) element is the 4x4 matrix ``[[s R, t], [0, 1]]`` acting on points as
``x -> s R x + t`` (the ``(s, R, t)`` of `da3_jax.geometry.umeyama`). A tangent vector
``xi = (rho [3], omega [3], sigma)`` is the generator ``[[sigma I + hat(omega), rho], [0, 0]]``;
``exp(xi) = [[e^sigma exp(hat(omega)), V rho], [0, 1]]`` with
``V = sum_k (sigma I + hat(omega))^k / (k + 1)!`` (the series is summed to 24 terms: smooth, no
small-angle branches, exact to float64 rounding for ``|sigma|, |omega| < pi``).

The optimiser works in float64 (`jax.enable_x64` inside); inputs and outputs are NumPy.
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np

_SERIES_TERMS = 24


def _x64():
    ctx = getattr(jax, "enable_x64", None)
    return ctx(True) if ctx is not None else contextlib.nullcontext()


def matrix(s, rot, t) -> np.ndarray:
    """``(s, R [3, 3], t [3])`` -> float64 ``[4, 4]``."""
    m = np.eye(4)
    m[:3, :3] = float(s) * np.asarray(rot, np.float64)
    m[:3, 3] = np.asarray(t, np.float64)
    return m


def split(m) -> tuple[float, np.ndarray, np.ndarray]:
    """float64 ``[4, 4]`` -> ``(s, R, t)``."""
    m = np.asarray(m, np.float64)
    s = float(np.cbrt(np.linalg.det(m[:3, :3])))
    return s, m[:3, :3] / s, m[:3, 3].copy()


def inverse(m) -> np.ndarray:
    """Inverse of Sim(3) matrices ``[..., 4, 4]`` (float64)."""
    m = np.asarray(m, np.float64)
    a = m[..., :3, :3]
    s2 = np.cbrt(np.linalg.det(a)) ** 2
    a_inv = np.swapaxes(a, -1, -2) / s2[..., None, None]
    out = np.zeros_like(m)
    out[..., :3, :3] = a_inv
    out[..., :3, 3] = -np.einsum("...ij,...j->...i", a_inv, m[..., :3, 3])
    out[..., 3, 3] = 1.0
    return out


def _hat(w):
    z = jnp.zeros_like(w[..., 0])
    return jnp.stack([
        jnp.stack([z, -w[..., 2], w[..., 1]], -1),
        jnp.stack([w[..., 2], z, -w[..., 0]], -1),
        jnp.stack([-w[..., 1], w[..., 0], z], -1),
    ], -2)


def _v_matrix(omega, sigma):
    """``V = sum_k M^k / (k + 1)!`` with ``M = sigma I + hat(omega)``; ``[..., 3, 3]``."""
    m = sigma[..., None, None] * jnp.eye(3, dtype=omega.dtype) + _hat(omega)
    eye = jnp.broadcast_to(jnp.eye(3, dtype=omega.dtype), m.shape)

    def body(k, carry):
        term, v = carry
        term = term @ m / (k + 1).astype(m.dtype)
        return term, v + term

    return jax.lax.fori_loop(1, _SERIES_TERMS, body, (eye, eye))[1]


def _so3_exp(w):
    th2 = jnp.sum(w * w, -1)
    small = th2 < 1e-12
    th2s = jnp.where(small, 1.0, th2)
    th = jnp.sqrt(th2s)
    a = jnp.where(small, 1.0 - th2 / 6.0, jnp.sin(th) / th)
    b = jnp.where(small, 0.5 - th2 / 24.0, (1.0 - jnp.cos(th)) / th2s)
    k = _hat(w)
    return jnp.eye(3, dtype=w.dtype) + a[..., None, None] * k + b[..., None, None] * (k @ k)


def _so3_log(r):
    v = 0.5 * jnp.stack([r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0],
                         r[..., 1, 0] - r[..., 0, 1]], -1)
    c = 0.5 * (jnp.trace(r, axis1=-2, axis2=-1) - 1.0)
    n2 = jnp.sum(v * v, -1)
    small = n2 < 1e-12
    n = jnp.sqrt(jnp.where(small, 1.0, n2))
    f = jnp.where(small, 1.0 + n2 / 6.0, jnp.arctan2(n, c) / n)
    return f[..., None] * v


def exp(xi):
    """sim(3) ``[..., 7]`` -> Sim(3) ``[..., 4, 4]`` (JAX)."""
    rho, omega, sigma = xi[..., :3], xi[..., 3:6], xi[..., 6]
    top = jnp.concatenate([
        jnp.exp(sigma)[..., None, None] * _so3_exp(omega),
        jnp.einsum("...ij,...j->...i", _v_matrix(omega, sigma), rho)[..., None],
    ], -1)
    bottom = jnp.broadcast_to(jnp.array([0.0, 0.0, 0.0, 1.0], xi.dtype), top.shape[:-2] + (1, 4))
    return jnp.concatenate([top, bottom], -2)


def log(m):
    """Sim(3) ``[..., 4, 4]`` -> sim(3) ``[..., 7]`` (JAX; rotation angles < pi)."""
    a = m[..., :3, :3]
    s = jnp.cbrt(jnp.linalg.det(a))
    sigma = jnp.log(s)
    omega = _so3_log(a / s[..., None, None])
    rho = jnp.linalg.solve(_v_matrix(omega, sigma), m[..., :3, 3:])[..., 0]
    return jnp.concatenate([rho, omega, sigma[..., None]], -1)


def _inv(m):
    a = m[..., :3, :3]
    s2 = jnp.cbrt(jnp.linalg.det(a)) ** 2
    a_inv = jnp.swapaxes(a, -1, -2) / s2[..., None, None]
    t = -jnp.einsum("...ij,...j->...i", a_inv, m[..., :3, 3])
    top = jnp.concatenate([a_inv, t[..., None]], -1)
    return jnp.concatenate([top, m[..., 3:, :]], -2)


def _residuals(delta, poses, free, ei, ej, meas_inv, sqrt_w):
    d = jnp.zeros((poses.shape[0], 7), delta.dtype).at[free].set(delta.reshape(-1, 7))
    p = poses @ exp(d)  # right perturbation P <- P exp(d)
    err = meas_inv @ _inv(p[ei]) @ p[ej]
    return (log(err) * sqrt_w[:, None]).reshape(-1)


_res_jit = jax.jit(_residuals)
_jac_jit = jax.jit(jax.jacfwd(_residuals))
_retract = jax.jit(lambda p, d: p @ exp(d))


def optimize_pose_graph(poses, edges, measurements, weights=None, fixed=(0,), iters: int = 10,
                        damping: float = 1e-4) -> tuple[np.ndarray, dict]:
    """Levenberg–Marquardt over Sim(3) nodes, on the Lie algebra (right perturbations).

    Args:
      poses: ``[K, 4, 4]`` initial node poses (world <- node).
      edges: ``[E, 2]`` node pairs ``(i, j)``; measurements: ``[E, 4, 4]`` of ``node_i <- node_j``
        (what ``inv(P_i) @ P_j`` should be); weights: ``[E]`` scalar information (default 1).
      fixed: nodes held constant (the gauge: at least one).
      iters: LM iterations; damping: initial lambda (multiplied by the diagonal of J^T J).
    Returns:
      (optimised poses ``[K, 4, 4]`` float64, info dict with ``cost_init`` / ``cost``: sums of
      squared weighted sim(3) residuals).
    """
    poses = np.asarray(poses, np.float64)
    edges = np.asarray(edges, np.int64).reshape(-1, 2)
    k = poses.shape[0]
    fixed = sorted({int(f) for f in fixed})
    if not fixed or min(fixed) < 0 or max(fixed) >= k:
        raise ValueError(f"fixed: expected node ids in [0, {k}) (at least one), got {fixed}")
    free = np.array([i for i in range(k) if i not in fixed], np.int64)
    w = np.ones(len(edges)) if weights is None else np.asarray(weights, np.float64)
    if len(edges) == 0 or len(free) == 0:
        return poses, {"cost_init": 0.0, "cost": 0.0, "iters": 0}
    with _x64():
        rest = tuple(jnp.asarray(x) for x in (free, edges[:, 0], edges[:, 1],
                                              inverse(measurements), np.sqrt(w)))
        zero = jnp.zeros(7 * len(free))
        cur = jnp.asarray(poses)
        r = np.asarray(_res_jit(zero, cur, *rest))
        cost_init = cost = float(r @ r)
        lam, done = damping, 0
        for _ in range(iters):
            j = np.asarray(_jac_jit(zero, cur, *rest))
            jtj, jtr = j.T @ j, j.T @ r
            step = np.linalg.solve(jtj + lam * np.diag(np.diag(jtj) + 1e-12), -jtr)
            d = np.zeros((k, 7))
            d[free] = step.reshape(-1, 7)
            cand = _retract(cur, jnp.asarray(d))
            r_new = np.asarray(_res_jit(zero, cand, *rest))
            done += 1
            if r_new @ r_new < cost:
                cur, r, cost, lam = cand, r_new, float(r_new @ r_new), lam / 10.0
                if np.abs(step).max() < 1e-12:
                    break
            else:
                lam *= 10.0
        return np.asarray(cur), {"cost_init": cost_init, "cost": cost, "iters": done}
