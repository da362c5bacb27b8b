"""Point map + depth -> ray map (cameras of the 'depth_point' prediction-target ablation).

A pinhole camera maps pixel ``u = (x, y, 1)`` (pixel-edge convention, cell centres) at z-depth
``D`` to the world point ``P = C + D M u`` with ``M = R^T K^{-1}`` and ``C`` the camera centre
(``cameras.camera_rays``). Given a predicted world point map ``P`` and z-depth ``D`` of one view,
``(C, M)`` is the weighted linear least-squares solution of these ``3 h w`` equations (12
unknowns, solved through the 12 x 12 normal equations). The fitted rays ``(M u, C)`` form a DA3
ray map, so ``rays_to_camera`` turns them into ``(w2c, K)`` like the ray head's output.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from da3_jax.geometry.cameras import pixel_grid
from da3_jax.geometry.checks import check_batch_compatible, check_trailing_shape


def rays_from_points(
    points: jnp.ndarray, depth: jnp.ndarray, weight: jnp.ndarray | None = None
) -> jnp.ndarray:
    """Least-squares camera rays of a point map.

    Args:
      points: ``[..., h, w, 3]`` world points of one view per leading index.
      depth: ``[..., h, w]`` z-depth of the same pixels (> 0 where weighted).
      weight: ``[..., h, w]`` non-negative per-pixel weights (e.g. the point confidence), or None.
    Returns:
      ray map ``[..., h, w, 6]``: ``[0:3]`` world direction ``M u`` (unnormalised, unit camera-z),
      ``[3:6]`` camera centre ``C``; float32. For points that are exactly a pinhole camera's
      unprojection of ``depth`` the rays are that camera's (``cameras.camera_ray_map`` on an
      ``h x w`` grid).
    """
    b_p = check_trailing_shape(points, "points", (None, None, 3))
    b_d = check_trailing_shape(depth, "depth", (None, None))
    check_batch_compatible(points=b_p, depth=b_d)
    if points.shape[-3:-1] != depth.shape[-2:]:
        raise ValueError(f"points {points.shape} and depth {depth.shape}: grids differ")
    h, w = depth.shape[-2:]
    points = jnp.asarray(points, jnp.float32)
    depth = jnp.asarray(depth, jnp.float32)
    weight = jnp.ones(depth.shape, jnp.float32) if weight is None else jnp.asarray(weight)
    weight = weight.astype(jnp.float32)
    u = pixel_grid((h, w), 0.5)  # [h, w, 3]
    # Per pixel and output axis i: P_i = C_i + sum_j M_ij (D u_j). Design row for unknowns
    # x = [C (3), M row-major (9)]: e_i for C, (D u) placed at block i for M.
    du = depth[..., None] * u  # [..., h, w, 3]
    eye = jnp.eye(3, dtype=jnp.float32)
    rows = jnp.concatenate(
        [jnp.broadcast_to(eye, du.shape[:-1] + (3, 3)),
         jnp.einsum("ik,...j->...ikj", eye, du).reshape(du.shape[:-1] + (3, 9))],
        axis=-1,
    )  # [..., h, w, 3, 12]
    wr = rows * weight[..., None, None]
    ata = jnp.einsum("...hwia,...hwib->...ab", wr, rows, precision=jax.lax.Precision.HIGHEST)
    atb = jnp.einsum("...hwia,...hwi->...a", wr, points, precision=jax.lax.Precision.HIGHEST)
    ata = ata + 1e-9 * jnp.trace(ata, axis1=-2, axis2=-1)[..., None, None] * jnp.eye(12)
    x = jnp.linalg.solve(ata, atb[..., None])[..., 0]
    centre, m = x[..., :3], x[..., 3:].reshape(x.shape[:-1] + (3, 3))
    dirs = jnp.einsum("...ij,hwj->...hwi", m, u, precision=jax.lax.Precision.HIGHEST)
    origins = jnp.broadcast_to(centre[..., None, None, :], dirs.shape)
    return jnp.concatenate([dirs, origins], axis=-1)
