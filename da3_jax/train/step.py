"""The jitted train step: loss + grads, non-finite guard, optimizer update, EMA.

``loss_fn(params, batch, rng) -> (loss, metrics)`` is supplied by the task (student / teacher,
see ``tasks.py``); ``metrics`` is a flat dict of scalar loss terms. The step never applies a
non-finite update: if the loss or the gradient norm is NaN/Inf, params, optimizer state and EMA
are kept, the counters in the state are bumped, and ``step`` still advances (the batch was
consumed, so a resume replays exactly the same data).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from da3_jax.parallel.xla_options import compiler_options
from da3_jax.train.state import TrainState


def make_train_step(
    loss_fn: Callable,
    tx: optax.GradientTransformation,
    schedule: Callable,
    ema_decay: float = 0.0,
    jit: bool = True,
) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
    """Returns ``train_step(state, batch) -> (state, metrics)``, jitted donating ``state`` with
    the backend's train-step compiler options (``xla_options.compiler_options('train')``)
    (``jit=False``: the plain function, for callers that jit it with explicit shardings, as
    ``train.loop.jit_train_step`` does on a mesh)."""

    def train_step(state: TrainState, batch: dict):
        rng, sub = jax.random.split(state.rng)
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, batch, sub
        )
        gnorm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(gnorm)

        # One branch runs: the update, or nothing. A `lax.cond` on the single finite flag
        # replaces per-leaf `jnp.where` selects over grads, params, optimizer state and EMA
        # (four extra passes over every parameter-sized buffer; benchmarks/RESULTS.md §10).
        def update(operands):
            params, opt_state, ema = operands
            updates, opt_state = tx.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            if ema is not None:
                ema = optax.incremental_update(params, ema, 1.0 - ema_decay)
            return params, opt_state, ema

        params, opt_state, ema = jax.lax.cond(
            finite, update, lambda operands: operands,
            (state.params, state.opt_state, state.ema_params))
        run = jnp.where(finite, 0, state.nonfinite_run + 1).astype(jnp.int32)
        new_state = state.replace(
            step=state.step + 1,
            params=params,
            opt_state=opt_state,
            rng=rng,
            ema_params=ema,
            nonfinite_run=run,
            nonfinite_max_run=jnp.maximum(state.nonfinite_max_run, run),
            nonfinite_total=state.nonfinite_total + (~finite).astype(jnp.int32),
        )
        metrics = dict(metrics)
        metrics.update(
            loss=loss,
            grad_norm=gnorm,
            lr=schedule(state.step),
            skipped=(~finite).astype(jnp.float32),
        )
        return new_state, metrics

    if not jit:
        return train_step
    return jax.jit(train_step, donate_argnums=(0,), compiler_options=compiler_options("train"))
