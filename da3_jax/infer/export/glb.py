"""`glb` export: ``<dir>/scene.glb``, coloured points + camera frustums (trimesh), as upstream.

Same construction as the official `export_to_glb` (DA3-official.md §4.2):
* points with conf >= clamp(1.05, p40, p90) (`points.glb_conf_threshold`);
* alignment ``A = T_center @ M @ w2c_0``: world -> first camera frame -> glTF axes
  (``M = diag(1, -1, -1, 1)``: x right, y up, z backward) -> centred on the median point;
* random subsample to ``num_max_points`` (seed 0 here; upstream unseeded);
* one wireframe pyramid per camera (apex = camera centre, base = the image corners
  ``(0,0), (W-1,0), (W-1,H-1), (0,H-1)`` on the z = ``scale`` plane, scale = 0.03 x the
  5-95 % extent diagonal of the points), coloured by index (HSV).
``scene.metadata['hf_alignment']`` holds A. Returns the path of scene.glb.
"""

from __future__ import annotations

import colorsys
import os

import numpy as np
import trimesh

from da3_jax.infer.export.points import confident_points, subsample_points


def _hom(ext: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[: ext.shape[0], :] = ext
    return out


def alignment_transform(w2c0: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The 4x4 world -> glTF scene transform A (see module docstring)."""
    m = np.diag([1.0, -1.0, -1.0, 1.0])
    a = m @ _hom(np.asarray(w2c0, np.float64))
    centre = np.zeros(3)
    if len(points):
        centre = np.median(trimesh.transform_points(points, a), axis=0)
    t = np.eye(4)
    t[:3, 3] = -centre
    return t @ a


def frustum_segments(k: np.ndarray, w2c: np.ndarray, w: int, h: int, scale: float):
    """[8, 2, 3] world-frame segments: apex->4 corners, then the 4 base edges."""
    corners = np.array([[0, 0, 1.0], [w - 1, 0, 1.0], [w - 1, h - 1, 1.0], [0, h - 1, 1.0]])
    c2w = np.linalg.inv(_hom(np.asarray(w2c, np.float64)))
    rays = corners @ np.linalg.inv(np.asarray(k, np.float64)).T
    plane = rays / rays[:, 2:3] * scale
    plane_w = plane @ c2w[:3, :3].T + c2w[:3, 3]
    apex = c2w[:3, 3]
    segs = [np.stack([apex, plane_w[i]]) for i in range(4)]
    segs += [np.stack([plane_w[i], plane_w[(i + 1) % 4]]) for i in range(4)]
    return np.stack(segs)


def _scene_scale(points: np.ndarray) -> float:
    if len(points) < 2:
        return 1.0
    diag = np.linalg.norm(np.percentile(points, 95, 0) - np.percentile(points, 5, 0))
    return float(diag) if np.isfinite(diag) and diag > 0 else 1.0


def export_glb(prediction, export_dir: str, conf_thresh_percentile: float = 40.0,
               num_max_points: int = 1_000_000, show_cameras: bool = True,
               camera_size: float = 0.03) -> str:
    pts, cols = confident_points(prediction, conf_thresh_percentile, "glb")
    a = alignment_transform(prediction.extrinsics[0], pts)  # centred on the median of all points
    pts, cols = subsample_points(pts, cols, num_max_points)
    if len(pts):
        pts = trimesh.transform_points(pts, a).astype(np.float32)
    scene = trimesh.Scene()
    scene.metadata["hf_alignment"] = a
    if len(pts):
        scene.add_geometry(trimesh.points.PointCloud(vertices=pts, colors=cols), node_name="points")
    if show_cameras:
        n = prediction.depth.shape[0]
        h, w = prediction.depth.shape[1:]
        scale = _scene_scale(pts) * camera_size
        for i in range(n):
            segs = frustum_segments(prediction.intrinsics[i], prediction.extrinsics[i], w, h, scale)
            segs = trimesh.transform_points(segs.reshape(-1, 3), a).reshape(-1, 2, 3)
            path = trimesh.load_path(segs)
            rgb = colorsys.hsv_to_rgb((i + 0.5) / max(n, 1), 0.85, 0.95)
            path.colors = np.tile((np.array(rgb) * 255).astype(np.uint8), (len(path.entities), 1))
            scene.add_geometry(path, node_name=f"camera_{i:04d}")
    os.makedirs(export_dir, exist_ok=True)
    out = os.path.join(export_dir, "scene.glb")
    scene.export(out)
    return out
