"""Checkpoint and loader robustness: fallback from a corrupt latest checkpoint, no repeated
metrics after a resume, atomic convert into an existing folder, and
``Predictor.from_checkpoint`` on a training work dir (experiment config + model overrides)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from da3_jax.train import checkpoint as ckpt_lib
from da3_jax.train.metrics_writer import MetricWriter


def test_corrupt_latest_checkpoint_falls_back_with_a_warning(tmp_path):
    mgr = ckpt_lib.make_manager(tmp_path, async_save=False)
    for step in (1, 2):
        ckpt_lib.save(mgr, step, {"w": jnp.full((4,), float(step)), "step": jnp.int32(step)})
    mgr.wait_until_finished()
    for f in (tmp_path / "checkpoints" / "2" / "state").rglob("*"):
        if f.is_file():
            f.write_bytes(b"garbage")  # every file of the latest step, as a torn copy would be
    target = {"w": jnp.zeros((4,)), "step": jnp.int32(0)}
    warnings = []
    step, state = ckpt_lib.restore_latest(mgr, target, warn=warnings.append)
    assert step == 1 and np.allclose(state["w"], 1.0)
    assert len(warnings) == 1 and "step 2" in warnings[0]
    for f in (tmp_path / "checkpoints" / "1" / "state").rglob("*"):
        if f.is_file():
            f.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="no readable checkpoint"):
        ckpt_lib.restore_latest(mgr, target)
    mgr.close()


def test_every_process_restores_the_same_step(tmp_path):
    """Step 2 restores here, but (as ``all_ok`` reports, standing in for the cross-process
    ``process_allgather``) not on another process: this process must fall back to step 1 too."""
    mgr = ckpt_lib.make_manager(tmp_path, async_save=False)
    for step in (1, 2):
        ckpt_lib.save(mgr, step, {"w": jnp.full((4,), float(step)), "step": jnp.int32(step)})
    mgr.wait_until_finished()
    local = []

    def another_process_fails_step_2(ok):
        local.append(ok)
        return ok and len(local) > 1

    target = {"w": jnp.zeros((4,)), "step": jnp.int32(0)}
    warnings = []
    step, state = ckpt_lib.restore_latest(mgr, target, warn=warnings.append,
                                          all_ok=another_process_fails_step_2)
    mgr.close()
    assert local == [True, True]  # step 2 did restore locally, and was still rejected
    assert step == 1 and np.allclose(state["w"], 1.0) and int(state["step"]) == 1
    assert len(warnings) == 1 and "step 2" in warnings[0] and "another process" in warnings[0]
    # one process: the agreement is the local result, and the candidates are the local ones
    assert ckpt_lib.all_processes_ok(True) and not ckpt_lib.all_processes_ok(False)
    assert ckpt_lib.agreed_steps([7, 3]) == [7, 3]


def test_metrics_are_not_repeated_after_a_resume(tmp_path):
    w = MetricWriter(tmp_path, echo=None)
    for step in range(1, 6):
        w.write(step, {"loss": float(step)})
    w.close()
    with open(tmp_path / "train_metrics.jsonl", "a") as f:
        f.write('{"step": 6, "pre')  # a line torn by a kill mid-write
    w = MetricWriter(tmp_path, echo=None, resume_step=3)  # the run resumed at checkpoint 3
    for step in range(4, 7):
        w.write(step, {"loss": 10.0 + step})
    w.close()
    rows = [json.loads(x) for x in (tmp_path / "train_metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in rows] == [1.0, 2.0, 3.0, 14.0, 15.0, 16.0]


def test_convert_into_an_existing_folder_fails_or_replaces_the_pair(tmp_path):
    from da3_jax.convert import load_converted, save_converted
    from da3_jax.model import get_config

    out = tmp_path / "conv"
    save_converted(out, get_config("da3-small"), {"a": np.ones(3, np.float32)})
    with pytest.raises(ValueError, match="--overwrite"):
        save_converted(out, get_config("da3-base"), {"b": np.zeros(2, np.float32)})
    config, params = load_converted(out)  # untouched by the refused write
    assert config.name == "da3-small" and set(params) == {"a"}
    save_converted(out, get_config("da3-base"), {"b": np.zeros(2, np.float32)}, overwrite=True)
    config, params = load_converted(out)
    assert config.name == "da3-base" and set(params) == {"b"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conv"]  # no temporary left over


def test_predictor_loads_a_training_workdir_with_its_model_overrides(tmp_path):
    from da3_jax.infer import Predictor
    from da3_jax.model import DA3
    from da3_jax.train.da3_tasks import model_config
    from experiments.configs import tiny_cpu
    from experiments.launch import write_config

    config = tiny_cpu.get_config("stage=teacher")
    write_config(config, tmp_path)
    mc = model_config(config)
    shapes = jax.eval_shape(DA3(mc).init, jax.random.key(0),
                            jax.ShapeDtypeStruct((1, 1, 28, 28, 3), np.float32))["params"]
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: rng.normal(size=s.shape).astype(np.float32), shapes)
    mgr = ckpt_lib.make_manager(tmp_path, async_save=False)
    ckpt_lib.save(mgr, 3, {"params": params, "ema_params": None, "step": np.int32(3)})
    mgr.wait_until_finished()
    mgr.close()
    for path in (tmp_path, tmp_path / "checkpoints" / "3"):
        loaded = Predictor.from_checkpoint(str(path))
        assert loaded.config.depth == 4 and loaded.config.embed_dim == 96  # tiny overrides
        assert not loaded.config.cam_enc and not loaded.config.cam_dec  # teacher overrides
        for a, b in zip(jax.tree.leaves(loaded.params), jax.tree.leaves(params), strict=True):
            np.testing.assert_array_equal(np.asarray(a), b)
    np.testing.assert_array_equal(
        jax.tree.leaves(ckpt_lib.restore_params(tmp_path))[0], jax.tree.leaves(params)[0])
