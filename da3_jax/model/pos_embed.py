"""Resize of the learned DINOv2 position table, exactly as the official code does it.

The official backbone (DA3-official.md §1.3) resizes the 37x37 patch table to (H/14, W/14) with
`torch.nn.functional.interpolate(mode='bicubic', align_corners=False, antialias=False)` called
with a *scale factor* (n + 0.1) / 37 rather than an output size. PyTorch then maps output index o
to the source coordinate (o + 0.5) * s - 0.5 with s = float32(1 / scale_factor), uses Keys cubic
weights with A = -0.75 and clamps out-of-range taps to the border. `jax.image.resize` uses
A = -0.5 and size-based scaling, so it differs.

Here the resize is two small interpolation matrices built in NumPy at trace time (float32, the
same arithmetic as PyTorch's CPU kernel) and applied with one einsum.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

CUBIC_A = -0.75


def _cubic_weights(t: np.ndarray) -> np.ndarray:
    """Keys cubic weights of the 4 taps (i-1, i, i+1, i+2) for fractional offsets t, float32."""
    a = np.float32(CUBIC_A)
    one = np.float32(1.0)

    def conv1(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + one

    def conv2(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    t = t.astype(np.float32)
    return np.stack([conv2(t + one), conv1(t), conv1(one - t), conv2((one - t) + one)], axis=-1)


@functools.lru_cache(maxsize=64)
def bicubic_matrix(n_in: int, n_out: int, scale_factor: float) -> np.ndarray:
    """[n_out, n_in] float32 matrix of PyTorch's bicubic resize along one axis.

    `scale_factor` is the factor passed to `F.interpolate` (output / input); the source
    coordinate of output o is (o + 0.5) / scale_factor - 0.5 (align_corners=False).
    """
    scale = np.float32(1.0 / scale_factor)
    o = np.arange(n_out, dtype=np.float32)
    real = scale * (o + np.float32(0.5)) - np.float32(0.5)
    idx = np.minimum(np.floor(real).astype(np.int64), n_in - 1)
    lam = np.clip(real - idx.astype(np.float32), 0.0, 1.0).astype(np.float32)
    w = _cubic_weights(lam)  # [n_out, 4]
    mat = np.zeros((n_out, n_in), np.float32)
    for j in range(4):
        src = np.clip(idx - 1 + j, 0, n_in - 1)
        np.add.at(mat, (np.arange(n_out), src), w[:, j])
    return mat


def interpolate_pos_embed(
    pos_embed: jax.Array, grid_hw: tuple[int, int], offset: float = 0.1
) -> jax.Array:
    """Position table for a (gh, gw) patch grid.

    Args:
      pos_embed: [1, 1 + M*M, D] learned table (token 0 = cls), M = 37 for DA3.
      grid_hw: (gh, gw) = (H / 14, W / 14) patch grid of the input.
      offset: the official `interpolate_offset` (0.1).
    Returns:
      [1 + gh*gw, D] table, patches row-major; fp32. Returned un-resized only when the grid is
      exactly M x M (the official bypass, H = W = 518).
    """
    n = pos_embed.shape[1] - 1
    m = int(round(np.sqrt(n)))
    if m * m != n:
        raise ValueError(f"pos_embed must hold 1 + M*M rows; got {pos_embed.shape}")
    gh, gw = grid_hw
    table = pos_embed[0].astype(jnp.float32)
    if gh == m and gw == m:
        return table
    rows = bicubic_matrix(m, gh, (gh + offset) / m)
    cols = bicubic_matrix(m, gw, (gw + offset) / m)
    patch = table[1:].reshape(m, m, -1)
    out = jnp.einsum(
        "hi,wj,ijd->hwd", rows, cols, patch, precision=jax.lax.Precision.HIGHEST
    ).reshape(gh * gw, -1)
    return jnp.concatenate([table[:1], out], axis=0)
