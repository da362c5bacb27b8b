"""Ray map -> camera: exact recovery, official bias, and parity with the official solver."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from depth_anything_3.utils import ray_utils
from depth_anything_3.utils.geometry import affine_inverse
from scipy.spatial.transform import Rotation

from da3_jax.geometry import (
    camera_ray_map,
    rays_to_camera,
    relative_rotation_angle,
)
from da3_jax.geometry.ray_solver import n_candidates, ransac_sample_table

IMAGE_HW = (280, 378)
GRID_HW = (20, 27)  # 8/14 of the image, as the DA3 ray head
N_CLEAN = 4  # views 0..3 noise-free (0 has a centred principal point), 4..5 noisy + outliers


def _scene(n_views, grid_hw, seed, n_clean):
    rng = np.random.default_rng(seed)
    big_h, big_w = IMAGE_HW
    rot = Rotation.random(n_views, random_state=seed).as_matrix()
    t = rng.normal(size=(n_views, 3))
    w2c = np.concatenate([rot, t[..., None]], -1)
    f = rng.uniform(0.6, 1.4, (n_views, 2)) * [big_w, big_h]
    c = np.array([big_w / 2, big_h / 2]) * (1 + rng.uniform(-0.15, 0.15, (n_views, 2)))
    c[0] = [big_w / 2, big_h / 2]
    c[1] = np.array([big_w / 2, big_h / 2]) * [1.15, 0.85]  # the extreme corner
    k = np.zeros((n_views, 3, 3))
    k[:, 0, 0], k[:, 1, 1] = f[:, 0], f[:, 1]
    k[:, 0, 2], k[:, 1, 2] = c[:, 0], c[:, 1]
    k[:, 2, 2] = 1
    h, w = grid_hw
    ray_map = np.asarray(
        camera_ray_map(w2c.astype(np.float32), k.astype(np.float32), IMAGE_HW, grid_hw), np.float64
    )
    # float64 reference: cell centres (j + 0.5, i + 0.5) of K rescaled to the grid
    k_grid = np.diag([w / big_w, h / big_h, 1.0]) @ k
    u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    pix = np.stack([u, v, np.ones_like(u)], -1)
    m = np.swapaxes(w2c[:, :, :3], 1, 2) @ np.linalg.inv(k_grid)
    np.testing.assert_allclose(ray_map[..., :3], np.einsum("nij,hwj->nhwi", m, pix), atol=1e-5)
    centre = -np.einsum("nji,nj->ni", w2c[:, :, :3], w2c[:, :, 3])
    np.testing.assert_allclose(
        ray_map[..., 3:], np.broadcast_to(centre[:, None, None], (n_views, h, w, 3)), atol=1e-5
    )
    d, o = ray_map[..., :3], ray_map[..., 3:]
    d = d * rng.uniform(0.5, 2.0, (n_views, h, w, 1))  # scale is free
    noisy = np.arange(n_views) >= n_clean
    d[noisy] += rng.normal(scale=0.005, size=d[noisy].shape)
    o[noisy] += rng.normal(scale=0.01, size=o[noisy].shape)
    out = (rng.random((n_views, h, w)) < 0.2) & noisy[:, None, None]
    d[out] = rng.normal(size=(out.sum(), 3))
    flat = (rng.random((n_views, h, w)) < 0.02) & noisy[:, None, None]
    d[flat, 2] = 0.0  # |z| <= 1e-4: zero weight, raw x, y kept (official z-mask)
    ray = np.concatenate([d, o], -1).astype(np.float32)
    conf = rng.uniform(1.0, 3.0, (n_views, h, w)).astype(np.float32)
    return ray, conf, w2c, k


def _rel_errors(w2c, k, w2c_ref, k_ref):
    big_h, big_w = IMAGE_HW
    k, k_ref = np.asarray(k, np.float64), np.asarray(k_ref, np.float64)
    f_err = np.abs(k[:, [0, 1], [0, 1]] - k_ref[:, [0, 1], [0, 1]]) / k_ref[:, [0, 1], [0, 1]]
    c_err = np.abs(k[:, [0, 1], [2, 2]] - k_ref[:, [0, 1], [2, 2]]) / [big_w, big_h]
    r_err = np.asarray(
        relative_rotation_angle(
            jnp.asarray(w2c)[:, :, :3], jnp.asarray(w2c_ref, jnp.float32)[:, :, :3]
        )
    )
    return f_err.max(-1), c_err.max(-1), r_err


@pytest.fixture(scope="module")
def solved():
    ray, conf, w2c, k = _scene(6, GRID_HW, seed=0, n_clean=N_CLEAN)
    table = np.asarray(ransac_sample_table(jax.random.PRNGKey(3), GRID_HW[0] * GRID_HW[1]))
    out = {"ray": ray, "conf": conf, "w2c": w2c, "k": k, "table": table}
    for method in ("official", "exact"):
        out[method] = rays_to_camera(
            ray[None], conf[None], IMAGE_HW, method=method, sample_table=table
        )
    return out


def test_exact_recovers_off_centre_cameras(solved):
    w2c, k = solved["exact"]
    assert w2c.shape == (1, 6, 3, 4) and k.shape == (1, 6, 3, 3)
    f_err, c_err, r_err = _rel_errors(w2c[0], k[0], solved["w2c"], solved["k"])
    clean = slice(0, N_CLEAN)
    print("exact clean: f", f_err[clean].max(), "c", c_err[clean].max(), "R", r_err[clean].max())
    print("exact noisy+outliers: f", f_err[N_CLEAN:], "c", c_err[N_CLEAN:], "R", r_err[N_CLEAN:])
    assert f_err[clean].max() < 1e-3 and c_err[clean].max() < 1e-3 and r_err[clean].max() < 1e-3
    # 20 % gross outliers and noise: RANSAC keeps the estimate close
    assert f_err.max() < 2e-2 and c_err.max() < 2e-2 and r_err.max() < 2e-2
    centre = -np.einsum("nji,nj->ni", np.asarray(w2c[0])[:, :, :3], np.asarray(w2c[0])[:, :, 3])
    true_centre = -np.einsum("nji,nj->ni", solved["w2c"][:, :, :3], solved["w2c"][:, :, 3])
    np.testing.assert_allclose(centre[:N_CLEAN], true_centre[:N_CLEAN], atol=1e-5)


def test_official_is_biased_off_centre(solved):
    w2c, k = solved["official"]
    f_err, c_err, r_err = _rel_errors(w2c[0], k[0], solved["w2c"], solved["k"])
    print("official: f", f_err, "c", c_err, "R", r_err)
    # exact when the principal point is centred ...
    assert f_err[0] < 1e-3 and c_err[0] < 1e-3 and r_err[0] < 1e-3
    # ... biased when it is not (view 1: pp off by (+15 %, -15 %))
    assert c_err[1] > 0.05 and r_err[1] > 0.05


def test_official_parity(solved, monkeypatch):
    """Same inputs and the same RANSAC index table -> the official camray_to_caminfo output."""
    table = solved["table"]
    orig = ray_utils.get_params_for_ransac

    def fixed_table(n, device):
        n_iter, n_s, n_sample, _ = orig(n, device)
        assert n_sample == n_candidates(n)
        return n_iter, n_s, n_sample, torch.from_numpy(table.astype(np.int64))

    monkeypatch.setattr(ray_utils, "get_params_for_ransac", fixed_table)
    ray = torch.from_numpy(solved["ray"])[None]
    conf = torch.from_numpy(solved["conf"].copy())[None]
    rot, t, f, pp = ray_utils.camray_to_caminfo(ray, conf)
    bottom = torch.tensor([0, 0, 0, 1.0]).expand(1, 6, 1, 4)
    w2c_t = affine_inverse(torch.cat([torch.cat([rot, t[..., None]], -1), bottom], -2))[0, :, :3]
    big_h, big_w = IMAGE_HW
    k_t = np.zeros((6, 3, 3))  # conversion of da3.py _process_ray_pose_estimation
    k_t[:, 0, 0], k_t[:, 1, 1] = f[0, :, 0] / 2 * big_w, f[0, :, 1] / 2 * big_h
    k_t[:, 0, 2], k_t[:, 1, 2] = pp[0, :, 0] * big_w * 0.5, pp[0, :, 1] * big_h * 0.5
    k_t[:, 2, 2] = 1
    w2c, k = solved["official"]
    np.testing.assert_allclose(np.asarray(w2c[0]), w2c_t.numpy(), atol=2e-5)
    np.testing.assert_allclose(np.asarray(k[0]), k_t, rtol=1e-5, atol=1e-3)


def test_key_determinism_and_inlier_cap():
    """Key-driven sampling; the capped final fit (official cap 8000, here 300 of 540 cells)."""
    ray, conf, w2c, k = _scene(2, GRID_HW, seed=1, n_clean=2)
    key = jax.random.PRNGKey(7)
    kw = dict(method="exact", max_inliers=300)
    a = rays_to_camera(ray, conf, IMAGE_HW, key=key, **kw)
    b = rays_to_camera(ray, conf, IMAGE_HW, key=key, **kw)
    c = rays_to_camera(ray, conf, IMAGE_HW, key=jax.random.PRNGKey(8), **kw)
    np.testing.assert_array_equal(np.asarray(a[0]), np.asarray(b[0]))
    np.testing.assert_array_equal(np.asarray(a[1]), np.asarray(b[1]))
    assert not np.array_equal(np.asarray(a[1]), np.asarray(c[1]))  # other key, other subset
    for w2c_e, k_e in (a, c):
        f_err, c_err, r_err = _rel_errors(w2c_e, k_e, w2c, k)
        assert f_err.max() < 1e-3 and c_err.max() < 1e-3 and r_err.max() < 1e-3


def test_bad_inputs():
    ray = np.zeros((2, 4, 5, 6), np.float32)
    with pytest.raises(ValueError, match="method"):
        rays_to_camera(ray, None, (8, 10), method="ql")
    with pytest.raises(ValueError, match="ray"):
        rays_to_camera(ray[..., :5], None, (8, 10))
    with pytest.raises(ValueError, match="ray_conf"):
        rays_to_camera(ray, np.ones((2, 4, 4), np.float32), (8, 10))
    with pytest.raises(ValueError, match="ray_conf"):
        rays_to_camera(ray, -np.ones((2, 4, 5), np.float32), (8, 10))
    with pytest.raises(ValueError, match="ray"):
        rays_to_camera(np.full((2, 4, 5, 6), np.nan, np.float32), None, (8, 10))
    with pytest.raises(ValueError, match="image_hw"):
        rays_to_camera(ray, None, (8.5, 10))
