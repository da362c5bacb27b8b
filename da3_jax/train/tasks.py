"""Training tasks: what the generic loop trains (model init, loss, data, eval hook).

A ``Task`` bundles
  * ``init_params(rng, batch) -> params``;
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


def get_task(config) -> Task:
    """``config.task`` in {'teacher', 'student', 'nvs'}; see ``da3_jax.train.da3_tasks`` and
    ``da3_jax.train.nvs``."""
    from da3_jax.train import da3_tasks, nvs

    builders = {"teacher": da3_tasks.teacher_task, "student": da3_tasks.student_task,
                "nvs": nvs.nvs_task}
    if config.task not in builders:
        raise ValueError(f"config.task must be one of {sorted(builders)}, got {config.task!r}")
    return builders[config.task](config)
