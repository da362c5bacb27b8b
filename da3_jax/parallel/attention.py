"""Attention kernels behind one entry point.

All implementations take and return the ``jax.nn.dot_product_attention`` layout:
q, k, v ``[B, L, H, Dh]`` (batch, tokens, heads, head dim) and return ``[B, Lq, H, Dh]``.
The softmax is always computed in float32; the output has q's dtype.

``impl`` selects the kernel (config field ``model.attention_impl``):
  * ``"dense"``: plain XLA einsum + softmax (reference; O(L^2) memory).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

IMPLS = ("dense",)


def dense_attention(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
    """Reference attention, scale 1/sqrt(Dh), fp32 softmax. Shapes as in the module doc."""
    scale = q.shape[-1] ** -0.5
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) * scale
    probs = jax.nn.softmax(logits, axis=-1)
    out = jnp.einsum("bhqk,bkhd->bqhd", probs.astype(v.dtype), v)
    return out.astype(q.dtype)


def dot_product_attention(
    q: jax.Array, k: jax.Array, v: jax.Array, *, impl: str = "dense"
) -> jax.Array:
    """Scaled dot-product attention with the implementation picked by ``impl``."""
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(
            f"attention expects q, k, v of rank 4 [B, L, H, Dh]; got {q.shape}, {k.shape}, {v.shape}"
        )
    if impl == "dense":
        return dense_attention(q, k, v)
    raise ValueError(f"unknown attention impl {impl!r}; expected one of {IMPLS}")
