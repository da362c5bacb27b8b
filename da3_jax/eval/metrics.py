"""Benchmark metrics on the host: pose AUC, depth errors, novel-view PSNR / SSIM.

Everything here is float64 NumPy on the host (metrics are cheap and must not lose precision;
the official pose AUC evaluates arccos at 1 - 2e-15 for perfect pairs). Alignment math
(least-squares scale/shift, Umeyama) is imported from `da3_jax.geometry`, run in float64.
Reconstruction metrics live in `da3_jax.eval.recon` and are re-exported here.

Conventions: poses are world-to-camera (w2c), OpenCV camera axes (x right, y down, z forward);
depth is z-depth in scene units (metres for metric data), 0 / non-finite = invalid; angles in
degrees; images are float in [0, data_range], channels last.

Pose AUC protocol (official `compute_pose` in `depth_anything_3/bench/utils.py`, DA3-official §8):
1. Right-multiply every pose by the inverse of view 0's pose (both trajectories).
2. For every unordered pair i < j (lexicographic, like `torch.combinations`) form the relative
   pose inv(P_i) @ P_j.
3. Rotation error = arccos(1 - 2 (1 - <q_gt, q_pred>^2)) with 1 - <q_gt, q_pred>^2 clamped to
   >= 1e-15; quaternions from `da3_jax.geometry.rotmat_to_quat` (the official `mat_to_quat`
   algorithm, run in float64; not renormalised, so slightly non-orthonormal rotations, e.g.
   float32 model outputs, give the official numbers too). q's sign drops out.
4. Translation error = angle between the relative translations normalised with (norm + 1e-15),
   arccos(sqrt(1 - clamp(1 - <t_gt, t_pred>^2, 1e-15))), sign ambiguity removed with
   min(theta, |180 - theta|); a non-finite angle becomes 1e6 rad, as in the official code.
5. Pair error = max(rotation error, translation error).
6. AUC@T = mean of the cumulative sum of the 1-degree histogram of pair errors on [0, T]
   (`np.histogram`: last bin closed), normalised by the number of pairs.
"""

from __future__ import annotations

import numpy as np

from da3_jax.eval._jax import bucket, geometry_fn, x64
from da3_jax.eval.recon import (  # noqa: F401  (re-exported public names)
    align_cameras_sim3,
    point_cloud_metrics,
    reconstruction_metrics,
)

DEFAULT_THRESHOLDS = (3, 5, 15, 30)
DEPTH_ALIGNMENTS = ("none", "median", "scale_shift")
DEPTH_METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "log_rmse", "delta1", "delta2", "delta3")
_EPS = 1e-15
_DEFAULT_T_ERR_RAD = 1e6


# ----------------------------------------------------------------------------- pose


def _as_w2c44(poses, name: str) -> np.ndarray:
    """Validate `[N, 3|4, 4]` w2c poses and return float64 `[N, 4, 4]` (last row 0 0 0 1)."""
    arr = np.asarray(poses, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[-1] != 4 or arr.shape[-2] not in (3, 4):
        raise ValueError(f"{name}: expected w2c poses of shape [N, 3, 4] or [N, 4, 4], "
                         f"got {arr.shape}")
    if arr.shape[0] < 2:
        raise ValueError(f"{name}: need at least 2 views for relative poses, got {arr.shape[0]}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: poses contain non-finite values")
    with x64():
        return np.asarray(geometry_fn("to_homogeneous")(arr[:, :3, :]), np.float64)


def _se3_inverse(p: np.ndarray) -> np.ndarray:
    """Closed-form inverse of rigid `[..., 4, 4]` (official `closed_form_inverse_se3`), float64
    `geometry.w2c_to_c2w`."""
    with x64():
        return np.asarray(geometry_fn("w2c_to_c2w")(p), np.float64)


def _quaternions64(*rotmats: np.ndarray) -> list[np.ndarray]:
    """`geometry.rotmat_to_quat` in float64 of `[P, 3, 3]` stacks (padded to a bucket size)."""
    p = rotmats[0].shape[0]
    stack = np.tile(np.eye(3), (len(rotmats) * bucket(p, 64), 1, 1))
    for i, r in enumerate(rotmats):
        stack[i * (len(stack) // len(rotmats)):][:p] = r
    with x64():
        q = np.asarray(geometry_fn("rotmat_to_quat")(stack), np.float64)
    return [q[i * (len(q) // len(rotmats)):][:p] for i in range(len(rotmats))]


def relative_pose_errors(pred_w2c, gt_w2c) -> dict:
    """Per-pair rotation and translation-direction errors in degrees (official protocol).

    Args:
      pred_w2c, gt_w2c: `[N, 3, 4]` or `[N, 4, 4]` world-to-camera poses of the same N views.

    Returns:
      dict with `pairs` int `[P, 2]` (i < j, lexicographic), `rot_err`, `trans_err` and
      `pair_err` (= max of the two), float64 `[P]` in degrees, P = N (N - 1) / 2.
    """
    pred = _as_w2c44(pred_w2c, "pred_w2c")
    gt = _as_w2c44(gt_w2c, "gt_w2c")
    if pred.shape != gt.shape:
        raise ValueError(f"pred_w2c {pred.shape} and gt_w2c {gt.shape} must hold the same views")
    pred = pred @ _se3_inverse(pred[:1])
    gt = gt @ _se3_inverse(gt[:1])
    i1, i2 = np.triu_indices(pred.shape[0], k=1)
    rel_gt = _se3_inverse(gt[i1]) @ gt[i2]
    rel_pred = _se3_inverse(pred[i1]) @ pred[i2]

    q_gt, q_pred = _quaternions64(rel_gt[:, :3, :3], rel_pred[:, :3, :3])
    loss_q = np.maximum(1.0 - np.sum(q_gt * q_pred, axis=1) ** 2, _EPS)
    rot_err = np.degrees(np.arccos(np.clip(1.0 - 2.0 * loss_q, -1.0, 1.0)))

    t_gt = rel_gt[:, :3, 3]
    t_pred = rel_pred[:, :3, 3]
    t_gt = t_gt / (np.linalg.norm(t_gt, axis=1, keepdims=True) + _EPS)
    t_pred = t_pred / (np.linalg.norm(t_pred, axis=1, keepdims=True) + _EPS)
    loss_t = np.maximum(1.0 - np.sum(t_gt * t_pred, axis=1) ** 2, _EPS)
    with np.errstate(invalid="ignore"):
        err_t = np.arccos(np.sqrt(1.0 - loss_t))
    err_t = np.where(np.isfinite(err_t), err_t, _DEFAULT_T_ERR_RAD)
    trans_err = np.degrees(err_t)
    trans_err = np.minimum(trans_err, np.abs(180.0 - trans_err))

    return {
        "pairs": np.stack([i1, i2], axis=1),
        "rot_err": rot_err,
        "trans_err": trans_err,
        "pair_err": np.maximum(rot_err, trans_err),
    }


def auc_from_errors(pair_err, max_threshold: int) -> float:
    """AUC@T from per-pair errors (degrees): mean cumulative 1-degree histogram on [0, T]."""
    pair_err = np.asarray(pair_err, dtype=np.float64).reshape(-1)
    if pair_err.size == 0:
        raise ValueError("pair_err: need at least one pair")
    if int(max_threshold) != max_threshold or max_threshold < 1:
        raise ValueError(f"max_threshold: expected a positive integer, got {max_threshold}")
    hist, _ = np.histogram(pair_err, bins=np.arange(int(max_threshold) + 1))
    return float(np.mean(np.cumsum(hist.astype(np.float64) / float(pair_err.size))))


def auc_key(threshold: int) -> str:
    """Metric name in JSON and tables, the official spelling: 3 -> 'auc03', 30 -> 'auc30'."""
    return f"auc{int(threshold):02d}"


def pose_auc(pred_w2c, gt_w2c, thresholds=DEFAULT_THRESHOLDS) -> dict:
    """Pose AUC of predicted vs ground-truth w2c trajectories (official benchmark protocol).

    Args:
      pred_w2c, gt_w2c: `[N, 3, 4]` or `[N, 4, 4]` world-to-camera poses, N >= 2. The
        prediction's scale and world frame do not matter (only relative rotations and
        translation directions are compared).
      thresholds: integer thresholds T in degrees.

    Returns:
      dict: `auc03`, `auc05`, ... (floats in [0, 1], one per threshold, named by `auc_key`)
      plus the per-pair arrays of `relative_pose_errors` (`pairs`, `rot_err`, `trans_err`,
      `pair_err`).
    """
    errs = relative_pose_errors(pred_w2c, gt_w2c)
    out = {auc_key(t): auc_from_errors(errs["pair_err"], t) for t in thresholds}
    out.update(errs)
    return out


# ----------------------------------------------------------------------------- depth


def _fit_scale_shift64(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Least-squares (s, b) minimising sum_mask (s * pred + b - gt)^2, via `da3_jax.geometry`."""
    with x64():
        s, b = geometry_fn("fit_scale_shift")(pred, gt, mask)
        return float(np.asarray(s)), float(np.asarray(b))


def align_depth(pred, gt, mask, align: str = "none") -> np.ndarray:
    """Align one predicted depth map `[H, W]` to the ground truth over `mask`.

    'none' returns pred; 'median' scales by median(gt) / median(pred); 'scale_shift' applies
    the least-squares s * pred + b (`da3_jax.geometry.fit_scale_shift`). Float64 result.
    """
    pred = np.asarray(pred, dtype=np.float64)
    if align == "none":
        return pred
    gt = np.asarray(gt, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if align == "median":
        med = np.median(pred[mask])
        if not med > 0:
            raise ValueError(f"pred: median of the valid predicted depth is {med}, expected > 0")
        return pred * (np.median(gt[mask]) / med)
    if align == "scale_shift":
        s, b = _fit_scale_shift64(pred, gt, mask)
        return s * pred + b
    raise ValueError(f"align: expected one of {DEPTH_ALIGNMENTS}, got {align!r}")


def depth_metrics(pred, gt, mask=None, align: str = "none", min_depth: float = 1e-6,
                  reduce: bool = True) -> dict:
    """Standard depth errors per image, averaged over images (images with no valid pixel skipped).

    Args:
      pred: predicted depth `[H, W]` or `[N, H, W]` (finite wherever evaluated).
      gt: ground-truth depth, same shape; pixels with gt <= 0 or non-finite are invalid.
      mask: optional bool, same shape; evaluated pixels = mask & valid gt.
      align: 'none' | 'median' | 'scale_shift', applied per image (see `align_depth`).
      min_depth: aligned predictions are clipped to >= min_depth before the ratio/log metrics.
      reduce: True -> floats averaged over images; False -> float64 `[N]` arrays per image
        (NaN for images without valid pixels).

    Returns:
      dict with `DEPTH_METRIC_NAMES`: abs_rel = mean |p - g| / g, sq_rel = mean (p - g)^2 / g,
      rmse = sqrt mean (p - g)^2, log_rmse = sqrt mean (log p - log g)^2,
      delta_k = fraction with max(p / g, g / p) < 1.25^k; plus `num_images` (evaluated).
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape or pred.ndim not in (2, 3):
        raise ValueError(f"pred {pred.shape} and gt {gt.shape}: expected equal shapes "
                         "[H, W] or [N, H, W]")
    if align not in DEPTH_ALIGNMENTS:
        raise ValueError(f"align: expected one of {DEPTH_ALIGNMENTS}, got {align!r}")
    valid = np.isfinite(gt) & (gt > 0)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != gt.shape:
            raise ValueError(f"mask: expected shape {gt.shape}, got {mask.shape}")
        valid &= mask
    if pred.ndim == 2:
        pred, gt, valid = pred[None], gt[None], valid[None]
    if not np.all(np.isfinite(pred[valid])):
        raise ValueError("pred: non-finite predicted depth at valid ground-truth pixels")

    per = {k: np.full(pred.shape[0], np.nan) for k in DEPTH_METRIC_NAMES}
    for i in range(pred.shape[0]):
        m = valid[i]
        if not m.any():
            continue
        p = np.maximum(align_depth(pred[i], gt[i], m, align)[m], min_depth)
        g = gt[i][m]
        diff = p - g
        ratio = np.maximum(p / g, g / p)
        per["abs_rel"][i] = np.mean(np.abs(diff) / g)
        per["sq_rel"][i] = np.mean(diff**2 / g)
        per["rmse"][i] = np.sqrt(np.mean(diff**2))
        per["log_rmse"][i] = np.sqrt(np.mean((np.log(p) - np.log(g)) ** 2))
        for k in (1, 2, 3):
            per[f"delta{k}"][i] = np.mean(ratio < 1.25**k)
    done = ~np.isnan(per["abs_rel"])
    if not done.any():
        raise ValueError("gt/mask: no valid ground-truth pixel in any image")
    if not reduce:
        return {**per, "num_images": int(done.sum())}
    out = {k: float(np.mean(v[done])) for k, v in per.items()}
    out["num_images"] = int(done.sum())
    return out


# ----------------------------------------------------------------------------- NVS


def _check_images(pred, gt) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape or pred.ndim < 3:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape}: expected equal shapes "
                         "[..., H, W, C]")
    if not (np.all(np.isfinite(pred)) and np.all(np.isfinite(gt))):
        raise ValueError("pred/gt: images contain non-finite values")
    return pred, gt


def psnr(pred, gt, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB, per image over (H, W, C), averaged over leading dims.

    PSNR = 10 log10(data_range^2 / MSE); identical images give +inf.
    """
    pred, gt = _check_images(pred, gt)
    mse = np.mean((pred - gt) ** 2, axis=(-3, -2, -1)).reshape(-1)
    with np.errstate(divide="ignore"):
        val = 10.0 * np.log10(data_range**2 / mse)
    return float(np.mean(val))


def _gaussian_window(size: int, sigma: float) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    w = np.exp(-(x**2) / (2.0 * sigma**2))
    return w / w.sum()


def _filter_valid(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of `[..., H, W, C]` with the 1-D window `w` on H and W."""
    k = w.size
    xs = np.lib.stride_tricks.sliding_window_view(x, k, axis=-3)  # [..., H', W, C, k]
    x = np.einsum("...k,k->...", xs, w)
    xs = np.lib.stride_tricks.sliding_window_view(x, k, axis=-2)  # [..., H', W', C, k]
    return np.einsum("...k,k->...", xs, w)


def ssim(pred, gt, data_range: float = 1.0, win_size: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> float:
    """Structural similarity (Wang et al. 2004), per image, averaged over leading dims.

    Gaussian window `win_size` x `win_size` with std `sigma` (weights sum to 1), 'valid'
    filtering (no padding, as in the reference MATLAB `ssim_index`), C1 = (k1 L)^2,
    C2 = (k2 L)^2 with L = data_range; the SSIM map is averaged over positions and channels.
    Images `[..., H, W, C]` with H, W >= win_size.
    """
    pred, gt = _check_images(pred, gt)
    if min(pred.shape[-3], pred.shape[-2]) < win_size:
        raise ValueError(f"pred/gt: images {pred.shape[-3:-1]} smaller than win_size={win_size}")
    w = _gaussian_window(win_size, sigma)
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    mu_x = _filter_valid(pred, w)
    mu_y = _filter_valid(gt, w)
    sxx = _filter_valid(pred * pred, w) - mu_x**2
    syy = _filter_valid(gt * gt, w) - mu_y**2
    sxy = _filter_valid(pred * gt, w) - mu_x * mu_y
    smap = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return float(np.mean(np.mean(smap, axis=(-3, -2, -1))))
