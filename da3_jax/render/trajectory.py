"""Camera paths for novel-view videos (host-side NumPy, float64), after the official `gs_video`
trajectory modes (`depth_anything_3/utils/camera_trj_helpers.py`, `gs_renderer.py`).

All functions take input cameras as w2c `[N, 3|4, 4]` (OpenCV) and pixel intrinsics `[N, 3, 3]`
of an `(H, W)` image and return render cameras `(w2c [M, 4, 4], K [M, 3, 3])`. As in the official
renderer, the returned K keeps the focal lengths but puts the principal point at the image
centre (upstream rebuilds K from the fields of view).

Modes:
* ``smooth``: the input path low-passed by a Gaussian kernel (51 taps capped to the view count,
  OpenCV's default sigma, reflect padding) on the c2w x / y axes and centre, re-orthonormalised
  (upstream uses `x × y` for z without re-orthogonalising y);
* ``interpolate``: between consecutive views, cosine-eased frames (8 per segment, at least 48 and
  at most ~240 in total as upstream); rotations by slerp, centres linearly (upstream pivots
  around the look-ray intersection; slerp + lerp is the simpler rigid interpolation);
* ``wander``: the first camera moved on a Lissajous loop in its own frame, radius 24 px / fx
  (120 frames, plus the start pose at both ends);
* ``dolly_zoom``: the first camera moved back along its axis by up to 2 units (cosine) while
  the focal length shrinks by `D / (D + z)` with `D = 30` (120 frames).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

MODES = ("smooth", "interpolate", "wander", "dolly_zoom")
FPS = 24


def _homogeneous(w2c: np.ndarray) -> np.ndarray:
    out = np.tile(np.eye(4), (w2c.shape[0], 1, 1))
    out[:, :3, :] = w2c[:, :3, :]
    return out


def _centred(k: np.ndarray, hw) -> np.ndarray:
    k = np.array(k, np.float64)
    k[..., 0, 2], k[..., 1, 2] = hw[1] / 2.0, hw[0] / 2.0
    return k


def _gaussian_kernel(size: int) -> np.ndarray:
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8  # OpenCV getGaussianKernel(size, -1)
    x = np.arange(size) - (size - 1) / 2.0
    k = np.exp(-x * x / (2 * sigma * sigma))
    return k / k.sum()


def smooth_path(c2w: np.ndarray, k_size: int = 51) -> np.ndarray:
    """Gaussian-smoothed c2w path `[N, 4, 4]` (kernel size forced odd, <= N, >= 3 when N >= 3)."""
    n = c2w.shape[0]
    if n <= 1:
        return c2w.copy()
    k_size = min(k_size | 1, n if n % 2 else n - 1)
    k_size = max(k_size, 3) if n >= 3 else 1
    if k_size == 1:
        return c2w.copy()
    kern, pad = _gaussian_kernel(k_size), k_size // 2
    cols = np.concatenate([c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 3]], axis=1)  # [N, 9]
    padded = np.pad(cols, ((pad, pad), (0, 0)), mode="reflect")
    sm = np.stack([np.convolve(padded[:, j], kern, mode="valid") for j in range(9)], 1)
    x = sm[:, 0:3] / np.linalg.norm(sm[:, 0:3], axis=1, keepdims=True)
    y = sm[:, 3:6] - np.sum(sm[:, 3:6] * x, axis=1, keepdims=True) * x
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    out = np.tile(np.eye(4), (n, 1, 1))
    out[:, :3, 0], out[:, :3, 1], out[:, :3, 2], out[:, :3, 3] = x, y, np.cross(x, y), sm[:, 6:9]
    return out


def interpolate_path(c2w: np.ndarray, k: np.ndarray):
    """Cosine-eased slerp/lerp between consecutive cameras -> (c2w [M,4,4], K [M,3,3])."""
    n = c2w.shape[0]
    per = 8
    if (n - 1) * per > FPS * 18:
        per = max(1, FPS * 10 // (n - 1))
    if (n - 1) * per < FPS * 2:
        per = max(1, FPS * 2 // (n - 1))
    if per <= 2:
        return c2w.copy(), k.copy()
    t = (np.cos(np.pi * (np.linspace(0.0, 1.0, per) + 1.0)) + 1.0) / 2.0
    poses, ks = [], []
    for i in range(n - 1):
        slerp = Slerp([0.0, 1.0], Rotation.from_matrix(c2w[i:i + 2, :3, :3]))
        seg = np.tile(np.eye(4), (per, 1, 1))
        seg[:, :3, :3] = slerp(t).as_matrix()
        seg[:, :3, 3] = (1 - t)[:, None] * c2w[i, :3, 3] + t[:, None] * c2w[i + 1, :3, 3]
        kk = (1 - t)[:, None, None] * k[i] + t[:, None, None] * k[i + 1]
        start = 0 if i == 0 else 1
        poses.append(seg[start:])
        ks.append(kk[start:])
    return np.concatenate(poses), np.concatenate(ks)


def wander_path(c2w0: np.ndarray, k0: np.ndarray, num_frames: int = 120,
                max_disp: float = 24.0):
    """Lissajous wander around one camera -> (c2w [num_frames + 2, 4, 4], K)."""
    r = max_disp / k0[0, 0]
    th = np.linspace(0.0, 2.0 * np.pi, num_frames)
    offset = np.tile(np.eye(4), (num_frames, 1, 1))
    offset[:, :3, 3] = -np.stack([r * np.sin(th), r * np.cos(th) / 3, r * np.cos(th) / 3], 1)
    poses = np.concatenate([c2w0[None], c2w0[None] @ offset, c2w0[None]])
    return poses, np.repeat(k0[None], len(poses), 0)


def dolly_zoom_path(c2w0: np.ndarray, k0: np.ndarray, num_frames: int = 120,
                    max_disp: float = 2.0, focus: float = 30.0):
    """Dolly zoom on one camera -> (c2w [num_frames, 4, 4], K [num_frames, 3, 3])."""
    z = 0.5 * (1.0 - np.cos(np.pi * np.linspace(0.0, 2.0, num_frames))) * max_disp
    offset = np.tile(np.eye(4), (num_frames, 1, 1))
    offset[:, 2, 3] = -z
    ks = np.repeat(k0[None], num_frames, 0)
    scale = np.maximum(focus / (focus + z), 1e-6)
    ks[:, 0, 0] *= scale
    ks[:, 1, 1] *= scale
    return c2w0[None] @ offset, ks


def camera_path(w2c, intrinsics, hw, mode: str = "smooth", num_frames: int | None = None):
    """Render cameras for `mode` (see module doc) -> (w2c [M, 4, 4], K [M, 3, 3]) float64.

    `num_frames` overrides the frame count of ``wander`` / ``dolly_zoom`` (default 120); the
    other modes follow the input views.

    Raises ValueError for an unknown mode, no input cameras (an empty trajectory), mismatched
    shapes, non-finite cameras, or ``smooth`` / ``interpolate`` with a single view.
    """
    if mode not in MODES:
        raise ValueError(f"trajectory: expected one of {MODES}, got {mode!r}")
    w2c = np.asarray(w2c, np.float64)
    k = np.asarray(intrinsics, np.float64)
    if w2c.ndim != 3 or w2c.shape[1:] not in ((3, 4), (4, 4)) or k.shape != (len(w2c), 3, 3):
        raise ValueError(f"trajectory: expected w2c [N, 3|4, 4] and intrinsics [N, 3, 3], got "
                         f"{w2c.shape} and {k.shape}")
    if len(w2c) == 0:
        raise ValueError("trajectory: empty (no input cameras to build a path from)")
    if num_frames is not None and num_frames < 2:
        raise ValueError(f"trajectory: num_frames must be >= 2, got {num_frames}")
    if not (np.all(np.isfinite(w2c)) and np.all(np.isfinite(k))):
        raise ValueError("trajectory: input cameras contain NaN/Inf")
    if mode in ("smooth", "interpolate") and len(w2c) < 2:
        raise ValueError(f"trajectory: {mode!r} needs at least 2 views; use 'wander' or "
                         "'dolly_zoom' for one view")
    c2w = np.linalg.inv(_homogeneous(w2c))
    if mode == "smooth":
        poses, ks = smooth_path(c2w), k
    elif mode == "interpolate":
        poses, ks = interpolate_path(c2w, k)
    elif mode == "wander":
        poses, ks = wander_path(c2w[0], k[0], num_frames or 120)
    else:
        poses, ks = dolly_zoom_path(c2w[0], k[0], num_frames or 120)
    return np.linalg.inv(poses), _centred(ks, hw)
