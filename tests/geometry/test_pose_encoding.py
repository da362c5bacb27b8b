"""Pose encoding vs the official torch functions and float64 NumPy formulas."""

import jax
import numpy as np
import torch
from depth_anything_3.model.utils import transform as off
from depth_anything_3.utils.geometry import affine_inverse
from scipy.spatial.transform import Rotation

from da3_jax.geometry import decode_pose, encode_pose

HW = (280, 504)


def _cameras(b, n, seed=0):
    rng = np.random.default_rng(seed)
    rot = Rotation.random(b * n, random_state=seed).as_matrix().reshape(b, n, 3, 3)
    t = rng.normal(size=(b, n, 3))
    w2c = np.concatenate([rot, t[..., None]], -1).astype(np.float32)
    k = np.zeros((b, n, 3, 3), np.float32)
    k[..., 0, 0] = rng.uniform(200, 700, (b, n))
    k[..., 1, 1] = rng.uniform(200, 700, (b, n))
    k[..., 0, 2] = HW[1] / 2 + rng.uniform(-20, 20, (b, n))
    k[..., 1, 2] = HW[0] / 2
    k[..., 2, 2] = 1
    return w2c, k


def test_encode_matches_official_and_numpy():
    w2c, k = _cameras(2, 3)
    got = np.asarray(encode_pose(w2c, k, HW))
    # official: cam_enc.py encodes affine_inverse(w2c) (c2w)
    c2w_t = affine_inverse(
        torch.from_numpy(
            np.concatenate(
                [w2c, np.broadcast_to([[[[0, 0, 0, 1.0]]]], (2, 3, 1, 4)).astype(np.float32)], -2
            )
        )
    )
    ref = off.extri_intri_to_pose_encoding(c2w_t[..., :3, :], torch.from_numpy(k), HW).numpy()
    np.testing.assert_allclose(got, ref, atol=3e-6)
    # float64 numpy: t = camera centre, q = c2w rotation (w >= 0), fov = 2 atan(half / f)
    w64 = w2c.astype(np.float64)
    centre = -np.einsum("bnji,bnj->bni", w64[..., :3], w64[..., 3])
    q = Rotation.from_matrix(np.swapaxes(w64[..., :3], -1, -2).reshape(-1, 3, 3)).as_quat()
    q = np.where(q[:, 3:] < 0, -q, q).reshape(2, 3, 4)
    fov_h = 2 * np.arctan(HW[0] / 2 / k[..., 1, 1].astype(np.float64))
    fov_w = 2 * np.arctan(HW[1] / 2 / k[..., 0, 0].astype(np.float64))
    np.testing.assert_allclose(got[..., :3], centre, atol=3e-6)
    np.testing.assert_allclose(got[..., 3:7], q, atol=3e-6)
    np.testing.assert_allclose(got[..., 7], fov_h, atol=1e-6)
    np.testing.assert_allclose(got[..., 8], fov_w, atol=1e-6)


def test_decode_matches_official():
    rng = np.random.default_rng(1)
    enc = rng.normal(size=(2, 4, 9)).astype(np.float32)  # non-unit quaternions
    enc[..., 7:] = rng.uniform(0.2, 2.5, (2, 4, 2))
    enc[0, 0, 7:] = [-0.5, 0.0]  # tan <= 0 -> clamped at 1e-6
    w2c, k = decode_pose(enc, HW)
    c2w_t, k_t = off.pose_encoding_to_extri_intri(torch.from_numpy(enc), HW)
    w2c_t = affine_inverse(torch.cat([c2w_t, torch.tensor([0, 0, 0, 1.0]).expand(2, 4, 1, 4)], -2))
    np.testing.assert_allclose(np.asarray(w2c), w2c_t[..., :3, :].numpy(), atol=3e-6)
    np.testing.assert_allclose(np.asarray(k), k_t.numpy(), rtol=1e-6)
    assert np.asarray(k)[0, 0, 1, 1] == np.float32(HW[0] / 2 / 1e-6)
    np.testing.assert_allclose(np.asarray(k)[..., 0, 2], HW[1] / 2)
    np.testing.assert_allclose(np.asarray(k)[..., 1, 2], HW[0] / 2)


def test_roundtrip_jit():
    w2c, k = _cameras(3, 2, seed=2)
    k[..., 0, 2] = HW[1] / 2  # decoding puts the principal point at the centre
    enc = jax.jit(encode_pose, static_argnums=2)(w2c, k, HW)
    w2c2, k2 = jax.jit(decode_pose, static_argnums=1)(enc, HW)
    np.testing.assert_allclose(np.asarray(w2c2), w2c, atol=3e-6)
    np.testing.assert_allclose(np.asarray(k2), k, rtol=2e-6)
