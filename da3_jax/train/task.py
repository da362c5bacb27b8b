"""The ``Task`` bundle the generic training loop trains (no model imports: the loop stays light).

A ``Task`` holds
  * ``init_params(rng, batch) -> params`` (pure, jittable: the loop jits it with the target
    shardings, so nothing is materialised unsharded);
  * ``load_pretrained(params) -> params tree or None`` (optional; host side: returns host NumPy
    leaves for the weights it loads, the given arrays for the others; the loop places each
    NumPy leaf straight into its shards);
  * ``loss_fn(params, batch, rng) -> (loss, {term: scalar})`` (jit-traced inside the step);
  * ``train_iter() -> grain DatasetIterator`` (checkpointable; a fresh one per call);
  * ``eval_fn(params) -> {metric: float}`` or None.
The DA3 tasks are built in ``da3_jax.train.da3_tasks``; ``da3_jax.train.tasks.get_task`` picks
one by ``config.task``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable


@dataclasses.dataclass
class Task:
    init_params: Callable
    loss_fn: Callable
    train_iter: Callable
    eval_fn: Callable | None = None
    load_pretrained: Callable | None = None
