"""`npz` and `mini_npz` exports, identical keys and rounding to the official exporter.

* ``<dir>/exports/npz/results.npz``: image (uint8 [N,H,W,3]), depth (rounded to 6 decimals),
  conf (2 decimals, when present), extrinsics ([N,3,4] w2c), intrinsics ([N,3,3]).
* ``<dir>/exports/mini_npz/results.npz``: depth (8 decimals), conf, extrinsics, intrinsics.
"""

from __future__ import annotations

import os

import numpy as np


def _cameras(prediction, d: dict) -> dict:
    if prediction.conf is not None:
        d["conf"] = np.round(prediction.conf, 2)
    if prediction.extrinsics is not None:
        d["extrinsics"] = prediction.extrinsics
    if prediction.intrinsics is not None:
        d["intrinsics"] = prediction.intrinsics
    return d


def export_npz(prediction, export_dir: str) -> str:
    if prediction.processed_images is None:
        raise ValueError("npz export: prediction.processed_images is required")
    out = os.path.join(export_dir, "exports", "npz", "results.npz")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    d = {"image": prediction.processed_images, "depth": np.round(prediction.depth, 6)}
    np.savez_compressed(out, **_cameras(prediction, d))
    return out


def export_mini_npz(prediction, export_dir: str) -> str:
    out = os.path.join(export_dir, "exports", "mini_npz", "results.npz")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    np.savez_compressed(out, **_cameras(prediction, {"depth": np.round(prediction.depth, 8)}))
    return out
