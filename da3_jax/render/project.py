"""EWA projection of 3D Gaussians to the image plane (gsplat classic mode, pinhole camera).

Conventions: `w2c` is OpenCV world→camera (`x` right, `y` down, `z` forward); `K` in pixels with
pixel `(i, j)` centred at `(j + 0.5, i + 0.5)`; quaternions here are **wxyz** (gsplat's order;
`da3_jax.geometry` uses xyzw, hence the roll).

Semantics reproduced from gsplat 1.5.3 (`fully_fused_projection`, `persp_proj`):

* camera covariance `Σ_c = R_w2c R S Sᵀ Rᵀ R_w2cᵀ`; Jacobian of the pinhole projection at the mean
  with `x/z`, `y/z` clamped to 1.3 × the half field of view (so Gaussians far outside the frustum
  do not get huge footprints); `Σ_2d = J Σ_c Jᵀ + eps2d · I` (0.3 px low-pass dilation);
* culled (``valid`` False): `z < near` or `z > far`, `det Σ_2d <= 0`, opacity < 1/255, or a
  bounding box (opacity-aware radius `ceil(min(3.33, sqrt(2 ln(255 o))) · sqrt(Σ_2d[ii]))`)
  entirely outside the image. Beyond that box `o · exp(-½ dᵀ Σ_2d⁻¹ d) < 1/255`, so binning by it
  loses nothing;
* conic = upper triangle of `Σ_2d⁻¹` as `(a, b, c)` with `σ = ½ (a dx² + c dy²) + b dx dy`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from da3_jax.geometry import quat_to_rotmat

ALPHA_THRESHOLD = 1.0 / 255.0


def quat_scale_to_covar(quats_wxyz: jnp.ndarray, scales: jnp.ndarray) -> jnp.ndarray:
    """World covariances `R diag(s)² Rᵀ` `[..., 3, 3]` from wxyz quaternions `[..., 4]` (need not
    be unit) and per-axis standard deviations `scales [..., 3]` (world units)."""
    rot = quat_to_rotmat(jnp.roll(quats_wxyz, -1, axis=-1))
    m = rot * scales[..., None, :]
    return m @ jnp.swapaxes(m, -1, -2)


def project_gaussians(
    means: jnp.ndarray,
    covars: jnp.ndarray,
    opacities: jnp.ndarray,
    w2c: jnp.ndarray,
    intrinsics: jnp.ndarray,
    image_hw: tuple[int, int],
    *,
    near: float = 0.01,
    far: float = 1e10,
    eps2d: float = 0.3,
) -> dict[str, jnp.ndarray]:
    """Project `G` Gaussians into one pinhole camera.

    Args:
      means: `[G, 3]` world positions; covars: `[G, 3, 3]` world covariances; opacities: `[G]`.
      w2c: `[3|4, 4]`; intrinsics: `[3, 3]` pixels; image_hw: static `(H, W)`.
    Returns:
      dict: `means2d [G, 2]` (pixels), `conics [G, 3]`, `depths [G]` (camera z), `radii [G, 2]`
      (pixels, float, 0 when culled), `valid [G]` bool.
    """
    h, w = image_hw
    rot, trans = w2c[:3, :3], w2c[:3, 3]
    means_c = means @ rot.T + trans
    cov_c = rot @ covars @ rot.T
    x, y, z = means_c[:, 0], means_c[:, 1], means_c[:, 2]
    in_depth = (z >= near) & (z <= far)
    z_safe = jnp.where(in_depth, z, 1.0)  # keeps culled Gaussians finite (and their grads 0)

    fx, fy, cx, cy = intrinsics[0, 0], intrinsics[1, 1], intrinsics[0, 2], intrinsics[1, 2]
    tan_x, tan_y = 0.5 * w / fx, 0.5 * h / fy
    lim_xp, lim_xn = (w - cx) / fx + 0.3 * tan_x, cx / fx + 0.3 * tan_x
    lim_yp, lim_yn = (h - cy) / fy + 0.3 * tan_y, cy / fy + 0.3 * tan_y
    tx = z_safe * jnp.clip(x / z_safe, -lim_xn, lim_xp)
    ty = z_safe * jnp.clip(y / z_safe, -lim_yn, lim_yp)
    zeros = jnp.zeros_like(z_safe)
    jac = jnp.stack([
        jnp.stack([fx / z_safe, zeros, -fx * tx / z_safe**2], -1),
        jnp.stack([zeros, fy / z_safe, -fy * ty / z_safe**2], -1)], -2)  # [G, 2, 3]
    cov2d = jac @ cov_c @ jnp.swapaxes(jac, -1, -2) + eps2d * jnp.eye(2, dtype=means.dtype)
    a, b, c = cov2d[:, 0, 0], 0.5 * (cov2d[:, 0, 1] + cov2d[:, 1, 0]), cov2d[:, 1, 1]
    det = a * c - b * b
    det_ok = det > 0
    inv_det = 1.0 / jnp.where(det_ok, det, 1.0)
    conics = jnp.stack([c * inv_det, -b * inv_det, a * inv_det], axis=-1)
    means2d = jnp.stack([fx * x / z_safe + cx, fy * y / z_safe + cy], axis=-1)

    opaque = opacities >= ALPHA_THRESHOLD
    ratio = jnp.where(opaque, opacities / ALPHA_THRESHOLD, 1.0)
    extend = jnp.minimum(3.33, jnp.sqrt(2.0 * jnp.log(ratio)))
    # Radii only choose tiles: no gradient (and no 0 * inf from sqrt at the threshold).
    radii = jax.lax.stop_gradient(
        jnp.ceil(extend[:, None] * jnp.sqrt(jnp.maximum(jnp.stack([a, c], -1), 0.0))))
    inside = ((means2d[:, 0] + radii[:, 0] > 0) & (means2d[:, 0] - radii[:, 0] < w)
              & (means2d[:, 1] + radii[:, 1] > 0) & (means2d[:, 1] - radii[:, 1] < h))
    valid = in_depth & det_ok & opaque & jnp.any(radii > 0, axis=-1) & inside
    return {
        "means2d": means2d,
        "conics": conics,
        "depths": z,
        "radii": jnp.where(valid[:, None], radii, 0.0),
        "valid": valid,
    }
