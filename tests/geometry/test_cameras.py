"""Camera conventions vs float64 NumPy references written independently here."""

import jax
import jax.numpy as jnp
import numpy as np
from scipy.spatial.transform import Rotation

from da3_jax.geometry import (
    c2w_to_w2c,
    camera_center,
    camera_rays,
    crop_intrinsics,
    opengl_to_opencv_c2w,
    points_from_depth,
    points_from_depth_rays,
    project,
    rescale_intrinsics,
    to_homogeneous,
    w2c_to_c2w,
)


def _cameras(n, seed=0, skew=False):
    rng = np.random.default_rng(seed)
    rot = Rotation.random(n, random_state=seed).as_matrix()
    t = rng.normal(size=(n, 3))
    w2c = np.concatenate([rot, t[..., None]], -1)
    k = np.zeros((n, 3, 3))
    k[:, 0, 0] = rng.uniform(50, 80, n)
    k[:, 1, 1] = rng.uniform(50, 80, n)
    k[:, 0, 2] = rng.uniform(10, 22, n)
    k[:, 1, 2] = rng.uniform(8, 16, n)
    k[:, 2, 2] = 1
    if skew:
        k[:, 0, 1] = rng.uniform(-2, 2, n)
    return w2c, k


def test_homogeneous_and_inverse():
    w2c, _ = _cameras(6)
    w2c = w2c.reshape(2, 3, 3, 4)
    h = np.asarray(to_homogeneous(w2c.astype(np.float32)))
    ref44 = np.concatenate([w2c, np.broadcast_to([[[[0, 0, 0, 1.0]]]], (2, 3, 1, 4))], -2)
    np.testing.assert_allclose(h, ref44, atol=1e-7)
    c2w = np.asarray(w2c_to_c2w(w2c.astype(np.float32)))
    np.testing.assert_allclose(c2w, np.linalg.inv(ref44)[..., :3, :], atol=2e-6)
    c2w44 = np.asarray(w2c_to_c2w(ref44.astype(np.float32)))
    np.testing.assert_allclose(c2w44, np.linalg.inv(ref44), atol=2e-6)
    back = np.asarray(c2w_to_w2c(c2w))
    np.testing.assert_allclose(back, w2c, atol=2e-6)
    np.testing.assert_allclose(
        np.asarray(camera_center(w2c.astype(np.float32))),
        np.linalg.inv(ref44)[..., :3, 3],
        atol=2e-6,
    )


def test_opengl_to_opencv_c2w():
    # a point seen by an OpenGL camera (x right, y up, looking down -z) has OpenCV camera
    # coordinates (x, -y, -z); the map keeps the [3|4, 4] shape and is its own inverse
    w2c, _ = _cameras(5, seed=3)
    c2w_gl = np.linalg.inv(np.concatenate([w2c, np.tile([[[0, 0, 0, 1.0]]], (5, 1, 1))], 1))
    pts = np.random.default_rng(0).normal(size=(5, 3))
    p_gl = np.einsum("nij,nj->ni", np.linalg.inv(c2w_gl)[:, :3, :3], pts) + np.linalg.inv(
        c2w_gl)[:, :3, 3]
    c2w_cv = np.asarray(opengl_to_opencv_c2w(c2w_gl.astype(np.float32)))
    w2c_cv = np.asarray(c2w_to_w2c(c2w_cv), np.float64)
    p_cv = np.einsum("nij,nj->ni", w2c_cv[:, :3, :3], pts) + w2c_cv[:, :3, 3]
    np.testing.assert_allclose(p_cv, p_gl * [1, -1, -1], atol=2e-5)
    back = np.asarray(opengl_to_opencv_c2w(c2w_cv[:, :3]))
    np.testing.assert_allclose(back, c2w_gl[:, :3], atol=1e-6)


def test_rescale_and_crop_intrinsics():
    _, k = _cameras(4, skew=True)
    sx, sy = 0.5, 0.25
    got = np.asarray(rescale_intrinsics(k.astype(np.float32), sx, sy))
    # pixel-edge convention: a point projecting to continuous (u, v) lands at (sx u, sy v)
    x = np.array([0.3, -0.2, 2.0])
    uv = np.einsum("nij,j->ni", k, x)
    uv = uv[:, :2] / uv[:, 2:]
    uv2 = np.einsum("nij,j->ni", got, x)
    np.testing.assert_allclose(uv2[:, :2] / uv2[:, 2:], uv * [sx, sy], rtol=1e-6)
    # per-view scale factors broadcast with the batch
    s_arr = np.array([1.0, 2.0, 3.0, 4.0])
    got2 = np.asarray(rescale_intrinsics(k.astype(np.float32), s_arr, s_arr))
    np.testing.assert_allclose(got2[:, :2], k[:, :2] * s_arr[:, None, None], rtol=1e-6)
    crop = np.asarray(crop_intrinsics(k.astype(np.float32), 5.0, 7.0))
    np.testing.assert_allclose(crop[:, 0, 2], k[:, 0, 2] - 5, rtol=1e-6)
    np.testing.assert_allclose(crop[:, 1, 2], k[:, 1, 2] - 7, rtol=1e-6)
    np.testing.assert_allclose(crop[:, :, :2], k[:, :, :2], rtol=1e-6)


def _np_rays(w2c, k, h, w, off):
    """Float64 reference: loop-free but independent formula d = R^T K^-1 [u, v, 1]."""
    u, v = np.meshgrid(np.arange(w) + off, np.arange(h) + off)
    pix = np.stack([u, v, np.ones_like(u)], -1)
    out = []
    for r_t, kk in zip(w2c, k, strict=True):
        m = r_t[:, :3].T @ np.linalg.inv(kk)
        out.append(pix @ m.T)
    centre = np.stack([-r_t[:, :3].T @ r_t[:, 3] for r_t in w2c])
    return centre, np.stack(out)


def test_camera_rays_and_points():
    w2c, k = _cameras(3, seed=1, skew=True)
    h, w = 5, 7
    for off in (0.0, 0.5):
        o, d = camera_rays(w2c.astype(np.float32), k.astype(np.float32), (h, w), pixel_center=off)
        c_ref, d_ref = _np_rays(w2c, k, h, w, off)
        np.testing.assert_allclose(np.asarray(d), d_ref, atol=2e-6)
        np.testing.assert_allclose(
            np.asarray(o), np.broadcast_to(c_ref[:, None, None], o.shape), atol=2e-6
        )
    depth = np.random.default_rng(2).uniform(0.5, 4.0, (3, h, w))
    pts = np.asarray(
        points_from_depth(depth.astype(np.float32), w2c.astype(np.float32), k.astype(np.float32))
    )
    # reference: official export formula, integer pixel indices, X_w = inv(w2c) [d K^-1 p; 1]
    u, v = np.meshgrid(np.arange(w), np.arange(h))
    pix = np.stack([u, v, np.ones_like(u)], -1).reshape(-1, 3).T
    for i in range(3):
        xc = (np.linalg.inv(k[i]) @ pix) * depth[i].reshape(-1)
        w44 = np.eye(4)
        w44[:3] = w2c[i]
        xw = (np.linalg.inv(w44) @ np.vstack([xc, np.ones(h * w)]))[:3].T
        np.testing.assert_allclose(pts[i].reshape(-1, 3), xw, atol=1e-5)
    # P = o + D d, and projecting back gives the pixel grid and the z-depth
    o, d = camera_rays(w2c.astype(np.float32), k.astype(np.float32), (h, w), pixel_center=0.5)
    p2 = points_from_depth_rays(jnp.asarray(depth, jnp.float32), o, d)
    uv, z = project(p2, w2c.astype(np.float32), k.astype(np.float32))
    np.testing.assert_allclose(np.asarray(z), depth, rtol=1e-5)
    np.testing.assert_allclose(
        np.asarray(uv[..., 0]), np.broadcast_to(np.arange(w) + 0.5, (3, h, w)), atol=1e-4
    )
    np.testing.assert_allclose(
        np.asarray(uv[..., 1]), np.broadcast_to((np.arange(h) + 0.5)[:, None], (3, h, w)), atol=1e-4
    )


def test_project_reference_and_broadcast():
    w2c, k = _cameras(2, seed=3, skew=True)
    pts = np.random.default_rng(4).normal(size=(2, 11, 3)) * 2
    uv, z = project(pts.astype(np.float32), w2c.astype(np.float32), k.astype(np.float32))
    xc = np.einsum("nij,npj->npi", w2c[:, :, :3], pts) + w2c[:, None, :, 3]
    pix = np.einsum("nij,npj->npi", k, xc)
    np.testing.assert_allclose(np.asarray(z), xc[..., 2], atol=1e-5)
    front = np.abs(xc[..., 2]) > 0.2
    np.testing.assert_allclose(
        np.asarray(uv)[front], (pix[..., :2] / pix[..., 2:])[front], rtol=1e-4, atol=1e-3
    )
    # one shared camera for a [M, 3] cloud; one K shared by a batch of extrinsics
    uv1, _ = project(pts[0].astype(np.float32), w2c[0].astype(np.float32), k[0].astype(np.float32))
    np.testing.assert_allclose(np.asarray(uv1), np.asarray(uv)[0], rtol=1e-6)
    uv2, _ = project(pts.astype(np.float32), w2c.astype(np.float32), k[0].astype(np.float32))
    uv2_ref, _ = project(
        pts[1].astype(np.float32), w2c[1].astype(np.float32), k[0].astype(np.float32)
    )
    np.testing.assert_allclose(np.asarray(uv2)[1], np.asarray(uv2_ref), rtol=1e-6)


def test_jit_vmap():
    w2c, k = _cameras(4, seed=5)
    depth = np.ones((4, 3, 4), np.float32)
    f = jax.jit(jax.vmap(lambda d, e, kk: points_from_depth(d, e, kk, pixel_center=0.5)))
    got = f(depth, w2c.astype(np.float32), k.astype(np.float32))
    ref = points_from_depth(depth, w2c.astype(np.float32), k.astype(np.float32), pixel_center=0.5)
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), atol=1e-6)
