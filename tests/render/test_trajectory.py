"""Camera paths vs float64 references (OpenCV Rodrigues for the rotation midpoint)."""

import cv2
import numpy as np
import pytest

from da3_jax.render import camera_path

HW = (30, 40)
K = np.array([[[35.0, 0, 18.0], [0, 33.0, 16.0], [0, 0, 1]]] * 2)


def _cams():
    r1, _ = cv2.Rodrigues(np.array([0.1, 0.4, -0.2]))
    c2w = np.tile(np.eye(4), (2, 1, 1))
    c2w[1, :3, :3] = r1
    c2w[1, :3, 3] = [1.0, -0.5, 0.2]
    return np.linalg.inv(c2w)[:, :3, :], c2w


def test_interpolate_endpoints_count_and_geodesic_midpoint():
    w2c, c2w = _cams()
    out, ks = camera_path(w2c, K, HW, "interpolate")
    assert out.shape == (48, 4, 4)  # at least 2 s at 24 fps
    np.testing.assert_allclose(out[0][:3], w2c[0], atol=1e-9)
    np.testing.assert_allclose(out[-1][:3], w2c[1], atol=1e-9)
    np.testing.assert_allclose(ks[:, 0, 2], HW[1] / 2)  # principal point at the image centre
    np.testing.assert_allclose(ks[:, 1, 1], 33.0)
    # frames come in symmetric cosine-eased pairs: t_i + t_{47-i} = 1 -> geodesic midpoint
    # of frames i and 47-i is the midpoint rotation of the segment
    rvec, _ = cv2.Rodrigues(c2w[0, :3, :3].T @ c2w[1, :3, :3])
    mid, _ = cv2.Rodrigues(rvec * 0.5)
    c2w_out = np.linalg.inv(out)
    t = (np.cos(np.pi * (np.linspace(0, 1, 48) + 1)) + 1) / 2
    i = 20
    rv, _ = cv2.Rodrigues(rvec * t[i])
    np.testing.assert_allclose(c2w_out[i, :3, :3], c2w[0, :3, :3] @ rv, atol=1e-9)
    np.testing.assert_allclose(c2w_out[i, :3, 3], t[i] * c2w[1, :3, 3], atol=1e-9)
    assert np.allclose(mid @ mid, c2w[1, :3, :3])


def test_wander_dolly_and_smooth():
    w2c, c2w = _cams()
    wander, _ = camera_path(w2c, K, HW, "wander", num_frames=10)
    assert wander.shape == (12, 4, 4)
    np.testing.assert_allclose(wander[0][:3], w2c[0], atol=1e-12)
    np.testing.assert_allclose(wander[-1][:3], w2c[0], atol=1e-12)
    centres = np.linalg.inv(wander)[:, :3, 3]
    th, r = np.linspace(0, 2 * np.pi, 10), 24.0 / 35.0  # 24 px at fx = 35
    np.testing.assert_allclose(centres[1:-1], -np.stack(
        [r * np.sin(th), r * np.cos(th) / 3, r * np.cos(th) / 3], 1), atol=1e-12)
    dolly, ks = camera_path(w2c, K, HW, "dolly_zoom", num_frames=9)
    z = np.linalg.inv(dolly)[:, 2, 3]  # camera 0 is the identity: moves back along -z
    np.testing.assert_allclose(-z, 0.5 * (1 - np.cos(np.pi * np.linspace(0, 2, 9))) * 2.0)
    np.testing.assert_allclose(ks[:, 0, 0], 35.0 * 30.0 / (30.0 - z))
    smooth, _ = camera_path(np.concatenate([w2c, w2c[1:]]), np.concatenate([K, K[1:]]), HW,
                            "smooth")
    rots = smooth[:, :3, :3]
    np.testing.assert_allclose(rots @ np.swapaxes(rots, 1, 2), np.tile(np.eye(3), (3, 1, 1)),
                               atol=1e-12)
    assert np.allclose(np.linalg.det(rots), 1.0)


@pytest.mark.parametrize("w2c,k,mode,match", [
    (np.zeros((0, 3, 4)), np.zeros((0, 3, 3)), "wander", "empty"),
    (None, None, "orbit", "expected one of"),
    ("one", None, "smooth", "needs at least 2 views"),
])
def test_bad_trajectories_raise(w2c, k, mode, match):
    cams, _ = _cams()
    if w2c is None:
        w2c, k = cams, K
    elif isinstance(w2c, str):
        w2c, k = cams[:1], K[:1]
    with pytest.raises(ValueError, match=match):
        camera_path(w2c, k, HW, mode)
