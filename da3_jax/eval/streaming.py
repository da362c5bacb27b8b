"""Evaluating streaming inference: an oracle-noise chunk predictor and a long procedural loop.

With random weights the network's depth and poses are meaningless, so the machinery
(chunking, overlap Sim(3) alignment, loop closure, pose graph) is evaluated with
`OracleChunks`: ground truth corrupted the way a real chunked predictor errs, with known
statistics:

* every chunk lives in its own random gauge (random rotation, translation and scale: what a
  network does, whose output frame is its reference view with normalised scale);
* inside a chunk the geometry is **bent**: frame ``f`` whose camera is ``tau`` (ground-truth
  units) from the chunk's first (reference) camera is mapped by ``exp(tau xi_c)`` about that
  camera, with a random sim(3) vector ``xi_c`` per chunk (``bend_deg`` rotation, ``bend_scale``
  log-scale, ``bend_trans`` translation per unit of distance): errors grow with the baseline
  to the reference view, the two chunks sharing an overlap disagree on it, so sequential
  alignment has systematic errors and the trajectory drifts, as real chunked inference does,
  while a loop chunk over two views of the same place (short baseline) is accurate;
* per-pixel multiplicative depth noise (``depth_noise``) and a fraction ``outliers`` of pixels
  with wrong depth (x U(0.3, 3)); confidences are drawn independently of the errors (1 + U),
  so the robust fit, not the confidence filter, must reject outliers.

`loop_scene` renders a closed camera loop (the first frames are revisited at the end) in a
procedural room of `data_pipelines.synthetic` with exact depth. The network path (real
weights or random ones, for speed / memory) is `da3_jax.infer.streaming.NetworkChunks`
(`benchmarks/streaming.py`).

    python -m da3_jax.eval.streaming --frames 600 --hololens ../shared/data/hololens_dvmvs_office

prints the tables of README "Streaming" (ATE / RPE in ground-truth units after a Sim(3)
alignment, seam consistency, loops closed; mean and range over seeds).
"""

from __future__ import annotations

import os

import numpy as np

from da3_jax.geometry import transform_w2c_sim3
from da3_jax.infer import sim3


class OracleChunks:
    """``predict_chunk`` from ground truth with controlled errors (module docstring).

    Args:
      depth ``[N, H, W]``, w2c ``[N, 3|4, 4]``, intrinsics ``[N, 3, 3]``: ground truth;
      descriptors ``[N, D]``: per-frame retrieval descriptors passed through (or None);
      the error knobs are described in the module docstring; the noise of a chunk depends only
      on (seed, its frames), so re-running a chunk (resume) gives the same prediction.
    """

    def __init__(self, depth, w2c, intrinsics, descriptors=None, *, bend_deg: float = 0.0,
                 bend_scale: float = 0.0, bend_trans: float = 0.0, depth_noise: float = 0.0,
                 outliers: float = 0.0, seed: int = 0):
        self.depth = np.asarray(depth, np.float32)
        self.w2c = np.asarray(w2c, np.float32)[:, :3, :]
        self.intrinsics = np.asarray(intrinsics, np.float32)
        self.descriptors = descriptors
        self.bend = (np.radians(bend_deg), bend_scale, bend_trans)
        self.depth_noise, self.outliers, self.seed = depth_noise, outliers, seed
        self.calls = []

    def _rng(self, frames) -> np.random.Generator:
        return np.random.default_rng([self.seed, *np.asarray(frames, np.int64).tolist()])

    def __call__(self, frames) -> dict:
        frames = np.asarray(frames)
        self.calls.append(frames.copy())
        rng = self._rng(frames)
        q = rng.normal(size=4)
        gauge = sim3.matrix(np.exp(rng.normal() * 0.5), _quat_to_rot(q / np.linalg.norm(q)),
                            rng.normal(size=3))
        rot_b, scale_b, trans_b = self.bend
        xi = np.concatenate([rng.normal(size=3) * trans_b, _unit(rng) * rot_b,
                             [rng.choice([-1.0, 1.0]) * scale_b]])
        w2c_gt = self.w2c[frames].astype(np.float64)
        centres = -np.einsum("nji,nj->ni", w2c_gt[:, :, :3], w2c_gt[:, :, 3])
        taus = np.linalg.norm(centres - centres[0], axis=-1)  # metres from the reference view
        ref = np.eye(4)  # bend about the chunk's first (reference) camera centre
        ref[:3, 3] = centres[0]
        bends = np.asarray(_exp(taus[:, None] * xi[None]), np.float64)
        maps = gauge @ ref @ bends @ sim3.inverse(ref)  # [n, 4, 4]
        s = np.cbrt(np.linalg.det(maps[:, :3, :3]))
        rot = maps[:, :3, :3] / s[:, None, None]
        w2c = np.asarray(transform_w2c_sim3(self.w2c[frames][:, None], s.astype(np.float32),
                                            rot.astype(np.float32),
                                            maps[:, :3, 3].astype(np.float32)))[:, 0]
        d = self.depth[frames] * s[:, None, None].astype(np.float32)
        d = d * (1 + self.depth_noise * rng.standard_normal(d.shape)).astype(np.float32)
        bad = rng.random(d.shape) < self.outliers
        depth = np.where(bad, d * rng.uniform(0.3, 3.0, d.shape), d).astype(np.float32)
        conf = (1.0 + rng.random(depth.shape)).astype(np.float32)
        out = dict(depth=depth, conf=conf, extrinsics=w2c, intrinsics=self.intrinsics[frames])
        if self.descriptors is not None:
            out["descriptor"] = np.asarray(self.descriptors)[frames]
        return out


def _exp(xi):
    import jax

    global _EXP_JIT
    if _EXP_JIT is None:
        _EXP_JIT = jax.jit(sim3.exp)
    return _EXP_JIT(np.asarray(xi, np.float32))


_EXP_JIT = None


def _unit(rng) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def _quat_to_rot(q) -> np.ndarray:
    from da3_jax.eval._jax import geometry_fn, x64

    with x64():
        return np.asarray(geometry_fn("quat_to_rotmat")(np.asarray(q, np.float64)))


def loop_trajectory(n: int, radius: float, height: float, laps: float = 1.0) -> np.ndarray:
    """``[n, 3, 4]`` w2c on a circle of ``radius`` at ``height`` (world z up), looking outward
    and slightly along the motion; after ``laps`` laps the camera is back at the start (frame n
    would equal frame 0), so the last frames revisit the first ones."""
    from data_pipelines.synthetic.scenes import look_at

    out = []
    for a in np.linspace(0.0, 2 * np.pi * laps, n, endpoint=False):
        eye = np.array([radius * np.cos(a), radius * np.sin(a), height])
        look = np.array([np.cos(a + 0.5), np.sin(a + 0.5), -0.15])
        out.append(look_at(eye, eye + look))
    return np.stack(out)


def loop_scene(n: int = 600, height: int = 48, width: int = 64, seed: int = 3):
    """A procedural room and a closed loop of ``n`` views through it: (images uint8
    ``[n, H, W, 3]``, depth ``[n, H, W]`` metres, w2c ``[n, 3, 4]``, K ``[n, 3, 3]``)."""
    from data_pipelines.synthetic.raycast import render_view
    from data_pipelines.synthetic.scenes import SceneConfig, make_room, sample_intrinsics

    rng = np.random.default_rng(seed)
    cfg = SceneConfig(textureless_prob=0.0)
    scene, _, half = make_room(rng, cfg)
    k = sample_intrinsics(rng, cfg, height, width)
    w2c = loop_trajectory(n, 0.45 * float(min(half[0], half[1])), 1.2)
    views = [render_view(scene, k, e, height, width) for e in w2c]
    images = np.stack([v[0] for v in views])
    depth = np.stack([np.where(v[2], v[1], 0.0) for v in views]).astype(np.float32)
    return images, depth, w2c, np.repeat(k[None], n, axis=0)


def thumbnail_descriptors(images, size: int = 8) -> np.ndarray:
    """``[N, 3 size^2]`` descriptors: the images box-downsampled to ``size x size`` (the
    classical "tiny image" place descriptor), L2-normalised. Used with the oracle predictor,
    which has no network features; the network path uses `forward.view_descriptor`."""
    images = np.asarray(images, np.float64)
    n, h, w, c = images.shape
    hh, ww = h // size * size, w // size * size
    x = images[:, :hh, :ww].reshape(n, size, hh // size, size, ww // size, c).mean((2, 4))
    x = x.reshape(n, -1)
    x -= x.mean(1, keepdims=True)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


# ---------------------------------------------------------------------------------------------
# The evaluation (python -m da3_jax.eval.streaming)

DEFAULT_NOISE = dict(bend_deg=1.0, bend_scale=0.02, depth_noise=0.01, outliers=0.1)


def _metrics(result, gt_w2c) -> dict:
    from da3_jax.eval.trajectory import ate, rpe, seam_consistency

    out = {"ate": ate(result.w2c, gt_w2c), **rpe(result.w2c, gt_w2c)}
    if len(result.ranges) > 1:
        out.update(seam_consistency(result))
    out["loops"] = sum(lp["used"] for lp in result.loops)
    return out


def evaluate_sequence(images, depth, w2c, k, out_dir: str, chunk: int, overlap: int,
                      seeds=(0, 1, 2), noise=None, loop_closure=(False, True),
                      one_shot: bool = True) -> list[dict]:
    """Oracle runs over one sequence: one-shot (a single chunk of all frames: one gauge, the
    bend grows with the distance to frame 0) and streaming with/without loop closure; one row
    per (mode, seed) with ATE / RPE (GT units) and seam consistency."""
    from da3_jax.infer.streaming import StreamingConfig, StreamingRun

    noise = dict(DEFAULT_NOISE if noise is None else noise)
    desc = thumbnail_descriptors(images)
    n = len(depth)
    modes = ([("one-shot", n, 1, False)] if one_shot else []) + [
        (f"streaming{' + loop closure' if lc else ''}", chunk, overlap, lc)
        for lc in loop_closure]
    rows = []
    for name, c, o, lc in modes:
        for seed in seeds:
            oracle = OracleChunks(depth, w2c, k, desc, seed=seed, **noise)
            cfg = StreamingConfig(chunk=c, overlap=min(o, c - 1) if c > 3 else 1,
                                  loop_closure=lc, align_points=1024)
            if c >= n:  # one chunk: chunk_ranges never aligns, the config is irrelevant
                cfg = StreamingConfig(chunk=n, overlap=3, align_points=1024)
            res = StreamingRun(os.path.join(out_dir, f"{name}_{seed}".replace(" ", "")), n,
                               oracle, cfg).run()
            rows.append(dict(mode=name, seed=seed, chunk=c, overlap=o, **_metrics(res, w2c)))
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and range over seeds per mode."""
    out = []
    for mode in dict.fromkeys(r["mode"] for r in rows):
        sel = [r for r in rows if r["mode"] == mode]
        agg = {"mode": mode, "seeds": len(sel)}
        for key in ("ate", "rpe_trans", "rpe_rot_deg", "seam_rel_mean", "loops"):
            vals = [r[key] for r in sel if key in r]
            if vals:
                agg[key] = (float(np.mean(vals)), float(np.min(vals)), float(np.max(vals)))
        out.append(agg)
    return out


def markdown(title: str, summary: list[dict]) -> str:
    fmt = lambda v, p=4: "-" if v is None else f"{v[0]:.{p}f} ({v[1]:.{p}f}-{v[2]:.{p}f})"
    lines = [f"**{title}**", "", "| mode | ATE | RPE trans | RPE rot (deg) | seam rel. depth "
             "diff | loops |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for s in summary:
        lines.append(f"| {s['mode']} | {fmt(s.get('ate'))} | {fmt(s.get('rpe_trans'))} | "
                     f"{fmt(s.get('rpe_rot_deg'), 3)} | {fmt(s.get('seam_rel_mean'))} | "
                     f"{fmt(s.get('loops'), 1)} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    import argparse
    import json
    import time

    p = argparse.ArgumentParser(description="Streaming evaluation with the oracle predictor")
    p.add_argument("--out", default="runs/streaming_eval")
    p.add_argument("--frames", type=int, default=600)
    p.add_argument("--size", default="48x64", help="HxW of the procedural loop")
    p.add_argument("--chunk", type=int, default=24)
    p.add_argument("--overlap", type=int, default=8)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--hololens", default=None, help="path of shared/data/hololens_dvmvs_office")
    args = p.parse_args(argv)
    seeds = tuple(int(s) for s in args.seeds.split(","))
    h, w = (int(v) for v in args.size.split("x"))
    os.makedirs(args.out, exist_ok=True)
    report = {}
    t0 = time.time()
    images, depth, w2c, k = loop_scene(args.frames, h, w)
    rows = evaluate_sequence(images, depth, w2c, k, os.path.join(args.out, "loop"), args.chunk,
                             args.overlap, seeds)
    report["loop"] = rows
    print(markdown(f"Procedural loop: {args.frames} frames {h}x{w}, chunk {args.chunk} / "
                   f"overlap {args.overlap}, oracle noise {DEFAULT_NOISE}, seeds {seeds}",
                   summarise(rows)), flush=True)
    if args.hololens:
        from data_pipelines.readers.rgbd import read_hololens_clip

        rec = read_hololens_clip(args.hololens)
        rows = evaluate_sequence(rec.images, rec.depth, rec.extrinsics, rec.intrinsics,
                                 os.path.join(args.out, "hololens"), 6, 3, seeds,
                                 loop_closure=(False,))
        report["hololens"] = rows
        print(markdown(f"HoloLens clip ({len(rec.depth)} frames, sensor depth with holes), "
                       "chunk 6 / overlap 3", summarise(rows)), flush=True)
    with open(os.path.join(args.out, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
    print(f"({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
