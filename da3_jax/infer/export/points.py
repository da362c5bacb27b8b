"""Depth maps -> coloured world points (shared by the ply, glb and colmap exporters).

`confident_points` / `subsample_points`: the confidence filter and the seed-0 subsample of the
ply and glb exporters.

Unprojection is `da3_jax.geometry.points_from_depth` with integer pixel indices
(``pixel_center=0``), as the official `_depths_to_world_points_with_colors`: for pixel (row i,
column j), ``X_cam = depth * K^-1 [j, i, 1]``, ``X_world = R^T (X_cam - t)``.
"""

from __future__ import annotations

import numpy as np

from da3_jax.geometry import points_from_depth


def glb_conf_threshold(conf: np.ndarray | None, sky: np.ndarray | None = None,
                       base: float = 1.05, lower_pct: float = 40.0,
                       upper_pct: float = 90.0) -> float:
    """Official GLB threshold: clamp(base, p_lower, p_upper) of the (non-sky) confidences."""
    if conf is None:
        return -np.inf
    vals = conf[~sky] if sky is not None and (~sky).sum() > 10 else conf
    lo, hi = np.percentile(vals, lower_pct), np.percentile(vals, upper_pct)
    return float(min(max(base, lo), hi))


def world_points(depth, extrinsics, intrinsics, images_u8, conf=None, conf_thresh=-np.inf):
    """Points of the valid pixels (finite depth > 0, conf >= conf_thresh).

    Args:
      depth [N, H, W]; extrinsics [N, 3, 4] w2c; intrinsics [N, 3, 3]; images_u8 [N, H, W, 3];
      conf [N, H, W] or None.
    Returns:
      points [M, 3] float32 (world), colors [M, 3] uint8, index [M, 3] int32 (frame, row, col),
      in frame-major, row-major order.
    """
    pts = np.asarray(points_from_depth(np.asarray(depth, np.float32),
                                       np.asarray(extrinsics, np.float32),
                                       np.asarray(intrinsics, np.float32)))
    valid = np.isfinite(depth) & (depth > 0) & np.isfinite(pts).all(-1)
    if conf is not None:
        valid &= conf >= conf_thresh
    idx = np.argwhere(valid).astype(np.int32)
    return pts[valid].astype(np.float32), images_u8[valid].astype(np.uint8), idx


def confident_points(prediction, conf_thresh_percentile: float, fmt: str):
    """World points ``[M, 3]`` float32 and colours ``[M, 3]`` uint8 of a prediction's pixels with
    conf >= `glb_conf_threshold` (lower percentile `conf_thresh_percentile`); ValueError naming
    the export format `fmt` when the prediction has no cameras."""
    if prediction.extrinsics is None or prediction.intrinsics is None:
        raise ValueError(f"{fmt} export needs cameras (extrinsics and intrinsics)")
    thr = glb_conf_threshold(prediction.conf, prediction.sky, lower_pct=conf_thresh_percentile)
    pts, cols, _ = world_points(prediction.depth, prediction.extrinsics, prediction.intrinsics,
                                prediction.processed_images, prediction.conf, thr)
    return pts, cols


def subsample_points(pts: np.ndarray, cols: np.ndarray, num_max_points: int):
    """At most `num_max_points` rows of ``(pts, cols)``: a seed-0 random choice, order kept."""
    if len(pts) > num_max_points:
        keep = np.sort(np.random.default_rng(0).choice(len(pts), num_max_points, replace=False))
        pts, cols = pts[keep], cols[keep]
    return pts, cols
