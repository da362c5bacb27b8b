"""DA3 benchmark layout of DTU-64 (pose evaluation only) -> ``SceneRecord``.

Layout (``root`` = ``benchmark_dataset/dtu64``)::

    <scan>/image/XXXXXXXX.png      64 RGB views, file stem = camera index
    Cameras/XXXXXXXX_cam.txt       MVSNet camera file: line 0 "extrinsic", lines 1-4 the 4x4
                                   world-to-camera matrix, line 6 "intrinsic", lines 7-9 K

As in the official loader, the image list is sorted and the view at position 33 is moved to the
front (reference view), and views without a camera file are skipped. Poses are in DTU's
millimetre units, so ``is_metric=False``. K is read in the OpenCV pixel-centre convention
(cx, cy + 0.5 in the record). There is no depth: all views are invalid (pose-only record).
"""

from __future__ import annotations

import glob
import os

import numpy as np

from data_pipelines.readers import _io
from data_pipelines.record import SceneRecord

NAME = "dtu64"
SCENES = ("scan105", "scan114", "scan118", "scan122", "scan24", "scan37", "scan40", "scan55",
          "scan63", "scan65", "scan69", "scan83", "scan97")


def list_scenes(root: _io.PathLike) -> list[str]:
    """The official 13 scans that exist under ``root``."""
    return [s for s in SCENES if os.path.isdir(os.path.join(os.fspath(root), s, "image"))]


def read_cam_file(path: str) -> tuple[np.ndarray, np.ndarray]:
    """MVSNet ``*_cam.txt`` -> (K ``[3, 3]``, w2c ``[3, 4]``), float64; ValueError if malformed."""
    path = _io.require_file(path, "camera")
    with open(path) as f:
        lines = [ln.strip() for ln in f]
    try:
        ext = np.array(" ".join(lines[1:5]).split(), np.float64).reshape(4, 4)
        k = np.array(" ".join(lines[7:10]).split(), np.float64).reshape(3, 3)
    except ValueError as e:
        raise ValueError(f"camera: {path!r} is not an MVSNet cam file (extrinsic 4x4, "
                         f"intrinsic 3x3): {e}") from e
    if not (np.isfinite(ext).all() and np.isfinite(k).all()):
        raise ValueError(f"camera: {path!r} contains non-finite values")
    return k, _io.check_pose(ext, path, "extrinsic")


def list_frames(root: _io.PathLike, scene: str) -> list[str]:
    """Ordered image paths (view 33 first), only views with a camera file."""
    files = sorted(glob.glob(os.path.join(os.fspath(root), scene, "image", "*.png")))
    if len(files) > 33:
        files = [files[33]] + files[:33] + files[34:]
    return [f for f in files if os.path.exists(_cam_path(root, f))]


def _cam_path(root: _io.PathLike, image_path: str) -> str:
    idx = int(os.path.basename(image_path).split(".")[0])
    return os.path.join(os.fspath(root), "Cameras", f"{idx:0>8}_cam.txt")


def load_scene(
    root: _io.PathLike, scene: str, max_frames: int | None = None, seed: int = 42
) -> SceneRecord:
    """Loads one DTU-64 scan (pose-only record, sampled like the official evaluator)."""
    files = list_frames(root, scene)
    if not files:
        raise ValueError(f"dtu64: no image with a camera file for {scene!r} under {root!r}")
    files = [files[i] for i in _io.sample_frames(len(files), max_frames, seed)]
    cams = [read_cam_file(_cam_path(root, f)) for f in files]
    images = _io.stack_images([_io.read_rgb(f) for f in files], files)
    return _io.make_record(
        images,
        np.zeros(images.shape[:3], np.float32),
        _io.opencv_to_pixel_edge(np.stack([c[0] for c in cams])),
        np.stack([c[1] for c in cams]),
        dataset=NAME,
        scene_id=scene,
        is_metric=False,
        depth_kind="sparse_gt",
        provenance={"image_files": files},
    )
