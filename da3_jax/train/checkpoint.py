"""Orbax checkpointing of the train state and the Grain iterator, with automatic resume.

One ``CheckpointManager`` per workdir (``<workdir>/checkpoints``), items:
  * ``state``: the whole ``TrainState`` pytree (params, optimizer state, step, RNG, EMA, counters);
  * ``data``: the Grain iterator state (``grain.checkpoint``), so a resumed run sees exactly the
    batches the interrupted one would have seen.

Atomicity: orbax writes each step into a temporary directory and renames it (or writes a commit
marker, on object stores) only once every item is complete; ``all_steps()`` lists finalised steps
only, so a checkpoint killed mid-write is never restored. ``latest_valid_step`` double-checks
this by ignoring step directories orbax does not report as finalised.

Robustness: ``restore_latest`` tries the finalised steps newest first and falls back, with a
warning, to the newest one that restores (a corrupt or truncated latest checkpoint does not
end the run). In a multi-process run every process restores the same step: process 0's step
list is broadcast, and a step counts as readable only if it restored on every process. Paths
go through ``etils.epath`` (orbax's path library): a ``gs://`` work dir is used as such.
``restore_params(workdir)`` reads a run's params back as host NumPy arrays.

Replica-parallel saving is off for this manager's ``state`` item: orbax's default (on every
platform but an explicit ``JAX_PLATFORMS=gpu``) splits each replicated ``jax.Array`` into
per-replica slices, which compiles one XLA slice program per leaf shape on the first save
(tens of seconds for a train state whose small leaves are replicated). Without it, replica 0
of each shard writes it, as plain data-parallel / FSDP checkpoints want. The global orbax
type registry is left untouched.
"""

from __future__ import annotations

import logging

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

log = logging.getLogger(__name__)


def make_manager(
    workdir: str | epath.PathLike,
    max_to_keep: int = 3,
    async_save: bool = True,
    save_interval_steps: int = 1,
) -> ocp.CheckpointManager:
    """CheckpointManager under ``<workdir>/checkpoints`` keeping the last ``max_to_keep`` steps."""
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        save_interval_steps=save_interval_steps,
        create=True,
        enable_async_checkpointing=async_save,
        cleanup_tmp_directories=True,  # a save cut by a kill leaves a tmp dir; drop it on start
    )
    registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
    state_handler, data_handler = _StateHandler(), _DataHandler()
    registry.add("state", ocp.args.StandardSave, state_handler)
    registry.add("state", ocp.args.StandardRestore, state_handler)
    registry.add("data", grain.checkpoint.CheckpointSave, data_handler)
    registry.add("data", grain.checkpoint.CheckpointRestore, data_handler)
    path = epath.Path(workdir) / "checkpoints"
    if not _is_remote(path):
        path = path.absolute()
    return ocp.CheckpointManager(path, options=options, handler_registry=registry)


def _type_registry():
    """orbax's default type handlers, with jax.Array saved without replica-parallel slicing."""
    th = ocp.type_handlers
    default = th.get_type_handler(jax.Array)
    arrays = th.ArrayHandler(
        use_replica_parallel=False,
        # same per-host ArrayMetadata store as orbax's default jax.Array handler
        array_metadata_store=getattr(default, "_array_metadata_store", None),
    )
    pairs = [(ty, arrays if ty is jax.Array else th.get_type_handler(ty))
             for ty in th.supported_types()]
    return th.create_type_handler_registry(*pairs)


class _RestoreFailed:
    """What an item's handler returns when its restore raised on this process (see
    ``_CapturesRestoreErrors``); ``restore`` raises ``error`` once orbax's restore is over."""

    def __init__(self, error: Exception):
        self.error = error


class _CapturesRestoreErrors:
    """Handler mixin: a failing item restore returns ``_RestoreFailed`` instead of raising.

    orbax ends every restore with a cross-process barrier ('Checkpointer:restore'). A process
    whose read raised inside the handler would skip it, and the processes' collectives would
    no longer pair up (measured: 'sync_global_devices name mismatch', then the distributed
    runtime shuts down). Returning the error keeps every process on the same path through
    orbax; ``restore_latest`` then agrees on success across processes.
    """

    def restore(self, directory, *args, **kwargs):
        try:
            return super().restore(directory, *args, **kwargs)
        except Exception as e:  # noqa: BLE001 - re-raised by ``restore`` after the barrier
            return _RestoreFailed(e)


class _StateHandler(_CapturesRestoreErrors, ocp.StandardCheckpointHandler):
    """``StandardCheckpointHandler`` (so ``ocp.args.StandardSave/Restore`` keep working) whose
    PyTree implementation uses :func:`_type_registry` (no replica-parallel saves); restore
    errors captured (``_CapturesRestoreErrors``)."""

    def __init__(self):
        super().__init__()
        if not isinstance(getattr(self, "_impl", None), ocp.PyTreeCheckpointHandler):
            raise RuntimeError(
                "orbax-checkpoint: StandardCheckpointHandler no longer wraps a "
                "PyTreeCheckpointHandler in `_impl`; update da3_jax.train.checkpoint"
            )
        # StandardCheckpointHandler's own defaults (orbax 0.12), plus the registry
        self._impl = ocp.PyTreeCheckpointHandler(
            save_concurrent_gb=96,
            restore_concurrent_gb=96,
            use_ocdbt=True,
            type_handler_registry=_type_registry(),
        )


class _DataHandler(_CapturesRestoreErrors, grain.checkpoint.CheckpointHandler):
    """Grain's iterator handler, with restore errors captured (``_CapturesRestoreErrors``)."""


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
    return _restore_items(manager, step, items)["state"]


def _restore_items(manager: ocp.CheckpointManager, step: int, items: dict) -> dict:
    """``manager.restore`` of ``items`` at ``step``; raises the first item's restore error."""
    restored = manager.restore(int(step), args=ocp.args.Composite(**items))
    for name in items:
        if isinstance(restored[name], _RestoreFailed):
            raise restored[name].error
    return restored


def _is_remote(path: epath.Path) -> bool:
    return "://" in str(path)


def restore_latest(manager: ocp.CheckpointManager, state, data_iter=None, warn=None,
                   all_ok=None):
    """``(step, state)`` from the newest finalised checkpoint that restores, or None if there is
    none. A step that fails to restore (corrupt, truncated, wrong structure) is reported through
    ``warn`` (and the log) and the next older one is tried; if every one fails, raises
    ValueError listing them.

    Multi-process runs restore the same step on every process: the candidate steps are process
    0's list (``broadcast_one_to_all``), and a step is kept only if it restored on *every*
    process (``all_ok``, default :func:`all_processes_ok`, a ``process_allgather`` of each
    process's success); otherwise all of them move on to the next older step together.
    ``all_ok(ok: bool) -> bool`` is a parameter so the agreement can be tested in one process.
    """
    all_ok = all_processes_ok if all_ok is None else all_ok
    manager.reload()
    steps = agreed_steps(
        sorted((s for s in manager.all_steps() if _is_finalized(manager, s)), reverse=True))
    errors = []
    for step in steps:
        try:
            restored, error = restore(manager, step, state, data_iter), None
        except Exception as e:  # noqa: BLE001 - any unreadable checkpoint: try an older one
            restored, error = None, f"{type(e).__name__}: {str(e)[:200]}"
        if all_ok(error is None):
            return step, restored
        reason = error or "unreadable on another process"
        msg = (f"checkpoint step {step} in {manager.directory} is unreadable ({reason}); "
               f"falling back to an older step")
        log.warning(msg)
        if warn is not None:
            warn(f"WARNING: {msg}")
        errors.append(f"{step}: {reason.split(':')[0]}")
    if errors:
        raise ValueError(f"no readable checkpoint in {manager.directory}: {errors}")
    return None


MAX_CANDIDATE_STEPS = 64


def agreed_steps(steps: list[int]) -> list[int]:
    """Process 0's candidate steps (its newest ``MAX_CANDIDATE_STEPS``) on every process."""
    if jax.process_count() == 1:
        return list(steps)
    from jax.experimental import multihost_utils

    buf = np.full(MAX_CANDIDATE_STEPS, -1, np.int32)
    head = np.asarray(steps[:MAX_CANDIDATE_STEPS], np.int32)
    buf[:len(head)] = head
    buf = np.asarray(multihost_utils.broadcast_one_to_all(buf))
    return [int(s) for s in buf if s >= 0]


def all_processes_ok(ok: bool) -> bool:
    """True iff ``ok`` is True on every process (a ``process_allgather``; local in one process)."""
    if jax.process_count() == 1:
        return bool(ok)
    from jax.experimental import multihost_utils

    flags = multihost_utils.process_allgather(np.asarray(ok, np.int32))
    return bool(np.all(np.asarray(flags)))


def restore_params(workdir: str | epath.PathLike, step: int | None = None,
                   ema: bool | None = None):
    """The params of a training run as host NumPy arrays.

    ``step``: a finalised step (default: the latest); ``ema``: EMA params (default: when the
    run kept them, as ``train.loop.final_params`` does). Reads no optimizer state into device
    memory; works in any process (no collectives).
    """
    manager = make_manager(workdir, async_save=False)
    try:
        if step is None:
            step = latest_valid_step(manager)
            if step is None:
                raise ValueError(f"workdir '{workdir}' has no finalised checkpoint in "
                                 f"{manager.directory}")
        elif not _is_finalized(manager, int(step)):
            raise ValueError(f"workdir '{workdir}': step {step} is not a finalised checkpoint; "
                             f"available: {sorted(manager.all_steps())}")
        meta = manager.item_metadata(int(step))["state"]
        target = jax.tree.map(lambda m: np.empty(m.shape, m.dtype), _tree_of(meta))
        restored = _restore_items(manager, step, {"state": ocp.args.StandardRestore(target)})[
            "state"]
    finally:
        manager.close()
    use_ema = restored.get("ema_params") is not None if ema is None else ema
    if use_ema and restored.get("ema_params") is None:
        raise ValueError(f"workdir '{workdir}' step {step}: the run kept no EMA params")
    return jax.tree.map(np.asarray, restored["ema_params" if use_ema else "params"])


def _tree_of(meta):
    """orbax tree metadata -> plain nested dicts of leaf metadata (with .shape / .dtype)."""
    tree = getattr(meta, "tree", meta)
    return jax.tree.map(lambda m: m, tree, is_leaf=lambda x: hasattr(x, "shape"))
