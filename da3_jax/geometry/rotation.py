"""Rotations: quaternion <-> matrix, relative rotation angle.

Conventions
-----------
* Quaternions are **scalar-last** ``[x, y, z, w]`` (the official DA3 order, ``xyzw``).
* Rotation matrices act on column vectors: ``p' = R @ p``.
* ``rotmat_to_quat`` returns unit quaternions standardised to ``w >= 0`` (the official
  ``mat_to_quat``); ``quat_to_rotmat`` accepts non-unit quaternions (scale ``2 / |q|^2``).

All functions are pure JAX, batched over leading dims and jit/vmap-able.
"""

from __future__ import annotations

import jax.numpy as jnp

from da3_jax.geometry.checks import check_finite, check_trailing_shape, checked_jit

__all__ = [
    "quat_to_rotmat",
    "rotmat_to_quat",
    "standardize_quaternion",
    "relative_rotation_angle",
]


@checked_jit({"q_xyzw": check_finite})
def quat_to_rotmat(q_xyzw: jnp.ndarray) -> jnp.ndarray:
    """Quaternion ``[..., 4]`` (xyzw, need not be unit) -> rotation matrix ``[..., 3, 3]``.

    Uses the factor ``2 / |q|^2`` so a non-unit quaternion maps to the rotation of ``q / |q|``
    (official ``quat_to_mat``). A zero quaternion gives NaN/Inf; callers feeding network outputs
    should ensure ``|q| > 0``.
    """
    check_trailing_shape(q_xyzw, "q_xyzw", (4,))
    q = jnp.asarray(q_xyzw)
    i, j, k, r = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    two_s = 2.0 / jnp.sum(q * q, axis=-1)
    o = jnp.stack(
        [
            1 - two_s * (j * j + k * k),
            two_s * (i * j - k * r),
            two_s * (i * k + j * r),
            two_s * (i * j + k * r),
            1 - two_s * (i * i + k * k),
            two_s * (j * k - i * r),
            two_s * (i * k - j * r),
            two_s * (j * k + i * r),
            1 - two_s * (i * i + j * j),
        ],
        axis=-1,
    )
    return o.reshape(q.shape[:-1] + (3, 3))


def _sqrt_positive_part(x: jnp.ndarray) -> jnp.ndarray:
    """sqrt(max(0, x)) with a zero (not NaN) gradient where x <= 0."""
    pos = x > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, x, 1.0)), 0.0)


@checked_jit({"q_xyzw": check_finite})
def standardize_quaternion(q_xyzw: jnp.ndarray) -> jnp.ndarray:
    """Flip the sign of ``[..., 4]`` xyzw quaternions whose real part ``w`` is negative."""
    check_trailing_shape(q_xyzw, "q_xyzw", (4,))
    return jnp.where(q_xyzw[..., 3:4] < 0, -q_xyzw, q_xyzw)


@checked_jit({"rotmat": check_finite})
def rotmat_to_quat(rotmat: jnp.ndarray) -> jnp.ndarray:
    """Rotation matrix ``[..., 3, 3]`` -> unit quaternion ``[..., 4]`` (xyzw, ``w >= 0``).

    Robust pytorch3d-style algorithm (as the official ``mat_to_quat``): compute the four
    candidates obtained by dividing by ``2 * |q_c|`` for each component ``c``, with the
    denominator floored at 0.1, and keep the candidate whose ``|q_c|`` is largest (the
    best-conditioned one). The result is then standardised to ``w >= 0``.
    """
    check_trailing_shape(rotmat, "rotmat", (3, 3))
    m = jnp.asarray(rotmat)
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    q_abs = _sqrt_positive_part(
        jnp.stack(
            [
                1.0 + m00 + m11 + m22,
                1.0 + m00 - m11 - m22,
                1.0 - m00 + m11 - m22,
                1.0 - m00 - m11 + m22,
            ],
            axis=-1,
        )
    )  # [..., 4] = |w|, |x|, |y|, |z| times 2
    # Candidate c (rows) in (w, x, y, z) order, each row proportional to q.
    cand = jnp.stack(
        [
            jnp.stack([q_abs[..., 0] ** 2, m21 - m12, m02 - m20, m10 - m01], axis=-1),
            jnp.stack([m21 - m12, q_abs[..., 1] ** 2, m10 + m01, m02 + m20], axis=-1),
            jnp.stack([m02 - m20, m10 + m01, q_abs[..., 2] ** 2, m12 + m21], axis=-1),
            jnp.stack([m10 - m01, m20 + m02, m21 + m12, q_abs[..., 3] ** 2], axis=-1),
        ],
        axis=-2,
    )  # [..., 4, 4]
    cand = cand / (2.0 * jnp.maximum(q_abs, 0.1)[..., None])
    best = jnp.argmax(q_abs, axis=-1)
    q_wxyz = jnp.take_along_axis(cand, best[..., None, None], axis=-2)[..., 0, :]
    q_xyzw = jnp.concatenate([q_wxyz[..., 1:], q_wxyz[..., :1]], axis=-1)
    return standardize_quaternion(q_xyzw)


@checked_jit({"rot1": check_finite, "rot2": check_finite})
def relative_rotation_angle(rot1: jnp.ndarray, rot2: jnp.ndarray) -> jnp.ndarray:
    """Geodesic angle (radians, in [0, pi]) between rotations ``[..., 3, 3]``.

    Angle of ``rot1^T @ rot2``, computed as ``atan2(|skew part|, (trace - 1) / 2)`` which,
    unlike ``arccos``, stays accurate in float32 for tiny and near-pi angles.
    """
    check_trailing_shape(rot1, "rot1", (3, 3))
    check_trailing_shape(rot2, "rot2", (3, 3))
    m = jnp.swapaxes(rot1, -1, -2) @ rot2
    cos = (jnp.trace(m, axis1=-2, axis2=-1) - 1.0) / 2.0
    vee = jnp.stack(
        [m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]],
        axis=-1,
    )
    sq = jnp.sum(vee * vee, axis=-1)
    # Safe norm: zero (not NaN) gradient at identical rotations.
    sin = jnp.where(sq > 0, jnp.sqrt(jnp.where(sq > 0, sq, 1.0)), 0.0) / 2.0
    return jnp.arctan2(sin, cos)
