"""``train.checkpoint``: the first save of a partly replicated state compiles nothing.

orbax's default replica-parallel saving slices every replicated ``jax.Array`` per replica with
one XLA program per leaf shape (25-35 s on the first checkpoint of a real train state); the
manager from ``make_manager`` turns it off. The state round-trips bit-exactly into its
shardings (8 simulated CPU devices) and ``ocp.args.StandardRestore`` without a target (as
``pseudo_label`` uses it) still works.
"""

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from da3_jax.parallel.mesh import make_mesh
from da3_jax.train import checkpoint


def test_first_save_compiles_nothing_and_round_trips(tmp_path):
    mesh = make_mesh({"fsdp": 8})
    rng = np.random.default_rng(0)
    # distinct shapes with an axis divisible by the 8 replicas: replica-parallel would slice
    # (and compile for) each; w5 is fsdp-sharded
    shapes = [(8,), (16, 5), (3, 24), (8, 2, 2), (40,), (16, 3)]
    host = {f"w{i}": rng.normal(size=s).astype(np.float32) for i, s in enumerate(shapes)}
    host["step"] = np.int32(7)
    shard = {k: NamedSharding(mesh, P("fsdp") if k == "w5" else P()) for k in host}
    state = {k: jax.device_put(v, shard[k]) for k, v in host.items()}  # mostly replicated
    jax.block_until_ready(state)

    compiles = []

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(duration)

    manager = checkpoint.make_manager(str(tmp_path))  # async, as in training
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        assert checkpoint.save(manager, 3, state)
        manager.wait_until_finished()
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    manager.close()
    assert compiles == [], f"{len(compiles)} XLA compiles during the first save"

    manager = checkpoint.make_manager(str(tmp_path))
    assert checkpoint.latest_valid_step(manager) == 3
    abstract = {k: jax.ShapeDtypeStruct(np.shape(v), np.asarray(v).dtype, sharding=shard[k])
                for k, v in host.items()}
    restored = checkpoint.restore(manager, 3, abstract)
    for k, want in host.items():
        assert restored[k].sharding == shard[k], k
        np.testing.assert_array_equal(np.asarray(restored[k]), want, strict=True)
    raw = manager.restore(3, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
    for k, want in host.items():
        np.testing.assert_array_equal(np.asarray(raw[k]), want)
    manager.close()
