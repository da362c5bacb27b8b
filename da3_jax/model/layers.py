"""Transformer building blocks shared by the DINOv2 backbone and the camera encoder.

Parameter names follow the official state-dict keys (`norm1`, `attn/qkv`, `attn/q_norm`,
`attn/proj`, `ls1/gamma`, `mlp/fc1`, `mlp/w12`, ...), see `da3_jax.convert`.
Tokens are [B, L, C]; attention heads are [B, L, H, Dh] (the
`da3_jax.parallel.attention.dot_product_attention` layout).

Precision: parameters are fp32; matmuls run in `dtype`; LayerNorm statistics and the softmax are
fp32 (LayerNorm uses the two-pass variance like PyTorch).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from da3_jax.model.rope import apply_rope
from da3_jax.parallel.attention import dot_product_attention

Dtype = Any

# torch.nn.Linear / Conv default init is kaiming-uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in));
# a truncated normal is the DINOv2 training init. Only used for fresh (non-converted) params.
default_kernel_init = nn.initializers.truncated_normal(0.02)


def layer_norm(eps: float, name: str, dtype: Dtype = jnp.float32) -> nn.LayerNorm:
    """LayerNorm with fp32 statistics and PyTorch's two-pass variance."""
    return nn.LayerNorm(epsilon=eps, dtype=dtype, use_fast_variance=False, name=name)


def dense(features: int, name: str, dtype: Dtype, use_bias: bool = True) -> nn.Dense:
    return nn.Dense(
        features, use_bias=use_bias, dtype=dtype, kernel_init=default_kernel_init, name=name
    )


class LayerScale(nn.Module):
    """x * gamma, gamma [C] (`ls1/gamma`)."""

    init_value: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        gamma = self.param("gamma", nn.initializers.constant(self.init_value), (x.shape[-1],))
        return x * gamma.astype(x.dtype)


class Mlp(nn.Module):
    """fc1 -> GELU (exact erf) -> fc2."""

    hidden: int
    out: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = dense(self.hidden, "fc1", self.dtype)(x)
        x = nn.gelu(x, approximate=False)
        return dense(self.out, "fc2", self.dtype)(x)


class SwiGLU(nn.Module):
    """w12 -> split [x1 | x2] -> silu(x1) * x2 -> w3 (giant FFN)."""

    hidden: int
    out: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x12 = dense(2 * self.hidden, "w12", self.dtype)(x)
        x1, x2 = jnp.split(x12, 2, axis=-1)
        return dense(self.out, "w3", self.dtype)(nn.silu(x1) * x2)


def swiglu_hidden(dim: int, mlp_ratio: float) -> int:
    """Hidden width of the official SwiGLUFFNFused: ((int(4D * 2/3) + 7) // 8) * 8."""
    return (int(int(dim * mlp_ratio) * 2 / 3) + 7) // 8 * 8


class Attention(nn.Module):
    """Multi-head self-attention with optional q/k LayerNorm (eps 1e-5) and 2D RoPE.

    `rope` is None or a (cos, sin) pair of [L, Dh] tables (RoPE after the q/k norm);
    `kv_mask` is None or bool [B, L] (True = real key; padded views are False, see
    `da3_jax.parallel.view_parallel`).
    """

    num_heads: int
    qk_norm: bool = False
    attention_impl: str = "auto"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        rope: tuple[np.ndarray, np.ndarray] | None = None,
        kv_mask: jax.Array | None = None,
    ):
        b, n, c = x.shape
        dh = c // self.num_heads
        qkv = dense(3 * c, "qkv", self.dtype)(x).reshape(b, n, 3, self.num_heads, dh)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        if self.qk_norm:
            q = layer_norm(1e-5, "q_norm")(q).astype(self.dtype)
            k = layer_norm(1e-5, "k_norm")(k).astype(self.dtype)
        if rope is not None:
            q = apply_rope(q, *rope)
            k = apply_rope(k, *rope)
        out = dot_product_attention(q, k, v, impl=self.attention_impl, kv_mask=kv_mask)
        return dense(c, "proj", self.dtype)(out.reshape(b, n, c))


class Block(nn.Module):
    """Pre-norm transformer block: x += ls1(attn(norm1(x))); x += ls2(ffn(norm2(x)))."""

    num_heads: int
    mlp_ratio: float = 4.0
    ffn: str = "mlp"
    norm_eps: float = 1e-6
    ls_init: float = 1.0
    qk_norm: bool = False
    attention_impl: str = "auto"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, rope=None, kv_mask: jax.Array | None = None) -> jax.Array:
        c = x.shape[-1]
        h = layer_norm(self.norm_eps, "norm1")(x).astype(self.dtype)
        h = Attention(
            self.num_heads, self.qk_norm, self.attention_impl, self.dtype, name="attn"
        )(h, rope, kv_mask)
        x = x + LayerScale(self.ls_init, name="ls1")(h).astype(x.dtype)
        h = layer_norm(self.norm_eps, "norm2")(x).astype(self.dtype)
        if self.ffn == "swiglu":
            h = SwiGLU(swiglu_hidden(c, self.mlp_ratio), c, self.dtype, name="mlp")(h)
        else:
            h = Mlp(int(c * self.mlp_ratio), c, self.dtype, name="mlp")(h)
        return x + LayerScale(self.ls_init, name="ls2")(h).astype(x.dtype)
