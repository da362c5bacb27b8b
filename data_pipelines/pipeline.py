"""Grain training pipeline: weighted dataset mixture -> multi-view batches, checkpointable.

Entry points (what the trainer calls):
- `make_train_iterator(config, sources=None, weights=None)` -> grain `DatasetIterator` with
  `get_state()` / `set_state()` (save it with `grain.checkpoint.CheckpointSave` /
  `CheckpointHandler` beside the train state in orbax; resuming yields identical batches).
  With orbax (checked to resume exactly):
      mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                data_iter=grain.checkpoint.CheckpointSave(it)))
      mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                   data_iter=grain.checkpoint.CheckpointRestore(it)))
- `make_dataset(config, sources=None, weights=None)` -> the `grain.IterDataset` (to compose).
- `PipelineConfig` (frozen dataclass) / `PipelineConfig.from_mapping(dict or ConfigDict)`.
With `sources=None` the embedded procedural dataset is used (`SyntheticSource` built from the
`synthetic_*` fields). Sources are any grain random-access sources of `SceneRecord`s
(data_pipelines.sources: SyntheticSource, InMemorySource, ArrayRecordSceneSource,
TfdsSceneSource). `num_workers > 0` renders/decodes in that many spawned processes (grain
`mp_prefetch`; JAX is pinned to CPU there); the iterator should then be `close()`d when done.

Each batch (B = batch_size per process, N drawn per batch in [min_views, max_views],
H, W = image_hw):
  images      float32 [B, N, H, W, 3]  ImageNet-normalised RGB (after photometric jitter)
  depth       float32 [B, N, H, W]     z-depth, 0 where invalid (never NaN/inf)
  valid       bool    [B, N, H, W]
  intrinsics  float32 [B, N, 3, 3]     pixels of the output image, pixel-edge convention
  extrinsics  float32 [B, N, 3, 4]     w2c, OpenCV axes; in the reference view's frame
                                        (view 0 = [I | 0]) when reference_frame=True
  is_metric   bool    [B]
  depth_kind  int32   [B]              index into data_pipelines.record.DEPTH_KINDS
  source      int32   [B]              index of the source in the mixture
  view_mask   bool    [B, N]           False for padding views (see below)
  ray         float32 [B, N, H, W, 6]  only with ray_maps=True: da3_jax.geometry.camera_rays
                                        at pixel centres, channels [direction, origin]
View sampling (`reference_view='random'`): the reference view (first) is drawn uniformly among a
scene's usable views; the others among the views within `max_frame_gap` frames of it (0 = anywhere
in the scene; views of one record are assumed to overlap, as clips/orbits do), without
replacement, in frame order. `reference_view='first'`: N consecutive usable views at a random
start, in frame order, the earliest being the reference (as evaluation protocols order clips).
N is drawn per global step (the same on every host, whatever its scenes); a scene with fewer
usable views than N is padded by repeating its sampled views (cyclically, real cameras) with
`valid` all False and `view_mask` False, so dense losses ignore the repeats and every host's
batch has the same shape.

Bad data: a record that fails `SceneRecord.validate()` (wrong shapes/dtypes, NaN/inf depth, bad
poses, singular K) or has fewer than `min_views` views with valid pixels is skipped: counted in
`skip_counts()` (per process) and logged with the field, and the element is replaced by a
deterministic retry (index + k * RETRY_STRIDE), so resume stays exact. Views whose valid mask is
empty are dropped from sampling (counted as 'empty_valid_view'). A final check raises
ValueError naming the field if any non-finite value would reach a batch.
Sharding: `batch_size` is per process; global batch i is the `batch_size * process_count`
records at positions i*B*P.. of the (identically shuffled) mixture and process p fetches,
decodes and augments only its rows p*B..p*B+B-1. Every random choice is keyed by global step
and global row, so the global batch does not depend on the process count (a 2-host run and a
1-host run see the same data) and processes see disjoint scenes.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import grain
import numpy as np

from da3_jax.imagenet import imagenet_normalize
from data_pipelines import transforms
from data_pipelines.record import DEPTH_KINDS, SceneRecord

log = logging.getLogger(__name__)
RETRY_STRIDE = 1_000_003
_SKIPS: collections.Counter = collections.Counter()


def skip_counts() -> dict[str, int]:
    """Counts of skipped records / dropped views in this process, by reason."""
    return dict(_SKIPS)


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Pipeline knobs. process_index/count None -> jax.process_index()/process_count()."""

    batch_size: int = 2
    image_hw: tuple[int, int] = (224, 224)
    min_views: int = 2
    max_views: int = 4
    max_frame_gap: int = 0
    reference_view: str = "random"
    zoom_range: tuple[float, float] = (1.0, 1.15)
    photometric: bool = True
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    reference_frame: bool = True
    ray_maps: bool = False
    seed: int = 0
    shuffle: bool = True
    num_epochs: int | None = None
    process_index: int | None = None
    process_count: int | None = None
    num_threads: int = 1
    prefetch_buffer_size: int = 2
    num_workers: int = 0
    worker_buffer_size: int = 2
    max_retries: int = 16
    synthetic_num_scenes: int = 64
    synthetic_num_views: int = 8
    synthetic_hw: tuple[int, int] = (224, 224)
    synthetic_seed: int = 0
    synthetic_trajectory_probs: tuple[float, float, float] | None = None  # None: SceneConfig's

    def __post_init__(self):
        transforms.check_target_hw(self.image_hw)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 1 <= self.min_views <= self.max_views:
            raise ValueError(f"need 1 <= min_views <= max_views, got {self.min_views}, "
                             f"{self.max_views}")
        if self.reference_view not in ("random", "first"):
            raise ValueError(f"reference_view must be 'random' or 'first', got "
                             f"{self.reference_view!r}")
        if self.zoom_range[0] < 1.0 or self.zoom_range[1] < self.zoom_range[0]:
            raise ValueError(f"zoom_range must satisfy 1 <= lo <= hi, got {self.zoom_range}")

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any] | PipelineConfig) -> PipelineConfig:
        """From a dict / ml_collections.ConfigDict (unknown keys raise ValueError)."""
        if isinstance(cfg, PipelineConfig):
            return cfg
        d = dict(cfg.to_dict() if hasattr(cfg, "to_dict") else cfg)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"PipelineConfig: unknown field(s) {unknown}")
        for k in ("image_hw", "zoom_range", "synthetic_hw", "synthetic_trajectory_probs"):
            if d.get(k) is not None:
                d[k] = tuple(d[k])
        return cls(**d)


class _Tag(grain.transforms.Map):
    """record -> (source index, record); a class so that pipelines pickle for workers."""

    def __init__(self, k: int):
        self.k = k

    def map(self, rec):
        return self.k, rec


def _usable_views(rec: SceneRecord) -> np.ndarray:
    has = rec.valid.reshape(rec.num_views, -1).any(axis=1)
    if not has.all():
        _SKIPS["empty_valid_view"] += int((~has).sum())
    return np.nonzero(has)[0]


def _sample_views(rng, usable: np.ndarray, n: int, max_gap: int, first: bool = False) -> np.ndarray:
    if first:  # a window of n consecutive usable views in frame order, the earliest the reference
        start = int(rng.integers(0, usable.size - n + 1))
        return usable[start:start + n].astype(np.int64)
    ref = int(rng.choice(usable))
    others = usable[usable != ref]
    if max_gap > 0:
        near = others[np.abs(others - ref) <= max_gap]
        if near.size >= n - 1:
            others = near
    rest = np.sort(rng.choice(others, size=n - 1, replace=False)) if n > 1 else []
    return np.array([ref, *rest], np.int64)


def _check_finite(batch: dict[str, np.ndarray]) -> None:
    for k, v in batch.items():
        if v.dtype.kind == "f" and not np.isfinite(v).all():
            raise ValueError(f"pipeline: non-finite values in batch field '{k}'")


class _SceneBatches(grain.MapDataset):
    """This process's rows of global batch i: the B * P records at mixture positions
    i*B*P .. (i+1)*B*P - 1 (P = process count), rows p*B .. p*B + B - 1 here.

    Every random choice is keyed by the global step and row, never by the process: the view
    count N comes from ``rng(seed, i)`` (the same on every host), each row's view sampling and
    augmentation from ``rng(seed, i, global row)``. The global batch is therefore the same for
    any process count, and every host agrees on its shape.
    """

    def __init__(self, parent: grain.MapDataset, cfg: PipelineConfig, process: tuple[int, int]):
        super().__init__(parent)
        self._cfg = cfg
        self._pi, self._pc = process

    def __len__(self) -> int:
        return len(self._parent) // (self._cfg.batch_size * self._pc)

    def __str__(self) -> str:
        return f"_SceneBatches(batch_size={self._cfg.batch_size}, process={self._pi}/{self._pc})"

    def _fetch(self, pos: int):
        """(source index, record, usable view indices) at `pos`, retrying bad records."""
        cfg, n_parent = self._cfg, len(self._parent)
        for attempt in range(cfg.max_retries):
            k, rec = self._parent[(pos + attempt * RETRY_STRIDE) % n_parent]
            try:
                rec.validate()
            except ValueError as e:
                _SKIPS["invalid_record"] += 1
                log.warning("pipeline: skipping record (%s)", e)
                continue
            usable = _usable_views(rec)
            if usable.size < cfg.min_views:
                _SKIPS["too_few_valid_views"] += 1
                log.warning("pipeline: skipping %s/%s: %d views with valid depth < min_views=%d",
                            rec.dataset, rec.scene_id, usable.size, cfg.min_views)
                continue
            return k, rec, usable
        raise ValueError(f"pipeline: {cfg.max_retries} consecutive bad records near position "
                         f"{pos}; see the logged reasons (skip_counts()={skip_counts()})")

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        cfg, b = self._cfg, self._cfg.batch_size
        n = draw_view_count(cfg, int(index))
        rows = []
        for j in range(b):
            row = self._pi * b + j  # row of the global batch
            rng = np.random.default_rng([cfg.seed, 0x5CE7E, int(index), row])
            k, rec, usable = self._fetch(index * b * self._pc + row)
            sampled = _sample_views(rng, usable, min(n, usable.size), cfg.max_frame_gap,
                                    cfg.reference_view == "first")
            views, real = _pad_view_choice(sampled, n)
            part = assemble_batch([(k, rec.select_views(views))], cfg, rng)
            part["valid"][:, real:] = False
            part["depth"][:, real:] = 0.0
            part["view_mask"] = (np.arange(n) < real)[None]
            rows.append(part)
        return {key: np.concatenate([r[key] for r in rows]) for key in rows[0]}


def draw_view_count(cfg: PipelineConfig, index: int) -> int:
    """N of global batch ``index``: uniform in [min_views, max_views] from a step-keyed RNG
    (the same on every host; independent of the scenes)."""
    rng = np.random.default_rng([cfg.seed, 0x5CE7E, index])
    return int(rng.integers(cfg.min_views, cfg.max_views + 1))


def _pad_view_choice(views: np.ndarray, n: int) -> tuple[np.ndarray, int]:
    """Sampled view indices repeated cyclically up to ``n``; returns (indices, real count)."""
    return np.resize(views, n), int(views.size)


def assemble_batch(items: Sequence[tuple[int, SceneRecord]], cfg: PipelineConfig,
                   rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Resize/crop, jitter, normalise and stack records that all have the same view count."""
    b, n = len(items), items[0][1].num_views
    h, w = cfg.image_hw
    images = np.empty((b, n, h, w, 3), np.uint8)
    depth = np.empty((b, n, h, w), np.float32)
    valid = np.empty((b, n, h, w), bool)
    plans, in_hw = [], []
    for i, (_, rec) in enumerate(items):
        for v in range(n):
            plan = transforms.resize_crop_plan(rec.image_hw, cfg.image_hw, rng, cfg.zoom_range)
            images[i, v], depth[i, v], valid[i, v] = transforms.apply_plan(
                plan, rec.images[v], rec.depth[v], rec.valid[v])
            plans.append(plan)
            in_hw.append(rec.image_hw)
    k_in = np.concatenate([rec.intrinsics for _, rec in items])
    intrinsics = transforms.plan_intrinsics(k_in, np.asarray(in_hw, np.float32), plans)
    intrinsics = intrinsics.reshape(b, n, 3, 3)
    extrinsics = np.stack([rec.extrinsics for _, rec in items]).astype(np.float64)
    if cfg.reference_frame:
        # w2c_i' = w2c_i @ c2w_ref (4x4), so the reference camera becomes [I | 0].
        ref_c2w = transforms.reference_c2w(extrinsics[:, :1])
        homog = np.concatenate([extrinsics, np.broadcast_to([0.0, 0.0, 0.0, 1.0],
                                                            (b, n, 1, 4))], axis=-2)
        extrinsics = (homog @ ref_c2w)[..., :3, :]
    x = images.reshape(b * n, h, w, 3).astype(np.float32) / np.float32(255.0)
    if cfg.photometric:
        x = transforms.color_jitter(x, rng, cfg.brightness, cfg.contrast, cfg.saturation)
    depth = np.where(valid, depth, np.float32(0.0))
    batch = {
        "images": imagenet_normalize(x).reshape(b, n, h, w, 3),
        "depth": depth,
        "valid": valid,
        "intrinsics": intrinsics.astype(np.float32),
        "extrinsics": extrinsics.astype(np.float32),
        "is_metric": np.array([bool(rec.is_metric) for _, rec in items]),
        "depth_kind": np.array([DEPTH_KINDS.index(rec.depth_kind) for _, rec in items],
                               np.int32),
        "source": np.array([k for k, _ in items], np.int32),
    }
    if cfg.ray_maps:
        batch["ray"] = transforms.ray_maps(batch["extrinsics"], batch["intrinsics"], (h, w))
    _check_finite(batch)
    return batch


def batch_spec(config, num_views: int | None = None) -> dict[str, tuple[tuple[int, ...], Any]]:
    """{field: (shape, dtype)} of one process's batch (the contract above) without reading data;
    ``num_views`` defaults to ``max_views`` (the largest batch)."""
    cfg = PipelineConfig.from_mapping(config)
    b, n = cfg.batch_size, cfg.max_views if num_views is None else int(num_views)
    h, w = cfg.image_hw
    spec = {
        "images": ((b, n, h, w, 3), np.float32), "depth": ((b, n, h, w), np.float32),
        "valid": ((b, n, h, w), np.bool_), "intrinsics": ((b, n, 3, 3), np.float32),
        "extrinsics": ((b, n, 3, 4), np.float32), "is_metric": ((b,), np.bool_),
        "depth_kind": ((b,), np.int32), "source": ((b,), np.int32),
        "view_mask": ((b, n), np.bool_),
    }
    if cfg.ray_maps:
        spec["ray"] = ((b, n, h, w, 6), np.float32)
    return spec


def _worker_init(worker_index: int, worker_count: int) -> None:
    """Data workers compute host-side geometry only: keep JAX off any accelerator there."""
    del worker_index, worker_count
    import jax

    jax.config.update("jax_platforms", "cpu")


def _process_shard(cfg: PipelineConfig) -> tuple[int, int]:
    if cfg.process_index is not None and cfg.process_count is not None:
        return cfg.process_index, cfg.process_count
    import jax

    return jax.process_index(), jax.process_count()


def default_sources(cfg: PipelineConfig):
    """The embedded procedural dataset described by cfg.synthetic_* (one source)."""
    from data_pipelines.sources import SyntheticSource
    from data_pipelines.synthetic.scenes import SceneConfig

    h, w = cfg.synthetic_hw
    scene_cfg = None
    if cfg.synthetic_trajectory_probs is not None:
        scene_cfg = SceneConfig(trajectory_probs=cfg.synthetic_trajectory_probs)
    return [SyntheticSource(cfg.synthetic_num_scenes, cfg.synthetic_num_views, h, w,
                            cfg.synthetic_seed, scene_cfg)]


def make_dataset(config, sources=None, weights=None) -> grain.IterDataset:
    """grain IterDataset of batches (see the module docstring) from weighted `sources`."""
    cfg = PipelineConfig.from_mapping(config)
    sources = list(sources) if sources is not None else default_sources(cfg)
    if not sources:
        raise ValueError("make_dataset: sources is empty")
    weights = [1.0] * len(sources) if weights is None else [float(x) for x in weights]
    if len(weights) != len(sources) or min(weights) <= 0:
        raise ValueError(f"weights must be {len(sources)} positive numbers, got {weights}")
    pi, pc = _process_shard(cfg)
    parts = []
    for k, src in enumerate(sources):
        ds = grain.MapDataset.source(src)
        if cfg.shuffle:
            ds = ds.shuffle(seed=cfg.seed + 1009 * k)
        ds = ds.repeat(cfg.num_epochs)
        parts.append(ds.map(_Tag(k)))
    mixed = parts[0] if len(parts) == 1 else grain.MapDataset.mix(parts, weights)
    batches = _SceneBatches(mixed, cfg, (pi, pc))
    ds = batches.to_iter_dataset(grain.ReadOptions(num_threads=cfg.num_threads,
                                                   prefetch_buffer_size=cfg.prefetch_buffer_size))
    if cfg.num_workers > 0:
        from absl import flags

        # Grain's worker pool reads absl flags; outside absl.app (scripts, tests) nobody parsed
        # them, so use their defaults.
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(
            num_workers=cfg.num_workers, per_worker_buffer_size=cfg.worker_buffer_size),
            worker_init_fn=_worker_init)
    return ds


def make_train_iterator(config, sources=None, weights=None):
    """Checkpointable iterator over batches: `it.get_state()` / `it.set_state(state)`."""
    return iter(make_dataset(config, sources, weights))
