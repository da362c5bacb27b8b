"""View-parallel defaults: 'allgather_view' / 'ring_view' without a ':kernel' suffix use the
'auto' per-device kernel (linear memory), never 'dense': in the parsed impl, in the lowered
forward + backward of da3-tiny on a 4-way view mesh (no [B, H, L/V, L] logits tensor, no call
to a dense kernel), and in the compiled per-device memory of cross-view attention."""

import re

import jax
import jax.numpy as jnp
import pytest

from da3_jax.model import DA3, get_config
from da3_jax.parallel import attention as attn_lib
from da3_jax.parallel import rules
from da3_jax.parallel.mesh import make_mesh

V, N, HW = 4, 4, 28  # 4 views of 28x28 on view=4: K = 5 tokens per view, L = 20


def _lowered_train_text(impl: str) -> str:
    """StableHLO of value_and_grad of a depth loss of da3-tiny (impl) on a view=4 mesh."""
    cfg = get_config("da3-tiny")
    cfg.attention_impl = impl
    model = DA3(cfg)
    images = jnp.zeros((1, N, HW, HW, 3), jnp.float32)
    params = jax.eval_shape(model.init, jax.random.key(0), images)["params"]

    def loss(p, x):
        return jnp.mean(model.apply({"params": p}, x)["depth"] ** 2)

    mesh = make_mesh({"view": V}, devices=jax.devices()[:V])
    with jax.set_mesh(mesh):
        fn = jax.jit(jax.value_and_grad(loss),
                     in_shardings=(None, rules.batch_sharding(mesh, 5, shard_views=True)))
        return fn.lower(params, images).as_text()


def _dense_logits(text: str, heads: int) -> bool:
    """True if the program holds float32 logits [1, heads, L/V, L] of a whole device's queries
    against the gathered sequence (L/V = 5, L = 20): dense per-device attention."""
    return re.search(rf"tensor<1x{heads}x5x20xf32>", text) is not None


def test_split_impl_defaults_to_auto():
    assert attn_lib.split_impl("allgather_view") == ("allgather_view", "auto")
    assert attn_lib.split_impl("ring_view") == ("ring_view", "auto")
    assert attn_lib.split_impl("ring_view:dense") == ("ring_view", "dense")


@pytest.mark.parametrize("mode", attn_lib.VIEW_MODES)
def test_view_mode_without_suffix_never_lowers_to_dense(mode, monkeypatch):
    heads = get_config("da3-tiny").num_heads
    if mode == "allgather_view":
        # The logits detector sees dense attention when it is asked for explicitly. (A ring
        # step's dense logits [1, H, 5, 5] have the shape of a 'chunked' chunk at this size, so
        # for the ring only the kernel spy below tells them apart.)
        assert _dense_logits(_lowered_train_text(f"{mode}:dense"), heads)

    # ... and the default never calls a dense kernel nor materialises whole-device logits.
    def refuse(*args, **kwargs):
        raise AssertionError(f"{mode} without a suffix called a dense attention kernel")

    monkeypatch.setattr(attn_lib, "dense_attention", refuse)
    monkeypatch.setattr(attn_lib, "dense_attention_with_lse", refuse)
    text = _lowered_train_text(mode)
    assert "all-gather" in text or "all_gather" in text or "collective_permute" in text
    assert not _dense_logits(text, heads)


def test_default_per_device_memory_is_linear():
    """Compiled per-device temporaries of allgather cross-view attention on view=4 with the
    default kernel vs ':dense', L = 8192 tokens (2048 queries per device, 2 heads): dense holds
    [1, 2, 2048, 8192] f32 logits (128 MiB); the default a few query blocks of them."""
    mesh = make_mesh({"view": V}, devices=jax.devices()[:V])
    x = jax.ShapeDtypeStruct((1, 8192, 2, 8), jnp.float32)

    def temp_bytes(impl):
        fn = jax.jit(lambda q, k, v: attn_lib.dot_product_attention(q, k, v, impl=impl))
        with jax.set_mesh(mesh):
            shard = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, "view"))
            compiled = jax.jit(fn, in_shardings=(shard,) * 3).lower(x, x, x).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    dense, default = temp_bytes("allgather_view:dense"), temp_bytes("allgather_view")
    assert dense >= 2 * 2048 * 8192 * 4  # the detector: dense logits are there
    assert default < dense / 8, (default, dense)
