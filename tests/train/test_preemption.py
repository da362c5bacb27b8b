"""Preemption safety: SIGKILL mid-run + restart == uninterrupted run, bit for bit (CPU).

Also: an unfinalised (tmp) checkpoint directory, as left by a kill mid-write, is never restored.
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from da3_jax.train import checkpoint as ckpt_lib
from data_pipelines.sources import write_array_record
from data_pipelines.synthetic.render import render_scene

WORKER = os.path.join(os.path.dirname(__file__), "_preempt_worker.py")
TOTAL = 12


def _env():
    env = dict(os.environ)
    env["XLA_FLAGS"] = ""  # one device, like the uninterrupted run
    env["JAX_PLATFORMS"] = "cpu"
    return env


def _run(workdir, data, out, sleep=0.0):
    return subprocess.Popen(
        [sys.executable, WORKER, str(workdir), str(data), str(TOTAL), str(sleep), str(out)],
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


@pytest.fixture(scope="module")
def data_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "toy.array_record"
    write_array_record([render_scene(i, 3, 14, 14, seed=5) for i in range(6)], path)
    return path


def test_sigkill_resume_is_bit_exact(tmp_path, data_path):
    ref = _run(tmp_path / "ref", data_path, tmp_path / "ref.npz")
    killed = _run(tmp_path / "run", data_path, tmp_path / "unused.npz", sleep=0.4)
    ckdir = tmp_path / "run" / "checkpoints"
    deadline = time.time() + 120
    while time.time() < deadline:  # kill once a mid-run checkpoint (step >= 4) is final
        steps = [int(p.name) for p in ckdir.glob("*") if p.name.isdigit()] if ckdir.exists() else []
        if steps and max(steps) >= 4:
            break
        assert killed.poll() is None, killed.stdout.read()
        time.sleep(0.05)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "unused.npz").exists()

    resumed = _run(tmp_path / "run", data_path, tmp_path / "resumed.npz")
    out_resumed, _ = resumed.communicate(timeout=180)
    out_ref, _ = ref.communicate(timeout=180)
    assert resumed.returncode == 0, out_resumed
    assert ref.returncode == 0, out_ref
    assert "resumed from" in out_resumed and f"at step {TOTAL}" not in out_resumed
    a, b = np.load(tmp_path / "ref.npz"), np.load(tmp_path / "resumed.npz")
    assert sorted(a.files) == sorted(b.files) and len(a.files) > 4
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_unfinalised_checkpoint_is_ignored(tmp_path):
    import jax.numpy as jnp

    manager = ckpt_lib.make_manager(str(tmp_path), async_save=False)
    state = {"w": jnp.arange(3.0)}
    ckpt_lib.save(manager, 2, state)
    manager.wait_until_finished()
    # What a kill mid-write leaves behind: a newer step still in its tmp directory.
    fake = tmp_path / "checkpoints" / "7.orbax-checkpoint-tmp-1234567"
    (fake / "state").mkdir(parents=True)
    (fake / "state" / "garbage").write_bytes(b"\0" * 16)
    manager2 = ckpt_lib.make_manager(str(tmp_path), async_save=False)
    assert ckpt_lib.latest_valid_step(manager2) == 2
    restored = ckpt_lib.restore(manager2, 2, {"w": jnp.zeros(3)})
    np.testing.assert_array_equal(restored["w"], np.arange(3.0))
