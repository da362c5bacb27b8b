"""Trajectory metrics for long sequences: ATE, RPE (the evo / TUM definitions) and the
chunk-seam consistency of streaming runs.

Conventions: poses are w2c ``[N, 3|4, 4]`` (OpenCV axes); errors are in ground-truth units
(metres for metric GT) and degrees. Float64 NumPy on the host; the Sim(3) fit is
`da3_jax.geometry.align_camera_centres_sim3` (Umeyama on camera centres, no RANSAC).
"""

from __future__ import annotations

import numpy as np

from da3_jax.eval._jax import x64
from da3_jax.geometry import align_camera_centres_sim3, to_homogeneous, w2c_to_c2w


def _c2w(w2c) -> np.ndarray:
    w2c = np.asarray(w2c, np.float64)
    if w2c.ndim != 3 or w2c.shape[1:] not in ((3, 4), (4, 4)):
        raise ValueError(f"poses: expected w2c [N, 3|4, 4], got {w2c.shape}")
    with x64():
        return np.array(to_homogeneous(w2c_to_c2w(w2c[:, :3, :])), np.float64)


def align_trajectory(pred_w2c, gt_w2c) -> tuple[np.ndarray, float]:
    """Predicted c2w ``[N, 4, 4]`` mapped into the GT frame by the Sim(3) fitted on the camera
    centres (scale applied to positions), and that scale."""
    pred_w2c, gt_w2c = np.asarray(pred_w2c, np.float64), np.asarray(gt_w2c, np.float64)
    if len(pred_w2c) != len(gt_w2c) or len(gt_w2c) < 3:
        raise ValueError(f"pred/gt: expected the same N >= 3 poses, got {len(pred_w2c)} and "
                         f"{len(gt_w2c)}")
    with x64():
        s, rot, t = align_camera_centres_sim3(pred_w2c, gt_w2c, ransac=False)
    c2w = _c2w(pred_w2c)
    c2w[:, :3, :3] = rot @ c2w[:, :3, :3]
    c2w[:, :3, 3] = s * c2w[:, :3, 3] @ rot.T + t
    return c2w, float(s)


def ate(pred_w2c, gt_w2c) -> float:
    """Absolute trajectory error: RMSE of camera-centre distances after Sim(3) alignment."""
    c2w, _ = align_trajectory(pred_w2c, gt_w2c)
    err = c2w[:, :3, 3] - _c2w(gt_w2c)[:, :3, 3]
    return float(np.sqrt(np.mean(np.sum(err**2, -1))))


def rpe(pred_w2c, gt_w2c, delta: int = 1) -> dict:
    """Relative pose error over all frame pairs ``(i, i + delta)`` (evo ``all_pairs=True``)
    after Sim(3) alignment:
    ``E = inv(inv(Q_i) Q_j) inv(P_i) P_j`` (c2w, P aligned); returns the translation RMSE
    (``rpe_trans``, GT units) and the mean rotation angle (``rpe_rot_deg``)."""
    p, _ = align_trajectory(pred_w2c, gt_w2c)
    q = _c2w(gt_w2c)
    if not 1 <= delta < len(q):
        raise ValueError(f"delta must be in [1, {len(q)}), got {delta}")
    rel = lambda x: np.linalg.inv(x[:-delta]) @ x[delta:]
    e = np.linalg.inv(rel(q)) @ rel(p)
    cos = np.clip((np.trace(e[:, :3, :3], axis1=1, axis2=2) - 1) / 2, -1.0, 1.0)
    return {"rpe_trans": float(np.sqrt(np.mean(np.sum(e[:, :3, 3] ** 2, -1)))),
            "rpe_rot_deg": float(np.degrees(np.arccos(cos)).mean())}


def seam_consistency(result, min_depth: float = 1e-6) -> dict:
    """Depth disagreement at chunk seams of a `da3_jax.infer.streaming.StreamingResult`.

    For every frame predicted by two consecutive chunks, both world-scaled depth maps (each
    chunk's depth times its Sim(3) scale) are compared: per frame, the median over valid pixels
    of ``|d_a - d_b| / ((d_a + d_b) / 2)``. Returns the mean and max over seam frames
    (``seam_rel_mean``, ``seam_rel_max``) and their count. Reads two chunks at a time.
    """
    per_frame = []
    prev = None
    for k in range(len(result.ranges)):
        cur = result.chunk_depth(k)
        if prev is not None:
            shared, ia, ib = np.intersect1d(prev[0], cur[0], return_indices=True)
            for i, j in zip(ia, ib, strict=True):
                a, b = prev[1][i].astype(np.float64), cur[1][j].astype(np.float64)
                ok = (a > min_depth) & (b > min_depth) & np.isfinite(a) & np.isfinite(b)
                if ok.any():
                    per_frame.append(float(np.median(np.abs(a - b)[ok] / ((a + b)[ok] / 2))))
            del shared
        prev = cur
    if not per_frame:
        return {"seam_rel_mean": float("nan"), "seam_rel_max": float("nan"), "seam_frames": 0}
    return {"seam_rel_mean": float(np.mean(per_frame)), "seam_rel_max": float(np.max(per_frame)),
            "seam_frames": len(per_frame)}
