"""DA3 benchmark layout of ScanNet++ (iPhone views) -> ``SceneRecord``.

Layout (``root`` = ``benchmark_dataset/scannetpp``)::

    <id>/merge_dslr_iphone/colmap/sparse_render_rgb/   COLMAP model (text or binary)
    <id>/merge_dslr_iphone/images/<name>               <name> as in the model; only names
                                                       containing "iphone" are used
    <id>/merge_dslr_iphone/render_depth/<stem>.png     uint16 mm rendered from the mesh, 0 = none
    <id>/scans/mesh_aligned_0.05.ply                   GT mesh (provenance)

Like the official loader: iPhone views sorted by name; OPENCV cameras are undistorted with
``cv2.getOptimalNewCameraMatrix(alpha=1)`` + ``cv2.undistort`` (OpenCV pixel-centre K, i.e.
COLMAP K - 0.5), cropped to the returned ROI and resized to 1024x768 (``INTER_AREA``).
Unlike the official loader (which keeps the pre-crop K), the record's K is the exact K of the
final 1024x768 image (pixel-edge convention). The rendered depth is treated as aligned with the
original (distorted) image, as the official evaluator does, and goes through the same
undistort/crop/resize with nearest-neighbour sampling; a depth map of another size but the same
aspect ratio is first resized (nearest) to the image size. Metric ``dense_gt``.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from data_pipelines.readers import _io, colmap
from data_pipelines.record import SceneRecord

NAME = "scannetpp"
INPUT_HW = (768, 1024)
SCENES = ("09c1414f1b", "1ada7a0617", "40aec5fffa", "3e8bba0176", "acd95847c5", "578511c8a9",
          "5f99900f09", "c4c04e6d6c", "f3d64c30f8", "7bc286c1b6", "c5439f4607", "286b55a2bf",
          "fb5a96b1a2", "7831862f02", "38d58a7a31", "bde1e479ad", "9071e139d9", "21d970d8de",
          "bcd2436daf", "cc5237fd77")


def _scene_dir(root: _io.PathLike, scene: str) -> str:
    return os.path.join(os.fspath(root), scene, "merge_dslr_iphone")


def list_scenes(root: _io.PathLike) -> list[str]:
    """The official 20 scenes that exist under ``root``."""
    return [s for s in SCENES if os.path.isdir(_scene_dir(root, s))]


def _views(root: _io.PathLike, scene: str):
    rec = colmap.load_reconstruction(os.path.join(_scene_dir(root, scene), "colmap",
                                                  "sparse_render_rgb"))
    by_name = {im.name: im for im in rec.images.values()}
    names = [n for n in sorted(by_name) if "iphone" in n]
    img_dir = os.path.join(_scene_dir(root, scene), "images")
    return [(os.path.join(img_dir, n), by_name[n]) for n in names
            if os.path.exists(os.path.join(img_dir, n))]


def list_frames(root: _io.PathLike, scene: str) -> list[str]:
    """Ordered image paths of a scene (before sampling)."""
    return [v[0] for v in _views(root, scene)]


def undistort_crop_resize(img, depth, camera, out_hw=INPUT_HW):
    """Returns (image, depth, K_pixel_edge) of the undistorted, ROI-cropped, resized view."""
    p = np.asarray(camera.params, np.float64)
    h, w = camera.height, camera.width
    k_cv = colmap.camera_to_k(camera) if camera.model.name != "OPENCV" else np.array(
        [[p[0], 0, p[2]], [0, p[1], p[3]], [0, 0, 1]])
    k_cv[:2, 2] -= 0.5  # COLMAP pixel-edge -> OpenCV pixel-centre, as cv2 expects
    x0, y0, rw, rh = 0, 0, w, h
    new_k = k_cv
    if camera.model.name == "OPENCV":
        dist = np.array([p[4], p[5], p[6], p[7], 0.0])
        new_k, (x0, y0, rw, rh) = cv2.getOptimalNewCameraMatrix(k_cv, dist, (w, h), 1, (w, h))
        maps = cv2.initUndistortRectifyMap(k_cv, dist, None, new_k, (w, h), cv2.CV_32FC1)
        img = cv2.remap(img, *maps, cv2.INTER_LINEAR)
        depth = cv2.remap(depth, *maps, cv2.INTER_NEAREST)
    img = cv2.resize(img[y0:y0 + rh, x0:x0 + rw], out_hw[::-1], interpolation=cv2.INTER_AREA)
    depth = cv2.resize(depth[y0:y0 + rh, x0:x0 + rw], out_hw[::-1],
                       interpolation=cv2.INTER_NEAREST)
    k = _io.opencv_to_pixel_edge(new_k)
    k[0, 2] -= x0
    k[1, 2] -= y0
    k[0] *= out_hw[1] / rw
    k[1] *= out_hw[0] / rh
    return img, depth, k


def _read_depth(path: str, hw: tuple[int, int]) -> np.ndarray:
    raw = _io.read_png16(path)
    dh, dw = raw.shape
    if (dh, dw) != hw:
        if abs(dh * hw[1] - dw * hw[0]) > max(hw):
            raise ValueError(f"depth: {path!r} has shape {raw.shape}, image is {hw}")
        raw = cv2.resize(raw, hw[::-1], interpolation=cv2.INTER_NEAREST)
    return _io.check_depth(raw.astype(np.float32) / 1000.0, path, hw)


def load_scene(
    root: _io.PathLike, scene: str, max_frames: int | None = None, seed: int = 42
) -> SceneRecord:
    """Loads one ScanNet++ scene at 1024x768 (sampled like the official evaluator)."""
    views = _views(root, scene)
    if not views:
        raise ValueError(f"scannetpp: scene {scene!r} has no iPhone image under {root!r}")
    views = [views[i] for i in _io.sample_frames(len(views), max_frames, seed)]
    images, depths, ks, exts = [], [], [], []
    depth_dir = os.path.join(_scene_dir(root, scene), "render_depth")
    for path, im in views:
        img = _io.read_rgb(path)
        cam = im.camera
        if img.shape[:2] != (cam.height, cam.width):
            raise ValueError(f"image: {path!r} has size {img.shape[:2]}, camera says "
                             f"{(cam.height, cam.width)}")
        stem = os.path.splitext(os.path.basename(path))[0]
        d = _read_depth(os.path.join(depth_dir, stem + ".png"), img.shape[:2])
        img, d, k = undistort_crop_resize(img, d, cam)
        images.append(img)
        depths.append(d)
        ks.append(k)
        exts.append(colmap.cam_from_world(im))
    files = [v[0] for v in views]
    return _io.make_record(
        np.stack(images), np.stack(depths), np.stack(ks), np.stack(exts),
        dataset=NAME, scene_id=scene, is_metric=True, depth_kind="dense_gt",
        provenance={"image_files": files, "gt_mesh": os.path.join(
            os.fspath(root), scene, "scans", "mesh_aligned_0.05.ply")},
    )
