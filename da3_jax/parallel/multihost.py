"""Multi-host helpers: distributed initialisation and per-host batches -> global arrays.

On a TPU pod slice or a multi-node GPU cluster every host runs the same program. Call
``maybe_initialize_distributed(config)`` before anything touches ``jax.devices()``; afterwards
``jax.devices()`` lists the devices of all hosts and the mesh spans them. Each host loads only
its share of the global batch (``host_batch_slice``) and ``global_batch`` assembles the global
jax.Array without moving data between hosts.
"""

from __future__ import annotations

import jax
import numpy as np

from da3_jax.parallel import rules


def maybe_initialize_distributed(config) -> bool:
    """``jax.distributed.initialize`` when ``config.multihost`` (or ``config.distributed``) is
    true and it has not run yet.

    Coordinator, process count and id come from the optional config fields
    ``coordinator_address`` ('host:port'), ``num_processes``, ``process_id``, else from the
    environment variables ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``,
    ``JAX_PROCESS_ID``, else JAX's cluster auto-detection (TPU metadata, SLURM, Open MPI, ...).
    On CPU the processes exchange collectives through gloo (JAX's default CPU collectives).
    Returns True if initialisation ran. Must run before any other jax call.
    """
    import os

    if not (config.get("multihost", False) or config.get("distributed", False)):
        return False
    if jax.distributed.is_initialized():
        return False
    env = {"coordinator_address": "JAX_COORDINATOR_ADDRESS", "num_processes": "JAX_NUM_PROCESSES",
           "process_id": "JAX_PROCESS_ID"}
    kwargs = {}
    for name, var in env.items():
        value = config.get(name, None)
        if value is None and os.environ.get(var):
            value = os.environ[var]
        if value is not None:
            kwargs[name] = value if name == "coordinator_address" else int(value)
    jax.distributed.initialize(**kwargs)
    return True


def host_batch_slice(global_batch_size: int) -> slice:
    """The rows of the global batch this process loads: contiguous, ``B / process_count`` each."""
    n, i = jax.process_count(), jax.process_index()
    if global_batch_size % n:
        raise ValueError(f"global_batch_size {global_batch_size} is not divisible by the "
                         f"process count {n}")
    per = global_batch_size // n
    return slice(i * per, (i + 1) * per)


def global_batch(local_batch, mesh, *, shard_views: bool = True):
    """Per-host numpy batch tree (leaves [B_local, N, ...]) -> global jax.Arrays [B, N, ...]
    sharded with ``rules.batch_sharding`` (batch over data/fsdp, views over view)."""
    def one(x):
        x = np.asarray(x)
        sharding = rules.batch_sharding(mesh, x.ndim, shard_views=shard_views and x.ndim > 1)
        return jax.make_array_from_process_local_data(sharding, x)

    return jax.tree.map(one, local_batch)


def place_batch(local_batch, shardings, global_spec):
    """Per-host batch -> global jax.Arrays with the given ``shardings`` and global shapes
    (``global_spec``: ShapeDtypeStructs). Leaves with a batch axis are this host's rows
    (``make_array_from_process_local_data``); scalars must be equal on every host."""
    def one(x, sharding, spec):
        x = np.asarray(x)
        if x.ndim == 0:
            return jax.make_array_from_callback((), sharding, lambda idx: x[idx])
        return jax.make_array_from_process_local_data(sharding, x, spec.shape)

    return jax.tree.map(one, local_batch, shardings, global_spec)


def barrier(name: str, timeout_s: float = 900.0) -> None:
    """Wait until every process reaches ``barrier(name)`` (no-op with one process).

    Uses the distributed runtime's coordination service, not a device collective: on CPU, gloo
    gives a new communicator 30 s for all its processes to join, so processes that finish
    compiling a program at very different times (a loaded machine) meet here first.
    """
    if jax.process_count() == 1:
        return
    from jax._src import distributed  # the runtime client; no public accessor in jax 0.10

    client = getattr(distributed.global_state, "client", None)
    if client is None or not hasattr(client, "wait_at_barrier"):
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
        return
    client.wait_at_barrier(name, int(timeout_s * 1000))
