"""Tile-based, differentiable Gaussian rasterizer with gsplat classic-mode semantics.

`rasterize_gaussians` renders one camera; `vmap` it over cameras and scenes (every size is
static, so it also runs under `jit` and inside sharded train steps). Steps:

1. EWA projection and culling (`project.project_gaussians`), colours from SH (`sh.sh_to_rgb`);
2. binning: each Gaussian's bounding box covers a set of `tile_size²` tiles; the
   (Gaussian, tile) intersections, generated in depth order into a static buffer of
   `max_intersections` slots, are stably sorted by tile, so each tile's list is front to back;
   each tile keeps its first `tile_capacity` Gaussians. Intersections that do not fit (the
   farthest ones) are **counted** in the output `overflow` (0 means the render is exact);
3. compositing per tile (`lax.map` over chunks of `tile_batch` tiles): for pixel centre `p`
   (`+0.5` convention) and Gaussian `i` in depth order,
   `α_i = min(0.999, o_i exp(-½ dᵀ Σ_2d⁻¹ d))`, skipped when `α_i < 1/255`; compositing stops
   *before* the Gaussian that would take the transmittance `T` to `<= 1e-4`;
   `rgb = Σ c_i α_i T_i + T_final · background`, `alpha = 1 - T_final`,
   `depth = Σ z_i α_i T_i` (gsplat's "RGB+D": alpha-weighted camera z, not normalised).

The transmittance is a cumulative sum of `log(1 - α)` (α <= 0.999 keeps it finite), so autodiff
through it is stable; binning is index work without gradients. Each tile's compositing is
rematerialised in the backward pass (`jax.checkpoint`), so memory stays O(tiles × capacity).
Gradients reach means, quats, scales, opacities and colours / SH coefficients (and the camera).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from da3_jax.geometry import check_image_hw, check_intrinsics, check_trailing_shape
from da3_jax.render.checks import check_gaussians, check_scene_in_front
from da3_jax.render.project import ALPHA_THRESHOLD, project_gaussians, quat_scale_to_covar
from da3_jax.render.sh import sh_degree_from_coeffs, sh_to_rgb

ALPHA_MAX = 0.999
T_MIN = 1e-4


def _tile_ranges(centre, radius, tile_size: int, num: int):
    lo = jnp.clip(jnp.floor((centre - radius) / tile_size), 0, num).astype(jnp.int32)
    hi = jnp.clip(jnp.ceil((centre + radius) / tile_size), 0, num).astype(jnp.int32)
    return lo, hi


def bin_gaussians(means2d, radii, depths, valid, tiles_hw, tile_size, capacity, max_isect):
    """Per-tile front-to-back Gaussian lists.

    Args:
      means2d `[G, 2]`, radii `[G, 2]` (pixels), depths `[G]`, valid `[G]`;
      tiles_hw: static `(tiles_y, tiles_x)`; capacity: static slots per tile;
      max_isect: static size of the intersection buffer.
    Returns:
      (`ids [T, capacity]` int32 Gaussian indices, `mask [T, capacity]` bool, `overflow` int32:
      intersections dropped by the per-tile capacity or the buffer size).
    """
    tiles_y, tiles_x = tiles_hw
    n_tiles = tiles_y * tiles_x
    g = means2d.shape[0]
    x0, x1 = _tile_ranges(means2d[:, 0], radii[:, 0], tile_size, tiles_x)
    y0, y1 = _tile_ranges(means2d[:, 1], radii[:, 1], tile_size, tiles_y)
    box_w = x1 - x0
    counts = jnp.where(valid, box_w * (y1 - y0), 0)

    order = jnp.argsort(jnp.where(valid, depths, jnp.inf), stable=True)
    sorted_counts = counts[order]
    ends = jnp.cumsum(sorted_counts)
    starts = ends - sorted_counts
    total = ends[-1]
    # Slot s belongs to the last sorted Gaussian whose start is <= s (a scatter-max + cummax
    # instead of a search; zero-count Gaussians share their start with the next one).
    owner = jnp.zeros((max_isect,), jnp.int32).at[starts].max(
        jnp.arange(g, dtype=jnp.int32), mode="drop")
    owner = jax.lax.cummax(owner)
    slot = jnp.arange(max_isect, dtype=jnp.int32)
    gid = order[owner]
    local = slot - starts[owner]
    width = jnp.maximum(box_w[gid], 1)
    tile = (y0[gid] + local // width) * tiles_x + x0[gid] + local % width
    tile = jnp.where(slot < total, tile, n_tiles)
    tile, gid = jax.lax.sort((tile, gid), num_keys=1, is_stable=True)

    tile_counts = jnp.zeros((n_tiles + 1,), jnp.int32).at[tile].add(1)[:n_tiles]
    tile_starts = jnp.cumsum(tile_counts) - tile_counts
    k = jnp.arange(capacity, dtype=jnp.int32)
    ids = gid[jnp.minimum(tile_starts[:, None] + k, max_isect - 1)]
    mask = k[None, :] < tile_counts[:, None]
    overflow = (jnp.sum(jnp.maximum(tile_counts - capacity, 0))
                + jnp.maximum(total - max_isect, 0))
    return ids, mask, overflow


def composite_tile(pixels, means2d, conics, opacities, features):
    """Front-to-back compositing of one tile.

    Args:
      pixels `[P, 2]` pixel centres; means2d `[C, 2]`, conics `[C, 3]`, opacities `[C]` (0 for
      empty slots), features `[C, D]`, all in depth order.
    Returns:
      (`[P, D]` Σ f_i α_i T_i, `[P]` final transmittance).
    """
    d = means2d[None, :, :] - pixels[:, None, :]
    dx, dy = d[..., 0], d[..., 1]
    sigma = 0.5 * (conics[:, 0] * dx * dx + conics[:, 2] * dy * dy) + conics[:, 1] * dx * dy
    alpha = jnp.minimum(ALPHA_MAX, opacities * jnp.exp(-jnp.maximum(sigma, 0.0)))
    alpha = jnp.where((sigma >= 0) & (alpha >= ALPHA_THRESHOLD), alpha, 0.0)
    log_1ma = jnp.log1p(-alpha)
    log_t_next = jnp.cumsum(log_1ma, axis=1)
    keep = jnp.exp(log_t_next) > T_MIN  # monotone: once False, False for the rest
    weights = jnp.where(keep, alpha * jnp.exp(log_t_next - log_1ma), 0.0)
    t_final = jnp.exp(jnp.sum(jnp.where(keep, log_1ma, 0.0), axis=1))
    return weights @ features, t_final


@functools.partial(jax.jit, static_argnames=(
    "image_hw", "sh_degree", "near", "far", "eps2d", "tile_size", "tile_capacity",
    "max_intersections", "tile_batch"))
def _rasterize(means, quats, scales, opacities, colors, w2c, intrinsics, background, *,
               image_hw, sh_degree, near, far, eps2d, tile_size, tile_capacity,
               max_intersections, tile_batch):
    h, w = image_hw
    dtype = means.dtype
    covars = quat_scale_to_covar(quats, scales)
    proj = project_gaussians(means, covars, opacities, w2c, intrinsics, image_hw,
                             near=near, far=far, eps2d=eps2d)
    if sh_degree is None:
        rgb = colors
    else:
        rot, trans = w2c[:3, :3], w2c[:3, 3]
        cam_centre = -rot.T @ trans
        rgb = sh_to_rgb(colors, means - cam_centre, sh_degree)
    features = jnp.concatenate([rgb, proj["depths"][:, None]], axis=-1).astype(dtype)

    tiles_hw = (math.ceil(h / tile_size), math.ceil(w / tile_size))
    ids, mask, overflow = bin_gaussians(
        proj["means2d"], proj["radii"], proj["depths"], proj["valid"], tiles_hw, tile_size,
        tile_capacity, max_intersections)
    n_tiles = tiles_hw[0] * tiles_hw[1]
    offs = jnp.arange(tile_size, dtype=dtype) + 0.5
    local = jnp.stack(jnp.meshgrid(offs, offs, indexing="xy"), -1).reshape(-1, 2)  # (x, y)
    t = jnp.arange(n_tiles)
    origin = jnp.stack([t % tiles_hw[1], t // tiles_hw[1]], -1).astype(dtype) * tile_size

    @jax.checkpoint  # backward recomputes each tile: residuals O(T·C), not O(T·P·C)
    def one_tile(args):
        org, idx, m = args
        return composite_tile(org + local, proj["means2d"][idx], proj["conics"][idx],
                              jnp.where(m, opacities[idx], 0.0), features[idx])

    acc, t_final = jax.lax.map(one_tile, (origin, ids, mask), batch_size=tile_batch)

    def to_image(x):  # [T, P, ...] -> [H, W, ...]
        x = x.reshape(tiles_hw + (tile_size, tile_size) + x.shape[2:])
        x = jnp.swapaxes(x, 1, 2).reshape((tiles_hw[0] * tile_size, tiles_hw[1] * tile_size)
                                          + x.shape[4:])
        return x[:h, :w]

    acc, t_final = to_image(acc), to_image(t_final)
    return {
        "rgb": acc[..., :3] + t_final[..., None] * background,
        "alpha": 1.0 - t_final,
        "depth": acc[..., 3],
        "overflow": overflow,
    }


def rasterize_gaussians(
    means: jnp.ndarray,
    quats: jnp.ndarray,
    scales: jnp.ndarray,
    opacities: jnp.ndarray,
    colors: jnp.ndarray,
    w2c: jnp.ndarray,
    K: jnp.ndarray,
    hw: tuple[int, int],
    background: jnp.ndarray | None = None,
    *,
    sh_degree: int | None = None,
    near: float = 0.01,
    far: float = 1e10,
    eps2d: float = 0.3,
    tile_size: int = 16,
    tile_capacity: int = 256,
    max_intersections: int | None = None,
    tile_batch: int = 64,
    check: bool = True,
) -> dict[str, jnp.ndarray]:
    """Render `G` 3D Gaussians into one pinhole camera (gsplat classic mode, see module doc).

    Args:
      means: `[G, 3]` world positions. quats: `[G, 4]` **wxyz** (need not be unit).
      scales: `[G, 3]` per-axis standard deviations (world units, >= 0).
      opacities: `[G]` in [0, 1].
      colors: `[G, 3]` RGB, or SH coefficients `[G, K, 3]` (gsplat basis, `K = (l + 1)²`).
      w2c: `[3|4, 4]` world→camera (OpenCV). K: `[3, 3]` pixel intrinsics.
      hw: static `(H, W)`. background: `[3]` (default black).
      sh_degree: SH degree for `[G, K, 3]` colours (default: from K; may be lower).
      near, far: depth culling planes (camera z). eps2d: low-pass dilation (pixels²).
      tile_size, tile_capacity, max_intersections (default `max(4 G, tiles × capacity)`),
        tile_batch: static sizes of the tile binning / compositing (see module doc).
      check: validate concrete inputs (finite values, non-negative scales, opacities in
        [0, 1], some Gaussian in front of the camera); skipped automatically under tracing.
    Returns:
      dict: `rgb [H, W, 3]`, `alpha [H, W]`, `depth [H, W]` (Σ z α T), `overflow` int32 scalar
      (dropped Gaussian-tile intersections; 0 when exact).
    """
    h, w = check_image_hw(hw, "hw")
    g = check_trailing_shape(means, "means", (3,))
    if len(g) != 1:
        raise ValueError(f"means: expected shape [G, 3], got {tuple(means.shape)}")
    g = g[0]
    for name, x, trailing in (("quats", quats, (g, 4)), ("scales", scales, (g, 3)),
                              ("opacities", opacities, (g,))):
        if tuple(x.shape) != trailing:
            raise ValueError(f"{name}: expected shape {list(trailing)}, got {tuple(x.shape)}")
    colors = jnp.asarray(colors)
    if colors.ndim == 2 and colors.shape == (g, 3):
        if sh_degree is not None:
            raise ValueError("sh_degree: given, but colors is [G, 3] RGB, not SH [G, K, 3]")
    elif colors.ndim == 3 and colors.shape[0] == g and colors.shape[2] == 3:
        max_degree = sh_degree_from_coeffs(colors.shape[1])
        sh_degree = max_degree if sh_degree is None else int(sh_degree)
        if not 0 <= sh_degree <= max_degree:
            raise ValueError(f"sh_degree: expected 0..{max_degree} for {colors.shape[1]} "
                             f"coefficients, got {sh_degree}")
    else:
        raise ValueError(f"colors: expected [G, 3] RGB or [G, K, 3] SH with G={g}, got "
                         f"{tuple(colors.shape)}")
    if tuple(w2c.shape) not in ((3, 4), (4, 4)):
        raise ValueError(f"w2c: expected shape [4, 4] or [3, 4], got {tuple(w2c.shape)}")
    check_intrinsics(K, "K")
    if tuple(K.shape) != (3, 3):
        raise ValueError(f"K: expected shape [3, 3], got {tuple(K.shape)}")
    if check:
        check_gaussians(means, quats, scales, opacities, colors)
        check_scene_in_front(means, w2c, near)
    dtype = jnp.result_type(means)
    if background is None:
        background = jnp.zeros((3,), dtype)
    if tuple(jnp.shape(background)) != (3,):
        raise ValueError(f"background: expected shape [3], got {tuple(jnp.shape(background))}")
    if g == 0:  # empty scene: background only
        return {"rgb": jnp.broadcast_to(jnp.asarray(background, dtype), (h, w, 3)),
                "alpha": jnp.zeros((h, w), dtype), "depth": jnp.zeros((h, w), dtype),
                "overflow": jnp.zeros((), jnp.int32)}
    n_tiles = math.ceil(h / tile_size) * math.ceil(w / tile_size)
    capacity = int(min(tile_capacity, g))
    if max_intersections is None:
        max_intersections = max(4 * g, n_tiles * capacity)
    cast = functools.partial(jnp.asarray, dtype=dtype)
    return _rasterize(
        cast(means), cast(quats), cast(scales), cast(opacities), cast(colors),
        cast(w2c), cast(K), cast(background), image_hw=(h, w), sh_degree=sh_degree,
        near=float(near), far=float(far), eps2d=float(eps2d), tile_size=int(tile_size),
        tile_capacity=capacity, max_intersections=int(max_intersections),
        tile_batch=int(min(tile_batch, n_tiles)))


__all__ = ["rasterize_gaussians", "bin_gaussians", "composite_tile"]
