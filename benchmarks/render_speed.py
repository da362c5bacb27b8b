"""Views per second of the procedural renderer (one process, NumPy) and of the full pipeline.

    python -m benchmarks.render_speed [--scenes 8 --views 4 --sizes 224x224,336x504]

For each size, renders `scenes` scenes of `views` views (half rooms, half object scenes on
average) and prints views per wall-clock second and per CPU second of the process (the
renderer is single-threaded NumPy, so on an idle core the two agree; on a shared, loaded
machine the CPU figure is the stable one). `--pipeline` also times batches from
`make_train_iterator` on the on-the-fly `SyntheticSource` (render 8-view scenes, sample 2-4
views, resize/crop, jitter, normalise). Figures are recorded in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

from data_pipelines.synthetic.render import render_scene


def views_per_second(height: int, width: int, scenes: int, views: int, seed: int = 0):
    """(views per wall-clock second, views per CPU second of this process)."""
    render_scene(10_000, 1, height, width, seed)  # warm caches / imports
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(scenes):
        render_scene(i, views, height, width, seed)
    n = scenes * views
    return n / (time.perf_counter() - t0), n / (time.process_time() - c0)


def pipeline_views_per_second(batches: int = 6):
    """(views per wall-clock second, per CPU second) of batches rendered on the fly."""
    from data_pipelines.pipeline import PipelineConfig, make_train_iterator

    cfg = PipelineConfig(batch_size=2, image_hw=(224, 224), min_views=2, max_views=4,
                         synthetic_num_scenes=1000, synthetic_num_views=8,
                         synthetic_hw=(224, 224), process_index=0, process_count=1)
    it = make_train_iterator(cfg)
    next(it)
    t0, c0, n = time.perf_counter(), time.process_time(), 0
    for _ in range(batches):
        b = next(it)
        n += b["images"].shape[0] * b["images"].shape[1]
    return n / (time.perf_counter() - t0), n / (time.process_time() - c0)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenes", type=int, default=8)
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--sizes", default="224x224,336x504", help="comma-separated HxW")
    ap.add_argument("--pipeline", action="store_true")
    args = ap.parse_args(argv)
    out = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
           "load_avg_1min": os.getloadavg()[0]}
    for size in args.sizes.split(","):
        h, w = (int(x) for x in size.lower().split("x"))
        wall, cpu = views_per_second(h, w, args.scenes, args.views)
        out[f"render_{h}x{w}_views_per_s"] = round(wall, 2)
        out[f"render_{h}x{w}_views_per_cpu_s"] = round(cpu, 2)
    if args.pipeline:
        wall, cpu = pipeline_views_per_second()
        out["pipeline_224x224_views_per_s"] = round(wall, 2)
        out["pipeline_224x224_views_per_cpu_s"] = round(cpu, 2)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
