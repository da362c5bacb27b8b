"""Optimizer, train step (NaN guard, EMA), loop metrics and the non-finite stop, on a toy task."""

import dataclasses
import glob
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from da3_jax.train import loop, optim
from da3_jax.train.state import create_state
from da3_jax.train.step import make_train_step
from data_pipelines.sources import write_array_record
from data_pipelines.synthetic.render import render_scene
from tests.train.toy import toy_config, toy_task


def _ocfg(**kw):
    base = dict(lr=0.1, total_steps=100, warmup_steps=10, end_lr_ratio=0.01, weight_decay=0.0,
                grad_clip=0.0, backbone_regex="^backbone/", backbone_lr_mult=0.1)
    base.update(kw)
    return ml_collections.ConfigDict(base)


def test_schedule_warmup_then_cosine():
    s = optim.lr_schedule(_ocfg())
    np.testing.assert_allclose(s(0), 0.0, atol=1e-9)
    np.testing.assert_allclose(s(5), 0.05, rtol=1e-5)
    np.testing.assert_allclose(s(10), 0.1, rtol=1e-5)
    # cosine from 0.1 to 0.001 over steps 10..100: halfway = (0.1 + 0.001) / 2
    np.testing.assert_allclose(s(55), 0.0505, rtol=1e-4)
    np.testing.assert_allclose(s(100), 0.001, rtol=1e-4)


def test_backbone_gets_lower_lr_and_decay_mask():
    params = {"backbone": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)},
              "head": {"kernel": jnp.ones((2, 2)), "pos_embed": jnp.ones((1, 2, 2))}}
    labels = optim.param_labels(params, "^backbone/")
    assert labels["backbone"]["kernel"] == "backbone" and labels["head"]["kernel"] == "head"
    mask = optim.decay_mask(params)
    assert mask["backbone"]["kernel"] and not mask["backbone"]["bias"]
    assert not mask["head"]["pos_embed"]
    tx, _ = optim.make_optimizer(_ocfg(warmup_steps=0), params)
    grads = jax.tree.map(lambda p: 0.3 * jnp.ones_like(p), params)
    updates, _ = tx.update(grads, tx.init(params), params)
    # Adam's first step moves every coordinate by lr * g / (|g| + eps) = lr.
    np.testing.assert_allclose(updates["head"]["kernel"], -0.1, rtol=1e-4)
    np.testing.assert_allclose(updates["backbone"]["kernel"], -0.01, rtol=1e-4)


def test_grad_clipping_bounds_the_gradient():
    params = {"head": {"w": jnp.zeros(4)}}
    tx, sched = optim.make_optimizer(_ocfg(grad_clip=1.0, warmup_steps=0), params)
    ref = optax.adamw(sched, weight_decay=0.0)  # fed with gradients clipped by hand
    g1, g2 = jnp.array([10.0, 0, 0, 0]), jnp.array([0.0, 0.5, 0, 0])
    s, r = tx.init(params), ref.init(params)
    for g, g_clipped in ((g1, g1 / 10.0), (g2, g2)):
        u, s = tx.update({"head": {"w": g}}, s, params)
        v, r = ref.update({"head": {"w": g_clipped}}, r, params)
        np.testing.assert_allclose(u["head"]["w"], v["head"]["w"], rtol=1e-5, atol=1e-8)


def test_step_skips_nonfinite_and_updates_ema():
    params = {"head": {"w": jnp.array([1.0, -2.0])}}
    tx, sched = optim.make_optimizer(_ocfg(warmup_steps=0, backbone_lr_mult=1.0), params)

    def loss_fn(p, batch, rng):
        loss = jnp.sum(p["head"]["w"] ** 2) * batch["k"]
        return loss, {"l": loss}

    step = make_train_step(loss_fn, tx, sched, ema_decay=0.9)
    state = create_state(params, tx, jax.random.PRNGKey(0), use_ema=True)
    state, m = step(state, {"k": jnp.float32(1.0)})
    w1 = np.asarray(state.params["head"]["w"])
    np.testing.assert_allclose(w1, [1.0 - 0.1, -2.0 + 0.1], rtol=1e-5)
    np.testing.assert_allclose(state.ema_params["head"]["w"],
                               0.9 * np.array([1.0, -2.0]) + 0.1 * w1, rtol=1e-6)
    assert float(m["skipped"]) == 0.0 and np.isclose(float(m["lr"]), 0.1)
    opt_before = jax.tree.map(np.asarray, state.opt_state)
    ema_before = np.asarray(state.ema_params["head"]["w"])
    for _ in range(2):
        state, m = step(state, {"k": jnp.float32(jnp.nan)})
    assert float(m["skipped"]) == 1.0
    np.testing.assert_array_equal(state.params["head"]["w"], w1)
    np.testing.assert_array_equal(state.ema_params["head"]["w"], ema_before)
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, state.opt_state),
                 opt_before)
    assert int(state.step) == 3 and int(state.nonfinite_run) == 2
    state, _ = step(state, {"k": jnp.float32(1.0)})
    assert int(state.nonfinite_run) == 0 and int(state.nonfinite_max_run) == 2
    assert int(state.nonfinite_total) == 2


@pytest.fixture(scope="module")
def data_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "toy.array_record"
    write_array_record([render_scene(i, 3, 14, 14, seed=3) for i in range(4)], path)
    return str(path)


def test_loop_writes_metrics_and_checkpoints(tmp_path, data_path):
    config = toy_config(data_path, total_steps=6, checkpoint_every=3)
    config.eval_every = 4
    state = loop.train(config, str(tmp_path), task=toy_task(config), echo=lambda s: None)
    assert int(state.step) == 6
    assert glob.glob(os.path.join(tmp_path, "tb", "events.out.tfevents.*"))
    rows = [json.loads(x) for x in open(os.path.join(tmp_path, "tb", "train_metrics.jsonl"))]
    evals = [r for r in rows if r["prefix"] == "eval"]
    rows = [r for r in rows if r["prefix"] == "train"]
    assert [r["step"] for r in evals] == [4, 6]  # every eval_every steps and at the end
    # the hook sees the EMA params (ema_decay=0.9 in the toy config)
    np.testing.assert_allclose(evals[-1]["head_kernel_sum"],
                               float(np.sum(state.ema_params["head"]["kernel"])), rtol=1e-6)
    assert [r["step"] for r in rows] == list(range(1, 7))
    for key in ("loss", "loss_mse", "grad_norm", "lr", "skipped"):
        assert all(np.isfinite(r[key]) for r in rows), key
    assert all(r["steps_per_sec"] > 0 and r["examples_per_sec"] > 0 for r in rows[1:])
    assert sorted(os.listdir(os.path.join(tmp_path, "checkpoints"))) == ["3", "6"]


def test_loop_stops_after_consecutive_nonfinite(tmp_path, data_path):
    config = toy_config(data_path, total_steps=20, checkpoint_every=0)
    task = toy_task(config, nan_from_step=2)
    with pytest.raises(loop.NonFiniteError, match="3 consecutive non-finite"):
        loop.train(config, str(tmp_path), task=task, echo=lambda s: None)
    rows = [json.loads(x) for x in open(os.path.join(tmp_path, "tb", "train_metrics.jsonl"))]
    assert [r["skipped"] for r in rows] == [0.0, 0.0, 1.0, 1.0, 1.0]


def test_data_parallel_mesh_matches_single_device(tmp_path, data_path):
    """Same toy run on the 8 simulated devices (batch over 'data') and on one device."""
    results = []
    for name, mesh_shape in (("one", None), ("mesh", {"data": -1})):
        config = toy_config(data_path, total_steps=3, checkpoint_every=0)
        config.batch_size = 8
        config.mesh_shape = mesh_shape
        state = loop.train(config, str(tmp_path / name), task=toy_task(config),
                           echo=lambda s: None)
        results.append(state)
    assert len(results[1].params["head"]["kernel"].sharding.device_set) == jax.device_count()
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6),
                 results[0].params, results[1].params)


def test_frozen_group_gets_no_optimizer_state_and_zero_updates():
    params = {"backbone": {"kernel": jnp.ones((2, 2))}, "head": {"kernel": jnp.ones((2, 2))}}
    tx, _ = optim.make_optimizer(_ocfg(warmup_steps=0, weight_decay=0.05,
                                       backbone_lr_mult=0.0), params)
    state = tx.init(params)
    grads = jax.tree.map(lambda p: 0.3 * jnp.ones_like(p), params)
    updates, _ = tx.update(grads, state, params)
    np.testing.assert_array_equal(updates["backbone"]["kernel"], 0.0)
    np.testing.assert_allclose(updates["head"]["kernel"], -0.1 * (1 + 0.05), rtol=1e-4)
    sizes = [x.size for x in jax.tree.leaves(state) if np.ndim(x) > 0]
    assert sum(sizes) == 2 * 4  # Adam moments of the head only


def test_state_with_pretrained_weights_compiles_the_step_once():
    """Pretrained host weights next to randomly initialised ones: the first step must see the
    same argument layout as every later one (one compile, not two)."""
    model_task = toy_task(toy_config("unused.array_record", total_steps=2))

    def load(params):
        return dict(params, backbone=jax.tree.map(lambda a: np.asarray(a) + 1.0,
                                                  params["backbone"]))

    task = dataclasses.replace(model_task, load_pretrained=load)
    spec = {"images": jax.ShapeDtypeStruct((2, 1, 14, 14, 3), jnp.float32),
            "depth": jax.ShapeDtypeStruct((2, 1, 14, 14), jnp.float32),
            "valid": jax.ShapeDtypeStruct((2, 1, 14, 14), jnp.bool_)}
    params = jax.eval_shape(task.init_params, jax.random.PRNGKey(0), spec)
    tx, schedule = optim.make_optimizer(_ocfg(), params)
    state, _ = loop.init_state(task, tx, jax.random.PRNGKey(0), spec, None, use_ema=False)
    step = loop.jit_train_step(task, tx, schedule, 0.0, None, None, None)
    batch = {k: np.ones(v.shape, v.dtype) for k, v in spec.items()}
    for _ in range(3):
        state, _ = step(state, batch)
    assert step._cache_size() == 1
