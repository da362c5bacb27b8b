"""Prototype CPU attention kernel, benchmark-only: query-blocked exact softmax.

NOT part of the library: it lets the benchmarks measure what replacing the 'dense' kernel would
gain (proposed for `da3_jax.parallel.attention`, whose owner decides). Measured on this
machine (1 core, CPU time), q = k = v [B, L, H=6, Dh=64]:

  B=4, L=1297 (local blocks, 4 views 504x504):  dense 26 GFLOP/s, this 46, torch SDPA 64
  B=1, L=5188 (global blocks, 4 views):         dense 12 GFLOP/s, this 47, torch SDPA 65

Why 'dense' is slow on XLA:CPU: the logits [B, H, L, L] (646 MB for the N=4 global blocks)
are written, re-read by the softmax passes and read again by the PV product, all from DRAM;
its einsums also contract over the [B, L, H, Dh] layout, so XLA inserts transposes of the
L x L tensors. This kernel transposes q, k, v once to [B, H, L, Dh] and maps over query blocks
of `block` rows (`lax.map`), so each block's logits [B, H, block, L] stay in cache, and the
exact (not online) softmax runs per block: same numbers as 'dense' up to summation order,
memory O(B H block L) instead of O(B H L^2), i.e. linear in the view count.

`install(block)` monkeypatches `da3_jax.model.layers.dot_product_attention` in this process
only (used by `benchmarks.inference --jax-attention-override qblock`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def qblock_attention(q, k, v, block: int = 256):
    """q [B, Lq, H, Dh], k, v [B, Lk, H, Dh] -> [B, Lq, H, Dh]; scale 1/sqrt(Dh), fp32 softmax."""
    b, lq, h, d = q.shape
    nb = -(-lq // block)
    pad = nb * block - lq
    qt = jnp.transpose(q * jnp.asarray(d**-0.5, q.dtype), (0, 2, 1, 3))
    kt = jnp.transpose(k, (0, 2, 1, 3))
    vt = jnp.transpose(v, (0, 2, 1, 3))
    qt = jnp.pad(qt, ((0, 0), (0, 0), (0, pad), (0, 0))).reshape(b, h, nb, block, d)

    def one(qb):  # [B, H, block, Dh]
        s = jnp.einsum("bhqd,bhkd->bhqk", qb, kt, preferred_element_type=jnp.float32)
        p = jax.nn.softmax(s, axis=-1)
        return jnp.einsum("bhqk,bhkd->bhqd", p.astype(vt.dtype), vt)

    o = jax.lax.map(one, jnp.moveaxis(qt, 2, 0))  # [nb, B, H, block, Dh]
    o = jnp.moveaxis(o, 0, 2).reshape(b, h, nb * block, d)[:, :, :lq]
    return jnp.transpose(o, (0, 2, 1, 3)).astype(q.dtype)


def install(block: int = 256) -> None:
    """Route every attention call of the da3_jax model through `qblock_attention`."""
    from da3_jax.model import layers

    def patched(q, k, v, *, impl="dense", kv_mask=None):
        if kv_mask is not None:
            raise ValueError("qblock prototype: kv_mask is not supported")
        return qblock_attention(q, k, v, block)

    layers.dot_product_attention = patched
