"""View-parallel cross-view attention on 8 simulated CPU devices equals float64 attention over
the unpadded views, forward and gradients, on several meshes, with view padding."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from da3_jax.parallel import view_parallel as vp
from da3_jax.parallel.attention import dot_product_attention
from da3_jax.parallel.mesh import make_mesh
from tests.parallel.test_attention import np_attention_and_grads

B, N, K, H, D = 2, 6, 3, 2, 4  # 6 views: padded to 8 on every mesh below


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    q, k, v, g = (rng.normal(size=(B, N * K, H, D)).astype(np.float32) for _ in range(4))
    out, grads = np_attention_and_grads(q, k, v, np.ones((B, N * K), bool), g)
    return (q, k, v, g), (out, grads)


def padded_attention(q, k, v, *, impl, n_pad):
    """Pad N views to n_pad, attend with the key mask, drop the padded views."""
    def pad(x):
        x = x.reshape(B, N, K, H, D)
        return vp.pad_views(x, n_pad).reshape(B, n_pad * K, H, D)

    mask = vp.view_token_mask(B, N, n_pad, K)
    out = dot_product_attention(pad(q), pad(k), pad(v), impl=impl, kv_mask=mask)
    return out[:, : N * K]


CASES = [
    ({"view": 8}, "allgather_view"),
    ({"view": 8}, "ring_view"),
    ({"data": 2, "view": 4}, "allgather_view:chunked"),
    ({"data": 2, "view": 4}, "ring_view:chunked"),
    ({"fsdp": 2, "view": 4}, "allgather_view:xla"),
    ({"fsdp": 2, "view": 4}, "ring_view:chunked"),
]


@pytest.mark.parametrize("shape,impl", CASES, ids=[f"{s}-{i}" for s, i in CASES])
def test_view_parallel_equals_reference(data, shape, impl):
    (q, k, v, g), (ref_out, ref_grads) = data
    mesh = make_mesh(shape)
    n_pad = vp.padded_view_count(N, mesh)
    assert n_pad == 8
    fn = functools.partial(padded_attention, impl=impl, n_pad=n_pad)

    def fwd_and_grads(q, k, v, g):
        out, pullback = jax.vjp(fn, q, k, v)
        return out, pullback(g)

    with jax.set_mesh(mesh):
        sharding = NamedSharding(mesh, P(("data", "fsdp")))
        args = [jax.device_put(x, sharding) for x in (q, k, v, g)]
        compiled = jax.jit(fwd_and_grads).lower(*args).compile()
        out, grads = compiled(*args)
    collective = "all-gather" if impl.startswith("allgather") else "collective-permute"
    assert collective in compiled.as_text()
    np.testing.assert_allclose(out, ref_out, atol=2e-5, rtol=1e-5)
    for got, want in zip(grads, ref_grads, strict=True):
        np.testing.assert_allclose(got, want, atol=5e-5, rtol=1e-4)


@pytest.mark.parametrize("mode", ["allgather_view", "ring_view"])
def test_chunk_size_reaches_the_per_device_kernel(data, mode):
    """``chunk_size=2``: the ring attends 9 keys per step (3 views of 3 tokens) in 5 chunks,
    all-gather all 18 keys in 9 chunks; the kernel scans over the chunks after the first."""
    (q, k, v, g), (ref_out, ref_grads) = data
    mesh = make_mesh({"view": 2, "data": 4})

    def fwd_and_grads(q, k, v, g):
        fn = functools.partial(vp.view_sharded_attention, mode=mode, kernel="chunked",
                               chunk_size=2)
        out, pullback = jax.vjp(fn, q, k, v)
        return out, pullback(g)

    with jax.set_mesh(mesh):
        args = [jax.device_put(x, NamedSharding(mesh, P(None, "view"))) for x in (q, k, v, g)]
        lowered = jax.jit(fwd_and_grads).lower(*args)
        out, grads = lowered.compile()(*args)
    chunks = 5 if mode == "ring_view" else 9
    assert f"tensor<{chunks - 1}x2x2x2x4xf32>" in lowered.as_text()  # [C-1, B, chunk, H, Dh]
    np.testing.assert_allclose(out, ref_out, atol=2e-5, rtol=1e-5)
    for got, want in zip(grads, ref_grads, strict=True):
        np.testing.assert_allclose(got, want, atol=5e-5, rtol=1e-4)


def test_unpadded_sharded_views_and_errors(data):
    (q, k, v, g), (ref_out, _) = data
    mesh = make_mesh({"view": 2, "data": 4})  # 6 views divide the view axis: no padding
    assert vp.padded_view_count(N, mesh) == N
    with jax.set_mesh(mesh):
        sharding = NamedSharding(mesh, P(None, "view"))
        args = [jax.device_put(x, sharding) for x in (q, k, v)]
        out = jax.jit(functools.partial(dot_product_attention, impl="ring_view"))(*args)
        np.testing.assert_allclose(out, ref_out, atol=2e-5, rtol=1e-5)
        # 5 tokens do not divide the view axis: exact fallback to the kernel (auto sharding)
        sub_ref, _ = np_attention_and_grads(q[:, :5], k[:, :5], v[:, :5],
                                            np.ones((B, 5), bool), g[:, :5])
        sub = dot_product_attention(q[:, :5], k[:, :5], v[:, :5], impl="allgather_view")
        np.testing.assert_allclose(sub, sub_ref, atol=2e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="ring_view supports"):
        vp.view_sharded_attention(q, k, v, mode="ring_view", kernel="xla", mesh=mesh)


def test_padding_helpers():
    x = jnp.arange(2 * 3, dtype=jnp.float32).reshape(2, 3)
    padded = vp.pad_views(x, 5)
    np.testing.assert_array_equal(padded, [[0, 1, 2, 2, 2], [3, 4, 5, 5, 5]])
    np.testing.assert_array_equal(vp.unpad_views(padded, 3), x)
    mask = vp.view_token_mask(1, 2, 3, 2)
    np.testing.assert_array_equal(mask, [[True, True, True, True, False, False]])
    with pytest.raises(ValueError, match="num_padded"):
        vp.pad_views(x, 2)
