"""COLMAP sparse model (+ images, + optional dense depth maps) -> ``SceneRecord``.

The layout of ETH3D, ScanNet++, DTU, DL3DV and MegaDepth: ``<model_dir>/{cameras,images,points3D}``
in COLMAP text (``.txt``) or binary (``.bin``) format, read with ``pycolmap.Reconstruction``;
images under ``<image_dir>/<image.name>``; optional dense depth maps under
``<depth_dir>/<image.name><depth_suffix>`` (COLMAP's ``stereo/depth_maps`` ``.bin`` format by
default, or any callable returning metres).

Conventions (COLMAP's own, which the record keeps unchanged):
  * ``images.txt`` stores world-to-camera ``X_cam = R(q) X_world + t``, OpenCV axes;
  * the centre of the top-left pixel is (0.5, 0.5): COLMAP's K is already in the record's
    pixel-edge convention, so ``K`` is taken as stored;
  * camera models: PINHOLE, SIMPLE_PINHOLE map to K exactly; SIMPLE_RADIAL, RADIAL and OPENCV
    keep their pinhole part (f, cx, cy) and **the distortion terms are ignored** with a
    ``UserWarning`` naming the camera and its coefficients (fine for near-zero distortion or
    images that were undistorted beforehand; undistort with ``colmap image_undistorter``
    otherwise). Other models (fisheye, ...) raise ValueError.
Without dense depth, ``sparse_depth=True`` projects every 3D point into each image that observes
it and writes its z at the containing pixel (nearest point wins): ``depth_kind='sparse_gt'``.
SfM scale is arbitrary, so ``is_metric`` defaults to False.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import pycolmap

from data_pipelines.readers import _io
from data_pipelines.record import SceneRecord

_EXACT = {"SIMPLE_PINHOLE", "PINHOLE"}
_DISTORTED = {"SIMPLE_RADIAL", "RADIAL", "OPENCV"}


def load_reconstruction(model_dir: _io.PathLike) -> pycolmap.Reconstruction:
    """Reads a COLMAP text or binary model; ValueError naming the missing/corrupt file."""
    model_dir = os.fspath(model_dir)
    for part in ("cameras", "images", "points3D"):
        if not any(os.path.isfile(os.path.join(model_dir, part + e)) for e in (".bin", ".txt")):
            raise ValueError(f"colmap model: {model_dir!r} has no {part}.bin or {part}.txt")
    try:
        return pycolmap.Reconstruction(model_dir)
    except Exception as e:  # noqa: BLE001 - pycolmap raises its own error types
        raise ValueError(f"colmap model: cannot read {model_dir!r}: {e}") from e


def camera_to_k(camera: pycolmap.Camera) -> np.ndarray:
    """Pinhole K ``[3, 3]`` (pixel-edge convention) of a COLMAP camera; see module docstring."""
    name = camera.model.name
    p = np.asarray(camera.params, np.float64)
    if name in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
        fx = fy = p[0]
        cx, cy = p[1], p[2]
    elif name in ("PINHOLE", "OPENCV"):
        fx, fy, cx, cy = p[:4]
    else:
        raise ValueError(
            f"colmap camera {camera.camera_id}: model {name} is not supported "
            f"(expected one of {sorted(_EXACT | _DISTORTED)}); undistort the images first"
        )
    if name in _DISTORTED:
        extra = p[3:] if name != "OPENCV" else p[4:]
        warnings.warn(
            f"colmap camera {camera.camera_id}: model {name} distortion {extra.tolist()} is "
            "ignored (pinhole part only)",
            UserWarning,
            stacklevel=2,
        )
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def cam_from_world(image: pycolmap.Image) -> np.ndarray:
    """World-to-camera ``[3, 4]`` float64 of a registered pycolmap image."""
    pose = image.cam_from_world
    pose = pose() if callable(pose) else pose  # method in pycolmap >= 3.12, attribute before
    return np.asarray(pose.matrix(), np.float64)


def read_dense_depth_bin(path: _io.PathLike, field: str = "depth") -> np.ndarray:
    """Reads a COLMAP dense depth map (``width&height&channels&`` + float32, column-major)."""
    path = _io.require_file(path, field)
    with open(path, "rb") as f:
        data = f.read()
    parts = data.split(b"&", 3)
    try:
        width, height, channels = (int(x) for x in parts[:3])
    except ValueError as e:
        raise ValueError(f"{field}: {path!r} has no 'width&height&channels&' header") from e
    raw = parts[3] if len(parts) == 4 else b""
    if channels != 1 or len(raw) < 4 * width * height:
        raise ValueError(
            f"{field}: {path!r} is truncated or multi-channel ({channels} channels, "
            f"{len(raw)} bytes, expected {4 * width * height})"
        )
    arr = np.frombuffer(raw, "<f4", count=width * height)
    return np.ascontiguousarray(arr.reshape(width, height).T)


def sparse_depth_map(
    rec: pycolmap.Reconstruction, image: pycolmap.Image, w2c: np.ndarray, k: np.ndarray,
    hw: tuple[int, int] | None = None,
) -> np.ndarray:
    """z-depth ``[H, W]`` of the 3D points observed by ``image`` (0 elsewhere; nearest wins).

    A point lands in the pixel that contains its projection (pixel-edge convention:
    column = floor(u)). Only points with a track entry in this image are used, so occluded
    points are not drawn. ``hw`` (default: the camera's size) and ``k`` describe the image the
    map is drawn for, e.g. a resized view with its rescaled K.
    """
    h, w = (image.camera.height, image.camera.width) if hw is None else hw
    ids = [p.point3D_id for p in image.points2D if p.has_point3D()]
    depth = np.zeros((h, w), np.float32)
    if not ids:
        return depth
    xyz = np.stack([rec.points3D[i].xyz for i in ids]).astype(np.float64)
    cam = xyz @ w2c[:, :3].T + w2c[:, 3]
    z = cam[:, 2]
    uv = cam[:, :2] / np.maximum(z[:, None], 1e-12) @ k[:2, :2].T + k[:2, 2]
    col, row = np.floor(uv[:, 0]).astype(np.int64), np.floor(uv[:, 1]).astype(np.int64)
    keep = (z > 0) & (col >= 0) & (col < w) & (row >= 0) & (row < h)
    order = np.argsort(-z[keep])  # far first, so the nearest point is written last
    depth[row[keep][order], col[keep][order]] = z[keep][order]
    return depth


def read_colmap(
    model_dir: _io.PathLike,
    image_dir: _io.PathLike,
    *,
    depth_dir: _io.PathLike | None = None,
    depth_suffix: str = ".geometric.bin",
    depth_reader: Callable[[str], np.ndarray] | None = None,
    sparse_depth: bool = True,
    image_names: Sequence[str] | None = None,
    dataset: str = "colmap",
    scene_id: str | None = None,
    is_metric: bool = False,
) -> SceneRecord:
    """Reads a COLMAP scene into a ``SceneRecord`` (views sorted by image name by default).

    Args:
      model_dir: folder with ``cameras/images/points3D`` (``.txt`` or ``.bin``).
      image_dir: folder the image names in the model are relative to.
      depth_dir: optional dense depth folder; files are ``<name><depth_suffix>`` read by
        ``depth_reader`` (default: COLMAP ``.bin`` depth maps, inf/NaN = invalid).
      sparse_depth: without ``depth_dir``, project points3D (``'sparse_gt'``); if False the
        depth is all 0 (pose-only scene).
      image_names: subset / order of the views; every name must be registered in the model.
    """
    rec = load_reconstruction(model_dir)
    by_name = {im.name: im for im in rec.images.values()}
    names = sorted(by_name) if image_names is None else list(image_names)
    if not names:
        raise ValueError(f"colmap model: {os.fspath(model_dir)!r} has no registered images")
    images, depths, ks, exts, files = [], [], [], [], []
    for name in names:
        if name not in by_name:
            raise ValueError(f"colmap images: {name!r} is not registered in {model_dir!r}")
        im = by_name[name]
        path = os.path.join(os.fspath(image_dir), name)
        img = _io.read_rgb(path)
        cam = im.camera
        if img.shape[:2] != (cam.height, cam.width):
            raise ValueError(
                f"image: {path!r} has size {img.shape[:2]}, camera {cam.camera_id} says "
                f"{(cam.height, cam.width)}"
            )
        k = camera_to_k(cam)
        w2c = cam_from_world(im)
        if depth_dir is not None:
            dpath = os.path.join(os.fspath(depth_dir), name + depth_suffix)
            raw = (depth_reader or read_dense_depth_bin)(_io.require_file(dpath, "depth"))
            d = _io.check_depth(raw, dpath, img.shape[:2], nonfinite_is_invalid=True)
        elif sparse_depth:
            d = sparse_depth_map(rec, im, w2c, k)
        else:
            d = np.zeros(img.shape[:2], np.float32)
        images.append(img)
        depths.append(d)
        ks.append(k)
        exts.append(w2c)
        files.append(path)
    return _io.make_record(
        _io.stack_images(images, files),
        np.stack(depths),
        np.stack(ks),
        np.stack(exts),
        dataset=dataset,
        scene_id=scene_id or os.path.basename(os.path.normpath(os.fspath(image_dir) + "/..")),
        is_metric=is_metric,
        depth_kind="dense_gt" if depth_dir is not None else "sparse_gt",
        provenance={"image_files": files, "model_dir": os.fspath(model_dir)},
    )
