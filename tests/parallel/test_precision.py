"""Mixed-precision helpers against float64 NumPy."""

import jax.numpy as jnp
import numpy as np
import pytest

from da3_jax.parallel import precision


def test_policy_and_casts():
    pol = precision.get_policy("bf16")
    assert pol.compute_dtype == jnp.bfloat16 and pol.param_dtype == jnp.float32
    tree = {"w": jnp.ones(3), "step": jnp.zeros((), jnp.int32)}
    out = precision.cast_to_compute(tree, pol)
    assert out["w"].dtype == jnp.bfloat16 and out["step"].dtype == jnp.int32
    assert precision.cast_to_param(out, pol)["w"].dtype == jnp.float32
    with pytest.raises(ValueError, match="precision policy"):
        precision.get_policy("int8")


def test_fp32_norm_and_softmax_on_bf16():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(4, 64)) * 3 + 100).astype(np.float32)  # large mean: bf16 stats fail
    scale, bias = rng.normal(size=64), rng.normal(size=64)
    xb = jnp.asarray(x, jnp.bfloat16)
    x64 = np.asarray(xb, np.float64)
    ref = (x64 - x64.mean(-1, keepdims=True)) / np.sqrt(x64.var(-1, keepdims=True) + 1e-6)
    ref = ref * scale + bias
    got = precision.layer_norm_fp32(xb, jnp.asarray(scale, jnp.float32),
                                    jnp.asarray(bias, jnp.float32), 1e-6)
    assert got.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(got, np.float64), ref, atol=0.05, rtol=0.02)
    e = np.exp(x64 - x64.max(-1, keepdims=True))
    sm = precision.softmax_fp32(xb)
    np.testing.assert_allclose(np.asarray(sm, np.float64), e / e.sum(-1, keepdims=True),
                               atol=2e-3)
