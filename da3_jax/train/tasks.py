"""Training tasks: what the generic loop trains (model init, loss, data, eval hook).

A ``Task`` bundles
  * ``init_params(rng, batch) -> params`` (pure, jittable: the loop jits it with the target
    shardings, so nothing is materialised unsharded);
  * ``load_pretrained(params) -> params tree or None`` (optional; host side: returns host NumPy
    leaves for the weights it loads, the given arrays for the others; the loop places each
    NumPy leaf straight into its shards);
  * ``loss_fn(params, batch, rng) -> (loss, {term: scalar})`` (jit-traced inside the step);
  * ``train_iter() -> grain DatasetIterator`` (checkpointable; a fresh one per call);
  * ``eval_fn(params) -> {metric: float}`` or None.
``get_task(config)`` picks one by ``config.task``.
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


def get_task(config) -> Task:
    """``config.task`` in {'teacher', 'student'}; see ``da3_jax.train.da3_tasks``."""
    from da3_jax.train import da3_tasks

    builders = {"teacher": da3_tasks.teacher_task, "student": da3_tasks.student_task}
    if config.task not in builders:
        raise ValueError(f"config.task must be one of {sorted(builders)}, got {config.task!r}")
    return builders[config.task](config)
