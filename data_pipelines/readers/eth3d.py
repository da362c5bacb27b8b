"""DA3 benchmark layout of ETH3D (high-res multi-view) -> ``SceneRecord``.

Layout (``root`` = ``benchmark_dataset/eth3d``)::

    <scene>/images/dslr_images/DSC_XXXX.JPG                 distorted DSLR JPEGs
    <scene>/dslr_calibration_jpg/{cameras,images}.txt      COLMAP text model of those JPEGs
    <scene>/ground_truth_depth/dslr_images/DSC_XXXX.JPG    optional: raw float32 H*W, row-major,
                                                           metres, inf = no GT
    <scene>/masks_for_images/dslr_images/DSC_XXXX.png      optional: value 1 = invalid
    <scene>/combined_mesh.ply                              GT mesh (provenance)

Mirrors the official loader: views in ``images.txt`` order, the official ``ETH3D_FILTER_KEYS``
views removed, views whose image is missing skipped; K from the first four camera parameters
(fx, fy, cx, cy) -- the official evaluator **ignores the THIN_PRISM_FISHEYE distortion** of
these JPEGs and so do we (a ``UserWarning`` says so). COLMAP K is already pixel-edge.
Then at most ``max_frames`` views with the official sampling (``_io.sample_frames``).
Depth is a laser-scan rendering: ``dense_gt``, metric; zeros when no GT depth is present.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from data_pipelines.readers import _io
from data_pipelines.record import SceneRecord

NAME = "eth3d"
SCENES = ("courtyard", "electro", "kicker", "pipes", "relief", "delivery_area", "facade",
          "office", "playground", "relief_2", "terrains")
FILTER_KEYS = {
    "delivery_area": ["711.JPG", "712.JPG", "713.JPG", "714.JPG"],
    "electro": ["9289.JPG", "9290.JPG", "9291.JPG", "9292.JPG", "9293.JPG", "9298.JPG"],
    "playground": ["587.JPG", "588.JPG", "589.JPG", "590.JPG", "591.JPG", "592.JPG"],
    "relief": [f"{i}.JPG" for i in range(427, 439)],
    "relief_2": [f"{i}.JPG" for i in range(458, 469)],
}
_SINGLE_F = {"SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL", "SIMPLE_RADIAL_FISHEYE",
             "RADIAL_FISHEYE"}


def list_scenes(root: _io.PathLike) -> list[str]:
    """The official 11 scenes that exist under ``root``."""
    return [s for s in SCENES
            if os.path.isdir(os.path.join(os.fspath(root), s, "dslr_calibration_jpg"))]


def parse_cameras_txt(path: str) -> dict[str, tuple[np.ndarray, tuple[int, int]]]:
    """COLMAP ``cameras.txt`` -> {camera_id: (K [3,3] pinhole part, (H, W))}."""
    path = _io.require_file(path, "cameras")
    out = {}
    with open(path) as f:
        for line in f:
            p = line.split()
            if not p or p[0].startswith("#"):
                continue
            try:
                model, w, h = p[1], int(p[2]), int(p[3])
                v = [float(x) for x in p[4:]]
                fx, fy, cx, cy = (v[0], v[0], v[1], v[2]) if model in _SINGLE_F else v[:4]
            except (IndexError, ValueError) as e:
                raise ValueError(f"cameras: {path!r} line {line.strip()!r} is malformed") from e
            if model not in ("PINHOLE", "SIMPLE_PINHOLE"):
                warnings.warn(f"eth3d camera {p[0]}: {model} distortion is ignored (as in the "
                              "official evaluator)", UserWarning, stacklevel=2)
            out[p[0]] = (np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], np.float64), (h, w))
    return out


def parse_images_txt(path: str) -> list[tuple[str, np.ndarray, str]]:
    """COLMAP ``images.txt`` -> [(name, w2c [3,4], camera_id)] in file order."""
    path = _io.require_file(path, "images")
    with open(path) as f:
        lines = [ln.strip() for ln in f if not ln.startswith("#")]
    out = []
    for line in lines[0::2]:  # pose line, then the (possibly empty) 2D points line
        p = line.split()
        if not p:
            continue
        try:
            q = np.array([float(x) for x in p[1:5]])
            t = np.array([float(x) for x in p[5:8]])
            cam_id, name = p[8], p[9]
        except (IndexError, ValueError) as e:
            raise ValueError(f"images: {path!r} pose line {line!r} is malformed") from e
        rot = _io.quat_xyzw_to_rotmat(np.roll(q, -1))  # COLMAP stores w, x, y, z
        out.append((name, np.concatenate([rot, t[:, None]], 1), cam_id))
    return out


def _views(root: str, scene: str):
    calib = os.path.join(root, scene, "dslr_calibration_jpg")
    cams = parse_cameras_txt(os.path.join(calib, "cameras.txt"))
    views = []
    for name, w2c, cam_id in parse_images_txt(os.path.join(calib, "images.txt")):
        if any(name.endswith(key) for key in FILTER_KEYS.get(scene, [])):
            continue
        path = os.path.join(root, scene, "images", name)
        if os.path.exists(path) and cam_id in cams:
            views.append((name, path, w2c, *cams[cam_id]))
    return views


def list_frames(root: _io.PathLike, scene: str) -> list[str]:
    """Ordered image paths of a scene (before sampling)."""
    return [v[1] for v in _views(os.fspath(root), scene)]


def _read_gt_depth(root: str, scene: str, name: str, hw: tuple[int, int]) -> np.ndarray:
    dpath = os.path.join(root, scene, "ground_truth_depth", name)
    if not os.path.exists(dpath):
        return np.zeros(hw, np.float32)
    raw = np.fromfile(dpath, dtype="<f4")
    if raw.size != hw[0] * hw[1]:
        raise ValueError(f"depth: {dpath!r} holds {raw.size} floats, expected {hw[0]}x{hw[1]}")
    d = _io.check_depth(raw.reshape(hw), dpath, hw, nonfinite_is_invalid=True)
    mpath = os.path.join(root, scene, "masks_for_images", os.path.splitext(name)[0] + ".png")
    if os.path.exists(mpath):
        d = np.where(_io.read_mask(mpath, "mask") == 1, 0.0, d).astype(np.float32)
    return d


def load_scene(
    root: _io.PathLike, scene: str, max_frames: int | None = None, seed: int = 42
) -> SceneRecord:
    """Loads one ETH3D scene (sampled like the official evaluator)."""
    root = os.fspath(root)
    views = _views(root, scene)
    if not views:
        raise ValueError(f"eth3d: scene {scene!r} has no usable view under {root!r}")
    views = [views[i] for i in _io.sample_frames(len(views), max_frames, seed)]
    images, depths = [], []
    for name, path, _, _, hw in views:
        img = _io.read_rgb(path)
        if img.shape[:2] != hw:
            raise ValueError(f"image: {path!r} has size {img.shape[:2]}, cameras.txt says {hw}")
        images.append(img)
        depths.append(_read_gt_depth(root, scene, name, hw))
    files = [v[1] for v in views]
    return _io.make_record(
        _io.stack_images(images, files),
        np.stack(depths),
        np.stack([v[3] for v in views]),
        np.stack([v[2] for v in views]),
        dataset=NAME,
        scene_id=scene,
        is_metric=True,
        depth_kind="dense_gt",
        provenance={"image_files": files,
                    "gt_mesh": os.path.join(root, scene, "combined_mesh.ply")},
    )
