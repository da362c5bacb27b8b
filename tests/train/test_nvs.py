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


def test_demo_nvs_partial_init_and_metrics(tmp_path):
    """The demo's NVS stage (experiments.demo_nvs): a student checkpoint initialises everything
    but the GS head; a mismatched checkpoint is refused; held-out evaluation reports its keys."""
    import pytest

    from da3_jax.convert.checkpoint import save_converted
    from da3_jax.train.nvs import partial_init
    from data_pipelines.synthetic.render import render_scene
    from experiments import demo_nvs

    small = "depth=4,xview=1"
    config = demo_nvs.nvs_config("", steps=1, extra=small)
    task = get_task(config)
    batch = _batch(b=1, n=4)
    fresh = jax.jit(task.init_params)(jax.random.PRNGKey(0), batch)
    # a "trained student": the same network without the GS head, other values
    student = {k: jax.tree.map(lambda a: np.asarray(a) + 1e-3, v) for k, v in fresh.items()
               if k != "gs_head"}
    path = save_converted(tmp_path / "student", tiny_cpu.get_config(f"stage=student,{small}"),
                          student)
    task = get_task(demo_nvs.nvs_config(path, steps=1, extra=small))
    params = task.load_pretrained(fresh)
    assert set(params) == set(student) | {"gs_head"}
    for key in student:
        jax.tree.map(np.testing.assert_array_equal, params[key], student[key])
    jax.tree.map(np.testing.assert_array_equal, params["gs_head"], fresh["gs_head"])
    with pytest.raises(ValueError, match="'head' does not match the model"):
        partial_init(fresh, {"head": {"w": np.zeros(3)}}, "ckpt")
    with pytest.raises(ValueError, match=r"ckpt: parameter groups \['extra'\]"):
        partial_init(fresh, {"extra": {"w": np.zeros(3)}}, "ckpt")

    records = [render_scene(i, 4, 28, 28, seed=2) for i in range(2)]
    result, rows = demo_nvs.evaluate(config, params, records, batch=2)
    for key in ("psnr", "ssim", "baseline_psnr", "baseline_ssim", "baseline_coverage"):
        assert np.isfinite(result[key]), key
    assert 0 < result["baseline_coverage"] <= 1 and result["num_scenes"] == 2
    assert len(rows) == 2 and all(img.shape == (28, 28, 3) for img in rows[0])
    np.testing.assert_array_equal(rows[0][1], records[0].images[3])  # the target view
    figure = demo_nvs.save_figure(rows, str(tmp_path / "nvs.png"), zoom=2)
    assert (tmp_path / "nvs.png").stat().st_size > 0 and figure.endswith("nvs.png")
