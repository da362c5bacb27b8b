"""2D rotary position embedding of the DA3 backbone (DA3-official.md §1.2).

Head dims [0 : Dh/2] rotate with the row (y) position, [Dh/2 : Dh] with the column (x)
position. Inside each half, rotate-half pairing (j, j + Dh/4) with angle pos * base^(-j/(Dh/4)),
the angle vector duplicated to Dh/2 entries; out = t*cos + rot(t)*sin with rot([a, b]) = [-b, a].

Positions (`_prepare_rope` in the official ViT): per view, the special token 0 is at (0, 0); in
within-view (local) blocks patch (r, c) is at (r + 1, c + 1), row-major; in cross-view (global)
blocks every patch is at (1, 1). The tables only depend on static shapes, so they are NumPy
constants built at trace time.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def token_positions(grid_hw: tuple[int, int], global_: bool) -> np.ndarray:
    """[1 + gh*gw, 2] int (y, x) positions of one view's tokens (token 0 = camera/cls)."""
    gh, gw = grid_hw
    if global_:
        pos = np.ones((gh * gw, 2), np.int64)
    else:
        yy, xx = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
        pos = np.stack([yy.reshape(-1), xx.reshape(-1)], axis=-1) + 1
    return np.concatenate([np.zeros((1, 2), np.int64), pos], axis=0)


@functools.lru_cache(maxsize=64)
def rope_tables(
    grid_hw: tuple[int, int], global_: bool, head_dim: int, base: float = 100.0
) -> tuple[np.ndarray, np.ndarray]:
    """(cos, sin), each [1 + gh*gw, head_dim] float32, for one view (see module doc)."""
    half = head_dim // 2
    exponents = np.arange(0, half, 2, dtype=np.float32) / np.float32(half)
    inv_freq = (np.float32(1.0) / (np.float32(base) ** exponents)).astype(np.float32)
    pos = token_positions(grid_hw, global_).astype(np.float32)
    ang_y = pos[:, :1] * inv_freq[None]
    ang_x = pos[:, 1:] * inv_freq[None]
    ang = np.concatenate([ang_y, ang_y, ang_x, ang_x], axis=-1).astype(np.float32)
    return np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)


def apply_rope(t: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotate t [B, L, H, Dh] with tables cos/sin [L, Dh] (L = tokens of the sequence)."""
    q = t.shape[-1] // 4
    t1, t2, t3, t4 = (t[..., i * q : (i + 1) * q] for i in range(4))
    rot = jnp.concatenate([-t2, t1, -t4, t3], axis=-1)
    cos = jnp.asarray(cos, t.dtype)[None, :, None, :]
    sin = jnp.asarray(sin, t.dtype)[None, :, None, :]
    return t * cos + rot * sin
