"""Streaming inference: frames/s and peak memory against sequence length (random weights).

    python -m benchmarks.streaming --model da3-tiny --frames 100,200,400 --chunk 16 --overlap 4

Each length runs in a fresh subprocess (so ``ru_maxrss`` is that run's peak) through the real
path: `da3_jax.infer.streaming.StreamingRun` + `NetworkChunks` + a `Predictor` with random
weights, frames of 504 x 280 px (process_res 504 -> 280 x 504), chunk files on disk. Frames
come from a pool of 32 rendered views of a procedural room, cycled (frame i = pool[i % 32]),
read on demand like a video. Prints one JSON line per length: wall / CPU seconds, frames/s
(whole run, and steady state after the first chunk, which includes compilation), peak RSS,
1-minute load average.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile


def _machinery_only(frames, h=280, w=504):
    """A predict_chunk without a network: random depth / conf / poses of the real shapes
    (measures the streaming machinery: alignment, chunk files, state, assembly)."""
    import numpy as np

    k = np.array([[300.0, 0, w / 2], [0, 300.0, h / 2], [0, 0, 1]], np.float32)

    def predict(idx):
        rng = np.random.default_rng(int(idx[0]))
        n = len(idx)
        ext = np.tile(np.eye(4, dtype=np.float32)[:3], (n, 1, 1))
        ext[:, 2, 3] = np.asarray(idx, np.float32) * 0.01
        return dict(depth=1 + rng.random((n, h, w), np.float32),
                    conf=1 + rng.random((n, h, w), np.float32), extrinsics=ext,
                    intrinsics=np.tile(k, (n, 1, 1)),
                    images=np.zeros((n, h, w, 3), np.uint8))

    return predict


def _one(model: str, frames: int, chunk: int, overlap: int, loop_closure: bool) -> dict:
    import resource
    import time

    import jax
    import numpy as np

    from da3_jax.eval.streaming import loop_scene
    from da3_jax.infer.api import Predictor
    from da3_jax.infer.io import FrameSource
    from da3_jax.infer.streaming import (
        NetworkChunks,
        StreamingConfig,
        StreamingRun,
        decimated_prediction,
    )
    from da3_jax.model import DA3, get_config

    predictor = None
    if model == "none":
        chunks = _machinery_only(frames)
    else:
        cfg = get_config(model)
        shapes = jax.eval_shape(DA3(cfg).init, jax.random.key(0),
                                jax.ShapeDtypeStruct((1, 1, 28, 28, 3), np.float32))["params"]
        rng = np.random.default_rng(0)
        params = jax.tree.map(lambda s: (rng.normal(size=s.shape) * 0.02).astype(np.float32),
                              shapes)
        predictor = Predictor(cfg, params)
        pool = loop_scene(32, 280, 504)[0]
        source = FrameSource("synthetic", [f"{i}" for i in range(frames)],
                             lambda i: pool[i % len(pool)], frames)
        chunks = NetworkChunks(predictor, source, process_res=504)
    times = []
    t0, c0 = time.time(), time.process_time()
    with tempfile.TemporaryDirectory() as out:
        run = StreamingRun(out, frames, chunks, StreamingConfig(
            chunk=chunk, overlap=overlap, loop_closure=loop_closure))
        result = run.run(progress=lambda done, k: times.append((done, time.time())))
        decimated_prediction(result, 4_000_000)  # what the exporters get
    wall, cpu = time.time() - t0, time.process_time() - c0
    (f1, t1), (fn, tn) = times[0], times[-1]
    return dict(model=model, frames=frames, chunk=chunk, overlap=overlap,
                loop_closure=loop_closure, chunks=len(times), wall_s=round(wall, 1),
                cpu_s=round(cpu, 1), fps=round(frames / wall, 3),
                fps_steady=round((fn - f1) / max(tn - t1, 1e-9), 3) if len(times) > 1 else None,
                peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                load_1min=round(os.getloadavg()[0], 1),
                traces=None if predictor is None else predictor.forward.trace_count)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="da3-tiny", help="'none': no network (machinery only)")
    p.add_argument("--frames", default="100,200,400")
    p.add_argument("--chunk", type=int, default=16)
    p.add_argument("--overlap", type=int, default=4)
    p.add_argument("--loop-closure", action="store_true")
    p.add_argument("--single", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.single is not None:
        print(json.dumps(_one(args.model, args.single, args.chunk, args.overlap,
                              args.loop_closure)), flush=True)
        return
    for n in (int(x) for x in args.frames.split(",")):
        cmd = [sys.executable, "-m", "benchmarks.streaming", "--model", args.model, "--single",
               str(n), "--chunk", str(args.chunk), "--overlap", str(args.overlap)]
        if args.loop_closure:
            cmd.append("--loop-closure")
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        print(out.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
