"""Hypersim (Roberts et al. 2021) camera trajectories -> ``SceneRecord`` (teacher training).

Layout (``root`` = the downloaded ``ai_VVV_NNN`` scene folder)::

    _detail/metadata_scene.csv                      "parameter_name,parameter_value" rows,
                                                    incl. meters_per_asset_unit
    _detail/<cam>/camera_keyframe_positions.hdf5    "dataset" [F, 3] camera centres, asset units
    _detail/<cam>/camera_keyframe_orientations.hdf5 "dataset" [F, 3, 3] R_world_from_cam, camera
                                                    axes x right, y up, z backward (OpenGL)
    images/scene_<cam>_final_preview/frame.FFFF.tonemap.jpg
    images/scene_<cam>_geometry_hdf5/frame.FFFF.depth_meters.hdf5
                                                    "dataset" [H, W] Euclidean distance from the
                                                    camera centre in metres, NaN = no geometry

Conversions:
  * orientation -> OpenCV axes: ``R_c2w = R_world_from_cam @ diag(1, -1, -1)``
    (``_io.opengl_c2w_to_w2c``, through ``da3_jax.geometry``); positions are
    scaled by ``meters_per_asset_unit`` so poses and depth are both in metres;
  * K: the standard Hypersim pinhole, horizontal fov 60 deg, principal point at the image
    centre, square pixels: ``f = (W/2) / tan(fov/2)`` (886.81 px at 1024 px), ``cx = W/2``,
    ``cy = H/2`` (pixel-edge convention). Scenes whose ``metadata_camera_parameters.csv`` uses a
    non-standard (tilt-shift) projection are not modelled: pass ``fov_x`` only for plain
    pinhole variants;
  * distance -> z-depth with the per-pixel ray through the pixel centre:
    ``z = dist / ||K^-1 [j + 0.5, i + 0.5, 1]||`` (exactly Hypersim's own formula
    ``dist * f / ||(x_plane, y_plane, f)||``). NaN (no geometry / sky) -> invalid.
Metric, ``depth_kind='dense_gt'``.
"""

from __future__ import annotations

import csv
import glob
import os
import re

import h5py
import numpy as np

from data_pipelines.readers import _io
from data_pipelines.record import SceneRecord

FOV_X = np.pi / 3


def read_h5(path: str, field: str) -> np.ndarray:
    """The ``dataset`` array of a Hypersim HDF5 file; ValueError if unreadable."""
    path = _io.require_file(path, field)
    try:
        with h5py.File(path, "r") as f:
            return np.asarray(f["dataset"])
    except (OSError, KeyError) as e:
        raise ValueError(f"{field}: {path!r} is not an HDF5 file with a 'dataset' array") from e


def hypersim_k(h: int, w: int, fov_x: float = FOV_X) -> np.ndarray:
    """Pinhole K ``[3, 3]`` (pixel-edge) of a Hypersim camera, square pixels, centred."""
    f = (w / 2.0) / np.tan(fov_x / 2.0)
    return np.array([[f, 0.0, w / 2.0], [0.0, f, h / 2.0], [0.0, 0.0, 1.0]])


def distance_to_z(dist: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Euclidean distance to the camera centre ``[H, W]`` -> z-depth along the optical axis."""
    h, w = dist.shape
    u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(k).T
    return dist / np.linalg.norm(rays, axis=-1)


def meters_per_asset_unit(root: str) -> float:
    path = _io.require_file(os.path.join(root, "_detail", "metadata_scene.csv"), "metadata")
    with open(path, newline="") as f:
        for row in csv.reader(f):
            if len(row) >= 2 and row[0].strip() == "meters_per_asset_unit":
                try:
                    return float(row[1])
                except ValueError as e:
                    raise ValueError(f"metadata: {path!r} meters_per_asset_unit is not a "
                                     "number") from e
    raise ValueError(f"metadata: {path!r} has no meters_per_asset_unit row")


def list_frames(root: _io.PathLike, cam: str = "cam_00") -> list[int]:
    """Frame ids that have a depth file for camera ``cam``."""
    pattern = os.path.join(os.fspath(root), "images", f"scene_{cam}_geometry_hdf5",
                           "frame.*.depth_meters.hdf5")
    ids = [int(re.search(r"frame\.(\d+)\.", p).group(1)) for p in glob.glob(pattern)]
    return sorted(ids)


def read_hypersim(
    root: _io.PathLike,
    cam: str = "cam_00",
    frames: list[int] | None = None,
    fov_x: float = FOV_X,
    scene_id: str | None = None,
) -> SceneRecord:
    """Reads frames (default: all with depth) of one Hypersim camera trajectory."""
    root = os.fspath(root)
    frames = list_frames(root, cam) if frames is None else list(frames)
    if not frames:
        raise ValueError(f"hypersim: no depth_meters.hdf5 for {cam} under {root!r}")
    scale = meters_per_asset_unit(root)
    detail = os.path.join(root, "_detail", cam)
    pos = read_h5(os.path.join(detail, "camera_keyframe_positions.hdf5"), "pose")
    rot = read_h5(os.path.join(detail, "camera_keyframe_orientations.hdf5"), "pose")
    if pos.ndim != 2 or rot.ndim != 3 or len(pos) != len(rot) or max(frames) >= len(pos):
        raise ValueError(f"pose: {detail!r} positions {pos.shape} / orientations {rot.shape} "
                         f"do not cover frames up to {max(frames)}")
    images, depths, c2w, files = [], [], [], []
    for fid in frames:
        ipath = os.path.join(root, "images", f"scene_{cam}_final_preview",
                             f"frame.{fid:04d}.tonemap.jpg")
        dpath = os.path.join(root, "images", f"scene_{cam}_geometry_hdf5",
                             f"frame.{fid:04d}.depth_meters.hdf5")
        img = _io.read_rgb(ipath)
        dist = _io.check_depth(read_h5(dpath, "depth"), dpath, img.shape[:2],
                               nonfinite_is_invalid=True)
        k = hypersim_k(*img.shape[:2], fov_x)
        pose = np.concatenate([rot[fid], pos[fid, :, None] * scale], 1)  # OpenGL camera axes
        c2w.append(_io.check_pose(pose, detail, f"pose of frame {fid}"))
        images.append(img)
        depths.append(distance_to_z(dist.astype(np.float64), k))
        files.append(ipath)
    n = len(frames)
    return _io.make_record(
        _io.stack_images(images, files),
        np.stack(depths),
        np.broadcast_to(hypersim_k(*images[0].shape[:2], fov_x), (n, 3, 3)),
        _io.opengl_c2w_to_w2c(np.stack(c2w)),
        dataset="hypersim",
        scene_id=scene_id or f"{os.path.basename(os.path.normpath(root))}/{cam}",
        is_metric=True,
        depth_kind="dense_gt",
        provenance={"image_files": files},
    )
