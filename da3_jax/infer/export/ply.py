"""`ply` export: one coloured, confidence-filtered point cloud in world coordinates.

``<dir>/points.ply`` (binary little-endian; vertex x, y, z float32 and red, green, blue uint8),
written with plyfile. Points: every pixel with finite depth > 0 and confidence >= the official
GLB threshold clamp(1.05, p40, p90) (no filtering for models without confidence), in the w2c
world frame of the prediction (OpenCV axes), randomly subsampled to ``num_max_points``
(seed 0).
"""

from __future__ import annotations

import os

import numpy as np
from plyfile import PlyData, PlyElement

from da3_jax.infer.export.points import confident_points, subsample_points


def export_ply(prediction, export_dir: str, conf_thresh_percentile: float = 40.0,
               num_max_points: int = 1_000_000) -> str:
    pts, cols = confident_points(prediction, conf_thresh_percentile, "ply")
    pts, cols = subsample_points(pts, cols, num_max_points)
    vert = np.empty(len(pts), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                     ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    vert["x"], vert["y"], vert["z"] = pts[:, 0], pts[:, 1], pts[:, 2]
    vert["red"], vert["green"], vert["blue"] = cols[:, 0], cols[:, 1], cols[:, 2]
    os.makedirs(export_dir, exist_ok=True)
    out = os.path.join(export_dir, "points.ply")
    PlyData([PlyElement.describe(vert, "vertex")], byte_order="<").write(out)
    return out
