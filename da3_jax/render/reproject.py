"""Depth-based forward warping: one view's pixels reprojected into another camera (z-buffered).

The novel-view baseline of the demo (`experiments.demo_nvs`): a context view's pixels are lifted
to 3-D with a depth map and splatted into the target camera. Each point lands on the target pixel
containing its projection; target pixels that none lands on (cracks of a slight zoom or
rotation) take the points whose 2 × 2 footprint covers them (the pixels whose centres surround
the projection). In both passes the nearest point (smallest target z) wins, ties going to the
lowest source pixel index; pixels still uncovered keep the background. Conventions are
`da3_jax.geometry`'s (w2c, OpenCV axes, z-depth, pixel centres at +0.5): source pixel `(i, j)`
lifts from `(j + 0.5, i + 0.5)`; a projection `(u, v)` lands on `(floor(v), floor(u))`; its
footprint is rows `floor(v - 0.5) + {0, 1}` x columns `floor(u - 0.5) + {0, 1}`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from da3_jax.geometry import points_from_depth, project


def forward_warp(image, depth, w2c_src, k_src, w2c_tgt, k_tgt, hw, background=None,
                 near: float = 0.01) -> tuple[jax.Array, jax.Array]:
    """Splat `image` into the target camera with z-buffering (jit/vmap-able).

    Args:
      image: `[H, W, C]` source colours; depth: `[H, W]` source z-depth (same units as the
        translations; pixels with depth <= 0 are dropped).
      w2c_src, w2c_tgt: `[3|4, 4]` world-to-camera; k_src: `[3, 3]` for `(H, W)`; k_tgt: `[3, 3]`
        for `hw`.
      hw: target `(H', W')` (static); background: `[C]` (default zeros) for uncovered pixels.
      near: target z below which a point is dropped.
    Returns:
      `(warped [H', W', C], covered [H', W'] bool)`.
    """
    image = jnp.asarray(image)
    h, w = int(hw[0]), int(hw[1])
    pts = points_from_depth(depth, w2c_src, k_src, pixel_center=0.5).reshape(-1, 3)
    uv, z = project(pts, w2c_tgt, k_tgt)
    front = (jnp.asarray(depth).reshape(-1) > 0) & (z >= near)
    direct = _nearest(uv[:, 1], uv[:, 0], z, front, (h, w), ((0, 0),))
    cracks = _nearest(uv[:, 1] - 0.5, uv[:, 0] - 0.5, z, front, (h, w),
                      ((0, 0), (0, 1), (1, 0), (1, 1)))
    none = z.shape[0]
    first = jnp.where(direct < none, direct, cracks)
    covered = first < none
    colors = image.reshape(-1, image.shape[-1])
    bg = (jnp.zeros(image.shape[-1], image.dtype) if background is None
          else jnp.asarray(background, image.dtype))
    warped = jnp.where(covered[:, None], colors[jnp.minimum(first, none - 1)], bg)
    return warped.reshape(h, w, -1), covered.reshape(h, w)


def _nearest(v, u, z, valid, hw, offsets) -> jax.Array:
    """Per target pixel `[H'*W']`: the source index of the nearest point whose pixel
    `(floor(v) + dr, floor(u) + dc)` (for `(dr, dc)` in `offsets`) it is; `len(z)` for none."""
    h, w = hw
    n, none = h * w, z.shape[0]
    r0, c0 = jnp.floor(v).astype(jnp.int32), jnp.floor(u).astype(jnp.int32)
    idx, zc = [], []
    for dr, dc in offsets:
        row, col = r0 + dr, c0 + dc
        ok = valid & (col >= 0) & (col < w) & (row >= 0) & (row < h)
        idx.append(jnp.where(ok, row * w + col, n))  # dropped points go to a spare segment
        zc.append(jnp.where(ok, z, jnp.inf))
    idx, zc = jnp.concatenate(idx), jnp.concatenate(zc)
    zmin = jax.ops.segment_min(zc, idx, num_segments=n + 1)
    src = jnp.tile(jnp.arange(none), len(offsets))
    win = (zc < jnp.inf) & (zc <= zmin[idx])
    return jax.ops.segment_min(jnp.where(win, src, none), idx, num_segments=n + 1)[:n]
