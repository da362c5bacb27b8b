"""Per-device memory of view-parallel cross-view attention, forward + backward, vs sequence
length L and view-axis size V: is the ring backward O(L/V) or O(L)?

    python -m benchmarks.ring_memory [--json]

Compiles ``jax.grad`` of ``sum(view_sharded_attention(q, k, v))`` w.r.t. q, k, v on a simulated
``view`` mesh (8 CPU devices) for mode 'ring_view' and 'allgather_view' with the chunked
(online-softmax) kernel at its default KV chunk (1024) and at 256, B = 1, H = 4, Dh = 64,
fp32, and prints XLA's per-device temporaries (``memory_analysis().temp_size_in_bytes``) and
arguments. Compiled estimates for XLA:CPU.
"""

from __future__ import annotations

import os
import sys

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")


def measure(mode: str, views: int, seq: int, kernel: str = "chunked",
            chunk_size: int | None = None) -> dict:
    import jax
    import jax.numpy as jnp

    from da3_jax.parallel import rules
    from da3_jax.parallel.attention import DEFAULT_CHUNK
    from da3_jax.parallel.mesh import make_mesh
    from da3_jax.parallel.view_parallel import view_sharded_attention

    mesh = make_mesh({"view": views}, devices=jax.devices()[:views])
    shape = jax.ShapeDtypeStruct((1, seq, 4, 64), jnp.float32)
    sharding = rules.logical_sharding(mesh, None, "views", None, None)

    def loss(q, k, v):
        return jnp.sum(view_sharded_attention(q, k, v, mode=mode, kernel=kernel,
                                              chunk_size=chunk_size))

    fn = jax.jit(jax.grad(loss, argnums=(0, 1, 2)), in_shardings=(sharding,) * 3,
                 out_shardings=(sharding,) * 3)
    with jax.set_mesh(mesh):
        m = fn.lower(shape, shape, shape).compile().memory_analysis()
    return {"mode": mode, "kernel": kernel, "chunk": chunk_size or DEFAULT_CHUNK,
            "views": views, "seq": seq,
            "temp_bytes": int(m.temp_size_in_bytes),
            "argument_bytes": int(m.argument_size_in_bytes)}


def main(argv=None) -> int:
    import json

    argv = sys.argv[1:] if argv is None else argv
    rows = [measure(mode, v, seq, chunk_size=chunk) for chunk in (None, 256)
            for mode in ("ring_view", "allgather_view")
            for v in (2, 4, 8) for seq in (4096, 8192)]
    if "--json" in argv:
        print(json.dumps(rows, indent=1))
        return 0
    print("| mode | chunk | V | L | L/V | per-device temporaries MiB | per-device arguments MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['mode']} | {r['chunk']} | {r['views']} | {r['seq']} | "
              f"{r['seq'] // r['views']} | {r['temp_bytes'] / 2**20:.2f} | "
              f"{r['argument_bytes'] / 2**20:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
