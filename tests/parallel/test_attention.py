"""Every attention kernel equals float64 NumPy attention, forward and gradients, with key masks."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from da3_jax.parallel import attention as A


def np_attention_and_grads(q, k, v, mask, g):
    """float64 reference: out = softmax(q k^T / sqrt(d) masked) v and the VJP of sum(out * g)."""
    q, k, v, g = (np.asarray(x, np.float64) for x in (q, k, v, g))
    scale = q.shape[-1] ** -0.5
    s = np.einsum("bqhd,bkhd->bhqk", q, k) * scale
    s = np.where(mask[:, None, None, :], s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    out = np.einsum("bhqk,bkhd->bqhd", p, v)
    dv = np.einsum("bhqk,bqhd->bkhd", p, g)
    dp = np.einsum("bqhd,bkhd->bhqk", g, v)
    ds = p * (dp - (dp * p).sum(-1, keepdims=True))
    dq = np.einsum("bhqk,bkhd->bqhd", ds, k) * scale
    dk = np.einsum("bhqk,bqhd->bkhd", ds, q) * scale
    return out, (dq, dk, dv)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    b, lq, lk, h, d = 2, 11, 13, 2, 8
    q = rng.normal(size=(b, lq, h, d)).astype(np.float32)
    k = rng.normal(size=(b, lk, h, d)).astype(np.float32)
    v = rng.normal(size=(b, lk, h, d)).astype(np.float32)
    g = rng.normal(size=(b, lq, h, d)).astype(np.float32)
    mask = np.ones((b, lk), bool)
    mask[1, 8:] = False  # batch row 1: last 5 keys are padding
    return q, k, v, g, mask


def _vjp(fn, q, k, v, mask, g):
    out, pullback = jax.vjp(lambda q, k, v: fn(q, k, v, mask), q, k, v)
    return out, pullback(g)


# Batch row 0 of the mask is all True, so the masked cases also cover unmasked rows; the
# "*_nomask" entries exercise the kv_mask=None paths (chunked: internal padding mask).
KERNEL_FNS = {
    "dense": A.dense_attention,
    "xla": A.xla_attention,
    "qblock4": functools.partial(A.qblock_attention, block=4),
    "qblock_nomask": functools.partial(A.qblock_attention, block=256),
    "qblock_auto_block": A.qblock_attention,
    "entry_auto": lambda q, k, v, m: A.dot_product_attention(q, k, v, impl="auto", kv_mask=m),
    "chunked4": functools.partial(A.chunked_attention, chunk_size=4),
    "chunked_big": functools.partial(A.chunked_attention, chunk_size=64),
    "chunked4_nomask": functools.partial(A.chunked_attention, chunk_size=4),
    "entry_xla_nomask": lambda q, k, v, m: A.dot_product_attention(q, k, v, impl="xla"),
}


@pytest.mark.parametrize("name", list(KERNEL_FNS))
def test_kernel_matches_numpy(data, name):
    q, k, v, g, mask = data
    masked = not name.endswith("_nomask")
    mask = mask if masked else np.ones_like(mask)
    ref_out, ref_grads = np_attention_and_grads(q, k, v, mask, g)
    out, grads = jax.jit(functools.partial(_vjp, KERNEL_FNS[name]))(
        q, k, v, jnp.asarray(mask) if masked else None, g
    )
    np.testing.assert_allclose(out, ref_out, atol=2e-5, rtol=1e-5)
    for got, want in zip(grads, ref_grads, strict=True):
        np.testing.assert_allclose(got, want, atol=5e-5, rtol=1e-4)


def test_splash_interpreted_matches_numpy(data):
    """Splash kernel in the Pallas interpreter (CPU): padding to 128 blocks + segment-id mask."""
    q, k, v, g, mask = data
    ref_out, ref_grads = np_attention_and_grads(q, k, v, mask, g)
    fn = functools.partial(A.splash_attention, interpret=True)
    out, grads = jax.jit(functools.partial(_vjp, fn))(q, k, v, jnp.asarray(mask), g)
    np.testing.assert_allclose(out, ref_out, atol=2e-5, rtol=1e-5)
    for got, want in zip(grads, ref_grads, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_chunked_lse_gradient(data):
    """The lse output of the chunked kernel is differentiable (used by the ring merge)."""
    q, k, v, _, mask = data
    mask = jnp.asarray(mask)

    def loss(fn, q, k, v):
        out, lse = fn(q, k, v, mask)
        return (out**2).sum() + (jnp.sin(lse)).sum()

    chunked = functools.partial(A.chunked_attention_with_lse, chunk_size=4)
    got = jax.jit(jax.grad(functools.partial(loss, chunked), argnums=(0, 1, 2)))(q, k, v)
    dense = functools.partial(loss, A.dense_attention_with_lse)
    want = jax.jit(jax.grad(dense, argnums=(0, 1, 2)))(q, k, v)
    logits = np.einsum("bqhd,bkhd->bqhk", q.astype(np.float64), k) / np.sqrt(q.shape[-1])
    lse_ref = np.log((np.exp(logits) * np.asarray(mask)[:, None, None]).sum(-1))
    np.testing.assert_allclose(jax.jit(chunked)(q, k, v, mask)[1], lse_ref, atol=1e-5, rtol=1e-5)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, atol=5e-5, rtol=1e-4)


def test_bf16_inputs_close_to_fp32(data):
    q, k, v, _, mask = data
    ref, _ = np_attention_and_grads(q, k, v, mask, np.zeros_like(q))
    qb, kb, vb = (jnp.asarray(x, jnp.bfloat16) for x in (q, k, v))
    for impl in ("dense", "chunked", "xla", "qblock"):
        fn = jax.jit(functools.partial(A.dot_product_attention, impl=impl))
        out = fn(qb, kb, vb, kv_mask=jnp.asarray(mask))
        assert out.dtype == jnp.bfloat16
        np.testing.assert_allclose(np.asarray(out, np.float32), ref, atol=5e-2, rtol=5e-2)


def test_bad_inputs_raise(data):
    q, k, v, _, mask = data
    with pytest.raises(ValueError, match="unknown attention impl"):
        A.dot_product_attention(q, k, v, impl="flash")
    with pytest.raises(ValueError, match="kv_mask"):
        A.dot_product_attention(q, k, v, kv_mask=jnp.asarray(mask[:, :5]))
    with pytest.raises(ValueError, match="rank 4"):
        A.dot_product_attention(q[0], k, v)
    with pytest.raises(ValueError, match="TPU"):
        A.dot_product_attention(q, k, v, impl="splash")
    with pytest.raises(ValueError, match="suffix"):
        A.split_impl("chunked:dense")
    assert A.split_impl("ring_view:chunked") == ("ring_view", "chunked")
    assert A.local_impl("allgather_view") == "auto"  # no suffix: the per-device default (issue 14)
    assert A.resolve_kernel("auto", "cpu") == "qblock"
    assert A.resolve_kernel("auto", "gpu") == "xla"
    assert A.resolve_kernel("auto", "gpu", jnp.bfloat16) == "xla"
    assert A.resolve_kernel("auto", "gpu", jnp.float32) == "chunked"  # linear memory in fp32
    assert A.resolve_kernel("chunked", "cpu") == "chunked"


def test_view_modes_without_mesh_equal_kernel(data):
    """No mesh set: view modes are the plain kernel on the whole sequence."""
    q, k, v, g, mask = data
    ref_out, _ = np_attention_and_grads(q, k, v, mask, g)
    for impl in ("allgather_view", "ring_view:chunked"):
        fn = jax.jit(A.dot_product_attention, static_argnames="impl")
        out = fn(q, k, v, impl=impl, kv_mask=jnp.asarray(mask))
        np.testing.assert_allclose(out, ref_out, atol=2e-5, rtol=1e-5)


def test_qblock_backward_memory_is_linear():
    """The qblock gradient keeps no [Lq, Lk] probabilities: XLA's temp buffer for the VJP of a
    4096-token sequence is a small fraction of the dense kernel's (which stores them)."""
    b, length, h, d = 1, 4096, 2, 16
    x = jax.ShapeDtypeStruct((b, length, h, d), jnp.float32)

    def temp_bytes(fn):
        def loss(q, k, v):
            return fn(q, k, v).sum()

        compiled = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(x, x, x).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    dense = temp_bytes(A.dense_attention)
    qblock = temp_bytes(functools.partial(A.qblock_attention, block=256))
    assert dense >= b * h * length * length * 4  # the full probability matrix
    assert qblock < 0.1 * dense, (qblock, dense)
