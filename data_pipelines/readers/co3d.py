"""CO3D v2 (Reizenstein et al. 2021) sequences -> ``SceneRecord`` (real student data).

Layout (``root`` = the dataset root)::

    <category>/frame_annotations.jgz          gzip JSON list, one dict per frame:
        sequence_name, frame_number,
        image: {path (relative to root), size [H, W]},
        depth: {path, scale_adjustment, mask_path} (optional),
        viewpoint: {R [3x3], T [3], focal_length [2], principal_point [2],
                    intrinsics_format 'ndc_isotropic' | 'ndc_norm_image_bounds'}
    <category>/<sequence>/images/frameXXXXXX.jpg
    <category>/<sequence>/depths/frameXXXXXX.jpg.geometric.png   16-bit PNG whose bits are
                                                                  float16 depth
    <category>/<sequence>/depth_masks/frameXXXXXX.png             > 0 = depth is trusted

Conversions (as in PyTorch3D / CO3D's own loader):
  * depth = png bits viewed as float16 * ``scale_adjustment``, masked by the depth mask;
  * PyTorch3D cameras map ``X_view = X_world @ R + T`` (row vectors) with view axes x left,
    y up, z forward, so OpenCV world-to-camera is ``R_cv = F R^T``, ``t_cv = F T`` with
    ``F = diag(-1, -1, 1)``;
  * NDC intrinsics -> pixels: ``s = min(W, H)/2`` ('ndc_isotropic') or ``(W/2, H/2)``
    ('ndc_norm_image_bounds'); ``f_px = f * s``, ``c_px = (W/2, H/2) - p * s``. NDC +-1 is the
    image border, so these are pixel-edge coordinates and go into the record unchanged.
SfM scale is arbitrary (``is_metric=False``); MVS depth with holes: ``depth_kind='sparse_gt'``.
"""

from __future__ import annotations

import gzip
import json
import os

import numpy as np

from data_pipelines.readers import _io
from data_pipelines.record import SceneRecord

_P3D_TO_OPENCV = np.diag([-1.0, -1.0, 1.0])


def load_annotations(root: _io.PathLike, category: str) -> list[dict]:
    """The frame annotations of one category; ValueError if missing or not gzip JSON."""
    path = _io.require_file(os.path.join(os.fspath(root), category, "frame_annotations.jgz"),
                            "annotations")
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, EOFError, json.JSONDecodeError) as e:
        raise ValueError(f"annotations: {path!r} is not gzip-compressed JSON: {e}") from e
    if not isinstance(data, list):
        raise ValueError(f"annotations: {path!r} must hold a list of frame dicts")
    return data


def viewpoint_to_opencv(vp: dict, hw: tuple[int, int], where: str):
    """CO3D viewpoint dict -> (K ``[3, 3]`` pixel-edge, w2c ``[3, 4]``), float64."""
    try:
        r = np.asarray(vp["R"], np.float64).reshape(3, 3)
        t = np.asarray(vp["T"], np.float64).reshape(3)
        f = np.asarray(vp["focal_length"], np.float64).reshape(2)
        p = np.asarray(vp["principal_point"], np.float64).reshape(2)
        fmt = vp.get("intrinsics_format", "ndc_norm_image_bounds").lower()
    except (KeyError, ValueError, TypeError) as e:
        raise ValueError(f"viewpoint: {where} is missing or malformed ({e})") from e
    half = np.array([hw[1], hw[0]], np.float64) / 2.0
    if fmt == "ndc_isotropic":
        scale = np.full(2, half.min())
    elif fmt == "ndc_norm_image_bounds":
        scale = half
    else:
        raise ValueError(f"viewpoint: {where} has unknown intrinsics_format {fmt!r}")
    fx, fy = f * scale
    cx, cy = half - p * scale
    k = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    w2c = np.concatenate([_P3D_TO_OPENCV @ r.T, (_P3D_TO_OPENCV @ t)[:, None]], 1)
    return k, _io.check_pose(w2c, where, "viewpoint")


def read_depth_png(path: str) -> np.ndarray:
    """CO3D depth PNG: uint16 bits reinterpreted as float16 -> float32 ``[H, W]``."""
    raw = _io.read_png16(path)
    return raw.view(np.float16).astype(np.float32)


def list_sequences(root: _io.PathLike, category: str) -> list[str]:
    """Sequence names of a category (sorted)."""
    return sorted({a["sequence_name"] for a in load_annotations(root, category)})


def read_co3d(
    root: _io.PathLike,
    category: str,
    sequence: str,
    frame_numbers: list[int] | None = None,
) -> SceneRecord:
    """Reads frames (default: all, by frame number) of one CO3D sequence."""
    root = os.fspath(root)
    ann = sorted((a for a in load_annotations(root, category) if a["sequence_name"] == sequence),
                 key=lambda a: a["frame_number"])
    if frame_numbers is not None:
        wanted = set(frame_numbers)
        ann = [a for a in ann if a["frame_number"] in wanted]
    if not ann:
        raise ValueError(f"annotations: no frame of sequence {sequence!r} in {category!r}")
    images, depths, ks, exts, files = [], [], [], [], []
    for a in ann:
        ipath = os.path.join(root, a["image"]["path"])
        img = _io.read_rgb(ipath)
        where = f"{category}/frame_annotations.jgz frame {a['frame_number']} of {sequence}"
        k, w2c = viewpoint_to_opencv(a.get("viewpoint", {}), img.shape[:2], where)
        depth = np.zeros(img.shape[:2], np.float32)
        if a.get("depth"):
            dpath = os.path.join(root, a["depth"]["path"])
            raw = read_depth_png(_io.require_file(dpath, "depth"))
            d = _io.check_depth(raw, dpath, img.shape[:2]) * float(a["depth"]["scale_adjustment"])
            if a["depth"].get("mask_path"):
                mask = _io.read_mask(os.path.join(root, a["depth"]["mask_path"]), "depth_mask")
                d = np.where(mask > 0, d, 0.0)
            depth = d.astype(np.float32)
        images.append(img)
        depths.append(depth)
        ks.append(k)
        exts.append(w2c)
        files.append(ipath)
    return _io.make_record(
        _io.stack_images(images, files),
        np.stack(depths),
        np.stack(ks),
        np.stack(exts),
        dataset="co3d",
        scene_id=f"{category}/{sequence}",
        is_metric=False,
        depth_kind="sparse_gt",
        provenance={"image_files": files},
    )
