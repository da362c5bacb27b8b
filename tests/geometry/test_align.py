"""Alignment vs float64 NumPy references and planted ground truth."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from da3_jax.geometry import (
    align_camera_centres_sim3,
    apply_sim3,
    camera_center,
    fit_scale,
    fit_scale_shift,
    normalize_scene_scale,
    points_from_depth,
    ransac_scale_shift,
    ransac_umeyama,
    transform_w2c_sim3,
    umeyama,
)


def _sim3(b, seed):
    rng = np.random.default_rng(seed)
    rot = Rotation.random(b, random_state=seed).as_matrix()
    return rng.uniform(0.2, 5.0, b), rot, rng.normal(size=(b, 3)) * 3


def _apply(s, rot, t, x):
    return s[:, None, None] * np.einsum("bij,bnj->bni", rot, x) + t[:, None]


def test_umeyama_recovers_sim3():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(5, 40, 3))
    s, rot, t = _sim3(5, 1)
    dst = _apply(s, rot, t, src)
    s2, r2, t2 = umeyama(src.astype(np.float32), dst.astype(np.float32))
    err = max(
        np.abs(np.asarray(s2) - s).max() / s.max(),
        np.abs(np.asarray(r2) - rot).max(),
        np.abs(np.asarray(t2) - t).max() / np.abs(t).max(),
    )
    print("umeyama max relative error", err)
    assert err < 1e-5
    np.testing.assert_allclose(np.linalg.det(np.asarray(r2)), 1.0, atol=1e-5)
    # rigid version on a rigid motion; weights ignore corrupted points
    dst_r = _apply(np.ones(5), rot, t, src)
    dst_r[:, :5] += 10.0
    w = np.ones((5, 40))
    w[:, :5] = 0
    s3, r3, t3 = umeyama(
        src.astype(np.float32), dst_r.astype(np.float32), with_scale=False, weights=w
    )
    np.testing.assert_allclose(np.asarray(s3), 1.0)
    np.testing.assert_allclose(np.asarray(r3), rot, atol=2e-6)
    np.testing.assert_allclose(np.asarray(t3), t, atol=1e-5)


def test_umeyama_reflection_case_is_a_rotation():
    # mirrored target: the best proper rotation must still have det +1
    src = np.random.default_rng(2).normal(size=(30, 3))
    dst = src * [1, 1, -1]
    _, rot, _ = umeyama(src.astype(np.float32), dst.astype(np.float32))
    np.testing.assert_allclose(np.linalg.det(np.asarray(rot)), 1.0, atol=1e-5)


def test_ransac_umeyama_survives_outliers():
    rng = np.random.default_rng(3)
    n = 30
    src = rng.normal(size=(3, n, 3))
    s, rot, t = _sim3(3, 4)
    dst = _apply(s, rot, t, src) + rng.normal(scale=1e-3, size=(3, n, 3))
    out = np.zeros((3, n), bool)
    out[:, : int(0.3 * n)] = True
    for b in range(3):
        rng.shuffle(out[b])
    dst[out] += rng.normal(size=(out.sum(), 3)) * 5 * s.max()
    key = jax.random.PRNGKey(0)
    s2, r2, t2, inl = ransac_umeyama(src.astype(np.float32), dst.astype(np.float32), key)
    s_err = np.abs(np.asarray(s2) - s) / s
    r_err = np.abs(np.asarray(r2) - rot).max()
    print("ransac_umeyama 30% outliers: scale rel err", s_err.max(), "R err", r_err)
    assert s_err.max() < 1e-3 and r_err < 1e-3
    np.testing.assert_array_equal(np.asarray(inl), ~out)
    # plain Umeyama is ruined by the same outliers
    s_bad, _, _ = umeyama(src.astype(np.float32), dst.astype(np.float32))
    assert (np.abs(np.asarray(s_bad) - s) / s).max() > 0.05
    # explicit threshold (official-style scoring) and determinism for a key
    s3, _, _, inl3 = ransac_umeyama(
        src.astype(np.float32), dst.astype(np.float32), key, inlier_threshold=0.05
    )
    np.testing.assert_array_equal(np.asarray(inl3), ~out)
    np.testing.assert_allclose(np.asarray(s3), s, rtol=1e-3)
    s4, *_ = ransac_umeyama(src.astype(np.float32), dst.astype(np.float32), key)
    np.testing.assert_array_equal(np.asarray(s4), np.asarray(s2))


def test_transform_w2c_sim3_moves_centres_and_keeps_projection():
    rng = np.random.default_rng(5)
    rot_c = Rotation.random(4, random_state=5).as_matrix()
    w2c = np.concatenate([rot_c, rng.normal(size=(4, 3, 1))], -1).astype(np.float32)
    s, rot, t = (x[0] for x in _sim3(1, 6))
    new = np.asarray(
        transform_w2c_sim3(w2c, np.float32(s), rot.astype(np.float32), t.astype(np.float32))
    )
    c_old = np.asarray(camera_center(w2c)).astype(np.float64)
    np.testing.assert_allclose(np.asarray(camera_center(new)), s * c_old @ rot.T + t, atol=1e-4)
    # a world point and its image: same pixel ray, depth scaled by s
    x = rng.normal(size=3)
    x_new = s * rot @ x + t
    cam_old = w2c[:, :, :3] @ x + w2c[:, :, 3]
    cam_new = new[:, :, :3] @ x_new + new[:, :, 3]
    np.testing.assert_allclose(cam_new, s * cam_old, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        np.asarray(
            apply_sim3(
                jnp.asarray(x[None], jnp.float32),
                jnp.float32(s),
                jnp.asarray(rot, jnp.float32),
                jnp.asarray(t, jnp.float32),
            )
        ),
        x_new[None],
        rtol=1e-5,
    )


def test_fit_scale_shift_matches_lstsq():
    rng = np.random.default_rng(7)
    pred = rng.uniform(0.5, 10, (3, 12, 16))
    target = 1.7 * pred - 0.4 + rng.normal(scale=0.3, size=pred.shape)
    mask = rng.random(pred.shape) < 0.7
    pred[~mask] = np.nan  # ignored where masked out
    s, b = fit_scale_shift(pred.astype(np.float32), target.astype(np.float32), mask)
    for i in range(3):
        a = np.stack([pred[i][mask[i]], np.ones(mask[i].sum())], -1)
        ref, *_ = np.linalg.lstsq(a, target[i][mask[i]], rcond=None)
        np.testing.assert_allclose([s[i], b[i]], ref, rtol=1e-4, atol=1e-4)
        ref_s = (pred[i][mask[i]] @ target[i][mask[i]]) / (pred[i][mask[i]] @ pred[i][mask[i]])
        np.testing.assert_allclose(
            fit_scale(pred[i].astype(np.float32), target[i].astype(np.float32), mask[i]),
            ref_s,
            rtol=1e-5,
        )
    # degenerate: empty mask -> (0, 0), constant pred -> (0, mean target); never NaN
    s0, b0 = fit_scale_shift(
        pred[0].astype(np.float32), target[0].astype(np.float32), np.zeros_like(mask[0])
    )
    assert float(s0) == 0.0 and float(b0) == 0.0
    s1, b1 = fit_scale_shift(np.ones((4, 4), np.float32), np.arange(16.0).reshape(4, 4))
    assert float(s1) == 0.0 and float(b1) == pytest.approx(7.5)


def test_ransac_scale_shift_survives_outliers():
    rng = np.random.default_rng(8)
    pred = rng.uniform(1, 10, (2, 24, 32))
    s_true, b_true = np.array([0.7, 2.5]), np.array([0.3, -1.0])
    target = s_true[:, None, None] * pred + b_true[:, None, None]
    target += rng.normal(scale=1e-3, size=pred.shape)
    mask = rng.random(pred.shape) < 0.9
    out = rng.random(pred.shape) < 0.3
    target[out] = rng.uniform(0, 30, out.sum())
    key = jax.random.PRNGKey(1)
    s, b, inl = ransac_scale_shift(pred.astype(np.float32), target.astype(np.float32), mask, key)
    s_err = np.abs(np.asarray(s) - s_true) / s_true
    b_err = np.abs(np.asarray(b) - b_true)
    print("ransac_scale_shift 30% outliers: s rel err", s_err.max(), "b abs err", b_err.max())
    assert s_err.max() < 1e-3 and b_err.max() < 1e-2
    inl = np.asarray(inl)
    assert not np.any(inl & ~mask)
    assert (inl == (mask & ~out))[mask & ~out].all()  # every true inlier kept
    assert (inl & out).sum() <= 0.02 * out.sum()  # outliers that landed near the line only
    s_ls, _ = fit_scale_shift(pred.astype(np.float32), target.astype(np.float32), mask)
    assert (np.abs(np.asarray(s_ls) - s_true) / s_true).max() > 0.1  # plain LS fails
    s2, b2, _ = ransac_scale_shift(pred.astype(np.float32), target.astype(np.float32), mask, key)
    np.testing.assert_array_equal(np.asarray(s2), np.asarray(s))
    s3, _, _ = ransac_scale_shift(
        pred.astype(np.float32), target.astype(np.float32), mask, key, threshold=0.05
    )
    np.testing.assert_allclose(np.asarray(s3), s_true, rtol=1e-3)


def test_normalize_scene_scale_reference():
    rng = np.random.default_rng(9)
    n, h, w = 3, 6, 8
    rot = Rotation.random(n, random_state=9).as_matrix()
    w2c = np.concatenate([rot, rng.normal(size=(n, 3, 1))], -1)
    k = np.tile(np.array([[[10.0, 0, 4], [0, 10, 3], [0, 0, 1]]]), (n, 1, 1))
    depth = rng.uniform(1, 5, (n, h, w))
    mask = rng.random((n, h, w)) < 0.8
    depth_n, w2c_n, scale = normalize_scene_scale(
        depth[None].astype(np.float32),
        w2c[None].astype(np.float32),
        k[None].astype(np.float32),
        mask[None],
        ref_index=1,
    )
    # float64 reference: points in camera 1's frame, mean norm over valid pixels
    u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    pix = np.stack([u, v, np.ones_like(u)], -1)
    norms = []
    for i in range(n):
        xc = (pix @ np.linalg.inv(k[i]).T) * depth[i][..., None]
        xw = (xc - w2c[i, :, 3]) @ w2c[i, :, :3]  # R^T (x - t)
        x1 = xw @ w2c[1, :, :3].T + w2c[1, :, 3]
        norms.append(np.linalg.norm(x1, axis=-1)[mask[i]])
    ref_scale = 1.0 / np.concatenate(norms).mean()
    np.testing.assert_allclose(np.asarray(scale), [ref_scale], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(depth_n)[0], depth * ref_scale, rtol=1e-5)
    w2c_n = np.asarray(w2c_n)[0]
    np.testing.assert_allclose(w2c_n[1], np.eye(3, 4), atol=1e-6)
    # the normalised cameras see the normalised points: reproject view 0 into the new frame
    pts_new = np.asarray(
        points_from_depth(
            jnp.asarray(depth_n),
            jnp.asarray(w2c_n[None]),
            jnp.asarray(k[None], jnp.float32),
            pixel_center=0.5,
        )
    )
    rel = w2c[0, :, :3] @ w2c[1, :, :3].T
    np.testing.assert_allclose(w2c_n[0, :, :3], rel, atol=1e-5)
    xw0 = (pix @ np.linalg.inv(k[0]).T * depth[0][..., None] - w2c[0, :, 3]) @ w2c[0, :, :3]
    x1 = (xw0 @ w2c[1, :, :3].T + w2c[1, :, 3]) * ref_scale
    np.testing.assert_allclose(pts_new[0, 0], x1, rtol=1e-4, atol=1e-5)


def _np_normalize_scene(depth, w2c, k, mask, ref):
    """float64 reference for one scene: (depth * scale, w2c in the ref frame, scale)."""
    n, h, w = depth.shape
    u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    pix = np.stack([u, v, np.ones_like(u)], -1)
    e = np.concatenate([w2c, np.tile([[[0, 0, 0, 1.0]]], (n, 1, 1))], -2)
    norms = []
    for i in range(n):
        xc = (pix @ np.linalg.inv(k[i]).T) * depth[i][..., None]
        xw = (xc - w2c[i, :, 3]) @ w2c[i, :, :3]
        xr = xw @ w2c[ref, :, :3].T + w2c[ref, :, 3]
        norms.append(np.linalg.norm(xr, axis=-1)[mask[i]])
    scale = 1.0 / np.concatenate(norms).mean()
    e_n = (e @ np.linalg.inv(e[ref]))[:, :3]
    e_n[..., 3] *= scale
    return depth * scale, e_n, scale


def test_normalize_scene_scale_batched_b_ne_n():
    """B=2 scenes of N=3 views (B != N, B != 1): per-scene float64 reference."""
    rng = np.random.default_rng(11)
    b, n, h, w = 2, 3, 5, 7
    rot = Rotation.random(b * n, random_state=11).as_matrix().reshape(b, n, 3, 3)
    w2c = np.concatenate([rot, rng.normal(size=(b, n, 3, 1))], -1)
    k = np.tile(np.array([[9.0, 0, 3.4], [0, 8.0, 2.6], [0, 0, 1]]), (b, n, 1, 1))
    k[1, :, :2, :2] *= 1.3  # different cameras per scene
    depth = rng.uniform(0.5, 6, (b, n, h, w)) * np.array([1.0, 7.0])[:, None, None, None]
    mask = rng.random((b, n, h, w)) < 0.75
    f32 = np.float32
    depth_n, w2c_n, scale = normalize_scene_scale(
        depth.astype(f32), w2c.astype(f32), k.astype(f32), mask, ref_index=0
    )
    assert depth_n.shape == (b, n, h, w) and w2c_n.shape == (b, n, 3, 4) and scale.shape == (b,)
    for i in range(b):
        d_ref, e_ref, s_ref = _np_normalize_scene(depth[i], w2c[i], k[i], mask[i], 0)
        np.testing.assert_allclose(np.asarray(scale)[i], s_ref, rtol=1e-5)
        np.testing.assert_allclose(np.asarray(depth_n)[i], d_ref, rtol=1e-5)
        np.testing.assert_allclose(np.asarray(w2c_n)[i], e_ref, rtol=1e-4, atol=1e-5)
    assert float(scale[0]) > 2 * float(scale[1])  # per-scene scales, not one shared scale
    with pytest.raises(ValueError, match="mismatched batch dims"):
        normalize_scene_scale(depth.astype(f32), np.tile(w2c, (2, 1, 1, 1)).astype(f32), k)


def test_normalize_scene_scale_gradient_and_errors():
    depth = np.ones((2, 3, 4), np.float32)
    depth[0, 0, 0] = 0.0  # invalid pixel in the reference view sits at the origin
    w2c = np.tile(np.eye(3, 4, dtype=np.float32), (2, 1, 1))
    k = np.tile(np.array([[4.0, 0, 2], [0, 4, 1.5], [0, 0, 1]], np.float32), (2, 1, 1))
    grad = jax.grad(lambda d: normalize_scene_scale(d, w2c, k)[2])(jnp.asarray(depth))
    assert np.all(np.isfinite(np.asarray(grad)))
    with pytest.raises(ValueError, match="extrinsics_w2c: expected 2 views"):
        normalize_scene_scale(depth, w2c[:1], k[:1])
    with pytest.raises(ValueError, match="ref_index"):
        normalize_scene_scale(depth, w2c, k, ref_index=2)


@pytest.mark.parametrize("ransac", [False, True])
def test_align_camera_centres_sim3_matches_official(ransac):
    """The official `align_poses_umeyama` (float64 evo Umeyama, NumPy RANSAC draws)."""
    pose_align = pytest.importorskip("depth_anything_3.utils.pose_align")
    rng = np.random.default_rng(7)
    n = 12
    dst = np.tile(np.eye(4), (n, 1, 1))
    dst[:, :3, :3] = Rotation.random(n, random_state=7).as_matrix()
    dst[:, :3, 3] = rng.normal(size=(n, 3))
    s_true, r_true = 0.4, Rotation.random(random_state=8).as_matrix()
    src = np.asarray(transform_w2c_sim3(dst.astype(np.float32), np.float32(s_true),
                                        r_true.astype(np.float32), np.ones(3, np.float32)),
                     np.float64)
    src[:, :3, 3] += rng.normal(scale=0.01, size=(n, 3))
    src[[1, 3], :3, 3] += 3.0  # gross outliers
    r_ref, t_ref, s_ref = pose_align.align_poses_umeyama(dst, src, ransac=ransac,
                                                         random_state=42)
    s, rot, t = align_camera_centres_sim3(src, dst, ransac=ransac, random_state=42)
    assert s == pytest.approx(s_ref, rel=1e-5)
    np.testing.assert_allclose(rot, r_ref, atol=1e-5)
    np.testing.assert_allclose(t, t_ref, atol=1e-4)
    if ransac:  # the outliers are rejected: the inverse of the planted scale is found
        assert s == pytest.approx(1 / s_true, rel=0.05)
    with pytest.raises(ValueError, match="same views"):
        align_camera_centres_sim3(src, dst[:-1])
    with pytest.raises(ValueError, match=">= 3 views"):
        align_camera_centres_sim3(src[:2], dst[:2], ransac=True)
