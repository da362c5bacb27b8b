"""Metrics vs the official benchmark functions (random inputs) and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from da3_jax.eval import metrics, recon
from da3_jax.eval._jax import x64
from da3_jax.geometry import transform_w2c_sim3


def _random_w2c(rng, n, seed):
    out = np.tile(np.eye(4), (n, 1, 1))
    out[:, :3, :3] = Rotation.random(n, random_state=seed).as_matrix()
    out[:, :3, 3] = rng.normal(size=(n, 3))
    return out


def _noisy(rng, w2c, rot_deg, trans_sigma, scale=1.0):
    out = w2c.copy()
    noise = Rotation.from_rotvec(rng.normal(size=(len(w2c), 3)) * np.radians(rot_deg))
    out[:, :3, :3] = noise.as_matrix() @ w2c[:, :3, :3]
    out[:, :3, 3] = scale * w2c[:, :3, 3] + rng.normal(size=(len(w2c), 3)) * trans_sigma
    return out


# ------------------------------------------------------------------------------------ pose


@pytest.mark.parametrize("trial", range(4))
def test_pose_auc_matches_official(official_bench, trial):
    rng = np.random.default_rng(trial)
    n = 9 + 4 * trial
    gt = _random_w2c(rng, n, seed=trial)
    pred = _noisy(rng, gt, rot_deg=[0.3, 2.0, 5.0, 12.0][trial], trans_sigma=0.1, scale=1.7)
    if trial % 2:  # slightly non-orthonormal rotations, as float32 model outputs are
        gt[:, :3, :3] += rng.normal(scale=1e-5, size=(n, 3, 3))
        pred[:, :3, :3] = pred[:, :3, :3].astype(np.float32)
    ref = official_bench.compute_pose(torch.from_numpy(pred), torch.from_numpy(gt))
    ours = metrics.pose_auc(pred, gt)
    for key in ("auc03", "auc05", "auc15", "auc30"):
        assert abs(ours[key] - float(ref[key])) <= 1e-6, key
    # Per-pair errors, after the official first-camera alignment.
    r_ref, t_ref = official_bench.se3_to_relative_pose_error(
        official_bench.align_to_first_camera(torch.from_numpy(pred)),
        official_bench.align_to_first_camera(torch.from_numpy(gt)), n)
    np.testing.assert_allclose(ours["rot_err"], r_ref.numpy(), atol=1e-6)
    np.testing.assert_allclose(ours["trans_err"], t_ref.numpy(), atol=1e-6)
    assert ours["pairs"].shape == (n * (n - 1) // 2, 2)


def test_pose_auc_identity_and_3x4(official_bench):
    rng = np.random.default_rng(7)
    gt = _random_w2c(rng, 6, seed=7)
    ours = metrics.pose_auc(gt[:, :3], gt)  # [N,3,4] accepted, perfect prediction
    ref = official_bench.compute_pose(torch.from_numpy(gt), torch.from_numpy(gt))
    for key in ("auc03", "auc30"):
        assert ours[key] == 1.0 == float(ref[key])
    assert ours["pair_err"].max() < 1e-5  # arccos(1 - 2e-15) floor, in degrees


def test_auc_hand_computed():
    # Errors 0.5, 2.5, 10 with T=3: histogram [1, 0, 1] / 3 -> cumsum [1/3, 1/3, 2/3] -> 4/9.
    assert metrics.auc_from_errors([0.5, 2.5, 10.0], 3) == pytest.approx(4 / 9, abs=1e-15)
    # Last bin closed: an error of exactly T counts.
    assert metrics.auc_from_errors([3.0], 3) == pytest.approx(1 / 3, abs=1e-15)
    assert metrics.auc_from_errors([0.0, 40.0], 30) == pytest.approx(0.5, abs=1e-15)


def test_pose_errors_hand_computed():
    # View 0 identity, view 1 translated along x and yawed 10 deg about its own centre;
    # prediction yaws 4 deg instead: rotation error 6 deg, translation direction unchanged.
    def cam(yaw_deg, centre):
        r = Rotation.from_euler("y", yaw_deg, degrees=True).as_matrix()
        p = np.eye(4)
        p[:3, :3] = r
        p[:3, 3] = -r @ np.asarray(centre, float)
        return p

    gt = np.stack([cam(0, [0, 0, 0]), cam(10, [1, 0, 0])])
    pred = np.stack([cam(0, [0, 0, 0]), cam(4, [2, 0, 0])])
    out = metrics.relative_pose_errors(pred, gt)
    rel_t_gt = gt[1, :3, 3]
    rel_t_pred = pred[1, :3, 3]
    cosang = abs(rel_t_gt @ rel_t_pred) / np.linalg.norm(rel_t_gt) / np.linalg.norm(rel_t_pred)
    assert out["rot_err"][0] == pytest.approx(6.0, abs=1e-9)
    assert out["trans_err"][0] == pytest.approx(np.degrees(np.arccos(cosang)), abs=1e-6)


def test_pose_bad_inputs():
    gt = np.tile(np.eye(4), (3, 1, 1))
    with pytest.raises(ValueError, match="pred_w2c"):
        metrics.pose_auc(np.zeros((3, 3, 3)), gt)
    with pytest.raises(ValueError, match="gt_w2c"):
        metrics.pose_auc(gt, np.full((3, 4, 4), np.nan))
    with pytest.raises(ValueError, match="same views"):
        metrics.pose_auc(gt[:2], gt)


# ----------------------------------------------------------------------------------- depth


def test_depth_metrics_hand_computed():
    gt = np.array([[1.0, 2.0, 4.0, 0.0]])  # last pixel invalid (gt = 0)
    pred = np.array([[2.0, 2.0, 2.0, 7.0]])
    m = metrics.depth_metrics(pred, gt)
    ln2 = np.log(2.0)
    assert m["abs_rel"] == pytest.approx((1 + 0 + 0.5) / 3, abs=1e-12)
    assert m["sq_rel"] == pytest.approx((1 / 1 + 0 + 4 / 4) / 3, abs=1e-12)
    assert m["rmse"] == pytest.approx(np.sqrt(5 / 3), abs=1e-12)
    assert m["log_rmse"] == pytest.approx(np.sqrt(2 * ln2**2 / 3), abs=1e-12)
    assert m["delta1"] == pytest.approx(1 / 3) and m["delta3"] == pytest.approx(1 / 3)
    # Mask removes pixel 0 -> errors of pixels 1, 2 only.
    m = metrics.depth_metrics(pred, gt, mask=np.array([[False, True, True, True]]))
    assert m["abs_rel"] == pytest.approx(0.25, abs=1e-12)


def test_depth_alignment_and_per_image():
    rng = np.random.default_rng(0)
    gt = rng.uniform(1, 5, size=(3, 6, 7))
    gt[0, 0, 0] = 0.0
    scaled = gt * 0.37
    none = metrics.depth_metrics(scaled, gt)
    assert none["abs_rel"] == pytest.approx(0.63, abs=1e-12)
    assert none["delta1"] == 0.0
    med = metrics.depth_metrics(scaled, gt, align="median")
    assert med["abs_rel"] < 1e-12 and med["delta1"] == 1.0
    affine = (gt - 0.8) / 2.5  # exactly affine in depth
    ss = metrics.depth_metrics(affine, gt, align="scale_shift")
    # geometry.fit_scale_shift computes in float32: exact up to float32 rounding.
    assert ss["abs_rel"] < 1e-6 and ss["rmse"] < 1e-5 and ss["delta1"] == 1.0
    per = metrics.depth_metrics(scaled * np.array([1, 2, 3])[:, None, None], gt, reduce=False)
    np.testing.assert_allclose(per["abs_rel"], np.abs(0.37 * np.array([1, 2, 3]) - 1), atol=1e-12)


def test_depth_bad_inputs():
    gt = np.ones((4, 4))
    with pytest.raises(ValueError, match="align"):
        metrics.depth_metrics(gt, gt, align="bogus")
    with pytest.raises(ValueError, match="pred"):
        metrics.depth_metrics(np.full((4, 4), np.nan), gt)
    with pytest.raises(ValueError, match="no valid"):
        metrics.depth_metrics(gt, np.zeros((4, 4)))
    with pytest.raises(ValueError, match="shape"):
        metrics.depth_metrics(gt, np.ones((4, 5)))
    with pytest.raises(ValueError, match="mask"):
        metrics.depth_metrics(gt, gt, mask=np.ones((2, 4), bool))


def test_evaluate_predictions(official_bench):
    from da3_jax.eval.runner import evaluate_predictions

    rng = np.random.default_rng(5)
    gt_w2c = _random_w2c(rng, 6, seed=5)
    gt_depth = rng.uniform(1, 3, size=(6, 8, 9))
    valid = rng.uniform(size=gt_depth.shape) > 0.2
    pred_w2c = _noisy(rng, gt_w2c, rot_deg=3.0, trans_sigma=0.05)
    out = evaluate_predictions({"depth": 2 * gt_depth, "extrinsics": pred_w2c[:, :3]},
                               {"depth": gt_depth, "extrinsics": gt_w2c, "valid": valid})
    ref = official_bench.compute_pose(torch.from_numpy(pred_w2c), torch.from_numpy(gt_w2c))
    assert out["abs_rel"] < 1e-12 and out["delta1"] == 1.0  # median-aligned by default
    assert abs(out["auc03"] - float(ref.auc03)) < 1e-6
    assert abs(out["auc30"] - float(ref.auc30)) < 1e-6


# ------------------------------------------------------------------------------------- NVS


def _ssim_bruteforce(x, y, data_range=1.0):
    """Independent reference: explicit loops over every 11x11 window with a 2-D Gaussian."""
    ax = np.arange(11) - 5.0
    g2 = np.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / (2 * 1.5**2))
    g2 /= g2.sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    vals = []
    for c in range(x.shape[2]):
        for i in range(x.shape[0] - 10):
            for j in range(x.shape[1] - 10):
                a = x[i:i + 11, j:j + 11, c]
                b = y[i:i + 11, j:j + 11, c]
                ma, mb = (g2 * a).sum(), (g2 * b).sum()
                va = (g2 * (a - ma) ** 2).sum()
                vb = (g2 * (b - mb) ** 2).sum()
                cov = (g2 * (a - ma) * (b - mb)).sum()
                vals.append((2 * ma * mb + c1) * (2 * cov + c2)
                            / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(vals))


def test_psnr_ssim():
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(16, 19, 2))
    y = np.clip(x + rng.normal(scale=0.1, size=x.shape), 0, 1)
    mse = np.mean((x - y) ** 2)
    assert metrics.psnr(y, x) == pytest.approx(10 * np.log10(1 / mse), abs=1e-10)
    assert metrics.psnr(x * 255, x * 255 + 1, data_range=255) == pytest.approx(
        20 * np.log10(255), abs=1e-9)
    assert metrics.ssim(y, x) == pytest.approx(_ssim_bruteforce(y, x), abs=1e-10)
    assert metrics.ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    batch = np.stack([x, y])
    assert metrics.ssim(batch, np.stack([y, y])) == pytest.approx(
        (_ssim_bruteforce(x, y) + 1.0) / 2, abs=1e-10)
    with pytest.raises(ValueError, match="win_size"):
        metrics.ssim(x[:8], y[:8])


# ---------------------------------------------------------------------------- reconstruction


def test_point_cloud_metrics_match_official(official_bench):
    rng = np.random.default_rng(3)
    gt = rng.uniform(-1, 1, size=(800, 3))
    pred = np.concatenate([gt[:500] + rng.normal(scale=0.03, size=(500, 3)),
                           rng.uniform(-1.5, 1.5, size=(200, 3))])
    ref = official_bench.evaluate_3d_reconstruction(pred, gt, threshold=0.05)
    ours = metrics.point_cloud_metrics(pred, gt, threshold=0.05)
    for key in ("acc", "comp", "overall", "precision", "recall", "fscore"):
        assert abs(ours[key] - ref[key]) <= 1e-9, key
    perfect = metrics.point_cloud_metrics(gt, gt)
    assert perfect["fscore"] == 1.0 and perfect["overall"] == 0.0
    empty = metrics.point_cloud_metrics(np.zeros((0, 3)), gt)
    assert empty["fscore"] == 0.0 and empty["acc"] == float("inf")


def test_voxel_down_sample_hand_computed():
    pts = np.array([[0.0, 0, 0], [0.2, 0, 0], [1.0, 0, 0], [1.1, 0.1, 0]])
    # Anchor = min - 0.25 = -0.25: x in [-0.25, 0.25) -> voxel 0, [0.75, 1.25) -> voxel 2.
    out = recon.voxel_down_sample(pts, 0.5)
    np.testing.assert_allclose(out, [[0.1, 0, 0], [1.05, 0.05, 0]], atol=1e-12)


@pytest.mark.parametrize("n", [5, 14])
def test_sim3_ransac_alignment_matches_official(official_pose_align, n):
    rng = np.random.default_rng(n)
    gt = _random_w2c(rng, n, seed=n)
    # Prediction = GT in another world frame (scale 0.4, random rotation / offset), with
    # noisy centres and two gross outliers: RANSAC must reproduce the official inlier choice.
    world = Rotation.random(random_state=100 + n).as_matrix()
    with x64():
        pred = np.array(transform_w2c_sim3(gt, 0.4, world, rng.normal(size=3)), np.float64)
    pred[:, :3, 3] += rng.normal(scale=0.01, size=(n, 3))
    pred[1, :3, 3] += 3.0
    pred[3, :3, 3] -= 2.0
    r_ref, t_ref, s_ref, ext_ref = official_pose_align.align_poses_umeyama(
        gt.copy(), pred.copy(), return_aligned=True, ransac=True, random_state=42)
    ours = recon.align_cameras_sim3(pred, gt, random_state=42)
    # da3_jax.geometry.umeyama computes in float32: agreement to float32 precision.
    assert ours["scale"] == pytest.approx(s_ref, rel=1e-5)
    np.testing.assert_allclose(ours["rotation"], r_ref, atol=1e-5)
    np.testing.assert_allclose(ours["translation"], t_ref, atol=1e-4)
    np.testing.assert_allclose(ours["aligned_w2c"], ext_ref[:, :3], atol=1e-4)
    if n >= 10:  # enough inliers for RANSAC to find the true scale (official does too)
        assert ours["scale"] == pytest.approx(1 / 0.4, rel=0.05)
