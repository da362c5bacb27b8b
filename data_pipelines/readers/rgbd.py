"""RGB-D sequences with camera-to-world pose text -> ``SceneRecord``.

Two layouts:
  * **7-Scenes** (also the DA3 7Scenes benchmark): ``<seq>/frame-XXXXXX.color.png`` (8-bit RGB),
    ``frame-XXXXXX.depth.png`` (uint16 millimetres, 0 and 65535 = invalid) and
    ``frame-XXXXXX.pose.txt`` (4x4 camera-to-world, metres, OpenCV axes). There is no
    calibration file: K is the Kinect default f = 585, c = (320, 240) that the official DA3
    evaluator uses, read in the OpenCV pixel-centre convention (so cx, cy + 0.5 in the record).
    The depth camera is not registered to the colour camera in 7-Scenes (known few-pixel
    misalignment); depth is used as shipped, like every 7-Scenes user does.
  * **HoloLens clip** (DeepVideoMVS sample, ``shared/data/hololens_dvmvs_office``):
    ``images/NNNNN.png``, ``depth/NNNNN.png`` (uint16 mm, 0 = invalid), ``K.txt`` (3x3, OpenCV
    pixel-centre convention), ``poses.txt`` (one row-major 4x4 camera-to-world per line) and
    ``frames.txt`` (file name + original line, in pose order).
Depth is metric z-depth from a sensor: ``depth_kind='sparse_gt'`` (holes), ``is_metric=True``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import numpy as np

from data_pipelines.readers import _io
from data_pipelines.record import SceneRecord

SEVEN_SCENES_K = np.array([[585.0, 0.0, 320.0], [0.0, 585.0, 240.0], [0.0, 0.0, 1.0]])


def load_rgbd_frames(
    color_paths: Sequence[str],
    depth_paths: Sequence[str],
    c2w: Sequence[np.ndarray],
    k_pixel_edge: np.ndarray,
    *,
    depth_scale: float,
    invalid_values: Sequence[int] = (0,),
    dataset: str,
    scene_id: str,
    depth_kind: str = "sparse_gt",
) -> SceneRecord:
    """Shared loader: colour + uint16 depth PNG (``metres = value / depth_scale``) + c2w poses.

    Args:
      c2w: per view ``[4, 4]`` or ``[3, 4]`` camera-to-world (already validated).
      k_pixel_edge: ``[3, 3]`` (shared) or ``[N, 3, 3]`` in the record's pixel-edge convention.
      invalid_values: raw PNG values that mean "no measurement".
    """
    images, depths = [], []
    for cp, dp in zip(color_paths, depth_paths, strict=True):
        img = _io.read_rgb(cp)
        raw = _io.read_png16(dp)
        d = _io.check_depth(raw, dp, img.shape[:2])
        bad = np.isin(raw, np.asarray(invalid_values, raw.dtype))
        images.append(img)
        depths.append(np.where(bad, 0.0, d / depth_scale).astype(np.float32))
    n = len(images)
    k = np.asarray(k_pixel_edge, np.float64)
    ks = np.broadcast_to(k, (n, 3, 3)) if k.ndim == 2 else k
    return _io.make_record(
        _io.stack_images(images, color_paths),
        np.stack(depths),
        ks,
        _io.rigid_inverse(np.stack([np.asarray(p)[:3] for p in c2w])),
        dataset=dataset,
        scene_id=scene_id,
        is_metric=True,
        depth_kind=depth_kind,
        provenance={"image_files": list(color_paths), "depth_files": list(depth_paths)},
    )


def list_7scenes_frames(seq_dir: _io.PathLike, limit: int | None = None) -> list[str]:
    """Sorted frame stems ``frame-XXXXXX`` that have both a colour image and a pose file.

    ``limit`` keeps only frame numbers below it (the official evaluator reads frames
    ``0..999``, ``0..499`` for stairs).
    """
    seq_dir = os.fspath(seq_dir)
    if not os.path.isdir(seq_dir):
        raise ValueError(f"7scenes sequence: {seq_dir!r} is not a directory")
    stems = []
    for name in sorted(os.listdir(seq_dir)):
        m = re.fullmatch(r"(frame-(\d+))\.color\.png", name)
        if m and (limit is None or int(m.group(2)) < limit):
            if os.path.isfile(os.path.join(seq_dir, m.group(1) + ".pose.txt")):
                stems.append(m.group(1))
    return stems


def read_7scenes_sequence(
    seq_dir: _io.PathLike,
    frames: Sequence[str] | None = None,
    *,
    k: np.ndarray = SEVEN_SCENES_K,
    dataset: str = "7scenes",
    scene_id: str | None = None,
) -> SceneRecord:
    """Reads 7-Scenes frames (stems ``frame-XXXXXX``; default: all with colour + pose)."""
    seq_dir = os.fspath(seq_dir)
    frames = list_7scenes_frames(seq_dir) if frames is None else list(frames)
    if not frames:
        raise ValueError(f"7scenes sequence: {seq_dir!r} has no frame-*.color.png with a pose")
    base = [os.path.join(seq_dir, f) for f in frames]
    c2w = []
    for b in base:
        path = b + ".pose.txt"
        c2w.append(_io.check_pose(_io.read_matrix_txt(path, (4, 4), "pose"), path, "pose"))
    return load_rgbd_frames(
        [b + ".color.png" for b in base],
        [b + ".depth.png" for b in base],
        c2w,
        _io.opencv_to_pixel_edge(k),
        depth_scale=1000.0,
        invalid_values=(0, 65535),
        dataset=dataset,
        scene_id=scene_id or os.path.basename(os.path.dirname(os.path.normpath(seq_dir))),
    )


def read_hololens_clip(root: _io.PathLike, scene_id: str | None = None) -> SceneRecord:
    """Reads the DeepVideoMVS HoloLens clip layout (see module docstring)."""
    root = os.fspath(root)
    k = _io.read_matrix_txt(os.path.join(root, "K.txt"), (3, 3), "intrinsics")
    frames_path = _io.require_file(os.path.join(root, "frames.txt"), "frames")
    with open(frames_path) as f:
        names = [ln.split()[0] for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
    poses_path = os.path.join(root, "poses.txt")
    _io.require_file(poses_path, "pose")
    poses = _io.read_matrix_txt(poses_path, (len(names), 4, 4), "pose")
    c2w = [_io.check_pose(p, poses_path, f"pose[{i}]") for i, p in enumerate(poses)]
    return load_rgbd_frames(
        [os.path.join(root, "images", n) for n in names],
        [os.path.join(root, "depth", n) for n in names],
        c2w,
        _io.opencv_to_pixel_edge(k),
        depth_scale=1000.0,
        dataset="hololens",
        scene_id=scene_id or os.path.basename(os.path.normpath(root)),
    )
