"""ARKitScenes (Baruch et al. 2021) raw low-res RGB-D -> ``SceneRecord`` (real student data).

Layout (``root`` = ``<split>/<video_id>``; the ``3dod`` download nests the same folders in
``<video_id>_frames/``, which is found automatically)::

    lowres_wide/<video_id>_<t>.png              8-bit RGB (256x192), t = timestamp "%.3f" s
    lowres_depth/<video_id>_<t>.png             uint16 millimetres, 0 = invalid, same size
    lowres_wide_intrinsics/<video_id>_<t>.pincam  "w h fx fy cx cy"
    lowres_wide.traj                            per line "t ax ay az tx ty tz": axis-angle
                                                rotation (rad) + translation (m) of the
                                                world-to-camera transform (OpenCV axes)

As in Apple's ``tenFpsDataLoader``, each trajectory line is world-to-camera (its inverse is the
camera pose used to lift depth to world points). A frame takes the trajectory sample with the
nearest timestamp within ``max_dt`` seconds; frames without one are skipped and counted in
``provenance['skipped_no_pose']`` (an error if none is left). The ``.pincam`` principal point
is read in the OpenCV pixel-centre convention (cx, cy + 0.5 in the record). LiDAR-based sensor
depth: metric, ``depth_kind='sparse_gt'``.
"""

from __future__ import annotations

import os
import re

import cv2
import numpy as np

from data_pipelines.readers import _io
from data_pipelines.record import SceneRecord


def _frames_dir(root: str) -> str:
    nested = os.path.join(root, os.path.basename(os.path.normpath(root)) + "_frames")
    return nested if os.path.isdir(nested) else root


def read_traj(path: str) -> tuple[np.ndarray, np.ndarray]:
    """``.traj`` -> (timestamps ``[T]``, world-to-camera ``[T, 3, 4]``), float64."""
    path = _io.require_file(path, "pose")
    try:
        rows = np.loadtxt(path, ndmin=2)
    except ValueError as e:
        raise ValueError(f"pose: {path!r} is not a table of numbers: {e}") from e
    if rows.shape[1] != 7 or not np.isfinite(rows).all():
        raise ValueError(f"pose: {path!r} must hold finite 7-column lines, got {rows.shape}")
    w2c = np.stack([np.concatenate([cv2.Rodrigues(r[1:4])[0], r[4:7, None]], 1) for r in rows])
    return rows[:, 0], w2c


def list_frames(root: _io.PathLike) -> list[str]:
    """Timestamps (strings as in the file names) of the ``lowres_wide`` frames, sorted."""
    d = os.path.join(_frames_dir(os.fspath(root)), "lowres_wide")
    if not os.path.isdir(d):
        raise ValueError(f"arkitscenes: {d!r} is not a directory")
    stamps = [m.group(1) for n in os.listdir(d) if (m := re.fullmatch(r".+_(\d+\.\d+)\.png", n))]
    return sorted(stamps, key=float)


def read_arkitscenes(
    root: _io.PathLike,
    frames: list[str] | None = None,
    max_dt: float = 0.05,
    scene_id: str | None = None,
) -> SceneRecord:
    """Reads frames (timestamps; default: all) of one ARKitScenes video."""
    root = os.fspath(root)
    video = os.path.basename(os.path.normpath(root))
    base = _frames_dir(root)
    frames = list_frames(root) if frames is None else list(frames)
    traj_path = os.path.join(base, "lowres_wide.traj")
    stamps, w2c_all = read_traj(traj_path)
    images, depths, ks, exts, files, skipped = [], [], [], [], [], 0
    for t in frames:
        nearest = int(np.argmin(np.abs(stamps - float(t))))
        if abs(stamps[nearest] - float(t)) > max_dt:
            skipped += 1
            continue
        stem = f"{video}_{t}"
        ipath = os.path.join(base, "lowres_wide", stem + ".png")
        dpath = os.path.join(base, "lowres_depth", stem + ".png")
        kpath = os.path.join(base, "lowres_wide_intrinsics", stem + ".pincam")
        img = _io.read_rgb(ipath)
        w, h, fx, fy, cx, cy = _io.read_matrix_txt(kpath, (6,), "intrinsics")
        if (int(h), int(w)) != img.shape[:2]:
            raise ValueError(f"intrinsics: {kpath!r} is for {int(w)}x{int(h)}, image is "
                             f"{img.shape[1]}x{img.shape[0]}")
        raw = _io.read_png16(dpath)
        images.append(img)
        depths.append(_io.check_depth(raw, dpath, img.shape[:2]) / 1000.0)
        ks.append(_io.opencv_to_pixel_edge([[fx, 0, cx], [0, fy, cy], [0, 0, 1]]))
        exts.append(w2c_all[nearest])
        files.append(ipath)
    if not images:
        raise ValueError(f"pose: no frame of {root!r} has a sample in {traj_path!r} within "
                         f"{max_dt} s")
    return _io.make_record(
        _io.stack_images(images, files),
        np.stack(depths),
        np.stack(ks),
        np.stack(exts),
        dataset="arkitscenes",
        scene_id=scene_id or video,
        is_metric=True,
        depth_kind="sparse_gt",
        provenance={"image_files": files, "skipped_no_pose": skipped},
    )
