"""Float64 NumPy ground truth for the reader tests: cameras looking at a tilted plane.

The tests write this scene in each dataset's own format and check that the reader's
``SceneRecord`` (K, w2c, z-depth) puts every valid depth pixel back on the plane and reproduces
the ground-truth cameras. Pixel-edge convention: pixel (i, j) has centre (j + 0.5, i + 0.5).
"""

from __future__ import annotations

import numpy as np

PLANE_N = np.array([0.1, -0.2, 1.0]) / np.linalg.norm([0.1, -0.2, 1.0])
PLANE_D = 4.0  # plane: n . X = d


def look_at_w2c(center, target, up=(0.0, -1.0, 0.0)) -> np.ndarray:
    """OpenCV w2c ``[3, 4]`` of a camera at ``center`` looking at ``target`` (y down)."""
    center, target, up = (np.asarray(v, np.float64) for v in (center, target, up))
    z = target - center
    z /= np.linalg.norm(z)
    x = np.cross(up, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    rot = np.stack([x, y, z])  # rows: camera axes in world -> w2c rotation
    return np.concatenate([rot, (-rot @ center)[:, None]], 1)


def c2w_of(w2c: np.ndarray) -> np.ndarray:
    """4x4 camera-to-world of a ``[3, 4]`` w2c (float64 reference inverse)."""
    out = np.eye(4)
    out[:3, :3] = w2c[:, :3].T
    out[:3, 3] = -w2c[:, :3].T @ w2c[:, 3]
    return out


def cameras(n: int = 3):
    """``n`` OpenCV w2c ``[n, 3, 4]`` around the origin, all looking at the plane."""
    out = []
    for i in range(n):
        a = 0.3 * (i - (n - 1) / 2)
        out.append(look_at_w2c([1.5 * np.sin(a), 0.3 * i - 0.3, -1.0 + 0.2 * i],
                               [0.2, 0.1, 4.0]))
    return np.stack(out)


def k_matrix(h: int, w: int, f: float = 40.0) -> np.ndarray:
    """Pinhole K (pixel-edge) with a slightly off-centre principal point."""
    return np.array([[f, 0.0, w / 2 + 1.25], [0.0, f * 1.1, h / 2 - 0.75], [0.0, 0.0, 1.0]])


def plane_depth(k: np.ndarray, w2c: np.ndarray, hw) -> np.ndarray:
    """Exact z-depth ``[H, W]`` of the plane seen through each pixel centre."""
    h, w = hw
    u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    rays_cam = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(k).T  # z component = 1
    rot, t = w2c[:, :3], w2c[:, 3]
    center = -rot.T @ t
    rays_world = rays_cam @ rot  # R^T d
    z = (PLANE_D - PLANE_N @ center) / (rays_world @ PLANE_N)
    assert (z > 0).all()
    return z


def plane_distance(k: np.ndarray, w2c: np.ndarray, hw) -> np.ndarray:
    """Euclidean distance from the camera centre to the plane along each pixel ray."""
    h, w = hw
    u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    rays_cam = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(k).T
    return plane_depth(k, w2c, hw) * np.linalg.norm(rays_cam, axis=-1)


def backproject(depth: np.ndarray, k: np.ndarray, w2c: np.ndarray) -> np.ndarray:
    """World points ``[H, W, 3]`` of a z-depth map (float64, pixel centres)."""
    h, w = depth.shape
    u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    cam = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(k.astype(np.float64)).T
    cam = cam * depth[..., None].astype(np.float64)
    rot, t = w2c[:, :3].astype(np.float64), w2c[:, 3].astype(np.float64)
    return (cam - t) @ rot


def assert_on_plane(rec, tol: float):
    """Every valid pixel of every view back-projects onto the plane (within ``tol`` m)."""
    assert rec.valid.any()
    for i in range(rec.num_views):
        pts = backproject(rec.depth[i], rec.intrinsics[i], rec.extrinsics[i])[rec.valid[i]]
        resid = np.abs(pts @ PLANE_N - PLANE_D)
        assert resid.max() < tol, (i, resid.max())


def texture(hw, seed: int = 0) -> np.ndarray:
    """Random uint8 RGB image ``[H, W, 3]``."""
    return np.random.default_rng(seed).integers(0, 256, (*hw, 3), dtype=np.uint8)


def truncate(path) -> None:
    """Cuts a file to half its size (a corrupt / truncated download)."""
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])

