"""TartanAir (Wang et al. 2020) trajectories -> ``SceneRecord`` (teacher training).

Layout (``root`` = one trajectory, e.g. ``abandonedfactory/Easy/P000``)::

    image_left/NNNNNN_left.png            8-bit RGB, 640x480
    depth_left/NNNNNN_left_depth.npy      float32 z-depth in metres (sky: very large values)
    pose_left.txt                         one line per frame: tx ty tz qx qy qz qw, the
                                          camera-to-world pose in NED axes

Conversions:
  * TartanAir's camera body frame is NED (x forward, y right, z down); OpenCV camera axes are
    x right = body y, y down = body z, z forward = body x, so
    ``R_c2w = R_ned @ P`` with ``P = [[0,0,1],[1,0,0],[0,1,0]]`` (columns: OpenCV axes in body
    coordinates). The world frame stays NED (any fixed world frame is valid for the record);
  * K: fx = fy = 320, principal point at the exact image centre (320, 240) = pixel-edge
    convention, so it is used as stated (rendered images have the centre at W/2, H/2);
  * depth above ``max_depth`` (sky, default 1000 m) -> invalid; NaN/inf raise ValueError.
Metric, ``depth_kind='dense_gt'``.
"""

from __future__ import annotations

import os
import re

import numpy as np

from data_pipelines.readers import _io
from data_pipelines.record import SceneRecord

TARTANAIR_K = np.array([[320.0, 0.0, 320.0], [0.0, 320.0, 240.0], [0.0, 0.0, 1.0]])
NED_FROM_OPENCV = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def ned_pose_to_opencv_c2w(line: np.ndarray) -> np.ndarray:
    """``[tx, ty, tz, qx, qy, qz, qw]`` NED camera-to-world -> OpenCV c2w ``[3, 4]``."""
    rot = _io.quat_xyzw_to_rotmat(line[3:7]) @ NED_FROM_OPENCV
    return np.concatenate([rot, np.asarray(line[:3], np.float64)[:, None]], 1)


def list_frames(root: _io.PathLike) -> list[int]:
    """Frame numbers of ``image_left/NNNNNN_left.png``, sorted."""
    img_dir = os.path.join(os.fspath(root), "image_left")
    if not os.path.isdir(img_dir):
        raise ValueError(f"tartanair: {img_dir!r} is not a directory")
    return sorted(int(m.group(1)) for n in os.listdir(img_dir)
                  if (m := re.fullmatch(r"(\d+)_left\.png", n)))


def read_tartanair(
    root: _io.PathLike,
    frames: list[int] | None = None,
    max_depth: float = 1000.0,
    scene_id: str | None = None,
) -> SceneRecord:
    """Reads frames (default: all) of one TartanAir trajectory (left camera)."""
    root = os.fspath(root)
    frames = list_frames(root) if frames is None else list(frames)
    if not frames:
        raise ValueError(f"tartanair: no image_left/*_left.png under {root!r}")
    pose_path = os.path.join(root, "pose_left.txt")
    _io.require_file(pose_path, "pose")
    poses = np.loadtxt(pose_path, ndmin=2)
    if poses.shape[1] != 7 or max(frames) >= len(poses) or not np.isfinite(poses).all():
        raise ValueError(f"pose: {pose_path!r} must hold finite 'tx ty tz qx qy qz qw' lines for "
                         f"frames up to {max(frames)}, got shape {poses.shape}")
    images, depths, c2w, files = [], [], [], []
    for fid in frames:
        ipath = os.path.join(root, "image_left", f"{fid:06d}_left.png")
        dpath = os.path.join(root, "depth_left", f"{fid:06d}_left_depth.npy")
        img = _io.read_rgb(ipath)
        try:
            raw = np.load(_io.require_file(dpath, "depth"), allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise ValueError(f"depth: {dpath!r} is not a readable .npy array: {e}") from e
        d = _io.check_depth(raw, dpath, img.shape[:2])
        images.append(img)
        depths.append(np.where(d > max_depth, 0.0, d))
        c2w.append(_io.check_pose(ned_pose_to_opencv_c2w(poses[fid]), pose_path,
                                  f"pose line {fid}"))
        files.append(ipath)
    n = len(frames)
    return _io.make_record(
        _io.stack_images(images, files),
        np.stack(depths),
        np.broadcast_to(TARTANAIR_K, (n, 3, 3)),
        _io.c2w_to_w2c(np.stack(c2w)),
        dataset="tartanair",
        scene_id=scene_id or "/".join(os.path.normpath(root).split(os.sep)[-3:]),
        is_metric=True,
        depth_kind="dense_gt",
        provenance={"image_files": files},
    )
