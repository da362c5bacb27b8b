"""Forward latency and peak memory of da3_jax vs the official PyTorch network, vs view count.

    python -m benchmarks.inference [--models da3-small,da3-base] [--views 1,2,4,8]
        [--sizes 504x504,504x336] [--threads 2] [--repeats 3] [--impls jax,official]
        [--parity] [--json out.json]

Sizes are W x H (the official `process_res` convention): 504x336 is 336 rows by 504 columns.
Both sides use random fp32 weights and the same random ImageNet-normalised input
[1, N, H, W, 3] (NCHW for torch), ref_view_strategy 'saddle_balanced', no input cameras.
  * official: `depth_anything_3.cfg.create_object(load_config(MODEL_REGISTRY[name]))` after
    `torch.manual_seed(0)`, called directly under `torch.inference_mode()` (DA3-official.md §12;
    the API wrapper would autocast to fp16 on a CPU-only torch);
  * da3_jax: `jax.jit(lambda p, x: DA3(cfg).apply({'params': p}, x))`; with `--parity` the
    params are the official network's weights converted by `da3_jax.convert.load_official`
    (the official worker writes them to a temp model.safetensors first) and the depth / ray
    outputs of both sides are compared; otherwise `DA3.init` random weights.
Every (implementation, model, size, N) cell runs in its own subprocess pinned to `--threads`
CPUs, so resident memory is that implementation's alone. After the warm-up call the process's
peak-RSS counter is reset (/proc/self/clear_refs), so `peak GiB` is the process's peak RSS
during the timed forwards (XLA compile excluded); `peak - base` subtracts the RSS just before
the first forward (imports, weights and inputs resident), i.e. the memory the forward adds
(for jax this also holds allocator memory retained after compiling, roughly constant in N);
`peak incl. compile` is the whole-process peak, first call with the XLA compile included.
Latency is the median of `--repeats` timed calls
after one warm-up call; each timed jax call gets a new image (same shape) and `jax recompiles`
counts the traces after the warm-up call (0 = no recompilation when only the image content
changes). `XLA GFLOP` is XLA's cost analysis of the forward lowered with the
loop-free 'dense' attention kernel (XLA counts a loop body once, and the default CPU kernel
loops over heads and query blocks; the maths is the same), `analytic GFLOP` is
`benchmarks.flops.forward_flops` (matmuls and convs only) as the cross-check,
`MFU` = XLA GFLOP / latency / measured matmul peak
(jnp.dot 2048^2 f32, measured in a child with the same thread count). `CPU s` is the
process CPU time of one forward (all threads; less sensitive to other load on the machine than
wall time, but it includes thread-pool spinning).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

from benchmarks import _common

MODULE = "benchmarks.inference"


def parse_size(text: str) -> tuple[int, int]:
    """'504x336' (W x H) -> (H, W)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size {text!r}: expected WxH, e.g. 504x336") from None
    if h % 14 or w % 14:
        raise ValueError(f"size {text!r}: W and H must be multiples of 14")
    return h, w


# ------------------------------------------------------------------------------------------
# workers (run in subprocesses)


def _official_net(name: str):
    import torch
    from depth_anything_3.cfg import create_object, load_config
    from depth_anything_3.registry import MODEL_REGISTRY

    torch.manual_seed(0)
    return create_object(load_config(MODEL_REGISTRY[name])).eval()


def _inputs(n_views: int, hw: tuple[int, int], seed: int):
    import numpy as np

    h, w = hw
    return np.random.default_rng(seed).standard_normal((1, n_views, h, w, 3)).astype(np.float32)


def worker_official(a) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(a.threads)
    hw = (a.height, a.width)
    net = _official_net(a.model)
    if a.save_weights:
        from benchmarks.train_compare import save_official_weights_file

        save_official_weights_file(net, a.save_weights)
        return {"saved": a.save_weights}
    x_np = [_inputs(a.views, hw, s) for s in range(a.repeats + 1)]
    xs = [torch.from_numpy(np.ascontiguousarray(x.transpose(0, 1, 4, 2, 3))) for x in x_np]
    rss_before = _common.vm_rss_bytes()

    def fwd(x):
        with torch.inference_mode():
            return net(x, None, None, use_ray_pose=False, ref_view_strategy="saddle_balanced")

    import time

    t0 = time.perf_counter()
    out = fwd(xs[0])
    first = time.perf_counter() - t0
    hwm_warmup = _common.vm_hwm_bytes()
    reset = _common.reset_peak_rss()
    rss_steady = _common.vm_rss_bytes()
    times, cpu = [], []
    for x in xs[1:]:
        t0, c0 = time.perf_counter(), time.process_time()
        fwd(x)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    res = {"impl": "official", "times_s": times, "cpu_s": cpu, "first_call_s": first,
           "rss_before_fwd_bytes": rss_before, "hwm_through_warmup_bytes": hwm_warmup,
           "peak_reset": reset, "rss_before_timed_bytes": rss_steady,
           "timed_peak_bytes": _common.vm_hwm_bytes(), "torch_threads": torch.get_num_threads()}
    if a.dump:
        np.savez(a.dump, depth=out["depth"].numpy())
    return res


def worker_jax(a) -> dict:
    import time

    import jax
    import jax.numpy as jnp
    import numpy as np

    from da3_jax.model import DA3, get_config

    hw = (a.height, a.width)
    if a.load_weights:
        from da3_jax.convert import load_official

        cfg, params = load_official(a.load_weights, a.model)
    else:
        cfg = get_config(a.model)
        params = None
    if a.attention_impl:
        cfg.attention_impl = a.attention_impl
    model = DA3(cfg)
    if params is None:
        params = jax.jit(model.init)(jax.random.PRNGKey(0),
                                     jnp.zeros((1, 1) + hw + (3,), jnp.float32))["params"]
    params = jax.device_put(params)
    if a.jax_path == "forward":
        # The inference path (`Predictor` uses it): backbone and heads as two jitted stages,
        # each compiled with its own XLA:CPU options (`da3_jax.parallel.xla_options`).
        from da3_jax.infer.forward import Forward

        runner = Forward(cfg, params)

        def fwd(p, x):
            return runner(x, ref_view_strategy="saddle_balanced")

        def n_traces():
            return runner.trace_count

        def n_cached():
            return len(runner._fns)
    else:
        traces = [0]

        def forward(p, x):
            traces[0] += 1  # Python side effect: runs once per trace (= per compile)
            return model.apply({"params": p}, x, ref_view_strategy="saddle_balanced")

        fwd = jax.jit(forward)

        def n_traces():
            return traces[0]

        def n_cached():
            return fwd._cache_size()

    xs = [_inputs(a.views, hw, s) for s in range(a.repeats + 1)]
    if a.jax_path != "forward":
        xs = [jax.device_put(x) for x in xs]
    if a.compile_only:  # fills the persistent compilation cache (JAX_COMPILATION_CACHE_DIR)
        t0 = time.perf_counter()
        jax.block_until_ready(fwd(params, xs[0]))
        return {"impl": "jax", "compile_s": time.perf_counter() - t0}
    flops = float("nan")
    if not a.no_cost_analysis:
        # XLA counts a loop body once, so the FLOPs come from the same forward lowered with the
        # loop-free 'dense' kernel (same maths; lowering only, nothing is compiled).
        dense_cfg = cfg.copy_and_resolve_references()
        dense_cfg.attention_impl = "dense"
        dense_model = DA3(dense_cfg)
        ca = jax.jit(
            lambda p, x: dense_model.apply({"params": p}, x, ref_view_strategy="saddle_balanced")
        ).lower(params, xs[0]).cost_analysis()
        ca = ca[0] if isinstance(ca, (list, tuple)) else ca
        flops = float(ca.get("flops", float("nan")))
    from benchmarks.flops import forward_flops

    analytic = forward_flops(cfg, a.views, hw)["total"]
    rss_before = _common.vm_rss_bytes()
    t0 = time.perf_counter()
    out = jax.block_until_ready(fwd(params, xs[0]))
    first = time.perf_counter() - t0
    traces_warm = n_traces()
    hwm_warmup = _common.vm_hwm_bytes()
    del out  # keep only the timed calls' outputs resident, as on the torch side
    reset = _common.reset_peak_rss()
    rss_steady = _common.vm_rss_bytes()
    times, cpu = [], []
    for x in xs[1:]:
        t0, c0 = time.perf_counter(), time.process_time()
        out = jax.block_until_ready(fwd(params, x))
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        del out
    res = {"impl": "jax", "times_s": times, "cpu_s": cpu, "first_call_s": first,
           "rss_before_fwd_bytes": rss_before, "hwm_through_warmup_bytes": hwm_warmup,
           "peak_reset": reset, "rss_before_timed_bytes": rss_steady,
           "timed_peak_bytes": _common.vm_hwm_bytes(),
           "traces": n_traces(), "recompiles": n_traces() - traces_warm,
           "jit_cache_size": n_cached(), "xla_flops": flops,
           "analytic_flops": analytic, "attention_impl": cfg.attention_impl,
           "jax_path": a.jax_path}
    if a.dump:
        np.savez(a.dump, depth=np.asarray(fwd(params, xs[0])["depth"]))
    return res


def worker_matmul(a) -> dict:
    return _common.matmul_peak_gflops()


def worker_main(argv) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", required=True, choices=("jax", "official", "matmul"))
    ap.add_argument("--model", default="da3-small")
    ap.add_argument("--height", type=int, default=504)
    ap.add_argument("--width", type=int, default=504)
    ap.add_argument("--views", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--save-weights", default="")
    ap.add_argument("--load-weights", default="")
    ap.add_argument("--dump", default="")
    ap.add_argument("--attention-impl", default="")
    ap.add_argument("--jax-path", default="forward", choices=("forward", "apply"))
    ap.add_argument("--no-cost-analysis", action="store_true")
    ap.add_argument("--compile-only", action="store_true")
    a = ap.parse_args(argv)
    _common.pin_threads(a.threads)
    if a.worker in ("jax", "matmul"):
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    fn = {"jax": worker_jax, "official": worker_official, "matmul": worker_matmul}[a.worker]
    res = fn(a)
    _common.emit(res)


# ------------------------------------------------------------------------------------------
# driver


def _rel_err(a, b) -> float:
    import numpy as np

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="da3-small,da3-base")
    ap.add_argument("--views", default="1,2,4,8", help="comma-separated view counts")
    ap.add_argument("--sizes", default="504x504,504x336", help="comma-separated WxH")
    ap.add_argument("--impls", default="jax,official")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--parity", action="store_true",
                    help="same (converted) weights on both sides; compare depth")
    ap.add_argument("--attention-impl", default="", help="override config.attention_impl")
    ap.add_argument("--jax-path", default="forward", choices=("forward", "apply"),
                    help="forward: the inference path (da3_jax.infer.forward.Forward, two "
                    "jitted stages with per-stage XLA options); apply: DA3.apply in one jit")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per worker")
    ap.add_argument("--json", default="", help="write all results to this file")
    ap.add_argument("--compile-only", action="store_true",
                    help="only compile the jax forwards (warms JAX_COMPILATION_CACHE_DIR)")
    a = ap.parse_args(argv)
    if a.repeats < 3:
        raise ValueError(f"--repeats must be >= 3 (median of >= 3); got {a.repeats}")
    views = [int(v) for v in a.views.split(",")]
    sizes = [(s, parse_size(s)) for s in a.sizes.split(",")]
    impls = ["jax"] if a.compile_only else a.impls.split(",")
    if not set(impls) <= {"jax", "official"}:
        raise ValueError(f"--impls must be a subset of jax,official; got {a.impls}")
    info = _common.machine_info()
    common = ["--threads", str(a.threads), "--repeats", str(a.repeats)]
    peak = _common.run_worker(MODULE, ["--worker", "matmul", "--threads", str(a.threads)])
    results = []
    tmp = tempfile.mkdtemp(prefix="da3_bench_")
    for model in a.models.split(","):
        weights = ""
        if a.parity and "jax" in impls:
            weights = os.path.join(tmp, f"{model}.safetensors")
            _common.run_worker(MODULE, ["--worker", "official", "--model", model,
                                        "--save-weights", weights] + common, a.timeout)
        for size_txt, (h, w) in sizes:
            for n in views:
                row = {"model": model, "size": size_txt, "views": n}
                for impl in impls:
                    args = ["--worker", impl, "--model", model, "--height", str(h), "--width",
                            str(w), "--views", str(n)] + common
                    if impl == "jax" and weights:
                        args += ["--load-weights", weights]
                    if impl == "jax" and a.attention_impl:
                        args += ["--attention-impl", a.attention_impl]
                    if impl == "jax":
                        args += ["--jax-path", a.jax_path]
                    if a.parity:
                        args += ["--dump", os.path.join(tmp, f"{impl}.npz")]
                    if a.compile_only:
                        args += ["--compile-only"]
                    try:
                        row[impl] = _common.run_worker(MODULE, args, a.timeout)
                    except RuntimeError as e:  # e.g. out of memory at large N
                        row[impl] = {"error": str(e).splitlines()[0][:200]}
                    print(f"# {model} {size_txt} N={n} {impl}: {json.dumps(row[impl])[:400]}",
                          file=sys.stderr, flush=True)
                if a.parity and not a.compile_only and all(
                        i in row and "error" not in row[i] for i in ("jax", "official")):
                    import numpy as np

                    dj = np.load(os.path.join(tmp, "jax.npz"))["depth"]
                    do = np.load(os.path.join(tmp, "official.npz"))["depth"]
                    row["depth_rel_err"] = _rel_err(dj, do)
                results.append(row)
    if a.compile_only:
        return {"rows": results}
    report = {"machine": info, "threads": a.threads, "matmul_peak": peak, "rows": results,
              "argv": sys.argv[1:] if argv is None else list(argv)}
    return _common.publish(report, format_table, a.json)


def format_table(report: dict) -> str:
    peak = report["matmul_peak"]["gflops_median"]
    gib = 2.0**30
    headers = ["model", "W x H", "N", "jax ms", "official ms", "speed-up", "jax CPU s",
               "official CPU s", "jax recompiles",
               "XLA GFLOP", "analytic GFLOP", "jax MFU", "official MFU*", "jax peak GiB",
               "official peak GiB",
               "jax peak - base GiB", "official peak - base GiB", "jax peak incl. compile GiB"]
    parity = any("depth_rel_err" in r for r in report["rows"])
    if parity:
        headers.append("depth rel err")
    rows = []
    for r in report["rows"]:
        j, o = r.get("jax", {}), r.get("official", {})

        def ms(x):
            return _common.median(x["times_s"]) * 1e3 if "times_s" in x else float("nan")

        def mem(x, key):
            if "timed_peak_bytes" not in x:
                return float("nan")
            if key == "peak":  # whole process, timed calls only (after the warm-up)
                return x["timed_peak_bytes"] / gib
            if key == "all":  # whole process, any time (compile / first call included)
                return max(x["timed_peak_bytes"], x["hwm_through_warmup_bytes"]) / gib
            return (x["timed_peak_bytes"] - x["rss_before_fwd_bytes"]) / gib

        jm, om = ms(j), ms(o)
        flops = j.get("xla_flops", float("nan"))
        def cpu(x):
            return _common.median(x["cpu_s"]) if "cpu_s" in x else float("nan")

        row = [r["model"], r["size"], r["views"], jm, om, om / jm, cpu(j), cpu(o),
               j.get("recompiles", "n/a"), flops / 1e9, j.get("analytic_flops", float("nan")) / 1e9,
               flops / (jm * 1e-3) / (peak * 1e9), flops / (om * 1e-3) / (peak * 1e9),
               mem(j, "peak"), mem(o, "peak"), mem(j, "delta"), mem(o, "delta"),
               mem(j, "all")]
        if parity:
            row.append(r.get("depth_rel_err", float("nan")))
        rows.append(row)
    lines = _common.report_header(
        report, f"Threads per implementation: {report['threads']}. Measured f32 matmul peak "
        f"(jnp.dot 2048^2): {peak:.1f} GFLOP/s.") + [
             _common.markdown_table(headers, rows), "",
             "*official MFU uses the same (da3_jax XLA) FLOP count; the official head also "
             "computes three discarded aux levels, so its true FLOPs are higher."]
    return "\n".join(lines)


if __name__ == "__main__":
    if "--worker" in sys.argv[1:]:
        worker_main(sys.argv[1:])
    else:
        main()
