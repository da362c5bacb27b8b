"""The `nvs` training stage on tiny shapes: SSIM vs the evaluator's, frozen backbone, a few
steps on one batch reduce the loss, and the loss is the same on a 2-device data mesh."""

import jax
import numpy as np

from da3_jax.eval.metrics import ssim as ssim_reference
from da3_jax.parallel.mesh import make_mesh
from da3_jax.train.nvs import ssim
from da3_jax.train.optim import make_optimizer
from da3_jax.train.state import create_state
from da3_jax.train.step import make_train_step
from da3_jax.train.tasks import get_task
from experiments.configs import tiny_cpu

HW = (28, 28)


def test_ssim_matches_evaluator():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(3, 20, 24, 3)).astype(np.float32)
    y = np.clip(x + rng.normal(scale=0.1, size=x.shape), 0, 1).astype(np.float32)
    np.testing.assert_allclose(float(ssim(x, y)), ssim_reference(x, y), rtol=1e-5)


def _batch(b=2, n=3, seed=0):
    rng = np.random.default_rng(seed)
    w2c = np.tile(np.eye(4)[:3], (b, n, 1, 1))
    w2c[:, :, 0, 3] = rng.uniform(-0.2, 0.2, (b, n))
    k = np.array([[25.0, 0, 14], [0, 25.0, 14], [0, 0, 1]])
    return {
        "images": rng.normal(size=(b, n) + HW + (3,)).astype(np.float32) * 0.5,
        "depth": rng.uniform(1.5, 3.0, (b, n) + HW).astype(np.float32),
        "valid": np.ones((b, n) + HW, bool),
        "extrinsics": w2c.astype(np.float32),
        "intrinsics": np.broadcast_to(k, (b, n, 3, 3)).astype(np.float32),
    }


def test_nvs_stage_trains_heads_with_frozen_backbone():
    config = tiny_cpu.get_config("stage=nvs,steps=20,views=3")
    config.nvs.tile_capacity = 256
    task = get_task(config)
    batch = _batch()
    params = task.init_params(jax.random.PRNGKey(0), batch)
    assert "gs_head" in params
    tx, schedule = make_optimizer(config.optim, params)
    state = create_state(params, tx, jax.random.PRNGKey(1))
    step = make_train_step(task.loss_fn, tx, schedule)
    snapshot = lambda tree: jax.tree.map(np.array, tree)  # noqa: E731 (state is donated)
    start = snapshot(params)
    losses = []
    for i in range(7):
        if i == 6:
            before_last = snapshot(state.params)
        state, metrics = step(state, batch)
        assert float(metrics["skipped"]) == 0 and np.isfinite(float(metrics["loss"]))
        losses.append(float(metrics["loss"]))
    assert losses[-1] < losses[0] and float(metrics["loss_mse"]) > 0
    jax.tree.map(np.testing.assert_array_equal, start["backbone"],
                 snapshot(state.params["backbone"]))  # frozen
    moved = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), start["gs_head"],
                         snapshot(state.params["gs_head"]))
    assert max(jax.tree.leaves(moved)) > 0

    # data-parallel: the batch sharded over a 2-device data mesh gives the same loss
    mesh = make_mesh({"data": 2}, devices=jax.devices()[:2])
    sharded = jax.device_put(batch, jax.NamedSharding(mesh, jax.P("data")))
    with jax.set_mesh(mesh):
        loss_sharded = jax.jit(lambda p, bt: task.loss_fn(p, bt, None)[0])(before_last, sharded)
    np.testing.assert_allclose(float(loss_sharded), losses[-1], rtol=1e-5)
