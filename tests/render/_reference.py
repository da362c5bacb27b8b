"""Independent float64 NumPy reference: brute-force per-pixel compositor (all Gaussians, sorted
by depth per pixel) with gsplat classic-mode rules, written from the gsplat CUDA kernels'
semantics, not from da3_jax.render."""

from __future__ import annotations

import numpy as np


def quat_wxyz_to_rotmat(q):
    q = np.asarray(q, np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def render_reference(means, quats, scales, opacities, rgb, w2c, K, hw, background,
                     near=0.01, far=1e10, eps2d=0.3):
    """float64 render: dict rgb [H,W,3], alpha [H,W], depth [H,W]. `rgb [G, 3]` final colours."""
    f = lambda a: np.asarray(a, np.float64)  # noqa: E731
    means, scales, opacities, rgb, w2c, K = map(f, (means, scales, opacities, rgb, w2c, K))
    h, w = hw
    R = quat_wxyz_to_rotmat(quats)
    cov = np.einsum("gij,gj,gkj->gik", R, scales**2, R)
    rot, t = w2c[:3, :3], w2c[:3, 3]
    mc = means @ rot.T + t
    cc = np.einsum("ij,gjk,lk->gil", rot, cov, rot)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    out_rgb = np.zeros((h, w, 3))
    out_depth = np.zeros((h, w))
    out_t = np.ones((h, w))
    entries = []
    for g in range(means.shape[0]):
        x, y, z = mc[g]
        if z < near or z > far or opacities[g] < 1 / 255:
            continue
        tanx, tany = 0.5 * w / fx, 0.5 * h / fy
        u = np.clip(x / z, -(cx / fx + 0.3 * tanx), (w - cx) / fx + 0.3 * tanx)
        v = np.clip(y / z, -(cy / fy + 0.3 * tany), (h - cy) / fy + 0.3 * tany)
        J = np.array([[fx / z, 0, -fx * u / z], [0, fy / z, -fy * v / z]])
        c2 = J @ cc[g] @ J.T + eps2d * np.eye(2)
        if np.linalg.det(c2) <= 0:
            continue
        entries.append((z, g, np.array([fx * x / z + cx, fy * y / z + cy]), np.linalg.inv(c2)))
    entries.sort(key=lambda e: e[0])
    jj, ii = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    done = np.zeros((h, w), bool)
    for z, g, m2, conic in entries:
        dx, dy = m2[0] - jj, m2[1] - ii
        sigma = 0.5 * (conic[0, 0] * dx * dx + conic[1, 1] * dy * dy) + conic[0, 1] * dx * dy
        alpha = np.minimum(0.999, opacities[g] * np.exp(-sigma))
        use = (sigma >= 0) & (alpha >= 1 / 255) & ~done
        t_next = out_t * (1 - alpha)
        stop = use & (t_next <= 1e-4)
        done |= stop
        use &= ~stop
        wgt = np.where(use, alpha * out_t, 0.0)
        out_rgb += wgt[..., None] * rgb[g]
        out_depth += wgt * z
        out_t = np.where(use, t_next, out_t)
    return {"rgb": out_rgb + out_t[..., None] * f(background), "alpha": 1 - out_t,
            "depth": out_depth}
