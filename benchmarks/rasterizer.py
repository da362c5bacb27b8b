"""Images per second of the JAX Gaussian rasterizer (`da3_jax.render`), forward and backward.

    python -m benchmarks.rasterizer [--sizes 256x256,504x504] [--gaussians 100000,1000000]
                                    [--repeats 3] [--threads 2] [--json out.json]

Scene: `G` Gaussians uniform in a frustum slab (z in [2, 6]) of a centred pinhole camera
(f = 0.9 W), pixel-sized (σ ≈ 0.7 px at their depth, random anisotropy and rotation), opacity
U(0.3, 0.9), SH degree 2 colours (like the DA3-giant GS head). The per-tile capacity is the
largest tile load of this scene (measured by a binning pass, rounded up to 64), so renders are
exact (overflow 0) unless it exceeds `--max-capacity`, where the overflow is reported.

forward: jitted render of one camera (images/s = 1 / median seconds per call).
backward: jitted value-and-grad of a weighted image sum w.r.t. all Gaussian parameters.
Each (size, G) runs in its own subprocess (`_common.run_worker`), which reports wall seconds
and its own CPU seconds per call, so a loaded shared machine can be read off the CPU column.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

from benchmarks import _common


def make_scene(g: int, hw, seed: int = 0):
    import numpy as np

    h, w = hw
    f = 0.9 * w
    rng = np.random.default_rng(seed)
    z = rng.uniform(2.0, 6.0, g)
    x = (rng.uniform(0, w, g) - w / 2) * z / f
    y = (rng.uniform(0, h, g) - h / 2) * z / f
    sigma = 0.7 * z / f  # about 0.7 px at depth z
    scene = {
        "means": np.stack([x, y, z], 1),
        "quats": rng.normal(size=(g, 4)),
        "scales": sigma[:, None] * rng.uniform(0.5, 1.5, (g, 3)),
        "opacities": rng.uniform(0.3, 0.9, g),
        "colors": rng.normal(size=(g, 9, 3)) * 0.3,
    }
    k = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]])
    return {n: v.astype(np.float32) for n, v in scene.items()}, k.astype(np.float32)


def tile_load(scene, k, hw, tile_size: int = 16) -> int:
    """Largest number of Gaussians any tile receives (one binning pass, all tiles)."""
    import jax.numpy as jnp
    import numpy as np

    from da3_jax.render.project import project_gaussians, quat_scale_to_covar

    cov = quat_scale_to_covar(jnp.asarray(scene["quats"]), jnp.asarray(scene["scales"]))
    p = project_gaussians(jnp.asarray(scene["means"]), cov, jnp.asarray(scene["opacities"]),
                          jnp.eye(4), jnp.asarray(k), hw)
    m, r, v = (np.asarray(p[n]) for n in ("means2d", "radii", "valid"))
    ty, tx = math.ceil(hw[0] / tile_size), math.ceil(hw[1] / tile_size)
    counts = np.zeros((ty + 1, tx + 1), np.int64)  # 2D difference array of the boxes
    x0 = np.clip(np.floor((m[:, 0] - r[:, 0]) / tile_size), 0, tx).astype(int)[v]
    x1 = np.clip(np.ceil((m[:, 0] + r[:, 0]) / tile_size), 0, tx).astype(int)[v]
    y0 = np.clip(np.floor((m[:, 1] - r[:, 1]) / tile_size), 0, ty).astype(int)[v]
    y1 = np.clip(np.ceil((m[:, 1] + r[:, 1]) / tile_size), 0, ty).astype(int)[v]
    for a, b, s in ((y0, x0, 1), (y0, x1, -1), (y1, x0, -1), (y1, x1, 1)):
        np.add.at(counts, (a, b), s)
    return int(counts.cumsum(0).cumsum(1)[:ty, :tx].max())


def worker(args) -> dict:
    _common.pin_threads(args.threads)
    import jax
    import jax.numpy as jnp

    from da3_jax.render import rasterize_gaussians

    h, w = (int(s) for s in args.size.split("x"))
    scene, k = make_scene(args.g, (h, w))
    load = tile_load(scene, k, (h, w))
    capacity = min(args.max_capacity, -(-load // 64) * 64)
    params = {n: jnp.asarray(v) for n, v in scene.items()}
    eye = jnp.eye(4)
    wts = jax.random.normal(jax.random.PRNGKey(0), (h, w, 3))

    def render(p):
        return rasterize_gaussians(p["means"], p["quats"], p["scales"], p["opacities"],
                                   p["colors"], eye, jnp.asarray(k), (h, w),
                                   tile_capacity=capacity, tile_batch=args.tile_batch,
                                   max_intersections=max(4 * args.g, 1), check=False)

    fwd = jax.jit(render)
    bwd = jax.jit(jax.value_and_grad(lambda p: jnp.sum(render(p)["rgb"] * wts)))
    res = {"size": args.size, "gaussians": args.g, "tile_load_max": load, "capacity": capacity}
    out = fwd(params)
    res["overflow"] = int(out["overflow"])
    res["alpha_mean"] = float(out["alpha"].mean())
    for name, fn in (("fwd", lambda: jax.block_until_ready(fwd(params))),
                     ("bwd", lambda: jax.block_until_ready(bwd(params)))):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()  # compile + first call
        res[f"{name}_first_s"] = time.perf_counter() - t0
        walls, cpus = [], []
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
        res[f"{name}_s"] = _common.median(walls)
        res[f"{name}_cpu_s"] = _common.median(cpus)
        res[f"{name}_img_per_s"] = 1.0 / res[f"{name}_s"]
    res["load_avg"] = list(os.getloadavg())
    res["peak_rss_gib"] = _common.vm_hwm_bytes() / 2**30
    return res


def format_table(report: dict) -> str:
    headers = ["H×W", "G", "capacity (max tile load)", "overflow", "fwd img/s", "fwd s",
               "fwd CPU s", "bwd img/s", "bwd s", "bwd CPU s", "peak RSS GiB", "load (1 min)"]
    rows = []
    for r in report["rows"]:
        if "error" in r:
            rows.append([r["size"], r["gaussians"], "error: " + r["error"][:60]]
                        + [None] * (len(headers) - 3))
            continue
        rows.append([r["size"], r["gaussians"], f"{r['capacity']} ({r['tile_load_max']})",
                     r["overflow"], r["fwd_img_per_s"], r["fwd_s"], r["fwd_cpu_s"],
                     r["bwd_img_per_s"], r["bwd_s"], r["bwd_cpu_s"], r["peak_rss_gib"],
                     r["load_avg"][0]])
    return "\n".join(_common.report_header(
        report, f"{report['threads']} thread(s), median of {report['repeats']} calls.")
        + [_common.markdown_table(headers, rows)])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="256x256,504x504")
    p.add_argument("--gaussians", default="100000,1000000")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-capacity", type=int, default=4096)
    p.add_argument("--tile-batch", type=int, default=16)
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--json", default="")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--size", default=None, help=argparse.SUPPRESS)
    p.add_argument("--g", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        _common.emit(worker(args))
        return {}
    report = {"machine": _common.machine_info(), "threads": args.threads,
              "repeats": args.repeats, "rows": []}
    for size in args.sizes.split(","):
        for g in (int(x) for x in args.gaussians.split(",")):
            wargs = ["--worker", "--size", size, "--g", str(g), "--repeats", str(args.repeats),
                     "--threads", str(args.threads), "--max-capacity", str(args.max_capacity),
                     "--tile-batch", str(args.tile_batch)]
            try:
                row = _common.run_worker("benchmarks.rasterizer", wargs, timeout=args.timeout)
            except RuntimeError as e:
                row = {"size": size, "gaussians": g, "error": str(e).splitlines()[-1]}
            report["rows"].append(row)
            print(row, file=sys.stderr, flush=True)
    return _common.publish(report, format_table, args.json)


if __name__ == "__main__":
    main()
