"""`render.reproject.forward_warp` (the demo's NVS baseline) vs a float64 NumPy z-buffer loop."""

import jax
import numpy as np

from da3_jax.render.reproject import forward_warp


def _reference(image, depth, w2c_src, k_src, w2c_tgt, k_tgt, hw, near=0.01):
    """Per source pixel, in float64: lift at the pixel centre, project; z-buffer (smallest
    (z, source index)) the pixel containing the projection, and separately the 2 x 2 pixels
    around it; the first buffer wins where it has a point."""
    h, w = hw
    direct, cracks = {}, {}
    kinv = np.linalg.inv(k_src)

    def offer(table, r, c, key, colour):
        if 0 <= r < h and 0 <= c < w and ((r, c) not in table or key < table[(r, c)][0]):
            table[(r, c)] = (key, colour)

    for i in range(depth.shape[0]):
        for j in range(depth.shape[1]):
            if depth[i, j] <= 0:
                continue
            x_cam = depth[i, j] * kinv @ np.array([j + 0.5, i + 0.5, 1.0])
            x_w = w2c_src[:3, :3].T @ (x_cam - w2c_src[:3, 3])
            y = w2c_tgt[:3, :3] @ x_w + w2c_tgt[:3, 3]
            if y[2] < near:
                continue
            u, v = (k_tgt @ (y / y[2]))[:2]
            key = (y[2], i * depth.shape[1] + j)
            offer(direct, int(np.floor(v)), int(np.floor(u)), key, image[i, j])
            for r in (int(np.floor(v - 0.5)), int(np.floor(v - 0.5)) + 1):
                for c in (int(np.floor(u - 0.5)), int(np.floor(u - 0.5)) + 1):
                    offer(cracks, r, c, key, image[i, j])
    out = np.zeros((h, w, image.shape[-1]))
    covered = np.zeros((h, w), bool)
    for (r, c), (_, col) in {**cracks, **direct}.items():
        out[r, c], covered[r, c] = col, True
    return out, covered


def _rotation(axis, angle):
    axis = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    x = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * x + (1 - np.cos(angle)) * x @ x


def test_forward_warp_matches_float64_reference():
    rng = np.random.default_rng(3)
    hs, ws, hw = 18, 22, (20, 17)
    image = rng.uniform(size=(hs, ws, 3))
    depth = rng.uniform(1.0, 4.0, (hs, ws))
    depth[2:5, 3:9] = 0.6  # an occluder in front
    depth[0, :5] = 0.0  # no depth: dropped
    k_src = np.array([[20.0, 0, 11.3], [0, 19.0, 8.7], [0, 0, 1]])
    k_tgt = np.array([[16.0, 0, 8.1], [0, 18.0, 10.4], [0, 0, 1]])
    w2c_src = np.eye(4)
    w2c_src[:3, :3] = _rotation([0.2, 1.0, 0.1], 0.3)
    w2c_src[:3, 3] = [0.1, -0.2, 0.3]
    w2c_tgt = np.eye(4)[:3]
    w2c_tgt[:, :3] = _rotation([1.0, -0.3, 0.2], 0.25) @ w2c_src[:3, :3]
    w2c_tgt[:, 3] = [0.35, -0.1, -0.6]  # moves towards the scene: some points behind near

    ref, ref_cov = _reference(image, depth, w2c_src, k_src, w2c_tgt, k_tgt, hw, near=0.3)
    warp = jax.jit(forward_warp, static_argnames=("hw",))
    out, cov = warp(*(np.asarray(x, np.float32) for x in (image, depth, w2c_src, k_src, w2c_tgt,
                                                           k_tgt)), hw=hw, near=0.3)
    assert 0.2 < ref_cov.mean() < 0.95, ref_cov.mean()  # some pixels covered, some holes
    np.testing.assert_array_equal(np.asarray(cov), ref_cov)
    np.testing.assert_allclose(np.asarray(out), ref, atol=1e-6)

    # identity camera: every pixel comes back onto itself; background fills nothing
    same, full = warp(image.astype(np.float32), depth.astype(np.float32), w2c_src, k_src,
                      w2c_src, k_src, hw=(hs, ws), background=np.ones(3))
    np.testing.assert_allclose(np.asarray(same)[1:], image[1:], atol=1e-6)  # row 0: no depth
    assert np.asarray(full)[1:].all()
