"""A train-state checkpoint saved on one mesh restores onto another (8 simulated CPU devices).

The state is a training ``TrainState`` whose structure is real: the parameter tree of a
shortened da3-tiny (depth 4; paths, shapes and dtypes from ``jax.eval_shape`` of ``DA3.init``),
the optax AdamW state of that tree (``count``, ``mu``, ``nu``, the weight-decay / schedule
states), the step and the raw ``uint32[2]`` RNG key. It is placed on mesh A (fsdp=8) with
``rules.tree_shardings`` and saved (async, as in training) with ``da3_jax.train.checkpoint``.
A fresh manager, as a resumed run opens it, then restores it with ``checkpoint.restore`` into
abstract arrays (``jax.ShapeDtypeStruct`` carrying the target ``NamedSharding`` from the same
rules) on mesh B (data=2, fsdp=2, view=2), mesh D (fsdp=2, tensor=4) and a one-device mesh C.
Every leaf must come back bit-equal to the saved host copy, with exactly the requested sharding,
and every device must hold its own slice of the saved value.

Leaf values are drawn with NumPy rather than by ``DA3.init`` / an optimizer step: a real init
compiles the whole forward (~45 s on the shared CI cores) and the values' origin is irrelevant
to a bit-exact round trip.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from da3_jax.model import DA3, get_config
from da3_jax.parallel import rules
from da3_jax.parallel.mesh import make_mesh
from da3_jax.train import checkpoint
from da3_jax.train.state import TrainState

STEP = 7
TARGET_MESHES = {
    "data2_fsdp2_view2": {"data": 2, "fsdp": 2, "view": 2},
    "fsdp2_tensor4": {"fsdp": 2, "tensor": 4},
}


def _abstract(state, shardings):
    """ShapeDtypeStructs of ``state`` carrying ``shardings`` (the orbax restore target)."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                        state, shardings)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(workdir, host copy of the saved state, the state's shardings on mesh A)."""
    cfg = get_config("da3-tiny")
    cfg.depth, cfg.out_layers, cfg.cam_enc_depth = 4, (0, 1, 2, 3), 2  # fewer leaves: faster
    params = jax.eval_shape(DA3(cfg).init, jax.random.key(0),
                            jnp.zeros((1, 2, 14, 14, 3), jnp.float32))["params"]
    tx = optax.adamw(1e-3, weight_decay=0.05)
    abstract = TrainState(step=jax.ShapeDtypeStruct((), jnp.int32), params=params,
                          opt_state=jax.eval_shape(tx.init, params),
                          rng=jax.eval_shape(lambda: jax.random.PRNGKey(3)))
    rng = np.random.default_rng(0)

    def draw(s):
        if jnp.issubdtype(s.dtype, jnp.floating):
            return rng.normal(size=s.shape).astype(s.dtype)
        return rng.integers(1, 2**31 - 1, size=s.shape).astype(s.dtype)

    host = jax.tree.map(draw, abstract)  # params, AdamW mu/nu, count, step and key all distinct
    # Mesh A: every leaf with a dimension divisible by 8 is sharded (fsdp_min_size=1), so the
    # restores below gather, re-slice and replicate. (The default min size would also leave
    # small leaves replicated; orbax then slices them per replica for the first save, compiling
    # one XLA slice program per leaf shape: ~20 s on these cores.)
    mesh_a = make_mesh({"fsdp": 8})
    shardings_a = rules.tree_shardings(abstract, mesh_a, fsdp_min_size=1)
    state = jax.device_put(host, shardings_a)

    workdir = tmp_path_factory.mktemp("reshard")
    manager = checkpoint.make_manager(str(workdir))  # async save, as in training
    assert checkpoint.save(manager, STEP, state)
    manager.wait_until_finished()
    manager.close()
    return workdir, host, shardings_a


def test_mesh_a_layout_is_fsdp_sharded(saved):
    """The saved state really is sharded: the round trips below change layouts."""
    _, host, shardings_a = saved
    sizes = [(x.size, "fsdp" in s.spec) for x, s in zip(jax.tree.leaves(host),
                                                         jax.tree.leaves(shardings_a), strict=True)]
    assert sum(n for n, sharded in sizes if sharded) > 0.99 * sum(n for n, _ in sizes)
    assert "fsdp" not in shardings_a.step.spec and "fsdp" not in shardings_a.rng.spec
    adam = host.opt_state[0]
    assert jax.tree.structure(adam.mu) == jax.tree.structure(host.params)
    assert jax.tree.structure(adam.nu) == jax.tree.structure(host.params)


def _restore_and_check(workdir, host, shardings):
    manager = checkpoint.make_manager(str(workdir))  # a fresh manager: a resumed run
    assert checkpoint.latest_valid_step(manager) == STEP
    restored = checkpoint.restore(manager, STEP, _abstract(host, shardings))
    manager.close()
    assert jax.tree.structure(restored) == jax.tree.structure(host)
    paths = [rules.path_str(p) for p, _ in jax.tree_util.tree_leaves_with_path(host)]
    for path, got, want, target in zip(paths, jax.tree.leaves(restored), jax.tree.leaves(host),
                                       jax.tree.leaves(shardings), strict=True):
        assert isinstance(got, jax.Array), path
        assert got.sharding == target, (path, got.sharding, target)
        assert got.dtype == want.dtype and got.shape == want.shape, path
        np.testing.assert_array_equal(np.asarray(got), want, err_msg=path, strict=True)
        for shard in got.addressable_shards:  # each device holds its slice of the saved value
            np.testing.assert_array_equal(np.asarray(shard.data), want[shard.index],
                                          err_msg=path)
    return restored


@pytest.mark.parametrize("name", sorted(TARGET_MESHES))
def test_restore_onto_other_mesh(saved, name):
    workdir, host, shardings_a = saved
    mesh = make_mesh(TARGET_MESHES[name])
    shardings = rules.tree_shardings(host, mesh)
    changed = [a.spec != b.spec for a, b in zip(jax.tree.leaves(shardings_a),
                                                jax.tree.leaves(shardings), strict=True)]
    assert any(changed)
    if "tensor" in name:
        qkv = shardings.params["backbone"]["pretrained"]["blocks_3"]["attn"]["qkv"]["kernel"]
        assert "tensor" in qkv.spec
    _restore_and_check(workdir, host, shardings)


def test_restore_onto_one_device(saved):
    workdir, host, _ = saved
    device = jax.devices()[5]
    mesh = make_mesh({"data": 1}, devices=[device])
    shardings = rules.tree_shardings(host, mesh)
    restored = _restore_and_check(workdir, host, shardings)
    for leaf in jax.tree.leaves(restored):
        assert leaf.sharding.device_set == {device}
        assert leaf.sharding.is_fully_replicated
