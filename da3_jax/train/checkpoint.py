"""Orbax checkpointing of the train state and the Grain iterator, with automatic resume.

One ``CheckpointManager`` per workdir (``<workdir>/checkpoints``), items:
  * ``state``: the whole ``TrainState`` pytree (params, optimizer state, step, RNG, EMA, counters);
  * ``data``: the Grain iterator state (``grain.checkpoint``), so a resumed run sees exactly the
    batches the interrupted one would have seen.

Atomicity: orbax writes each step into a temporary directory and renames it (or writes a commit
marker, on object stores) only once every item is complete; ``all_steps()`` lists finalised steps
only, so a checkpoint killed mid-write is never restored. ``latest_valid_step`` double-checks
this by ignoring step directories orbax does not report as finalised.
"""

from __future__ import annotations

import os

import grain
import jax
import orbax.checkpoint as ocp


def make_manager(
    workdir: str, max_to_keep: int = 3, async_save: bool = True, save_interval_steps: int = 1
) -> ocp.CheckpointManager:
    """CheckpointManager under ``<workdir>/checkpoints`` keeping the last ``max_to_keep`` steps."""
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        save_interval_steps=save_interval_steps,
        create=True,
        enable_async_checkpointing=async_save,
    )
    handlers = {
        "state": ocp.StandardCheckpointHandler(),
        "data": grain.checkpoint.CheckpointHandler(),
    }
    path = os.path.join(os.path.abspath(workdir), "checkpoints")
    return ocp.CheckpointManager(path, item_handlers=handlers, options=options)


def save(manager: ocp.CheckpointManager, step: int, state, data_iter=None, force=False) -> bool:
    """Saves ``state`` (+ the Grain iterator) at ``step``; returns whether a save was started."""
    items = {"state": ocp.args.StandardSave(state)}
    if data_iter is not None:
        items["data"] = grain.checkpoint.CheckpointSave(data_iter)
    return manager.save(int(step), args=ocp.args.Composite(**items), force=force)


def latest_valid_step(manager: ocp.CheckpointManager) -> int | None:
    """Latest finalised step, or None. Unfinalised (tmp / uncommitted) step dirs never count."""
    manager.reload()
    steps = [s for s in manager.all_steps() if _is_finalized(manager, s)]
    return max(steps) if steps else None


def _is_finalized(manager: ocp.CheckpointManager, step: int) -> bool:
    fmt = ocp.path.step.standard_name_format()
    path = ocp.path.step.build_step_path(manager.directory, fmt, step)
    return path.exists() and ocp.path.step.is_path_finalized(path)


def restore(manager: ocp.CheckpointManager, step: int, abstract_state, data_iter=None):
    """Restores ``state`` at ``step`` into the structure/shardings of ``abstract_state``.

    ``data_iter`` (if given) is restored in place to its saved position. Returns the state.
    """
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
    items = {"state": ocp.args.StandardRestore(target)}
    if data_iter is not None:
        items["data"] = grain.checkpoint.CheckpointRestore(data_iter)
    restored = manager.restore(int(step), args=ocp.args.Composite(**items))
    return restored["state"]
