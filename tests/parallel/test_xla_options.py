"""Per-stage XLA compiler options: applied on CPU only, and they do not change the maths."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from da3_jax.parallel import xla_options


def test_options_per_backend():
    assert xla_options.compiler_options("head", "gpu") is None
    assert xla_options.compiler_options("backbone", "tpu") is None
    head = xla_options.compiler_options("head", "cpu")
    backbone = xla_options.compiler_options("backbone", "cpu")
    assert head == xla_options.CPU_OPTIONS["head"]  # accepted by this jaxlib
    assert backbone == xla_options.CPU_OPTIONS["backbone"]
    assert xla_options.compiler_options("train", "cpu") == xla_options.CPU_OPTIONS["train"]
    assert xla_options.compiler_options("train", "gpu") is None
    with pytest.raises(ValueError, match="stage"):
        xla_options.compiler_options("decoder")


@pytest.mark.parametrize("stage", xla_options.STAGES)
def test_stage_options_keep_results(stage):
    """A conv + dot + LayerNorm-like reduction compiled with the stage options equals float64."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 20, 20, 8)).astype(np.float32)
    w = rng.normal(size=(3, 3, 8, 16)).astype(np.float32) * 0.2
    m = rng.normal(size=(16, 32)).astype(np.float32) * 0.2

    def f(x, w, m):
        y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        y = jax.nn.relu(y) @ m
        return (y - y.mean(-1, keepdims=True)) / jnp.sqrt(y.var(-1, keepdims=True) + 1e-6)

    got = jax.jit(f, compiler_options=xla_options.compiler_options(stage))(x, w, m)
    x64, w64, m64 = (np.asarray(a, np.float64) for a in (x, w, m))
    xp = np.pad(x64, ((0, 0), (1, 1), (1, 1), (0, 0)))
    y = sum(np.einsum("nhwc,co->nhwo", xp[:, i:i + 20, j:j + 20], w64[i, j])
            for i in range(3) for j in range(3))
    y = np.maximum(y, 0) @ m64
    want = (y - y.mean(-1, keepdims=True)) / np.sqrt(y.var(-1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(got, want, atol=2e-4, rtol=1e-4)
