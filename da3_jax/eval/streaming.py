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
weights or random ones, for speed / memory) is `da3_jax.infer.streaming.NetworkChunks`.
"""

from __future__ import annotations

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
