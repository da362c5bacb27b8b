"""Streaming inference over sequences of any length with bounded memory (DA3-Streaming).

    run = StreamingRun(out_dir, num_frames, predict_chunk, StreamingConfig(chunk=120,
                       overlap=60, loop_closure=True))
    result = run.run()            # resumes from out_dir/state.json after a kill
    result.w2c, result.intrinsics  # [N, 3, 4] world w2c, [N, 3, 3] for every frame
    depth = result.depth(i)        # [H, W] world-scaled z-depth of frame i (read from disk)

Pipeline (after the official ``da3_streaming/``: 120-frame chunks with 60 overlapping, Sim(3)
between chunks, loop closure, Sim(3) pose graph; differences noted):

1. **Chunks** (`chunk_ranges`): windows of exactly ``chunk`` frames, consecutive windows share
   ``overlap`` frames; the last window is moved back to end at the last frame (it overlaps
   more), so every forward has the same shape and the jitted model compiles once.
2. **Per-chunk prediction**: ``predict_chunk(frames) -> dict(depth [n,H,W], conf [n,H,W],
   extrinsics [n,3,4] w2c, intrinsics [n,3,3], descriptor [n,D] or None)`` in the chunk's own
   gauge (`NetworkChunks` runs a `Predictor`; `da3_jax.eval.streaming` has an oracle). Each
   chunk is written to ``chunk_XXXXX.npz`` (atomic rename) and ``state.json`` records it, so
   memory holds at most two chunks and a killed run resumes at the last finished chunk.
3. **Sequential alignment** (`align_overlap`): the same pixels of the overlap frames,
   unprojected in both chunks (`geometry.points_from_depth`), are correspondences; points
   below ``conf_percentile`` in either chunk are dropped; `geometry.ransac_umeyama`
   (least-median) rejects outliers and a confidence-weighted `geometry.umeyama` refit on its
   inliers gives ``chunk_{k-1} <- chunk_k``. (Upstream: weighted IRLS Sim(3) with numba.)
4. **Loop closure** (``loop_closure=True``, `find_loops`): retrieval with the per-frame
   descriptors the predictor returns (the network path: `forward.view_descriptor`, mean-pooled
   backbone tokens; upstream uses SALAD + faiss, i.e. extra weights and a GPU library), cosine
   similarity after removing the sequence mean, pairs at least ``loop_min_gap`` frames apart,
   one loop per pair of chunks. Each loop is verified by predicting a **loop chunk** (``chunk``
   frames: half around each end, same shape) and aligning it to both chunks; a loop whose
   alignments have fewer than ``loop_min_inliers`` inlier points is dropped.
5. **Pose graph** (`da3_jax.infer.sim3.optimize_pose_graph`): Sim(3) nodes world <- chunk,
   sequential and loop edges, Levenberg–Marquardt on sim(3) in JAX float64, chunk 0 fixed.
   (Upstream: pypose.)
6. **Input cameras**: with input poses, every chunk is conditioned on them and aligned back to
   them by the predictor; the chunks are then already in the input world (node = identity, the
   gauge is the input's) and steps 3–5 are skipped.

Outputs per frame come from the chunk where the frame is nearest the window centre
(``owner``); depth is scaled by the chunk's Sim(3) scale. Memory: O(chunk x H x W) for the
current and previous chunk + O(N) poses / descriptors.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
from collections.abc import Callable

import jax
import numpy as np

from da3_jax.geometry import points_from_depth, ransac_umeyama, transform_w2c_sim3, umeyama
from da3_jax.infer import sim3

STATE = "state.json"


@dataclasses.dataclass(frozen=True)
class StreamingConfig:
    """Streaming knobs (see module docstring). Frame counts are in (sampled) frames."""

    chunk: int = 120
    overlap: int = 60
    loop_closure: bool = False
    conf_percentile: float = 30.0  # per overlap, points below this in either chunk are dropped
    align_points: int = 4096  # correspondences sampled per alignment (fixed: one compile)
    ransac_iters: int = 128
    loop_min_gap: int | None = None  # default: 2 * chunk
    loop_min_similarity: float = 0.95
    loop_min_inliers: int = 256
    max_loops: int = 32
    loop_weight: float = 1.0
    pgo_iters: int = 10
    seed: int = 0

    def validate(self) -> None:
        if self.chunk < 2:
            raise ValueError(f"chunk must be >= 2 frames, got {self.chunk}")
        if not 1 <= self.overlap < self.chunk:
            raise ValueError(f"overlap must be in [1, chunk={self.chunk}), got {self.overlap}")
        if self.overlap < 3:
            raise ValueError(f"overlap must be >= 3 frames (Sim(3) alignment), got {self.overlap}")

    @property
    def min_gap(self) -> int:
        return 2 * self.chunk if self.loop_min_gap is None else int(self.loop_min_gap)


def chunk_ranges(n: int, chunk: int, overlap: int) -> list[tuple[int, int]]:
    """``[start, end)`` windows of exactly ``min(chunk, n)`` frames covering ``[0, n)``;
    consecutive windows share >= ``overlap`` frames (the last one is moved back to end at n)."""
    if n < 1:
        raise ValueError(f"streaming needs at least one frame, got {n}")
    if n <= chunk:
        return [(0, n)]
    step = chunk - overlap
    starts = list(range(0, n - chunk, step)) + [n - chunk]
    return [(s, s + chunk) for s in dict.fromkeys(starts)]


def owners(ranges: list[tuple[int, int]], n: int) -> np.ndarray:
    """``[n]`` chunk index per frame: the window whose centre is nearest (ties: earlier)."""
    centres = np.array([(s + e - 1) / 2.0 for s, e in ranges])
    frames = np.arange(n)[:, None]
    inside = np.array([[s <= f < e for s, e in ranges] for f in range(n)])
    dist = np.where(inside, np.abs(frames - centres[None]), np.inf)
    return np.argmin(dist, axis=1)


# ---------------------------------------------------------------------------------------------
# Alignment


@dataclasses.dataclass
class Chunk:
    """One chunk's prediction in its own gauge; ``frames`` are global frame indices."""

    frames: np.ndarray
    depth: np.ndarray
    conf: np.ndarray
    extrinsics: np.ndarray
    intrinsics: np.ndarray
    descriptor: np.ndarray | None = None
    images: np.ndarray | None = None  # [n, H, W, 3] uint8 processed images (for exports)

    def local(self, frames) -> np.ndarray:
        lookup = {int(f): i for i, f in enumerate(self.frames)}
        return np.array([lookup[int(f)] for f in frames], np.int64)

    def save(self, path: str) -> None:
        """Atomic write (temporary file + rename): a killed run never leaves half a chunk."""
        tmp = path + ".tmp.npz"
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        np.savez(tmp, **{k: v for k, v in fields.items() if v is not None})
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str, arrays=("depth", "conf", "extrinsics", "intrinsics")) -> Chunk:
        """The chunk at ``path`` with only ``arrays`` (and ``frames``) read; others None."""
        with np.load(path) as z:
            return cls(frames=z["frames"], **{
                f.name: z[f.name] if f.name in arrays and f.name in z.files else None
                for f in dataclasses.fields(cls) if f.name != "frames"})


_points = jax.jit(points_from_depth, static_argnames=("pixel_center",))


def sample_points(chunk: Chunk, frames, pixels) -> tuple[np.ndarray, np.ndarray]:
    """Chunk-frame points ``[M, 3]`` and confidences ``[M]`` at ``pixels`` (flat indices
    ``[F, m]``) of ``frames`` (global ids, ``F``); pixel-centre unprojection. Pixels without a
    depth get confidence NaN (excluded by `fit_sim3`)."""
    pts, confs = [], []
    for f, idx in zip(chunk.local(frames), pixels, strict=True):
        p = np.asarray(_points(chunk.depth[f], chunk.extrinsics[f], chunk.intrinsics[f],
                               pixel_center=0.5)).reshape(-1, 3)
        d = chunk.depth[f].reshape(-1)[idx]
        pts.append(p[idx])  # pixels without depth (<= 0, non-finite) get a NaN confidence
        confs.append(np.where(np.isfinite(d) & (d > 0), chunk.conf[f].reshape(-1)[idx], np.nan))
    return np.concatenate(pts), np.concatenate(confs)


def fit_sim3(src, dst, src_conf, dst_conf, conf_percentile: float = 30.0,
             ransac_iters: int = 128, key=None) -> tuple[np.ndarray, int]:
    """Robust Sim(3) ``dst ~ s R src + t`` from corresponding points and their confidences.

    Points with a non-finite coordinate or a confidence below the ``conf_percentile`` of
    either side are excluded; `geometry.ransac_umeyama` (least-median) finds the inliers and
    `geometry.umeyama` refits on them with weights ``sqrt(conf_src * conf_dst)``.
    Returns (float64 ``[4, 4]`` dst <- src, inlier count).
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    ok = np.isfinite(src).all(-1) & np.isfinite(dst).all(-1)
    ok &= np.isfinite(src_conf) & np.isfinite(dst_conf)
    if ok.sum() < 3:
        raise ValueError(f"alignment: only {int(ok.sum())} valid correspondences (need >= 3)")
    ok &= src_conf >= np.percentile(src_conf[ok], conf_percentile)
    ok &= dst_conf >= np.percentile(dst_conf[ok], conf_percentile)
    # centre in float64 (the solvers run in float32)
    mu_s, mu_d = src[ok].mean(0), dst[ok].mean(0)
    a = np.where(ok[:, None], src - mu_s, 0.0).astype(np.float32)
    b = np.where(ok[:, None], dst - mu_d, 0.0).astype(np.float32)
    _, _, _, inl = ransac_umeyama(a, b, key, mask=ok, n_iter=ransac_iters)
    inl = np.asarray(inl) & ok
    w = np.where(inl, np.sqrt(np.maximum(src_conf, 0) * np.maximum(dst_conf, 0)), 0.0)
    s, rot, t = (np.asarray(x, np.float64) for x in umeyama(a, b, True, weights=w))
    return sim3.matrix(float(s), rot, mu_d + t - float(s) * rot @ mu_s), int(inl.sum())


def align_overlap(dst: Chunk, src: Chunk, frames, cfg: StreamingConfig, seed: int):
    """``dst <- src`` Sim(3) from the shared ``frames`` (see `fit_sim3`); the same
    ``cfg.align_points`` pixels are sampled (uniformly, seeded) in both chunks."""
    frames = np.asarray(frames)
    h, w = src.depth.shape[1:]
    per = -(-cfg.align_points // len(frames))
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, h * w, size=(len(frames), per))
    p_src, c_src = sample_points(src, frames, pixels)
    p_dst, c_dst = sample_points(dst, frames, pixels)
    m = cfg.align_points
    key = jax.random.PRNGKey(seed)
    return fit_sim3(p_src[:m], p_dst[:m], c_src[:m], c_dst[:m], cfg.conf_percentile,
                    cfg.ransac_iters, key)


# ---------------------------------------------------------------------------------------------
# Loop closure


def find_loops(descriptors: np.ndarray, ranges, cfg: StreamingConfig) -> list[tuple]:
    """Loop candidates ``(a, b, similarity)`` (frames, a < b) from per-frame descriptors.

    Descriptors ``[N, D]`` are centred on the sequence mean and L2-normalised; pairs at least
    ``cfg.min_gap`` frames apart with cosine similarity >= ``cfg.loop_min_similarity`` are
    kept, the best pair per (owner chunk of a, owner chunk of b), at most ``cfg.max_loops``,
    most similar first."""
    d = np.asarray(descriptors, np.float64)
    d = d - d.mean(0)
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    n = len(d)
    sim = d @ d.T
    idx = np.arange(n)
    sim[np.abs(idx[:, None] - idx[None]) < cfg.min_gap] = -np.inf
    sim[np.tril_indices(n)] = -np.inf
    own = owners(ranges, n)
    best: dict = {}
    for a, b in zip(*np.nonzero(sim >= cfg.loop_min_similarity), strict=True):
        key = (own[a], own[b])
        if key not in best or sim[a, b] > best[key][2]:
            best[key] = (int(a), int(b), float(sim[a, b]))
    return sorted(best.values(), key=lambda x: -x[2])[: cfg.max_loops]


def loop_frames(a: int, b: int, chunk: int, n: int) -> np.ndarray:
    """``chunk`` frames: ``chunk // 2`` around ``a`` and the rest around ``b`` (clipped to
    ``[0, n)``; the two windows do not overlap when ``b - a >= chunk``)."""
    half = chunk // 2

    def window(c, k):
        start = int(np.clip(c - k // 2, 0, n - k))
        return np.arange(start, start + k)

    return np.concatenate([window(a, half), window(b, chunk - half)])


# ---------------------------------------------------------------------------------------------
# The run


@dataclasses.dataclass
class StreamingResult:
    """Per-frame world cameras of a finished run; depth is read from the chunk files."""

    out_dir: str
    ranges: list
    world_from_chunk: np.ndarray  # [K, 4, 4]
    w2c: np.ndarray  # [N, 3, 4] world w2c
    intrinsics: np.ndarray  # [N, 3, 3]
    owner: np.ndarray  # [N]
    loops: list
    info: dict

    @property
    def num_frames(self) -> int:
        return len(self.w2c)

    def chunk_path(self, k: int) -> str:
        return os.path.join(self.out_dir, f"chunk_{k:05d}.npz")

    def chunk_depth(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(frames, world-scaled depth [n, H, W], conf [n, H, W]) of chunk k."""
        c = Chunk.load(self.chunk_path(k), ("depth", "conf"))
        s = sim3.split(self.world_from_chunk[k])[0]
        return c.frames, c.depth * np.float32(s), c.conf

    def iter_frames(self):
        """Yields (frame, depth [H, W], conf [H, W], image [H, W, 3] uint8 or None) of every
        frame from its owner chunk, in frame order; one chunk in memory at a time."""
        for k in range(len(self.ranges)):
            c = Chunk.load(self.chunk_path(k), ("depth", "conf", "images"))
            s = np.float32(sim3.split(self.world_from_chunk[k])[0])
            for i, f in enumerate(c.frames):
                if self.owner[f] == k:
                    yield int(f), c.depth[i] * s, c.conf[i], (
                        None if c.images is None else c.images[i])

    def depth(self, frame: int) -> np.ndarray:
        frames, depth, _ = self.chunk_depth(int(self.owner[frame]))
        return depth[int(np.flatnonzero(frames == frame)[0])]


class StreamingRun:
    """A resumable streaming run in ``out_dir`` (see module docstring).

    Args:
      out_dir: folder for ``chunk_XXXXX.npz``, ``loop_XXX.npz`` and ``state.json``.
      num_frames: N.
      predict_chunk: frames ``[n]`` (int) -> prediction dict (module docstring, step 2).
      config: `StreamingConfig`.
      fingerprint: JSON-able description of the input / model; a resumed run must match it.
      posed: the predictor aligns chunks to input poses (module docstring, step 6).
    """

    def __init__(self, out_dir: str, num_frames: int, predict_chunk: Callable,
                 config: StreamingConfig = StreamingConfig(), fingerprint: dict | None = None,
                 posed: bool = False):
        config.validate()
        self.out_dir = os.fspath(out_dir)
        self.n = int(num_frames)
        self.predict_chunk = predict_chunk
        self.cfg = config
        self.posed = posed
        self.ranges = chunk_ranges(self.n, config.chunk, config.overlap)
        self.fingerprint = dict(fingerprint or {}, num_frames=self.n, posed=posed,
                                config=dataclasses.asdict(config))

    # -- state -----------------------------------------------------------------------------

    def _state_path(self) -> str:
        return os.path.join(self.out_dir, STATE)

    def _chunk_path(self, k: int) -> str:
        return os.path.join(self.out_dir, f"chunk_{k:05d}.npz")

    def load_state(self) -> dict:
        """The saved state (``done`` chunk count, ``rel``: chunk_{k-1} <- chunk_k matrices),
        or a fresh one. ValueError when ``out_dir`` holds a run of another input / config."""
        path = self._state_path()
        if not os.path.isfile(path):
            return {"fingerprint": self.fingerprint, "done": 0, "rel": [], "inliers": []}
        with open(path) as f:
            state = json.load(f)
        if state.get("fingerprint") != json.loads(json.dumps(self.fingerprint)):
            raise ValueError(f"{path}: the folder holds a streaming run of another input or "
                             "configuration; use a new --out or delete the folder")
        return state

    def _save_state(self, state: dict) -> None:
        tmp = self._state_path() + ".tmp"
        with open(tmp, "w") as f:
            json.dump(state, f)
        os.replace(tmp, self._state_path())

    def _predict(self, frames) -> Chunk:
        out = self.predict_chunk(np.asarray(frames))
        desc, images = out.get("descriptor"), out.get("images")
        return Chunk(frames=np.asarray(frames, np.int64),
                     depth=np.asarray(out["depth"], np.float32),
                     conf=np.asarray(out["conf"], np.float32),
                     extrinsics=np.asarray(out["extrinsics"], np.float32)[:, :3, :],
                     intrinsics=np.asarray(out["intrinsics"], np.float32),
                     descriptor=None if desc is None else np.asarray(desc, np.float32),
                     images=None if images is None else np.asarray(images, np.uint8))

    # -- run -------------------------------------------------------------------------------

    def run(self, progress: Callable[[int, int], None] | None = None,
            stop_after: int | None = None) -> StreamingResult | None:
        """Predict and align the remaining chunks, then (optionally) close loops and assemble.

        progress(frames_done, chunk_index) is called after every chunk; ``stop_after`` stops
        after that many chunks of this call (returns None; for tests and benchmarks).
        """
        os.makedirs(self.out_dir, exist_ok=True)
        state = self.load_state()
        first = state["done"]
        prev = None if first == 0 else Chunk.load(self._chunk_path(first - 1))
        for k in range(first, len(self.ranges)):
            if stop_after is not None and k - first >= stop_after:
                return None
            s, e = self.ranges[k]
            cur = self._predict(np.arange(s, e))
            if k > 0 and not self.posed:
                shared = np.intersect1d(prev.frames, cur.frames)
                rel, inl = align_overlap(prev, cur, shared, self.cfg, self.cfg.seed + k)
            else:
                rel, inl = np.eye(4), 0
            cur.save(self._chunk_path(k))
            state["rel"].append(rel.tolist())
            state["inliers"].append(inl)
            state["done"] = k + 1
            self._save_state(state)
            prev = cur
            if progress is not None:
                progress(e, k)
        return self._finish(state)

    def _finish(self, state: dict) -> StreamingResult:
        rel = np.asarray(state["rel"], np.float64)
        poses = [np.eye(4)]
        for k in range(1, len(self.ranges)):
            poses.append(poses[-1] @ rel[k])
        poses = np.stack(poses)
        loops, info = [], {"inliers": state["inliers"]}
        if self.cfg.loop_closure and not self.posed and len(self.ranges) > 2:
            poses, loops, info = self._close_loops(state, rel, poses, info)
        w2c, ks = np.zeros((self.n, 3, 4), np.float32), np.zeros((self.n, 3, 3), np.float32)
        own = owners(self.ranges, self.n)
        for k in range(len(self.ranges)):
            c = Chunk.load(self._chunk_path(k), ("extrinsics", "intrinsics"))
            mine = own[c.frames] == k
            s, r, t = sim3.split(poses[k])
            w2c[c.frames[mine]] = np.asarray(transform_w2c_sim3(
                c.extrinsics[mine], np.float32(s), r.astype(np.float32), t.astype(np.float32)))
            ks[c.frames[mine]] = c.intrinsics[mine]
        return StreamingResult(self.out_dir, self.ranges, poses, w2c, ks, own, loops, info)

    def _close_loops(self, state, rel, poses, info):
        descs = []
        for k in range(len(self.ranges)):
            c = Chunk.load(self._chunk_path(k), ("descriptor",))
            if c.descriptor is None:
                raise ValueError("loop closure needs per-frame descriptors from the predictor")
            descs.append((c.frames, c.descriptor))
        d = np.zeros((self.n, descs[0][1].shape[1]), np.float32)
        own = owners(self.ranges, self.n)
        for k, (frames, desc) in enumerate(descs):
            mine = own[frames] == k
            d[frames[mine]] = desc[mine]
        candidates = find_loops(d, self.ranges, self.cfg)
        edges = [(k - 1, k) for k in range(1, len(self.ranges))]
        meas = [rel[k] for k in range(1, len(self.ranges))]
        weights = [1.0] * len(edges)
        loops = []
        for li, (a, b, simv) in enumerate(candidates):
            frames = loop_frames(a, b, self.cfg.chunk, self.n)
            path = os.path.join(self.out_dir, f"loop_{li:03d}_{a}_{b}.npz")
            if os.path.isfile(path):
                lc = Chunk.load(path)
            else:
                lc = self._predict(frames)
                lc.save(path)
            half = self.cfg.chunk // 2
            ends = []
            for part in (frames[:half], frames[half:]):
                k = int(np.bincount(own[part]).argmax())
                ck = Chunk.load(self._chunk_path(k))
                shared = np.intersect1d(part, ck.frames)
                m, inl = align_overlap(ck, lc, shared, self.cfg, self.cfg.seed + 7919 + li)
                ends.append((k, m, inl))
            (ka, ma, ia), (kb, mb, ib) = ends
            ok = ka != kb and min(ia, ib) >= self.cfg.loop_min_inliers
            loops.append(dict(a=a, b=b, similarity=simv, chunks=(ka, kb), inliers=(ia, ib),
                              used=bool(ok)))
            if ok:  # chunk_ka <- chunk_kb = (ka <- loop) (loop <- kb)
                edges.append((ka, kb))
                meas.append(ma @ sim3.inverse(mb))
                weights.append(self.cfg.loop_weight)
        if any(lp["used"] for lp in loops):
            poses, pgo = sim3.optimize_pose_graph(poses, edges, np.stack(meas), weights,
                                                  fixed=(0,), iters=self.cfg.pgo_iters)
            info = dict(info, pgo=pgo)
        return poses, loops, info


def decimated_prediction(result: StreamingResult, max_pixels: int, names=None):
    """The whole sequence as a `Prediction` for the exporters (ply / glb / colmap / npz), every
    frame subsampled by one integer stride ``f`` (pixels ``(f i, f j)``, intrinsics scaled by
    ``1 / f``: exact for the exporters' integer-pixel unprojection) so that
    ``N x (H / f) x (W / f) <= max_pixels``: memory is bounded by the point budget, not by N."""
    from da3_jax.geometry import rescale_intrinsics
    from da3_jax.infer.api import Prediction

    frames = result.iter_frames()
    f0, d0, c0, im0 = next(frames)
    n, (h, w) = result.num_frames, d0.shape
    stride = max(1, int(np.ceil(np.sqrt(n * h * w / max(int(max_pixels), 1)))))
    hs, ws = -(-h // stride), -(-w // stride)
    depth = np.empty((n, hs, ws), np.float32)
    conf = np.empty((n, hs, ws), np.float32)
    images = np.zeros((n, hs, ws, 3), np.uint8)
    for f, d, c, im in itertools.chain([(f0, d0, c0, im0)], frames):
        depth[f], conf[f] = d[::stride, ::stride], c[::stride, ::stride]
        if im is not None:
            images[f] = im[::stride, ::stride]
    k = np.asarray(rescale_intrinsics(result.intrinsics, 1.0 / stride, 1.0 / stride), np.float32)
    return Prediction(depth=depth, conf=conf, extrinsics=result.w2c, intrinsics=k,
                      processed_images=images,
                      image_names=list(names) if names is not None else
                      [f"frame_{i:06d}.png" for i in range(n)])


# ---------------------------------------------------------------------------------------------
# The network as a chunk predictor


class NetworkChunks:
    """``predict_chunk`` for a `Predictor`: frames are read from ``source`` (a sequence of
    frames: `da3_jax.infer.io.FrameSource`) and predicted with the given options; input
    cameras (``extrinsics [N, 4, 4]`` / ``intrinsics [N, 3, 3]`` of every frame) condition each
    chunk, which is aligned back to them (`Predictor.predict`)."""

    def __init__(self, predictor, source, extrinsics=None, intrinsics=None, **predict_kwargs):
        self.predictor = predictor
        self.source = source
        self.extrinsics = None if extrinsics is None else np.asarray(extrinsics)
        self.intrinsics = None if intrinsics is None else np.asarray(intrinsics)
        self.kwargs = predict_kwargs
        self.processed_size = None

    def __call__(self, frames) -> dict:
        images = [self.source[int(f)] for f in frames]
        ext = None if self.extrinsics is None else self.extrinsics[frames]
        k = None if self.intrinsics is None else self.intrinsics[frames]
        pred = self.predictor.predict(images, ext, k, with_descriptor=True, **self.kwargs)
        if pred.conf is None or pred.extrinsics is None:
            raise ValueError(f"streaming needs a model with cameras and confidence; "
                             f"{self.predictor.config.name} has none")
        self.processed_size = pred.depth.shape[1:]
        return dict(depth=pred.depth, conf=pred.conf, extrinsics=pred.extrinsics,
                    intrinsics=pred.intrinsics, descriptor=pred.descriptor,
                    images=pred.processed_images)
