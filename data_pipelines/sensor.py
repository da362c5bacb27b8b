"""Simulated depth sensors: turn dense ground truth into sparse, noisy, outlier-ridden GT.

Real student data (ARKitScenes, ScanNet++, CO3D) carries LiDAR / SfM depth: most pixels missing,
multiplicative noise, a few gross outliers. The teacher-student demo holds out synthetic scenes,
degrades their GT with `sparsify_record`, pseudo-labels them with the teacher (RANSAC scale and
shift against this sparse GT) and evaluates against the untouched dense GT.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from data_pipelines.record import SceneRecord


def sparsify_depth(depth: np.ndarray, valid: np.ndarray, rng: np.random.Generator,
                   keep_fraction: float = 0.05, rel_noise: float = 0.02,
                   outlier_fraction: float = 0.02, outlier_scale: tuple[float, float] = (0.3, 3.0)):
    """Sparse noisy copy of one or more depth maps [..., H, W] (z-depth, 0 = invalid).

    Keeps each valid pixel with probability keep_fraction; multiplies kept depth by
    (1 + rel_noise * N(0, 1)) (clipped to stay positive); replaces outlier_fraction of the kept
    pixels by depth * U(outlier_scale). Returns (depth float32, valid bool) of the same shape.
    """
    if not 0.0 < keep_fraction <= 1.0:
        raise ValueError(f"keep_fraction must be in (0, 1], got {keep_fraction}")
    if rel_noise < 0 or not 0.0 <= outlier_fraction <= 1.0:
        raise ValueError(f"rel_noise must be >= 0 and outlier_fraction in [0, 1], got "
                         f"{rel_noise}, {outlier_fraction}")
    keep = valid & (rng.random(depth.shape) < keep_fraction)
    noisy = depth * np.clip(1.0 + rel_noise * rng.standard_normal(depth.shape), 0.2, None)
    outlier = keep & (rng.random(depth.shape) < outlier_fraction)
    noisy = np.where(outlier, depth * rng.uniform(*outlier_scale, depth.shape), noisy)
    out = np.where(keep, noisy, 0.0).astype(np.float32)
    return out, keep & (out > 0)


def sparsify_record(rec: SceneRecord, seed: int = 0, keep_fraction: float = 0.05,
                    rel_noise: float = 0.02, outlier_fraction: float = 0.02) -> SceneRecord:
    """A 'sparse_gt' copy of `rec` (deterministic in seed and scene_id); provenance records the
    degradation parameters."""
    rng = np.random.default_rng([seed, *rec.scene_id.encode("utf-8")])
    depth, valid = sparsify_depth(rec.depth, rec.valid, rng, keep_fraction, rel_noise,
                                  outlier_fraction)
    prov = dict(rec.provenance or {})
    prov["sensor_sim"] = {"seed": seed, "keep_fraction": keep_fraction, "rel_noise": rel_noise,
                          "outlier_fraction": outlier_fraction}
    return dataclasses.replace(rec, depth=depth, valid=valid, depth_kind="sparse_gt",
                               provenance=prov).validate()
