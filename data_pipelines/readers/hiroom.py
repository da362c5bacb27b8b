"""DA3 benchmark layout of HiRoom -> ``SceneRecord`` (mirrors the official evaluator's loader).

Layout (``root`` = ``benchmark_dataset/hiroom``)::

    selected_scene_list_val.txt          one scene per line, a sub-path of data/ ("a/b/c")
    data/<scene>/image/<frame>.<ext>     8-bit RGB
    data/<scene>/depth/<frame>.png       uint16, metres = value / 65535 * 100, 0 = invalid
    data/<scene>/pose/<frame>.npy        4x4 world-to-camera (OpenCV axes), metres
    data/<scene>/cam_K.npy               3x3 shared K (OpenCV pixel-centre convention)
    data/<scene>/aliasing_mask/<frame>.png   optional, > 0 = exclude from depth
    fused_pcd/<a-b-c>.ply                GT point cloud (path kept in provenance)

Frames are the sorted image names that have a pose file (frames without one are skipped, as
in the official loader); then at most ``max_frames`` are kept with the official sampling
(``_io.sample_frames``). Depth is rendered (``dense_gt``) and metric. K gets cx, cy + 0.5
(record pixel-edge convention).
"""

from __future__ import annotations

import os

import numpy as np

from data_pipelines.readers import _io
from data_pipelines.record import SceneRecord

NAME = "hiroom"
DEPTH_MAX_M = 100.0


def list_scenes(root: _io.PathLike) -> list[str]:
    """Scenes of ``selected_scene_list_val.txt`` that exist under ``root/data``."""
    path = _io.require_file(os.path.join(root, "selected_scene_list_val.txt"), "scene list")
    with open(path) as f:
        scenes = [s.strip() for s in f.read().splitlines() if s.strip()]
    return [s for s in scenes if os.path.isdir(os.path.join(root, "data", s))]


def list_frames(root: _io.PathLike, scene: str) -> list[str]:
    """Ordered image paths of a scene (before sampling), as the official loader lists them."""
    scene_dir = os.path.join(root, "data", scene)
    image_dir = os.path.join(scene_dir, "image")
    if not os.path.isdir(image_dir):
        raise ValueError(f"hiroom: {image_dir!r} is not a directory")
    out = []
    for name in sorted(os.listdir(image_dir)):
        frame = name.split(".")[0]
        if os.path.exists(os.path.join(scene_dir, "pose", f"{frame}.npy")):
            out.append(os.path.join(image_dir, name))
    return out


def _load_npy(path: str, shape: tuple[int, ...], field: str) -> np.ndarray:
    path = _io.require_file(path, field)
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"{field}: {path!r} is not a readable .npy file: {e}") from e
    if arr.shape != shape and not (shape == (4, 4) and arr.shape == (3, 4)):
        raise ValueError(f"{field}: {path!r} has shape {arr.shape}, expected {shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{field}: {path!r} contains non-finite values")
    return arr.astype(np.float64)


def load_scene(
    root: _io.PathLike, scene: str, max_frames: int | None = None, seed: int = 42
) -> SceneRecord:
    """Loads one HiRoom scene (sampled like the official evaluator)."""
    root = os.fspath(root)
    scene_dir = os.path.join(root, "data", scene)
    k = _load_npy(os.path.join(scene_dir, "cam_K.npy"), (3, 3), "intrinsics")
    files = list_frames(root, scene)
    if not files:
        raise ValueError(f"hiroom: scene {scene!r} has no image with a pose under {scene_dir!r}")
    files = [files[i] for i in _io.sample_frames(len(files), max_frames, seed)]
    images, depths, exts = [], [], []
    for img_path in files:
        frame = os.path.basename(img_path).split(".")[0]
        img = _io.read_rgb(img_path)
        pose_path = os.path.join(scene_dir, "pose", f"{frame}.npy")
        exts.append(_io.check_pose(_load_npy(pose_path, (4, 4), "pose"), pose_path, "pose"))
        dpath = os.path.join(scene_dir, "depth", f"{frame}.png")
        raw = _io.read_png16(dpath)
        d = _io.check_depth(raw.astype(np.float64) / 65535.0 * DEPTH_MAX_M, dpath, img.shape[:2])
        mpath = os.path.join(scene_dir, "aliasing_mask", f"{frame}.png")
        if os.path.exists(mpath):
            d = np.where(_io.read_mask(mpath, "aliasing_mask") > 0, 0.0, d)
        images.append(img)
        depths.append(d)
    n = len(files)
    return _io.make_record(
        _io.stack_images(images, files),
        np.stack(depths),
        np.broadcast_to(_io.opencv_to_pixel_edge(k), (n, 3, 3)),
        np.stack(exts),
        dataset=NAME,
        scene_id=scene,
        is_metric=True,
        depth_kind="dense_gt",
        provenance={
            "image_files": files,
            "gt_pcd": os.path.join(root, "fused_pcd", "-".join(scene.split("/")[-3:]) + ".ply"),
        },
    )
