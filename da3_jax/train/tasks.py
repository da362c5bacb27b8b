"""Task registry: ``get_task(config)`` picks a training task by ``config.task``.

Imports run one way: ``tasks`` -> ``da3_tasks`` (the DA3 teacher / student builders) ->
``task`` (the ``Task`` bundle, re-exported here).
"""

from __future__ import annotations

from da3_jax.train import da3_tasks
from da3_jax.train.task import Task

__all__ = ["Task", "get_task"]


def get_task(config) -> Task:
    """``config.task`` in {'teacher', 'student', 'nvs'}; see ``da3_jax.train.da3_tasks`` and
    ``da3_jax.train.nvs``."""
    from da3_jax.train import nvs  # the NVS stage pulls in the rasterizer: only when asked

    builders = {"teacher": da3_tasks.teacher_task, "student": da3_tasks.student_task,
                "nvs": nvs.nvs_task}
    if config.task not in builders:
        raise ValueError(f"config.task must be one of {sorted(builders)}, got {config.task!r}")
    return builders[config.task](config)
