"""Mesh construction, logical rules, FSDP/tensor parameter specs, and a sharded train step that
matches the single-device step (8 simulated CPU devices)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from da3_jax.parallel import mesh as mesh_lib
from da3_jax.parallel import multihost, rules


def test_resolve_and_make_mesh():
    assert mesh_lib.resolve_mesh_shape({"view": 8}, 8) == {"data": 1, "fsdp": 1, "view": 8,
                                                             "tensor": 1}
    assert mesh_lib.resolve_mesh_shape({"data": -1, "view": 4}, 8)["data"] == 2
    for bad in ({"view": 3}, {"pipeline": 2}, {"data": -1, "fsdp": -1}, {"view": 0}):
        with pytest.raises(ValueError):
            mesh_lib.resolve_mesh_shape(bad, 8)
    cfg = ml_collections.ConfigDict({"mesh_shape": {"data": 2, "fsdp": 2, "view": 2}})
    mesh = mesh_lib.mesh_from_config(cfg)
    assert mesh.axis_names == mesh_lib.AXES
    assert tuple(mesh.axis_sizes) == (2, 2, 2, 1)
    assert all(t == AxisType.Auto for t in mesh.axis_types)
    assert mesh_lib.parse_mesh_arg("view=8, data=1") == {"view": 8, "data": 1}
    with pytest.raises(ValueError, match="axis=size"):
        mesh_lib.parse_mesh_arg("view8")


def test_logical_rules():
    mesh = mesh_lib.make_mesh({"data": 2, "fsdp": 2, "view": 2})
    assert rules.logical_to_mesh_axes(("batch", "views", None), mesh=mesh) == P(
        ("data", "fsdp"), "view", None)
    assert rules.logical_to_mesh_axes(("heads", "embed")) == P("tensor", None)
    with pytest.raises(ValueError, match="unknown logical axis"):
        rules.logical_to_mesh_axes(("pixels",))


def test_param_specs():
    mesh = mesh_lib.make_mesh({"fsdp": 2, "tensor": 2, "data": 2})
    spec = lambda path, shape: rules.param_spec(path, shape, mesh)  # noqa: E731
    assert spec("backbone/pretrained/blocks_3/attn/qkv/kernel", (384, 1152)) == P("fsdp", "tensor")
    assert spec("blocks_3/mlp/fc2/kernel", (1536, 384)) == P("tensor", "fsdp")
    assert spec("blocks_3/attn/qkv/bias", (1152,)) == P("tensor")
    assert spec("blocks_3/norm1/scale", (384,)) == P(None)  # small: replicated
    assert spec("head/conv/kernel", (3, 3, 256, 128)) == P(None, None, "fsdp", None)
    # scanned stacks never shard the layer axis; optimizer-state paths get the param's spec
    assert spec("blocks_scan/mlp/fc1/kernel", (4, 384, 1536)) == P(None, "fsdp", "tensor")
    assert spec("opt_state/0/mu/blocks_3/attn/qkv/kernel", (384, 1152)) == P("fsdp", "tensor")
    assert spec("opt_state/0/count", ()) == P()


class _Tiny(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.gelu(nn.Dense(256, name="fc1")(x))
        return nn.Dense(4, name="fc2")(x)


class _Net(nn.Module):
    @nn.compact
    def __call__(self, x):
        return _Tiny(name="mlp")(x)


def test_sharded_train_step_matches_single_device():
    mesh = mesh_lib.make_mesh({"data": 2, "fsdp": 2, "view": 2})
    model, tx = _Net(), optax.adam(1e-2)
    x = np.random.default_rng(0).normal(size=(8, 128)).astype(np.float32)
    y = np.random.default_rng(1).normal(size=(8, 4)).astype(np.float32)

    def init():
        params = model.init(jax.random.key(0), x[:1])["params"]
        return {"params": params, "opt_state": tx.init(params)}

    def step(state, x, y):
        loss, g = jax.value_and_grad(
            lambda p: jnp.mean((model.apply({"params": p}, x) - y) ** 2))(state["params"])
        upd, opt = tx.update(g, state["opt_state"], state["params"])
        return {"params": optax.apply_updates(state["params"], upd), "opt_state": opt}, loss

    ref_state, ref_loss = jax.jit(step)(init(), x, y)
    shardings = rules.tree_shardings(jax.eval_shape(init), mesh, fsdp_min_size=1024)
    kernel = shardings["params"]["mlp"]["fc1"]["kernel"]
    assert kernel.spec == P(None, "fsdp")  # [128, 256]: FSDP over the largest dim
    assert shardings["opt_state"][0].mu["mlp"]["fc1"]["kernel"].spec == kernel.spec
    data = rules.batch_sharding(mesh, 2, shard_views=False)
    with jax.set_mesh(mesh):
        state = jax.jit(init, out_shardings=shardings)()
        fn = jax.jit(step, in_shardings=(shardings, data, data),
                     out_shardings=(shardings, NamedSharding(mesh, P())))
        new_state, loss = fn(state, x, y)
    assert new_state["params"]["mlp"]["fc1"]["kernel"].sharding.spec == kernel.spec
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-5),
                 new_state, ref_state)


def test_global_batch_single_process():
    mesh = mesh_lib.make_mesh({"data": 2, "view": 4})
    batch = {"images": np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3),
             "scene": np.arange(2)}
    out = multihost.global_batch(batch, mesh)
    assert out["images"].sharding.spec == P(("data", "fsdp"), "view", None)
    np.testing.assert_array_equal(out["images"], batch["images"])
    np.testing.assert_array_equal(out["scene"], batch["scene"])
    assert multihost.host_batch_slice(8) == slice(0, 8)
    assert not multihost.maybe_initialize_distributed(ml_collections.ConfigDict())
