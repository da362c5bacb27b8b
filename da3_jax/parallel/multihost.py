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
    """``jax.distributed.initialize`` when ``config.distributed`` is true.

    Optional config fields (None = auto-detect from the cluster environment: TPU metadata,
    SLURM, Open MPI, ...): ``coordinator_address`` ('host:port'), ``num_processes``,
    ``process_id``. Returns True if initialisation ran. Must run before any other jax call.
    """
    if not config.get("distributed", False):
        return False
    kwargs = {
        name: config.get(name, None)
        for name in ("coordinator_address", "num_processes", "process_id")
    }
    jax.distributed.initialize(**{k: v for k, v in kwargs.items() if v is not None})
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
