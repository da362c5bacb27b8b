"""Validated file readers shared by the format readers (images, 16-bit PNG, PFM, text matrices).

Every function raises ``ValueError`` naming the file and the field when the data are missing,
truncated, of the wrong shape or non-finite, so a broken file never reaches a batch as NaN.

Conventions used by all readers in this package:
  * images: uint8 RGB ``[H, W, 3]``;
  * depth: float32 metres, z-depth (distance along the optical axis), 0 = invalid;
  * intrinsics ``K [3, 3]`` in pixels, **pixel-edge convention** of ``data_pipelines.record``
    (the centre of the top-left pixel is at (0.5, 0.5), as in COLMAP). Calibrations written in
    the OpenCV convention (top-left pixel centre at (0, 0)) go through
    ``opencv_to_pixel_edge`` (cx, cy + 0.5); each reader states which one its format uses;
  * extrinsics ``[3, 4]`` world-to-camera, OpenCV camera axes (x right, y down, z forward).

All readers build their result through ``make_record`` so the record is validated once.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Sequence

import cv2
import numpy as np

from da3_jax import geometry
from data_pipelines.record import SceneRecord

PathLike = str | os.PathLike


def require_file(path: PathLike, field: str) -> str:
    """Returns ``str(path)``; raises ValueError naming ``field`` when the file does not exist."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{field}: file {path!r} does not exist")
    return path


def _decode_image(path: PathLike, field: str, kind: str = "image") -> tuple[str, np.ndarray]:
    """``(str(path), array)`` of an image file decoded as stored (``cv2.IMREAD_UNCHANGED``, BGR
    channel order); ValueError naming ``field`` for a missing, corrupt or truncated file."""
    path = require_file(path, field)
    with open(path, "rb") as f:
        buf = np.frombuffer(f.read(), np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
    if img is None:
        raise ValueError(f"{field}: {path!r} is not a readable {kind} (corrupt or truncated)")
    return path, img


def read_rgb(path: PathLike, field: str = "image") -> np.ndarray:
    """Reads an 8-bit colour image as uint8 RGB ``[H, W, 3]`` (grey images are repeated x3).

    Raises ValueError for a missing, corrupt or truncated file.
    """
    path, img = _decode_image(path, field)
    if img.dtype != np.uint8:
        raise ValueError(f"{field}: {path!r} has dtype {img.dtype}, expected 8-bit colour")
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    elif img.shape[-1] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    else:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(img)


def read_png16(path: PathLike, field: str = "depth") -> np.ndarray:
    """Reads a single-channel 16-bit PNG as uint16 ``[H, W]``; ValueError if it is not one."""
    path, img = _decode_image(path, field, "PNG")
    if img.dtype != np.uint16 or img.ndim != 2:
        raise ValueError(
            f"{field}: {path!r} must be a single-channel 16-bit PNG, got {img.dtype} {img.shape}"
        )
    return img


def read_mask(path: PathLike, field: str = "mask") -> np.ndarray:
    """Reads an 8/16-bit single-channel mask PNG as its raw integer values ``[H, W]``."""
    _, img = _decode_image(path, field)
    if img.ndim == 3:
        img = img[..., 0]
    return img


def read_pfm(path: PathLike, field: str = "disparity") -> np.ndarray:
    """Reads a PFM file as float32 ``[H, W]`` (``Pf``) or ``[H, W, 3]`` (``PF``).

    PFM stores rows bottom-to-top; the result is flipped to top-to-bottom. A negative scale
    means little-endian. Non-finite values (``inf`` = unknown in Middlebury) are kept.
    """
    path = require_file(path, field)
    with open(path, "rb") as f:
        data = f.read()
    header = re.match(rb"(P[Ff])\s+(\d+)\s+(\d+)\s+(-?[0-9.eE+-]+)\s", data)
    if header is None:
        raise ValueError(f"{field}: {path!r} has no valid PFM header (Pf/PF, width height, scale)")
    channels = 3 if header.group(1) == b"PF" else 1
    width, height = int(header.group(2)), int(header.group(3))
    scale = float(header.group(4))
    count = width * height * channels
    raw = data[header.end() :]
    if len(raw) < 4 * count:
        raise ValueError(
            f"{field}: {path!r} is truncated: {len(raw)} bytes of pixel data, expected {4 * count}"
        )
    arr = np.frombuffer(raw, dtype="<f4" if scale < 0 else ">f4", count=count)
    shape = (height, width, 3) if channels == 3 else (height, width)
    return np.ascontiguousarray(np.flipud(arr.reshape(shape)).astype(np.float32))


def read_matrix_txt(path: PathLike, shape: Sequence[int], field: str) -> np.ndarray:
    """Reads whitespace-separated numbers from a text file into float64 ``shape``."""
    path = require_file(path, field)
    try:
        values = np.loadtxt(path, dtype=np.float64, comments="#", ndmin=1).reshape(-1)
    except Exception as e:  # noqa: BLE001 - numpy raises several types for malformed text
        raise ValueError(
            f"{field}: {path!r} is not a whitespace-separated number table: {e}"
        ) from e
    if values.size != int(np.prod(shape)):
        raise ValueError(f"{field}: {path!r} holds {values.size} numbers, expected shape {shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{field}: {path!r} contains non-finite values")
    return values.reshape(shape)


def check_pose(pose: np.ndarray, path: str, field: str, tol: float = 1e-3) -> np.ndarray:
    """Checks a ``[3|4, 4]`` or ``[3, 4]`` rigid pose: finite, rotation orthonormal, det +1."""
    pose = np.asarray(pose, np.float64)
    if pose.shape not in ((4, 4), (3, 4)) or not np.all(np.isfinite(pose)):
        raise ValueError(f"{field}: {path!r} must be a finite 3x4/4x4 pose, got {pose.shape}")
    rot = pose[:3, :3]
    if np.abs(rot @ rot.T - np.eye(3)).max() > tol or np.linalg.det(rot) < 0:
        raise ValueError(f"{field}: {path!r} rotation block is not a proper rotation")
    return pose[:3, :4]


def _on_cpu():
    """Context running ``da3_jax.geometry`` on the CPU backend: data loaders (possibly in
    worker processes) must never place arrays on an accelerator."""
    import jax

    return jax.default_device(jax.local_devices(backend="cpu")[0])


def c2w_to_w2c(c2w: np.ndarray) -> np.ndarray:
    """Camera-to-world ``[..., 3|4, 4]`` -> world-to-camera ``[..., 3, 4]`` float64, through
    ``da3_jax.geometry.c2w_to_w2c`` (float32 on the CPU backend)."""
    with _on_cpu():
        out = geometry.c2w_to_w2c(np.asarray(c2w, np.float32)[..., :3, :4])
    return np.asarray(out, np.float64)


def opengl_c2w_to_w2c(c2w: np.ndarray) -> np.ndarray:
    """Camera-to-world ``[..., 3|4, 4]`` with OpenGL / Blender / nerfstudio camera axes (x right,
    y up, z backward) -> OpenCV world-to-camera ``[..., 3, 4]`` float64, through
    ``da3_jax.geometry.opengl_to_opencv_c2w`` and ``c2w_to_w2c`` (float32, CPU backend)."""
    with _on_cpu():
        out = geometry.c2w_to_w2c(geometry.opengl_to_opencv_c2w(
            np.asarray(c2w, np.float32)[..., :3, :4]))
    return np.asarray(out, np.float64)


def quat_xyzw_to_rotmat(q: np.ndarray) -> np.ndarray:
    """Rotation matrix ``[3, 3]`` of a Hamilton quaternion (x, y, z, w), normalised first.

    Through ``da3_jax.geometry.quat_to_rotmat`` (float32 on the CPU backend).
    """
    q = np.asarray(q, np.float64)
    norm = np.linalg.norm(q)
    if q.shape != (4,) or not np.isfinite(norm) or norm < 1e-8:
        raise ValueError(f"quaternion must be 4 finite numbers with non-zero norm, got {q}")
    with _on_cpu():
        rot = geometry.quat_to_rotmat((q / norm).astype(np.float32))
    return np.asarray(rot, np.float64)


def check_depth(
    depth: np.ndarray,
    path: str,
    hw: tuple[int, int] | None,
    field: str = "depth",
    nonfinite_is_invalid: bool = False,
) -> np.ndarray:
    """Validates a metric depth map and returns float32 ``[H, W]`` with 0 at invalid pixels.

    Args:
      depth: ``[H, W]`` depth in metres.
      path: source file (for the error message).
      hw: expected (H, W) (the colour image size) or None.
      nonfinite_is_invalid: True for formats whose documented invalid marker is inf/NaN
        (ETH3D, Middlebury, Hypersim); otherwise a non-finite value raises ValueError.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"{field}: {path!r} must be a 2-D depth map, got shape {depth.shape}")
    if hw is not None and tuple(depth.shape) != tuple(hw):
        raise ValueError(
            f"{field}: {path!r} has shape {tuple(depth.shape)}, expected {tuple(hw)} (image size)"
        )
    depth = depth.astype(np.float32)
    finite = np.isfinite(depth)
    if not finite.all():
        if not nonfinite_is_invalid:
            raise ValueError(f"{field}: {path!r} contains {int((~finite).sum())} NaN/inf values")
        depth = np.where(finite, depth, 0.0).astype(np.float32)
    if (depth < 0).any():
        raise ValueError(f"{field}: {path!r} contains negative depth values")
    return depth


def sample_frames(num_frames: int, max_frames: int | None, seed: int = 42) -> list[int]:
    """Frame indices chosen like the official DA3 evaluator (``Evaluator._sample_frames``).

    All frames when ``max_frames`` is None/<=0 or not exceeded; otherwise ``random.seed(seed)``,
    shuffle ``range(num_frames)``, keep the first ``max_frames`` and sort them. A private
    ``random.Random(seed)`` gives the same permutation without touching the global state.
    """
    if max_frames is None or max_frames <= 0 or num_frames <= max_frames:
        return list(range(num_frames))
    indices = list(range(num_frames))
    random.Random(seed).shuffle(indices)
    return sorted(indices[:max_frames])


def stack_images(images: Sequence[np.ndarray], paths: Sequence[str], field: str = "image"):
    """Stacks per-view images ``[H, W, 3]``; ValueError naming the first view of another size."""
    hw = images[0].shape[:2]
    for img, p in zip(images, paths, strict=True):
        if img.shape[:2] != hw:
            raise ValueError(f"{field}: {p!r} has size {img.shape[:2]}, other views have {hw}")
    return np.stack(images)


def opencv_to_pixel_edge(k: np.ndarray) -> np.ndarray:
    """K ``[..., 3, 3]`` from the OpenCV pixel-centre convention to the record's pixel-edge one."""
    k = np.array(k, np.float64)
    k[..., 0, 2] += 0.5
    k[..., 1, 2] += 0.5
    return k


def make_record(
    images: np.ndarray,
    depth: np.ndarray,
    intrinsics: np.ndarray,
    extrinsics: np.ndarray,
    *,
    dataset: str,
    scene_id: str,
    is_metric: bool,
    depth_kind: str,
    valid: np.ndarray | None = None,
    provenance: dict | None = None,
) -> SceneRecord:
    """Builds and validates a ``SceneRecord``; ``valid`` defaults to ``depth > 0``.

    ``valid`` (when given) is and-ed with ``depth > 0``; depth outside ``valid`` is set to 0 so
    the record's "depth == 0 <=> invalid" rule holds.
    """
    depth = np.asarray(depth, np.float32)
    mask = depth > 0
    if valid is not None:
        mask &= np.asarray(valid, bool)
    depth = np.where(mask, depth, 0.0).astype(np.float32)
    ext = np.asarray(extrinsics, np.float64)[..., :3, :4]
    return SceneRecord(
        images=np.ascontiguousarray(images, np.uint8),
        depth=depth,
        valid=mask,
        intrinsics=np.asarray(intrinsics, np.float32),
        extrinsics=ext.astype(np.float32),
        dataset=dataset,
        scene_id=scene_id,
        is_metric=bool(is_metric),
        depth_kind=depth_kind,
        provenance=provenance,
    ).validate()
