"""Render predicted Gaussians into many cameras: adapter output → rasterizer, vmapped in chunks.

`gaussian_adapter` (da3_jax.model.gs_adapter) returns `rotations` in xyzw order (w >= 0) that
upstream *labels* wxyz, and the official renderer (`gs_renderer.render_3dgs`) hands them to
gsplat's wxyz `quats` unchanged. `render_args` keeps that convention (the released weights
were made for it), so renders match the official `gs_video`; SH `[G, 3, K]` becomes gsplat's
`[G, K, 3]` with the degree taken from K (2 for the giant head).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from da3_jax.geometry import check_intrinsics
from da3_jax.render.checks import check_gaussians, check_scene_in_front
from da3_jax.render.raster import rasterize_gaussians


def render_args(gaussians: dict) -> tuple:
    """`(means, quats, scales, opacities, sh)` for `rasterize_gaussians` from one scene's
    adapter dict (`means [G,3]`, `rotations [G,4]`, `scales [G,3]`, `opacities [G]`,
    `harmonics [G,3,K]`); leading batch dims are kept (vmap over them)."""
    missing = {"means", "rotations", "scales", "opacities", "harmonics"} - set(gaussians)
    if missing:
        raise ValueError(f"gaussians: missing keys {sorted(missing)}")
    sh = jnp.swapaxes(jnp.asarray(gaussians["harmonics"]), -1, -2)
    return (jnp.asarray(gaussians["means"]), jnp.asarray(gaussians["rotations"]),
            jnp.asarray(gaussians["scales"]), jnp.asarray(gaussians["opacities"]), sh)


@functools.partial(jax.jit, static_argnames=("hw", "options"))
def _render_chunk(means, quats, scales, opacities, sh, w2c, intrinsics, background, hw, options):
    def one(w, k):
        return rasterize_gaussians(means, quats, scales, opacities, sh, w, k, hw, background,
                                   check=False, **dict(options))

    return jax.vmap(one)(w2c, intrinsics)


def render_views(gaussians: dict, w2c, intrinsics, hw, background=None, *, chunk: int = 8,
                 **options) -> dict[str, np.ndarray]:
    """Render one scene's Gaussians into `V` cameras, `chunk` cameras per compiled call.

    Args:
      gaussians: adapter dict of one scene (see `render_args`), arrays `[G, ...]`.
      w2c: `[V, 3|4, 4]` world→camera (OpenCV); intrinsics: `[V, 3, 3]` pixels of `hw`.
      hw: `(H, W)`; background: `[3]` (default black, as upstream).
      options: keyword options of `rasterize_gaussians` (`tile_capacity`, `near`, ...).
    Returns:
      NumPy dict: `rgb [V, H, W, 3]`, `alpha [V, H, W]`, `depth [V, H, W]`, `overflow [V]`.
    """
    means, quats, scales, opacities, sh = render_args(gaussians)
    w2c = np.asarray(w2c, np.float32)
    intrinsics = np.asarray(intrinsics, np.float32)
    if w2c.ndim != 3 or w2c.shape[1:] not in ((3, 4), (4, 4)):
        raise ValueError(f"w2c: expected [V, 4, 4] or [V, 3, 4], got {w2c.shape}")
    if len(w2c) == 0:
        raise ValueError("w2c: empty trajectory (no cameras to render)")
    if intrinsics.shape != (len(w2c), 3, 3):
        raise ValueError(f"intrinsics: expected [{len(w2c)}, 3, 3], got {intrinsics.shape}")
    check_intrinsics(intrinsics, "intrinsics")
    check_gaussians(means, quats, scales, opacities, sh)
    near = float(options.get("near", 0.01))
    check_scene_in_front(means, w2c, near)
    if w2c.shape[1] == 3:
        w2c = np.concatenate([w2c, np.tile([[[0, 0, 0, 1]]], (len(w2c), 1, 1))], 1)
    bg = np.zeros(3, np.float32) if background is None else np.asarray(background, np.float32)
    opts = tuple(sorted(options.items()))
    n = len(w2c)
    chunk = max(1, min(chunk, n))
    outs = []
    for s in range(0, n, chunk):
        w, k = w2c[s:s + chunk], intrinsics[s:s + chunk]
        pad = chunk - len(w)  # one compile for every chunk
        if pad:
            w = np.concatenate([w, np.repeat(w[-1:], pad, 0)])
            k = np.concatenate([k, np.repeat(k[-1:], pad, 0)])
        out = _render_chunk(means, quats, scales, opacities, sh, w, k, jnp.asarray(bg),
                            tuple(int(x) for x in hw), opts)
        outs.append({key: np.asarray(v)[:chunk - pad] for key, v in out.items()})
    return {key: np.concatenate([o[key] for o in outs]) for key in outs[0]}
