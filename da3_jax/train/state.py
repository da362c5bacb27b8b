"""Train state: params, optimizer state, step, RNG, optional EMA, non-finite bookkeeping.

Every field is a jax array / pytree, so the whole state is one orbax-saveable pytree and a
jitted step can donate it. The RNG is kept as raw ``uint32[2]`` key data (``jax.random.PRNGKey``)
so checkpoints stay plain arrays.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct


class TrainState(struct.PyTreeNode):
    """``step``: number of batches consumed (skipped non-finite updates included).

    ``nonfinite_run``: current run of consecutive skipped updates; ``nonfinite_max_run``: the
    longest run so far (the loop stops when it reaches ``config.max_nonfinite``, checked at log
    steps without a per-step host sync); ``nonfinite_total``: all skipped updates.
    ``ema_params`` is ``None`` when EMA is disabled.
    """

    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array
    ema_params: Any = None
    nonfinite_run: jax.Array = struct.field(default_factory=lambda: jnp.zeros((), jnp.int32))
    nonfinite_max_run: jax.Array = struct.field(default_factory=lambda: jnp.zeros((), jnp.int32))
    nonfinite_total: jax.Array = struct.field(default_factory=lambda: jnp.zeros((), jnp.int32))


def create_state(params, tx, rng: jax.Array, use_ema: bool = False) -> TrainState:
    """Initial state: step 0, ``tx.init(params)``, EMA = copy of params if ``use_ema``."""
    ema = jax.tree.map(jnp.array, params) if use_ema else None
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        rng=jnp.asarray(rng, jnp.uint32),
        ema_params=ema,
    )
