"""Input-pipeline throughput vs train-step consumption (is the data pipeline the bottleneck?).

    python -m benchmarks.pipeline [--model da3-tiny] [--size 280x280] [--batch 1] [--views 4]
        [--batches 6] [--workers 0] [--threads 2] [--json out.json]

Three measurements with the same batch shape [B, N, H, W, 3]:
  1. pipeline alone: batches/s of `data_pipelines.pipeline.make_train_iterator` (grain; resize /
     crop, photometric jitter, normalisation, reference frame) over
     (a) `SyntheticSource` rendering every scene on the fly (the embedded dataset), and
     (b) an `InMemorySource` of pre-rendered records (what array_record / TFDS sources cost:
         the transforms only, no rendering);
  2. train step alone: the jitted student train step (`benchmarks.train_step`'s setup) on one
     fixed batch, batches/s;
  3. both together: `next(it)` + train step in a loop (grain prefetches in a background thread),
     batches/s; compared with 2, the slowdown is what the pipeline costs the loop.
`headroom` = pipeline batches/s / train-step batches/s: above 1 the pipeline keeps up (on this
2-core machine both share the same cores; on an accelerator host the step runs on the device).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from benchmarks import _common


def _cfg(batch, views, hw, workers, scenes):
    from data_pipelines.pipeline import PipelineConfig

    return PipelineConfig(batch_size=batch, image_hw=hw, min_views=views, max_views=views,
                          synthetic_num_scenes=scenes, synthetic_num_views=views + 2,
                          synthetic_hw=hw, process_index=0, process_count=1,
                          num_workers=workers)


def pipeline_rate(it, batches: int) -> dict:
    next(it)  # start-up (thread pool, first element)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(batches):
        next(it)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"batches_per_s": batches / wall, "cpu_s_per_batch": cpu / batches}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="da3-tiny")
    ap.add_argument("--size", default="280x280", help="WxH")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--batches", type=int, default=6)
    ap.add_argument("--workers", type=int, default=0, help="grain mp_prefetch workers")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--json", default="")
    a = ap.parse_args(argv)
    w, h = (int(v) for v in a.size.lower().split("x"))
    hw = (h, w)
    _common.pin_threads(a.threads)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    info = _common.machine_info()

    import jax
    import jax.numpy as jnp

    from benchmarks.train_step import _config
    from da3_jax.train import da3_tasks
    from da3_jax.train.optim import make_optimizer
    from da3_jax.train.state import create_state
    from da3_jax.train.step import make_train_step
    from data_pipelines.pipeline import make_train_iterator
    from data_pipelines.sources import InMemorySource, SyntheticSource

    scenes = max(8, a.batch * (a.batches + 2))
    res = {"model": a.model, "hw": hw, "batch": a.batch, "views": a.views,
           "workers": a.workers}
    # 1a. on-the-fly rendering
    res["pipe_render"] = pipeline_rate(
        make_train_iterator(_cfg(a.batch, a.views, hw, a.workers, scenes)), a.batches)
    # 1b. pre-rendered records in memory
    src = SyntheticSource(scenes, a.views + 2, h, w, 0)
    records = [src[i] for i in range(scenes)]
    mem_sources = [InMemorySource(records)]
    res["pipe_memory"] = pipeline_rate(
        make_train_iterator(_cfg(a.batch, a.views, hw, a.workers, scenes), mem_sources),
        a.batches)

    # 2. train step alone
    config = _config(a.model)
    task = da3_tasks.student_task(config)
    batch0 = next(make_train_iterator(_cfg(a.batch, a.views, hw, 0, scenes), mem_sources))
    batch0 = {k: jnp.asarray(v) for k, v in batch0.items()}
    params = jax.jit(task.init_params)(jax.random.PRNGKey(0), batch0)
    tx, schedule = make_optimizer(config.optim, params)
    state = create_state(params, tx, jax.random.PRNGKey(1))
    compiled = make_train_step(task.loss_fn, tx, schedule).lower(state, batch0).compile()

    def step(batch):
        nonlocal state
        state, m = compiled(state, batch)
        jax.block_until_ready(m["loss"])

    times = _common.timed(lambda: step(batch0), max(3, a.batches // 2), warmup=1)
    res["step_alone_s"] = _common.median(times)

    # 3. pipeline + step together (on-the-fly and in-memory sources)
    for name, srcs in (("render", None), ("memory", mem_sources)):
        it = make_train_iterator(_cfg(a.batch, a.views, hw, a.workers, scenes), srcs)
        step({k: jnp.asarray(v) for k, v in next(it).items()})
        t0 = time.perf_counter()
        for _ in range(a.batches):
            step({k: jnp.asarray(v) for k, v in next(it).items()})
        res[f"loop_{name}_s_per_batch"] = (time.perf_counter() - t0) / a.batches
    report = {"machine": info, "threads": a.threads, "result": res}
    print(f"# {json.dumps(res)}", file=sys.stderr)
    return _common.publish(report, format_table, a.json)


def format_table(report: dict) -> str:
    r = report["result"]
    step_rate = 1.0 / r["step_alone_s"]
    h, w = r["hw"]
    views = r["batch"] * r["views"]
    rows = []
    for name, key in (("on-the-fly render (SyntheticSource)", "render"),
                      ("pre-rendered (InMemorySource)", "memory")):
        p = r[f"pipe_{key}"]
        loop = r[f"loop_{key}_s_per_batch"]
        rows.append([name, p["batches_per_s"], p["batches_per_s"] * views,
                     p["cpu_s_per_batch"], step_rate, p["batches_per_s"] / step_rate,
                     1.0 / loop, loop / r["step_alone_s"]])
    headers = ["source", "pipeline batches/s", "pipeline views/s", "pipeline CPU s/batch",
               f"{r['model']} step batches/s", "headroom (pipe/step)", "loop batches/s",
               "loop / step-alone time"]
    return "\n".join(_common.report_header(
        report, f"Batch {r['batch']} x {r['views']} views x {h} x {w}; "
        f"grain workers {r['workers']}; threads {report['threads']}.")
        + [_common.markdown_table(headers, rows)])


if __name__ == "__main__":
    main()
