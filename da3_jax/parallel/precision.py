"""Mixed precision: fp32 parameters, compute in a lower dtype, fp32 where it matters.

Policy (``get_policy(name)``, config field ``model.dtype``): parameters are stored and updated
in float32; matmuls/convolutions run in ``compute_dtype`` (bfloat16 on accelerators) with the
parameters cast at use; LayerNorm statistics, softmax, losses, geometry and the outputs handed
to the losses are float32 (``output_dtype``).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Policy:
    param_dtype: jnp.dtype = jnp.float32
    compute_dtype: jnp.dtype = jnp.float32
    output_dtype: jnp.dtype = jnp.float32


POLICIES = {
    "float32": Policy(),
    "bfloat16": Policy(compute_dtype=jnp.bfloat16),
    "float16": Policy(compute_dtype=jnp.float16),
}


def get_policy(name: str) -> Policy:
    """'float32' | 'bfloat16' | 'float16' (aliases 'fp32', 'bf16', 'fp16')."""
    alias = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}.get(name, name)
    if alias not in POLICIES:
        raise ValueError(f"unknown precision policy {name!r}; expected one of {tuple(POLICIES)}")
    return POLICIES[alias]


def _cast_floating(tree, dtype):
    def cast(x):
        if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating):
            return x.astype(dtype)
        return x

    return jax.tree.map(cast, tree)


def cast_to_compute(tree, policy: Policy):
    """Floating leaves -> compute dtype (integers/bools untouched)."""
    return _cast_floating(tree, policy.compute_dtype)


def cast_to_param(tree, policy: Policy):
    """Floating leaves -> parameter dtype (e.g. gradients before the optimizer update)."""
    return _cast_floating(tree, policy.param_dtype)


def cast_to_output(tree, policy: Policy):
    """Floating leaves -> output dtype (fp32 before losses / geometry)."""
    return _cast_floating(tree, policy.output_dtype)


def softmax_fp32(logits: jax.Array, axis: int = -1) -> jax.Array:
    """Softmax computed in float32, returned in the input dtype."""
    return jax.nn.softmax(logits.astype(jnp.float32), axis=axis).astype(logits.dtype)


def layer_norm_fp32(x, scale, bias, eps: float):
    """LayerNorm over the last axis with float32 statistics; result in x's dtype.

    x [..., C]; scale, bias [C] (fp32 params). Two-pass variance (mean of squared deviations).
    """
    xf = x.astype(jnp.float32)
    mean = xf.mean(-1, keepdims=True)
    var = jnp.square(xf - mean).mean(-1, keepdims=True)
    y = (xf - mean) * jax.lax.rsqrt(var + eps) * scale + bias
    return y.astype(x.dtype)
