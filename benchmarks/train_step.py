"""Train-step time, examples/s, tokens/s and MFU of the da3_jax student train step.

    python -m benchmarks.train_step [--models da3-tiny,da3-small] [--size 280x280]
        [--batch 1] [--views 4] [--repeats 3] [--threads 2] [--json out.json]
    python -m benchmarks.train_step --compare-official [--models da3-small] [--views 4]
        [--rounds 1]

`--compare-official`: the official PyTorch network's train step next to ours, on the same
converted weights, batch and loss (`benchmarks.train_compare`: torch AdamW, fp32, 2 warm-ups,
median of `--repeats`, one subprocess per cell, the two implementations interleaved: jax,
official, then the reverse order in the next round). Reports wall and process-CPU time, the
1-minute load at each cell, both step-0 losses, MFU and the timed section's peak RSS.

The step is `da3_jax.train.step.make_train_step` with the student task's loss
(`da3_jax.train.da3_tasks.student_task`: forward with ref_view_strategy='first', targets,
`losses.da3_loss`) and the project's AdamW (`train.optim.make_optimizer`, the experiments'
default optimiser fields), on one batch from the grain pipeline (`data_pipelines.pipeline`,
procedural scenes, exactly N views). The jitted step is AOT-compiled once
(`step.lower(state, batch).compile()`) and that executable is timed (median of `--repeats`
after one warm-up; the state is donated and threaded through, as in training).

FLOPs:
  * `XLA GFLOP/step`: XLA's cost analysis of the whole step (forward, backward, loss,
    optimizer; XLA also counts element-wise ops), lowered with the loop-free 'dense' attention
    kernel (XLA counts a loop body once; the timed step uses the config's 'auto' kernel);
  * `model GFLOP/step`: 3 x the analytic forward count (`benchmarks.flops`: matmuls and convs;
    backward = 2 x forward), the usual model-FLOPs definition;
  * `fwd XLA / analytic`: cost analysis of the jitted forward alone vs the analytic count.
MFU = model FLOPs / step time / measured f32 matmul peak (jitted jnp.dot, 2048^2 f32, measured
in this process with the same threads). Examples = scenes (batch elements); tokens = B N (1 + P)
backbone tokens per step.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from benchmarks import _common


def _config(model: str, conv_impl: str = "auto"):
    import ml_collections

    c = ml_collections.ConfigDict()
    c.task = "student"
    c.seed = 0
    c.batch_size = 1  # only read by the task's data iterator factory (unused here)
    c.model = ml_collections.ConfigDict({"name": model,
                                         "overrides": {"conv_impl": conv_impl}})
    c.loss = ml_collections.ConfigDict(dict(lambda_c=1.0, beta=1.0, alpha=1.0, ray=1.0,
                                            point=1.0))
    c.optim = ml_collections.ConfigDict(dict(
        lr=1e-4, total_steps=10000, warmup_steps=100, end_lr_ratio=0.01, weight_decay=0.05,
        b1=0.9, b2=0.999, eps=1e-8, grad_clip=1.0, backbone_regex=r"^backbone/",
        backbone_lr_mult=0.1))
    c.data = ml_collections.ConfigDict({"eval_sources": [], "pipeline": {}, "train_sources": []})
    return c


def pipeline_batch(batch: int, views: int, hw: tuple[int, int]) -> dict:
    """One batch of procedural scenes from the grain pipeline (exactly `views` views)."""
    from data_pipelines.pipeline import PipelineConfig, make_train_iterator

    cfg = PipelineConfig(batch_size=batch, image_hw=hw, min_views=views, max_views=views,
                         synthetic_num_scenes=max(8, batch), synthetic_num_views=views + 2,
                         synthetic_hw=hw, process_index=0, process_count=1)
    return next(make_train_iterator(cfg))


def bench_model(model: str, batch_np: dict, repeats: int, peak_gflops: float,
                conv_impl: str = "auto") -> dict:
    import jax
    import jax.numpy as jnp

    from benchmarks.flops import forward_flops
    from da3_jax.train import da3_tasks
    from da3_jax.train.optim import make_optimizer
    from da3_jax.train.state import create_state
    from da3_jax.train.step import make_train_step

    config = _config(model, conv_impl)
    task = da3_tasks.student_task(config)
    batch = {k: jnp.asarray(v) for k, v in batch_np.items()}
    b, n, h, w, _ = batch["images"].shape
    # Random init, of which only the shapes matter here: LLVM without its optimisation passes
    # (same HLO) halves its compile, thousands of small RNG fusions (18 -> 10 s CPU, da3-tiny).
    key = jax.random.PRNGKey(0)
    params = jax.jit(task.init_params).lower(key, batch).compile(
        compiler_options={"xla_backend_optimization_level": 0})(key, batch)
    tx, schedule = make_optimizer(config.optim, params)
    state = create_state(params, tx, jax.random.PRNGKey(1))
    step = make_train_step(task.loss_fn, tx, schedule)

    t0 = time.perf_counter()
    compiled = step.lower(state, batch).compile()
    compile_s = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    temp_bytes = int(getattr(mem, "temp_size_in_bytes", 0))

    # FLOPs: XLA counts a loop body once, and the default CPU attention kernel loops over heads
    # and query blocks, so the counts come from the same step / forward lowered with the
    # loop-free 'dense' kernel (same maths; lowering only, not compiled or run).
    dense = _config(model, conv_impl)
    dense.model.overrides = {"attention_impl": "dense"}
    dense_task = da3_tasks.student_task(dense)
    dense_step = make_train_step(dense_task.loss_fn, tx, schedule)

    def flops_of(lowered) -> float:
        ca = lowered.cost_analysis()
        ca = ca[0] if isinstance(ca, (list, tuple)) else ca
        return float(ca.get("flops", float("nan")))

    xla_flops = flops_of(dense_step.lower(state, batch))
    mcfg = da3_tasks.model_config(config)
    model_obj = da3_tasks.build_model(dense)
    fwd = jax.jit(lambda p, x: model_obj.apply({"params": p}, x, ref_view_strategy="first"))
    fwd_xla = flops_of(fwd.lower(state.params, batch["images"]))
    fwd_analytic = forward_flops(mcfg, n, (h, w), batch=b)["total"]

    def run():
        nonlocal state
        state, metrics = compiled(state, batch)
        jax.block_until_ready(metrics["loss"])

    times = _common.timed(run, repeats, warmup=1)
    t = _common.median(times)
    p = (h // mcfg.patch_size) * (w // mcfg.patch_size)
    model_flops = 3.0 * fwd_analytic
    return {
        "model": model, "batch": b, "views": n, "hw": [h, w], "times_s": times,
        "step_s": t, "compile_s": compile_s, "examples_per_s": b / t,
        "tokens_per_s": b * n * (1 + p) / t, "xla_step_flops": xla_flops,
        "model_step_flops": model_flops, "fwd_xla_flops": fwd_xla,
        "fwd_analytic_flops": fwd_analytic, "temp_bytes": temp_bytes,
        "mfu_model": model_flops / t / (peak_gflops * 1e9),
        "mfu_xla": xla_flops / t / (peak_gflops * 1e9),
        "n_params": int(sum(x.size for x in jax.tree.leaves(state.params))),
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="da3-tiny,da3-small")
    ap.add_argument("--size", default="280x280", help="WxH (multiples of 14)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--json", default="")
    ap.add_argument("--compare-official", action="store_true",
                    help="time the official PyTorch train step next to ours (subprocesses)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="--compare-official: interleaved rounds per model")
    ap.add_argument("--conv-impl", default="auto", choices=("xla", "matmul", "auto"),
                    help="da3_jax heads' convolutions (da3_jax.model.conv; 'auto': the "
                    "implementation measured fastest on the backend)")
    a = ap.parse_args(argv)
    if a.repeats < 3:
        raise ValueError(f"--repeats must be >= 3; got {a.repeats}")
    w, h = (int(v) for v in a.size.lower().split("x"))
    if h % 14 or w % 14:
        raise ValueError(f"--size {a.size}: W and H must be multiples of 14")
    _common.pin_threads(a.threads)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    if a.compare_official:
        return compare_official(a, (h, w))
    info = _common.machine_info()
    peak = _common.matmul_peak_gflops()
    batch_np = pipeline_batch(a.batch, a.views, (h, w))
    rows = []
    for m in a.models.split(","):
        r = bench_model(m, batch_np, a.repeats, peak["gflops_median"], a.conv_impl)
        print(f"# {json.dumps(r)}", file=sys.stderr, flush=True)
        rows.append(r)
    peak_after = _common.matmul_peak_gflops()
    report = {"machine": info, "threads": a.threads, "matmul_peak": peak,
              "matmul_peak_after": peak_after, "rows": rows}
    return _common.publish(report, format_table, a.json)


def format_table(report: dict) -> str:
    headers = ["model", "params (M)", "B x N x H x W", "step s", "examples/s", "tokens/s",
               "XLA GFLOP/step", "model GFLOP/step", "fwd XLA / analytic", "MFU (model)",
               "MFU (XLA)", "compile s"]
    rows = []
    for r in report["rows"]:
        h, w = r["hw"]
        rows.append([r["model"], r["n_params"] / 1e6, f"{r['batch']}x{r['views']}x{h}x{w}",
                     r["step_s"], r["examples_per_s"], r["tokens_per_s"],
                     r["xla_step_flops"] / 1e9, r["model_step_flops"] / 1e9,
                     r["fwd_xla_flops"] / r["fwd_analytic_flops"], r["mfu_model"],
                     r["mfu_xla"], r["compile_s"]])
    p0, p1 = report["matmul_peak"]["gflops_median"], report["matmul_peak_after"]["gflops_median"]
    return "\n".join(_common.report_header(
        report, f"Threads: {report['threads']}. Measured f32 matmul peak (jnp.dot 2048^2): "
        f"{p0:.1f} GFLOP/s before, {p1:.1f} GFLOP/s after (MFU uses the first).")
        + [_common.markdown_table(headers, rows)])


def compare_official(a, hw: tuple[int, int]) -> dict:
    """da3_jax vs official train step, one subprocess per cell, interleaved (module doc)."""
    import tempfile

    from benchmarks import train_compare as tc
    from benchmarks.flops import forward_flops
    from da3_jax.model import get_config

    if a.batch != 1:
        raise ValueError(f"--compare-official runs B = 1 (the official step's batch); "
                         f"got --batch {a.batch}")
    info = _common.machine_info()
    peak = _common.matmul_peak_gflops()
    batch_np = pipeline_batch(1, a.views, hw)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in a.models.split(","):
            weights = os.path.join(tmp, f"{model}.safetensors")
            inputs = os.path.join(tmp, f"{model}_inputs.npz")
            tc.save_official_weights(model, weights)
            tc.write_inputs(inputs, batch_np, tc.ray_hw(model, hw))
            flops = 3.0 * forward_flops(get_config(model), a.views, hw)["total"]
            for rnd in range(a.rounds):
                order = ("jax", "official") if rnd % 2 == 0 else ("official", "jax")
                row = {"model": model, "views": a.views, "hw": list(hw), "round": rnd,
                       "model_step_flops": flops}
                for impl in order:
                    load = os.getloadavg()[0]
                    r = tc.run_cell(impl, model, "train", "float32", a.views, inputs=inputs,
                                    weights=weights, threads=a.threads, repeats=a.repeats,
                                    conv_impl=a.conv_impl)
                    r["load_1min_before"] = load
                    row[impl] = r
                    print(f"# {json.dumps(r)}", file=sys.stderr, flush=True)
                rows.append(row)
    report = {"machine": info, "threads": a.threads, "matmul_peak": peak,
              "matmul_peak_after": _common.matmul_peak_gflops(), "rows": rows}
    return _common.publish(report, format_compare, a.json)


def format_compare(report: dict) -> str:
    headers = ["model", "B x N x H x W", "round", "da3_jax step s", "official step s",
               "speed-up (wall)", "da3_jax CPU s", "official CPU s", "CPU ratio (official/jax)",
               "load before (jax / official)", "da3_jax MFU", "official MFU",
               "step-0 loss jax / official", "jax recompiles", "jax peak GiB",
               "official peak GiB"]
    peak = report["matmul_peak"]["gflops_median"] * 1e9
    rows = []
    for r in report["rows"]:
        j, o = r["jax"], r["official"]
        h, w = r["hw"]
        if "error" in j or "error" in o:
            rows.append([r["model"], f"1x{r['views']}x{h}x{w}", r["round"],
                         j.get("error", ""), o.get("error", "")] + [None] * 11)
            continue
        js, os_ = j["median_s"], o["median_s"]
        rows.append([r["model"], f"1x{r['views']}x{h}x{w}", r["round"], js, os_, os_ / js,
                     j["median_cpu_s"], o["median_cpu_s"], o["median_cpu_s"] / j["median_cpu_s"],
                     f"{j['load_1min_before']:.1f} / {o['load_1min_before']:.1f}",
                     r["model_step_flops"] / js / peak, r["model_step_flops"] / os_ / peak,
                     f"{j['loss0']:.5g} / {o['loss0']:.5g}", j.get("recompiles"),
                     j["timed_peak_rss_bytes"] / 2**30, o["timed_peak_rss_bytes"] / 2**30])
    p0, p1 = report["matmul_peak"]["gflops_median"], report["matmul_peak_after"]["gflops_median"]
    return "\n".join(_common.report_header(
        report, f"Threads: {report['threads']} per implementation, fp32, 2 warm-ups, median of "
        f"the timed steps, one subprocess per cell. Measured f32 matmul peak (jnp.dot 2048^2): "
        f"{p0:.1f} GFLOP/s before, {p1:.1f} after (MFU = 3 x analytic forward FLOPs / step time"
        f" / the first).") + [_common.markdown_table(headers, rows)])


if __name__ == "__main__":
    main()
