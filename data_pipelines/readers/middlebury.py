"""Middlebury stereo 2014 pairs and Middlebury multi-view (``*_par.txt``) sets -> ``SceneRecord``.

**Stereo 2014** (``im0.png``, ``im1.png``, ``disp0GT.pfm``, ``calib.txt``, optional
``mask0nocc.png``): the pair is rectified; the left camera (cam0) is the world frame and the
right camera (cam1) is cam0 shifted by +baseline along x, so ``w2c_1 = [I | (-baseline, 0, 0)]``.
Left depth is ``Z = baseline * f / (d + doffs)`` (baseline converted from mm to metres), with
``inf`` disparity (unknown) -> invalid. The right view has no GT here (``disp1`` is not read), so
its depth is all invalid. ``cam0``/``cam1`` are OpenCV pixel-centre matrices: cx, cy + 0.5 in the
record. Metric, ``depth_kind='dense_gt'`` (structured light, ~2 % holes).

**Multi-view** (``<name>_par.txt``: count, then per image ``name k11..k33 r11..r33 t1 t2 t3``,
projection ``K (R X + t)``, world-to-camera, metres): pose-only (depth all invalid).
"""

from __future__ import annotations

import glob
import os
import re

import numpy as np

from data_pipelines.readers import _io
from data_pipelines.record import SceneRecord


def read_calib(path: _io.PathLike) -> dict[str, object]:
    """Parses a Middlebury 2014 ``calib.txt`` (``key=value``; cam0/cam1 in Matlab notation).

    Returns cam0, cam1 as float64 ``[3, 3]`` and the scalars as floats; ValueError naming the
    file and the missing/malformed key.
    """
    path = _io.require_file(path, "calibration")
    out: dict[str, object] = {}
    with open(path) as f:
        for line in f:
            if "=" in line:
                key, value = (s.strip() for s in line.split("=", 1))
                out[key] = value
    for key in ("cam0", "cam1", "doffs", "baseline"):
        if key not in out:
            raise ValueError(f"calibration: {path!r} has no '{key}=' line")
    for key in ("cam0", "cam1"):
        nums = re.findall(r"[-+0-9.eE]+", str(out[key]))
        try:
            out[key] = np.array([float(x) for x in nums]).reshape(3, 3)
        except ValueError as e:
            raise ValueError(f"calibration: {path!r} field '{key}' is not a 3x3 matrix") from e
    for key, value in list(out.items()):
        if key not in ("cam0", "cam1"):
            try:
                out[key] = float(value)
            except ValueError as e:
                raise ValueError(f"calibration: {path!r} field '{key}' is not a number") from e
    return out


def disparity_to_depth(disp: np.ndarray, focal: float, baseline_m: float, doffs: float):
    """Metric z-depth ``[H, W]`` = ``baseline * f / (d + doffs)``; unknown (inf/NaN, <= -doffs)
    disparities give 0."""
    disp = np.asarray(disp, np.float64)
    ok = np.isfinite(disp) & (disp + doffs > 0)
    depth = np.where(ok, baseline_m * focal / np.where(ok, disp + doffs, 1.0), 0.0)
    return depth.astype(np.float32)


def read_stereo2014(scene_dir: _io.PathLike, scene_id: str | None = None) -> SceneRecord:
    """Reads a Middlebury 2014 scene as a 2-view record (left with GT depth, right pose-only)."""
    scene_dir = os.fspath(scene_dir)
    calib = read_calib(os.path.join(scene_dir, "calib.txt"))
    left = _io.read_rgb(os.path.join(scene_dir, "im0.png"))
    right = _io.read_rgb(os.path.join(scene_dir, "im1.png"))
    disp_path = os.path.join(scene_dir, "disp0GT.pfm")
    disp = _io.read_pfm(disp_path)
    if disp.ndim != 2:
        raise ValueError(f"disparity: {disp_path!r} must be single-channel (Pf), got {disp.shape}")
    _io.check_depth(disp, disp_path, left.shape[:2], "disparity", nonfinite_is_invalid=True)
    k0, k1 = calib["cam0"], calib["cam1"]
    baseline_m = float(calib["baseline"]) / 1000.0
    depth0 = disparity_to_depth(disp, k0[0, 0], baseline_m, float(calib["doffs"]))
    w2c = np.zeros((2, 3, 4))
    w2c[:, :, :3] = np.eye(3)
    w2c[1, 0, 3] = -baseline_m
    return _io.make_record(
        _io.stack_images([left, right], ["im0.png", "im1.png"]),
        np.stack([depth0, np.zeros_like(depth0)]),
        _io.opencv_to_pixel_edge(np.stack([k0, k1])),
        w2c,
        dataset="middlebury2014",
        scene_id=scene_id or os.path.basename(os.path.normpath(scene_dir)),
        is_metric=True,
        depth_kind="dense_gt",
        provenance={"image_files": [os.path.join(scene_dir, n) for n in ("im0.png", "im1.png")]},
    )


def read_multiview(scene_dir: _io.PathLike, scene_id: str | None = None) -> SceneRecord:
    """Reads a Middlebury multi-view set (``*_par.txt`` + images); depth all invalid."""
    scene_dir = os.fspath(scene_dir)
    pars = sorted(glob.glob(os.path.join(scene_dir, "*_par.txt")))
    if len(pars) != 1:
        raise ValueError(f"calibration: expected one *_par.txt in {scene_dir!r}, found {pars}")
    with open(pars[0]) as f:
        lines = [ln.split() for ln in f if ln.strip()]
    try:
        count = int(lines[0][0])
    except (IndexError, ValueError) as e:
        raise ValueError(f"calibration: {pars[0]!r} first line must be the view count") from e
    rows = lines[1:]
    if len(rows) != count or any(len(r) != 22 for r in rows):
        raise ValueError(f"calibration: {pars[0]!r} must have {count} lines of name + 21 numbers")
    names, ks, exts, images = [], [], [], []
    for r in rows:
        vals = np.array([float(x) for x in r[1:]])
        ks.append(vals[:9].reshape(3, 3))
        ext = np.concatenate([vals[9:18].reshape(3, 3), vals[18:21, None]], axis=1)
        exts.append(_io.check_pose(ext, pars[0], f"pose of {r[0]}"))
        names.append(os.path.join(scene_dir, r[0]))
        images.append(_io.read_rgb(names[-1]))
    imgs = _io.stack_images(images, names)
    return _io.make_record(
        imgs,
        np.zeros(imgs.shape[:3], np.float32),
        _io.opencv_to_pixel_edge(np.stack(ks)),
        np.stack(exts),
        dataset="middlebury_mview",
        scene_id=scene_id or os.path.basename(os.path.normpath(scene_dir)),
        is_metric=True,
        depth_kind="sparse_gt",
        provenance={"image_files": names},
    )
