"""The canonical scene record: the one format every reader, renderer, builder and pipeline shares.

A `SceneRecord` holds N views of one scene (a short clip, an orbit, a stereo pair, ...):

- `images`      uint8 [N, H, W, 3]: RGB, 0..255.
- `depth`       float32 [N, H, W]: z-depth in the camera frame (NOT range along the ray);
                metres when `is_metric`, else arbitrary but scene-consistent units. 0 where
                there is no depth (invalid); never NaN, inf or negative.
- `valid`       bool [N, H, W]: True where `depth` is a usable target. `valid` implies
                `depth > 0`; `depth == 0` implies not valid. Sky/background/holes are False.
- `intrinsics`  float32 [N, 3, 3]: K in pixels of *this* record's images, pixel-edge
                convention: pixel (row i, col j) covers [j, j+1) x [i, i+1), its centre is
                (j + 0.5, i + 0.5), so the ray through that centre is K^-1 [j + 0.5, i + 0.5, 1]
                and resizing by (sx, sy) is exactly K' = diag(sx, sy, 1) K
                (`da3_jax.geometry.rescale_intrinsics`). Last row [0, 0, 1].
- `extrinsics`  float32 [N, 3, 4]: world-to-camera [R | t] (x_cam = R x_world + t), OpenCV
                camera axes (x right, y down, z forward); translation in `depth`'s units.
- `dataset`     str: source dataset name, e.g. 'synthetic', 'eth3d'.
- `scene_id`    str: unique within `dataset`.
- `is_metric`   bool: depth/translation in metres (True) or up to one per-scene scale.
- `depth_kind`  str, one of `DEPTH_KINDS`: 'dense_gt' (renderer / synthetic GT), 'sparse_gt'
                (LiDAR, SfM, depth sensor: holes), 'pseudo_label' (teacher depth aligned to
                sparse GT).
- `provenance`  dict or None, JSON-serialisable. Pseudo-labels store at least
                `teacher_checkpoint` (str) and per image `inliers` (list[int]) and `residual`
                (list[float]); readers may add source file names etc.

`SceneRecord.validate()` raises `ValueError` naming the field for wrong shapes/dtypes, NaN/inf or
negative depth, `valid` where depth is 0, non-finite or non-rigid poses, and singular K.

Serialisation:
- `record.to_example()` / `SceneRecord.from_example(d)`: a flat dict of NumPy arrays and Python
  scalars (`EXAMPLE_KEYS`), the form TFDS `FeaturesDict`s encode (see
  `data_pipelines/tfds/synthetic_builder.py`); `provenance` travels as a JSON string.
- `record.to_bytes()` / `SceneRecord.from_bytes(b)`: a self-contained byte string (an `.npz`
  archive, no pickle) for array_record files read without TensorFlow
  (`data_pipelines.sources.ArrayRecordSceneSource`).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from collections.abc import Iterable
from typing import Any

import numpy as np

DEPTH_KINDS = ("dense_gt", "sparse_gt", "pseudo_label")
EXAMPLE_KEYS = (
    "images",
    "depth",
    "valid",
    "intrinsics",
    "extrinsics",
    "dataset",
    "scene_id",
    "is_metric",
    "depth_kind",
    "provenance",
)
_ARRAY_FIELDS = {
    "images": np.uint8,
    "depth": np.float32,
    "valid": np.bool_,
    "intrinsics": np.float32,
    "extrinsics": np.float32,
}


@dataclasses.dataclass
class SceneRecord:
    """N posed views of one scene with depth; see the module docstring for every field."""

    images: np.ndarray
    depth: np.ndarray
    valid: np.ndarray
    intrinsics: np.ndarray
    extrinsics: np.ndarray
    dataset: str
    scene_id: str
    is_metric: bool
    depth_kind: str
    provenance: dict[str, Any] | None = None

    @property
    def num_views(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_hw(self) -> tuple[int, int]:
        return int(self.images.shape[1]), int(self.images.shape[2])

    def validate(self) -> SceneRecord:
        """Checks every field; raises ValueError naming the field. Returns self for chaining."""
        where = f"SceneRecord(dataset={self.dataset!r}, scene_id={self.scene_id!r})"
        for name, dtype in _ARRAY_FIELDS.items():
            value = getattr(self, name)
            if not isinstance(value, np.ndarray):
                raise ValueError(f"{where}: field '{name}' must be a numpy array, "
                                 f"got {type(value)}")
            if value.dtype != dtype:
                raise ValueError(
                    f"{where}: field '{name}' must have dtype {np.dtype(dtype).name}, "
                    f"got {value.dtype}"
                )
        img = self.images
        if img.ndim != 4 or img.shape[-1] != 3 or min(img.shape[:3]) < 1:
            raise ValueError(f"{where}: field 'images' must be [N,H,W,3] with N,H,W >= 1, got "
                             f"{img.shape}")
        n, h, w = img.shape[:3]
        for name, shape in (
            ("depth", (n, h, w)),
            ("valid", (n, h, w)),
            ("intrinsics", (n, 3, 3)),
            ("extrinsics", (n, 3, 4)),
        ):
            got = getattr(self, name).shape
            if got != shape:
                raise ValueError(f"{where}: field '{name}' must have shape {shape} "
                                 f"(images are {img.shape}), got {got}")
        depth = self.depth
        if not np.isfinite(depth).all():
            bad = int((~np.isfinite(depth)).sum())
            raise ValueError(f"{where}: field 'depth' has {bad} NaN/inf values (use 0 = invalid)")
        if (depth < 0).any():
            raise ValueError(f"{where}: field 'depth' has negative values (use 0 = invalid)")
        if (self.valid & (depth <= 0)).any():
            raise ValueError(f"{where}: field 'valid' is True where 'depth' is 0")
        k = self.intrinsics
        if not np.isfinite(k).all():
            raise ValueError(f"{where}: field 'intrinsics' has non-finite values")
        if not np.allclose(k[:, 2], np.array([0.0, 0.0, 1.0], np.float32), atol=1e-6):
            raise ValueError(f"{where}: field 'intrinsics' last row must be [0, 0, 1]")
        if (k[:, 0, 0] <= 0).any() or (k[:, 1, 1] <= 0).any():
            raise ValueError(f"{where}: field 'intrinsics' is singular or has focal <= 0")
        e = self.extrinsics
        if not np.isfinite(e).all():
            raise ValueError(f"{where}: field 'extrinsics' has non-finite values")
        rot = e[:, :, :3].astype(np.float64)
        err = np.abs(rot @ np.swapaxes(rot, -1, -2) - np.eye(3)).max()
        if err > 1e-3 or (np.linalg.det(rot) <= 0).any():
            raise ValueError(f"{where}: field 'extrinsics' rotation is not a proper rotation "
                             f"(max |R R^T - I| = {err:.2e})")
        for name in ("dataset", "scene_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{where}: field '{name}' must be a non-empty str, got {value!r}")
        if not isinstance(self.is_metric, bool | np.bool_):
            raise ValueError(f"{where}: field 'is_metric' must be bool, got {self.is_metric!r}")
        if self.depth_kind not in DEPTH_KINDS:
            raise ValueError(f"{where}: field 'depth_kind' must be one of {DEPTH_KINDS}, "
                             f"got {self.depth_kind!r}")
        if self.provenance is not None:
            if not isinstance(self.provenance, dict):
                raise ValueError(f"{where}: field 'provenance' must be a dict or None")
            try:
                json.dumps(self.provenance)
            except TypeError as e:
                raise ValueError(
                    f"{where}: field 'provenance' is not JSON-serialisable: {e}") from e
        return self

    def select_views(self, idx) -> SceneRecord:
        """A record with the views `idx` (sequence of ints) in that order; provenance kept."""
        idx = np.asarray(idx, np.int64)
        return dataclasses.replace(
            self,
            images=self.images[idx],
            depth=self.depth[idx],
            valid=self.valid[idx],
            intrinsics=self.intrinsics[idx],
            extrinsics=self.extrinsics[idx],
        )

    # ----------------------------------------------------------------- serialisation
    def to_example(self) -> dict[str, Any]:
        """Flat dict (EXAMPLE_KEYS): arrays as they are, strings, bool, provenance as JSON."""
        return {
            "images": self.images,
            "depth": self.depth,
            "valid": self.valid,
            "intrinsics": self.intrinsics,
            "extrinsics": self.extrinsics,
            "dataset": self.dataset,
            "scene_id": self.scene_id,
            "is_metric": bool(self.is_metric),
            "depth_kind": self.depth_kind,
            "provenance": json.dumps(self.provenance if self.provenance is not None else None),
        }

    @classmethod
    def from_example(cls, ex: dict[str, Any]) -> SceneRecord:
        """Inverse of `to_example`; accepts bytes for the str fields (as TFDS decodes them)."""
        missing = [k for k in EXAMPLE_KEYS if k not in ex]
        if missing:
            raise ValueError(f"example is missing field(s) {missing}")

        def _str(v):
            if isinstance(v, np.ndarray):
                v = v.item()
            return v.decode("utf-8") if isinstance(v, bytes) else str(v)

        prov = _str(ex["provenance"])
        return cls(
            images=np.asarray(ex["images"], np.uint8),
            depth=np.asarray(ex["depth"], np.float32),
            valid=np.asarray(ex["valid"]).astype(bool),
            intrinsics=np.asarray(ex["intrinsics"], np.float32),
            extrinsics=np.asarray(ex["extrinsics"], np.float32),
            dataset=_str(ex["dataset"]),
            scene_id=_str(ex["scene_id"]),
            is_metric=bool(np.asarray(ex["is_metric"]).item()),
            depth_kind=_str(ex["depth_kind"]),
            provenance=json.loads(prov) if prov else None,
        )

    def to_bytes(self) -> bytes:
        """Self-contained bytes (uncompressed .npz, no pickle) for array_record files."""
        ex = self.to_example()
        arrays = {k: np.asarray(v) for k, v in ex.items() if isinstance(v, np.ndarray)}
        meta = {k: v for k, v in ex.items() if not isinstance(v, np.ndarray)}
        buf = io.BytesIO()
        np.savez(buf, __meta__=np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8),
                 **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> SceneRecord:
        """Inverse of `to_bytes`."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                ex = {k: z[k] for k in z.files}
        except (ValueError, OSError, EOFError) as e:
            raise ValueError(f"SceneRecord.from_bytes: not a serialised record ({e})") from e
        if "__meta__" not in ex:
            raise ValueError("SceneRecord.from_bytes: field '__meta__' is missing")
        meta = json.loads(ex.pop("__meta__").tobytes().decode("utf-8"))
        return cls.from_example({**ex, **meta})


def write_array_record(records: Iterable[SceneRecord], path: str | os.PathLike) -> int:
    """Writes validated records (`to_bytes`) to one array_record file; returns the count."""
    from array_record.python import array_record_module

    writer = array_record_module.ArrayRecordWriter(os.fspath(path), "group_size:1")
    n = 0
    try:
        for rec in records:
            writer.write(rec.validate().to_bytes())
            n += 1
    finally:
        writer.close()
    return n
