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
  ray         float32 [B, N, H, W, 6]  only with ray_maps=True: da3_jax.geometry.camera_rays
                                        at pixel centres, channels [direction, origin]
View sampling: the reference view (first) is drawn uniformly among a scene's usable views; the
others among the views within `max_frame_gap` frames of it (0 = anywhere in the scene; views of
one record are assumed to overlap, as clips/orbits do), without replacement, in frame order.
N is clamped to the fewest usable views in the batch.

Bad data: a record that fails `SceneRecord.validate()` (wrong shapes/dtypes, NaN/inf depth, bad
poses, singular K) or has fewer than `min_views` views with valid pixels is skipped: counted in
`skip_counts()` (per process) and logged with the field, and the element is replaced by a
deterministic retry (index + k * RETRY_STRIDE), so resume stays exact. Views whose valid mask is
empty are dropped from sampling (counted as 'empty_valid_view'). A final check raises
ValueError naming the field if any non-finite value would reach a batch.
Sharding: every source is split by process (`source[process_index::process_count]`) before
shuffling; processes see disjoint scenes.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import grain
import numpy as np

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


def _sample_views(rng, usable: np.ndarray, n: int, max_gap: int) -> np.ndarray:
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
    """Batch i: B records at positions i*B..i*B+B-1 of the mixture, N views each."""

    def __init__(self, parent: grain.MapDataset, cfg: PipelineConfig):
        super().__init__(parent)
        self._cfg = cfg

    def __len__(self) -> int:
        return len(self._parent) // self._cfg.batch_size

    def __str__(self) -> str:
        return f"_SceneBatches(batch_size={self._cfg.batch_size})"

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
        cfg = self._cfg
        rng = np.random.default_rng([cfg.seed, 0x5CE7E, int(index)])
        items = [self._fetch(index * cfg.batch_size + j) for j in range(cfg.batch_size)]
        n = int(rng.integers(cfg.min_views, cfg.max_views + 1))
        n = min(n, min(u.size for _, _, u in items))
        return assemble_batch([(k, rec.select_views(_sample_views(rng, u, n, cfg.max_frame_gap)))
                               for k, rec, u in items], cfg, rng)


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
        "images": transforms.imagenet_normalize(x).reshape(b, n, h, w, 3),
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
        if len(src) < pc:
            raise ValueError(f"source {k} ({src!r}) has {len(src)} scenes < {pc} processes")
        ds = grain.MapDataset.source(src)[pi::pc]
        if cfg.shuffle:
            ds = ds.shuffle(seed=cfg.seed + 1009 * k)
        ds = ds.repeat(cfg.num_epochs)
        parts.append(ds.map(_Tag(k)))
    mixed = parts[0] if len(parts) == 1 else grain.MapDataset.mix(parts, weights)
    batches = _SceneBatches(mixed, cfg)
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
