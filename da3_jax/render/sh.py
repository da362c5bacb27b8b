"""Real spherical harmonics colours, in gsplat's basis and coefficient order (degrees 0-3).

The basis is the one of 3DGS / gsplat (`_eval_sh_bases_fast`, Sloan 2013): index 0 is the
constant `C0 = 0.2821`, 1-3 are `(-C1 y, C1 z, -C1 x)`, 4-8 the degree-2 terms, 9-15 degree 3.
Colours follow gsplat's classic mode: `max(sum_k Y_k(d) c_k + 0.5, 0)` with `d` the unit
direction from the camera centre to the Gaussian mean.
"""

from __future__ import annotations

import jax.numpy as jnp

MAX_SH_DEGREE = 3

SH_C0 = 0.28209479177387814
_C1 = 0.4886025119029199
_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792,
       0.5462742152960396)
_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
       -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


def sh_degree_from_coeffs(num_coeffs: int) -> int:
    """Degree `l` with `(l + 1)^2 == num_coeffs`; raises ValueError when not a square."""
    degree = int(round(num_coeffs**0.5)) - 1
    if (degree + 1) ** 2 != num_coeffs or not 0 <= degree <= MAX_SH_DEGREE:
        raise ValueError(f"sh: expected 1, 4, 9 or 16 coefficients per channel (degree 0-"
                         f"{MAX_SH_DEGREE}), got {num_coeffs}")
    return degree


def sh_basis(dirs: jnp.ndarray, degree: int) -> jnp.ndarray:
    """SH basis `[..., (degree + 1)^2]` at unit directions `dirs [..., 3]`."""
    x, y, z = dirs[..., 0], dirs[..., 1], dirs[..., 2]
    out = [jnp.full_like(x, SH_C0)]
    if degree >= 1:
        out += [-_C1 * y, _C1 * z, -_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [_C2[0] * x * y, _C2[1] * y * z, _C2[2] * (2 * zz - xx - yy),
                _C2[3] * x * z, _C2[4] * (xx - yy)]
    if degree >= 3:
        out += [_C3[0] * y * (3 * xx - yy), _C3[1] * x * y * z, _C3[2] * y * (4 * zz - xx - yy),
                _C3[3] * z * (2 * zz - 3 * xx - 3 * yy), _C3[4] * x * (4 * zz - xx - yy),
                _C3[5] * z * (xx - yy), _C3[6] * x * (xx - 3 * yy)]
    return jnp.stack(out, axis=-1)


def sh_to_rgb(sh: jnp.ndarray, view_dirs: jnp.ndarray, degree: int) -> jnp.ndarray:
    """gsplat SH colour `max(SH(d) + 0.5, 0)`.

    Args:
      sh: `[..., K, 3]` coefficients (`K >= (degree + 1)^2`; extra ones are ignored).
      view_dirs: `[..., 3]` camera-centre → mean directions (any length; normalised here with
        gsplat's `F.normalize` epsilon 1e-12).
      degree: SH degree to evaluate (static int, 0-3).
    Returns:
      `[..., 3]` non-negative colours.
    """
    n = (degree + 1) ** 2
    norm = jnp.sqrt(jnp.sum(view_dirs * view_dirs, axis=-1, keepdims=True))
    dirs = view_dirs / jnp.maximum(norm, 1e-12)
    basis = sh_basis(dirs, degree)
    return jnp.maximum(jnp.einsum("...k,...kc->...c", basis, sh[..., :n, :]) + 0.5, 0.0)
