"""da3-tiny with the views sharded over a 'view' mesh axis (cross-view attention via shard_map)
equals the single-device forward: N divisible by the axis, and N = 6 on a 4-way axis (views
padded to 8 and masked out of cross-view attention, the camera encoder and reference selection);
gradients of a scalar loss w.r.t. the parameters too."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from da3_jax.model import DA3, get_config
from da3_jax.parallel import rules
from da3_jax.parallel.mesh import make_mesh
from tests._fast_compile import compile_fast, run_fast

KEYS = ("depth", "depth_conf", "ray", "ray_conf", "pose_enc", "extrinsics")
# Every program here (sharded and one-device reference alike) is compiled with
# tests._fast_compile: the compiles are most of this file's CPU time.


@pytest.fixture(scope="module")
def tiny():
    cfg = get_config("da3-tiny")
    shapes = jax.eval_shape(DA3(cfg).init, jax.random.key(0), jnp.zeros((1, 2, 28, 28, 3)))
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: (rng.normal(size=s.shape) * 0.05).astype(np.float32),
                          shapes["params"])
    return cfg, params


def _cameras(b, n):
    rng = np.random.default_rng(3)
    ang = rng.uniform(-0.3, 0.3, (b, n))
    c, s = np.cos(ang), np.sin(ang)
    rot = np.zeros((b, n, 3, 3))
    rot[..., 0, 0], rot[..., 0, 2], rot[..., 2, 0], rot[..., 2, 2] = c, s, -s, c
    rot[..., 1, 1] = 1
    ext = np.concatenate([rot, rng.normal(size=(b, n, 3, 1))], axis=-1).astype(np.float32)
    k = np.tile(np.array([[30.0, 0, 14], [0, 30, 14], [0, 0, 1]], np.float32), (b, n, 1, 1))
    return ext, k


def _sharded(impl, mesh_shape, fn_of_model, *args):
    """Compile and run fn_of_model(DA3(da3-tiny with impl))(*args) on a mesh; args[1] is the
    images (batch over data, views over view when N divides the view axis)."""
    cfg = get_config("da3-tiny")
    cfg.attention_impl = impl
    size = int(np.prod(list(mesh_shape.values())))
    mesh = make_mesh(mesh_shape, devices=jax.devices()[:size])
    with jax.set_mesh(mesh):
        divisible = args[1].shape[1] % mesh_shape["view"] == 0
        batch = rules.batch_sharding(mesh, 5, shard_views=divisible)
        fn = jax.jit(fn_of_model(DA3(cfg)), in_shardings=(None, batch) + (None,) * (len(args) - 2))
        compiled = compile_fast(fn, *args)
        return compiled(*args), compiled.as_text()


def _close(out, ref, keys=KEYS, tol=2e-4):
    for key in keys:
        np.testing.assert_allclose(out[key], ref[key], rtol=tol, atol=tol, err_msg=key)


def test_view_sharded_forward_matches_single_device(tiny):
    cfg, params = tiny
    images = jax.random.normal(jax.random.key(1), (2, 4, 28, 28, 3))  # B=2, N=4 (ref selection)
    ref = run_fast(DA3(cfg).apply, {"params": params}, images)
    out, hlo = _sharded("allgather_view", {"data": 2, "view": 4},
                        lambda m: m.apply, {"params": params}, images)
    assert "all-gather" in hlo
    _close(out, ref)


@pytest.mark.parametrize("impl,mesh_shape,posed", [
    ("allgather_view", {"view": 4}, False),
    ("ring_view", {"data": 2, "view": 4}, True),
])
def test_padded_views_match_single_device(tiny, impl, mesh_shape, posed):
    """N = 6 on a 4-way view axis: padded to 8 views; reference selection (no cameras) or the
    camera encoder's attention over views (cameras) must ignore the 2 padded views."""
    cfg, params = tiny
    images = jax.random.normal(jax.random.key(2), (2, 6, 28, 28, 3))
    cams = _cameras(2, 6) if posed else (None, None)
    ref = run_fast(DA3(cfg).apply, {"params": params}, images, *cams)
    out, hlo = _sharded(impl, mesh_shape, lambda m: m.apply, {"params": params}, images,
                        *cams)
    assert ("collective-permute" if impl == "ring_view" else "all-gather") in hlo
    assert out["depth"].shape == (2, 6, 28, 28)
    _close(out, ref)


def test_padded_views_gradients_match_single_device(tiny):
    cfg, params = tiny
    images = jax.random.normal(jax.random.key(4), (2, 6, 28, 28, 3))

    def loss_fn(model):
        def loss(p, x):
            out = model.apply({"params": p}, x)
            return (jnp.mean(out["depth"]) + jnp.mean(out["ray"] ** 2)
                    + jnp.mean(out["pose_enc"] ** 2))
        return jax.grad(loss)

    ref = run_fast(loss_fn(DA3(cfg)), params, images)
    got, _ = _sharded("allgather_view", {"data": 2, "view": 4}, loss_fn, params, images)
    scale = max(float(jnp.abs(g).max()) for g in jax.tree.leaves(ref))
    for (path, g), r in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(ref),
                            strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-3, atol=1e-4 * scale,
                                   err_msg=jax.tree_util.keystr(path))
