"""The training loop: one readable function, ``train(config, workdir)``.

Order of events per step: next batch -> jitted ``train_step`` (state donated) -> every
``log_every`` steps: metrics to TensorBoard/console, non-finite guard check -> every
``eval_every`` steps: the task's eval hook -> every ``checkpoint_every`` steps: async orbax save
of the state and the Grain iterator. On start, the latest finalised checkpoint in
``<workdir>/checkpoints`` is restored automatically (params, optimizer, step, RNG, iterator), so
killing and relaunching the same command continues the run exactly.

Parallelism: with ``config.mesh_shape`` (e.g. ``{'data': -1}`` or ``{'fsdp': 8, 'view': 4}``)
the state is placed by ``da3_jax.parallel.rules.tree_shardings`` and every host's batch becomes
a global array (``parallel.multihost.global_batch``); ``config.batch_size`` is the global batch,
each host loads ``batch_size / process_count`` scenes. Without it everything runs on one device.
"""

from __future__ import annotations

import os

import jax
import numpy as np
import tqdm

from da3_jax.train import checkpoint as ckpt_lib
from da3_jax.train import optim
from da3_jax.train.metrics_writer import MetricWriter
from da3_jax.train.state import TrainState, create_state
from da3_jax.train.step import make_train_step


class NonFiniteError(RuntimeError):
    """Raised after ``config.max_nonfinite`` consecutive non-finite (skipped) updates."""


def train(config, workdir: str, task=None, echo=print) -> TrainState:
    """Trains ``config.task`` (see ``da3_jax.train.tasks``) in ``workdir``; returns the state."""
    from da3_jax.train import tasks  # the task registry imports the model; keep loop light

    task = task or tasks.get_task(config)
    os.makedirs(workdir, exist_ok=True)
    total = int(config.optim.total_steps)
    data_iter = task.train_iter()
    first = next(iter(task.train_iter()))  # a fresh iterator: shapes for init, no data consumed
    rng = jax.random.PRNGKey(int(config.seed))
    init_rng, state_rng = jax.random.split(rng)
    params = task.init_params(init_rng, first)
    tx, schedule = optim.make_optimizer(config.optim, params)
    state = create_state(params, tx, state_rng, use_ema=float(config.get("ema_decay", 0.0)) > 0)

    mesh = None
    if config.get("mesh_shape"):
        # Data / FSDP / tensor parallelism from da3_jax.parallel: params and optimizer state by
        # the path rules, batches [B, N, ...] over (data, fsdp) (and views over 'view').
        from da3_jax.parallel import mesh as mesh_lib
        from da3_jax.parallel import multihost, rules

        mesh = mesh_lib.mesh_from_config(config)
        state = jax.device_put(state, rules.tree_shardings(state, mesh))
        shard_views = bool(config.get("shard_views", False))

        def place(batch):
            return multihost.global_batch(batch, mesh, shard_views=shard_views)
    else:
        def place(batch):
            return batch

    manager = ckpt_lib.make_manager(
        workdir,
        max_to_keep=int(config.get("keep_checkpoints", 3)),
        async_save=bool(config.get("async_checkpoint", True)),
    )
    start = ckpt_lib.latest_valid_step(manager)
    if start is not None:
        state = ckpt_lib.restore(manager, start, state, data_iter)
        echo(f"resumed from {manager.directory} at step {int(state.step)}")

    train_step = make_train_step(task.loss_fn, tx, schedule, float(config.get("ema_decay", 0.0)))
    writer = MetricWriter(os.path.join(workdir, "tb"), echo=None)
    log_every = max(int(config.get("log_every", 10)), 1)
    eval_every = int(config.get("eval_every", 0))
    ckpt_every = int(config.get("checkpoint_every", 0))
    max_nonfinite = int(config.get("max_nonfinite", 10))
    batch_size = int(config.batch_size)

    step = int(state.step)
    bar = tqdm.tqdm(total=total, initial=step, desc=config.get("name", "train"),
                    disable=jax.process_index() != 0 or not config.get("progress", True))
    writer.throughput(step, batch_size)
    while step < total:
        batch = place(next(data_iter))
        if mesh is not None:
            with jax.set_mesh(mesh):
                state, metrics = train_step(state, batch)
        else:
            state, metrics = train_step(state, batch)
        step += 1
        bar.update(1)
        if step % log_every == 0 or step == total:
            scalars = writer.write(step, {**metrics, **writer.throughput(step, batch_size)})
            bar.set_postfix(loss=f"{scalars['loss']:.4g}", lr=f"{scalars['lr']:.2e}")
            worst = int(state.nonfinite_max_run)
            if worst >= max_nonfinite:
                manager.wait_until_finished()
                raise NonFiniteError(
                    f"{worst} consecutive non-finite losses/gradients (limit max_nonfinite="
                    f"{max_nonfinite}) by step {step}; updates were skipped, last good params "
                    f"are in {manager.directory}. Lower the learning rate or inspect the data."
                )
        do_eval = eval_every > 0 and (step % eval_every == 0 or step == total)
        if task.eval_fn is not None and do_eval:
            eval_params = state.ema_params if state.ema_params is not None else state.params
            writer.write(step, task.eval_fn(eval_params), prefix="eval")
        if ckpt_every > 0 and (step % ckpt_every == 0 or step == total):
            ckpt_lib.save(manager, step, state, data_iter, force=True)
    bar.close()
    manager.wait_until_finished()
    manager.close()
    writer.close()
    jax.block_until_ready(state)
    echo(f"finished {step} steps; nonfinite skipped: {int(state.nonfinite_total)}")
    return state


def final_params(state: TrainState):
    """EMA params if EMA is on, else params, as host NumPy arrays."""
    params = state.ema_params if state.ema_params is not None else state.params
    return jax.tree.map(np.asarray, params)
