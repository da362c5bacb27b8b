"""`depth_vis` export: ``<dir>/depth_vis/{idx:04d}.jpg`` = image | colour-mapped depth.

Same picture as the official `visualize_depth`: inverse depth of the valid (> 0) pixels,
stretched between its 2nd and 98th percentiles (near = high), then ``1 - x`` through
matplotlib's 'Spectral' colormap; JPEG quality 95.
"""

from __future__ import annotations

import os

import matplotlib
import numpy as np
from PIL import Image


def colorize_depth(depth: np.ndarray, percentile: float = 2.0, cmap: str = "Spectral"):
    """[H, W] depth -> uint8 [H, W, 3] colour image (official `visualize_depth`)."""
    d = np.array(depth, dtype=np.float32, copy=True)
    valid = d > 0
    d[valid] = 1.0 / d[valid]
    if valid.sum() <= 10:
        lo = hi = 0.0
    else:
        lo = np.percentile(d[valid], percentile)
        hi = np.percentile(d[valid], 100 - percentile)
    if lo == hi:
        lo, hi = lo - 1e-6, hi + 1e-6
    x = 1.0 - ((d - lo) / (hi - lo)).clip(0, 1)
    rgb = matplotlib.colormaps[cmap](x[None], bytes=False)[0, :, :, :3]
    return (rgb * 255.0).astype(np.uint8)


def depth_vis_image(image_u8: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Side-by-side uint8 [H, 2W, 3]: the processed image and its colour-mapped depth."""
    return np.concatenate([image_u8.astype(np.uint8), colorize_depth(depth)], axis=1)


def export_depth_vis(prediction, export_dir: str) -> list[str]:
    if prediction.processed_images is None:
        raise ValueError("depth_vis export: prediction.processed_images is required")
    folder = os.path.join(export_dir, "depth_vis")
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(prediction.depth.shape[0]):
        p = os.path.join(folder, f"{i:04d}.jpg")
        vis = depth_vis_image(prediction.processed_images[i], prediction.depth[i])
        Image.fromarray(vis).save(p, quality=95)
        paths.append(p)
    return paths
