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
  * **TUM RGB-D**: ``rgb.txt`` / ``depth.txt`` ("timestamp file" lines), ``groundtruth.txt``
    ("timestamp tx ty tz qx qy qz qw": pose of the colour camera's optical centre in the world,
    camera-to-world, OpenCV optical axes), depth PNG uint16 with 5000 units per metre, 0 =
    invalid. Each colour frame takes the nearest depth and ground-truth samples within
    ``max_dt`` (0.02 s, as TUM's ``associate.py``); frames without both are skipped and counted
    in ``provenance['skipped_unmatched']``. K defaults to the Freiburg-1 calibration
    (OpenCV pixel-centre convention); its radial distortion is ignored (TUM's ROS default).
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
TUM_FR1_K = np.array([[517.3, 0.0, 318.6], [0.0, 516.5, 255.3], [0.0, 0.0, 1.0]])


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
    provenance: dict | None = None,
) -> SceneRecord:
    """Shared loader: colour + uint16 depth PNG (``metres = value / depth_scale``) + c2w poses.

    Args:
      c2w: per view ``[4, 4]`` or ``[3, 4]`` camera-to-world (already validated).
      k_pixel_edge: ``[3, 3]`` (shared) or ``[N, 3, 3]`` in the record's pixel-edge convention.
      invalid_values: raw PNG values that mean "no measurement".
    """
    images, depths = [], []
    provenance = {"image_files": list(color_paths), "depth_files": list(depth_paths),
                  **(provenance or {})}
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
        _io.c2w_to_w2c(np.stack([np.asarray(p)[:3] for p in c2w])),
        dataset=dataset,
        scene_id=scene_id,
        is_metric=True,
        depth_kind=depth_kind,
        provenance=provenance,
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


def _read_stamped_list(path: str, cols: int, field: str) -> list[list[str]]:
    """TUM list file: non-comment lines with ``cols`` whitespace-separated entries."""
    path = _io.require_file(path, field)
    rows = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if parts and not parts[0].startswith("#"):
                if len(parts) != cols:
                    raise ValueError(f"{field}: {path!r} line {line.strip()!r} must have {cols} "
                                     "entries")
                rows.append(parts)
    if not rows:
        raise ValueError(f"{field}: {path!r} has no entries")
    return rows


def read_tum_sequence(
    root: _io.PathLike,
    k: np.ndarray = TUM_FR1_K,
    max_dt: float = 0.02,
    max_frames: int | None = None,
    scene_id: str | None = None,
) -> SceneRecord:
    """Reads a TUM RGB-D sequence folder (see module docstring); ``max_frames`` keeps the first
    ``max_frames`` associated frames."""
    root = os.fspath(root)
    rgb = _read_stamped_list(os.path.join(root, "rgb.txt"), 2, "rgb list")
    depth = _read_stamped_list(os.path.join(root, "depth.txt"), 2, "depth list")
    gt_path = os.path.join(root, "groundtruth.txt")
    gt = np.array(_read_stamped_list(gt_path, 8, "pose"), np.float64)
    if not np.isfinite(gt).all():
        raise ValueError(f"pose: {gt_path!r} contains non-finite values")
    d_t = np.array([float(r[0]) for r in depth])
    colors, depths, c2w, skipped = [], [], [], 0
    for t_str, name in rgb:
        t = float(t_str)
        i, j = int(np.argmin(np.abs(d_t - t))), int(np.argmin(np.abs(gt[:, 0] - t)))
        if abs(d_t[i] - t) > max_dt or abs(gt[j, 0] - t) > max_dt:
            skipped += 1
            continue
        pose = np.concatenate([_io.quat_xyzw_to_rotmat(gt[j, 4:8]), gt[j, 1:4, None]], 1)
        c2w.append(_io.check_pose(pose, gt_path, f"pose at t={gt[j, 0]}"))
        colors.append(os.path.join(root, name))
        depths.append(os.path.join(root, depth[i][1]))
        if max_frames is not None and len(colors) >= max_frames:
            break
    if not colors:
        raise ValueError(f"pose: no frame of {root!r} has depth and ground truth within {max_dt} s")
    return load_rgbd_frames(
        colors, depths, c2w, _io.opencv_to_pixel_edge(k), depth_scale=5000.0,
        dataset="tum", scene_id=scene_id or os.path.basename(os.path.normpath(root)),
        provenance={"skipped_unmatched": skipped},
    )
