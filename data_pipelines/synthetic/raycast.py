"""Vectorised NumPy ray casting of a `Scene`: exact z-depth, valid mask and Lambertian colour.

Camera conventions follow `data_pipelines.record` (and `da3_jax.geometry`): w2c [3, 4] with
OpenCV axes, K in pixels with the pixel-edge convention (the centre of pixel (row i, col j) is
(j + 0.5, i + 0.5)). The ray through pixel coordinates (u, v) is d = R_c2w K^-1 [u, v, 1]; its
camera-frame z component is 1, so the ray parameter t of a hit is the hit's z-depth exactly
(no range-to-depth conversion, no interpolation). Pixels whose ray hits nothing (sky /
background of object scenes) get depth 0 and valid False, and a sky colour.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from data_pipelines.synthetic import primitives, textures


@dataclasses.dataclass(frozen=True)
class Scene:
    """Primitives plus lighting. Exactly one of light_pos (point light, rooms) or light_dir
    (unit direction towards a distant light, outdoors) is set. World frame: z up, metres."""

    kind: str
    prims: tuple[primitives.Primitive, ...]
    ambient: float
    light_pos: np.ndarray | None = None
    light_dir: np.ndarray | None = None
    sky_top: np.ndarray = dataclasses.field(
        default_factory=lambda: np.array([0.35, 0.55, 0.9], np.float32))
    sky_bottom: np.ndarray = dataclasses.field(
        default_factory=lambda: np.array([0.85, 0.9, 0.95], np.float32))


def pixel_centers(height: int, width: int) -> np.ndarray:
    """Pixel-centre coordinates (u, v) = (j + 0.5, i + 0.5), float32 [height * width, 2]."""
    v, u = np.meshgrid(np.arange(height, dtype=np.float32) + 0.5,
                       np.arange(width, dtype=np.float32) + 0.5, indexing="ij")
    return np.stack([u.ravel(), v.ravel()], axis=1)


def world_rays(intrinsics: np.ndarray, w2c: np.ndarray, uv: np.ndarray):
    """Camera centre [3] (float64) and world directions (camera-z = 1) for pixel coords uv
    [M, 2], as three float32 [M] arrays (dx, dy, dz)."""
    k = np.asarray(intrinsics, np.float64)
    ext = np.asarray(w2c, np.float64)
    rot, trans = ext[:, :3], ext[:, 3]
    # d_world = R^T K^-1 [u v 1]^T; as row vectors: [u v 1] @ (K^-T R).
    m = (np.linalg.inv(k).T @ rot).astype(np.float32)
    u, v = uv[:, 0].astype(np.float32), uv[:, 1].astype(np.float32)
    dirs = tuple(m[0, c] * u + m[1, c] * v + m[2, c] for c in range(3))
    return -rot.T @ trans, dirs


def _rowmat(a: np.ndarray, m: np.ndarray) -> np.ndarray:
    """a @ m for a [M, 3], m [3, 3]: three fused columns (NumPy matmul is slow for K = 3)."""
    m = np.asarray(m, np.float32)
    return np.stack([a[:, 0] * m[0, c] + a[:, 1] * m[1, c] + a[:, 2] * m[2, c]
                     for c in range(3)], axis=1)


def _to_local(rot: np.ndarray, d):
    """rot^T d for d = (dx, dy, dz); skips zero entries (axis-aligned and z-rotations)."""
    out = []
    for c in range(3):
        terms = [rot[j, c] * d[j] for j in range(3) if rot[j, c] != 0.0]
        out.append(sum(terms[1:], terms[0]) if terms else np.zeros_like(d[0]))
    return tuple(out)


def screen_bounds(p: primitives.Primitive, intrinsics: np.ndarray, w2c: np.ndarray):
    """Conservative pixel rectangle (u0, u1, v0, v1) containing the primitive's image, 'behind'
    if it is entirely behind the camera, or None when no useful bound exists (camera inside or
    near its bounding sphere)."""
    ext = np.asarray(w2c, np.float64)
    c = ext[:, :3] @ p.center + ext[:, 3]
    r = p.bounding_radius()
    if c[2] + r <= 0:
        return "behind"
    if c[2] - r <= 1e-2:
        return None
    zs = (c[2] - r, c[2] + r)
    xs = [(c[0] + s * r) / z for s in (-1, 1) for z in zs]
    ys = [(c[1] + s * r) / z for s in (-1, 1) for z in zs]
    k = np.asarray(intrinsics, np.float64)
    us = [k[0, 0] * x + k[0, 1] * y + k[0, 2] for x in xs for y in ys]
    vs = [k[1, 1] * y + k[1, 2] for y in ys]
    return min(us), max(us), min(vs), max(vs)


def cast(scene: Scene, origin: np.ndarray, dirs, uv=None, intrinsics=None, w2c=None):
    """Nearest hit of each ray: (t [M] float32, inf = miss; primitive id [M] int, -1 = miss).

    dirs: world directions (dx, dy, dz), three [M] arrays. With uv [M, 2] and the camera
    (intrinsics, w2c) given, rays outside a primitive's screen bounds skip its intersection.
    """
    m = dirs[0].shape[0]
    best_t = np.full(m, np.inf, np.float32)
    best_id = np.full(m, -1, np.int64)
    for i, p in enumerate(scene.prims):
        sel = None
        if uv is not None:
            bounds = screen_bounds(p, intrinsics, w2c)
            if isinstance(bounds, str):
                continue
            if bounds is not None:
                u0, u1, v0, v1 = bounds
                u, v = uv[:, 0], uv[:, 1]
                sel = np.nonzero((u >= u0) & (u <= u1) & (v >= v0) & (v <= v1))[0]
                if sel.size == 0:
                    continue
                if sel.size == m:
                    sel = None
        d = dirs if sel is None else tuple(x[sel] for x in dirs)
        o_l = (p.rot.T.astype(np.float64) @ (origin - p.center)).astype(np.float32)
        t = primitives.intersect(p, o_l, _to_local(p.rot, d))
        if sel is None:
            closer = t < best_t
            best_t = np.where(closer, t, best_t)
            best_id[closer] = i
        else:
            closer = t < best_t[sel]
            best_t[sel[closer]] = t[closer]
            best_id[sel[closer]] = i
    return best_t, best_id


def shade(scene: Scene, origin: np.ndarray, dirs: np.ndarray, t: np.ndarray, ids: np.ndarray):
    """Linear RGB [M, 3] in [0, 1]: albedo * (ambient + (1 - ambient) * max(n.l, 0)), sky else."""
    # Sort rays by primitive once (stable): every primitive then shades a contiguous slice.
    order = np.argsort(ids, kind="stable")
    bounds = np.searchsorted(ids[order], np.arange(-1, len(scene.prims) + 1))
    dirs_s, t_s = dirs[order], t[order]
    out = np.empty_like(dirs_s)
    dm = dirs_s[bounds[0]:bounds[1]]
    if dm.size:
        elev = dm[:, 2] / np.sqrt(np.einsum("mk,mk->m", dm, dm))
        w = np.clip(0.5 + elev, 0.0, 1.0)[:, None]
        out[bounds[0]:bounds[1]] = scene.sky_bottom * (1 - w) + scene.sky_top * w
    origin32 = origin.astype(np.float32)
    for i, p in enumerate(scene.prims):
        lo, hi = bounds[i + 1], bounds[i + 2]
        if hi == lo:
            continue
        d_w = dirs_s[lo:hi]
        x_w = origin32 + t_s[lo:hi, None] * d_w
        x_l = _rowmat(x_w - p.center, p.rot)
        n_l, uv, face = primitives.surface(p, x_l)
        n_w = _rowmat(n_l, p.rot.T)
        # Face the viewer (thin caps and grazing hits can give back-facing normals).
        sign = np.where(np.einsum("mk,mk->m", n_w, d_w) > 0, -1.0, 1.0).astype(np.float32)
        if len(p.materials) == 1:
            albedo = textures.evaluate(p.materials[0], uv)
        else:
            albedo = np.empty((hi - lo, 3), np.float32)
            for f, mat in enumerate(p.materials):
                sel = np.nonzero(face == f)[0]
                if sel.size:
                    albedo[sel] = textures.evaluate(mat, uv[sel])
        if scene.light_pos is not None:
            l_vec = scene.light_pos - x_w
            lam = np.einsum("mk,mk->m", n_w, l_vec) / (
                np.sqrt(np.einsum("mk,mk->m", l_vec, l_vec)) + 1e-8)
        else:
            lam = n_w @ scene.light_dir.astype(np.float32)
        lam = np.clip(lam * sign, 0.0, 1.0)
        out[lo:hi] = albedo * (scene.ambient + (1.0 - scene.ambient) * lam)[:, None]
    rgb = np.empty_like(out)
    rgb[order] = out
    return rgb


def render_pixels(scene: Scene, intrinsics: np.ndarray, w2c: np.ndarray, uv: np.ndarray):
    """Render at pixel coordinates uv [M, 2] (pixel-edge convention, any real values).

    Returns rgb float32 [M, 3] in [0, 1], z-depth float32 [M] (0 where invalid), valid bool [M].
    """
    origin, dirs = world_rays(intrinsics, w2c, uv)
    t, ids = cast(scene, origin, dirs, uv, intrinsics, w2c)
    rgb = shade(scene, origin, np.stack(dirs, axis=1), t, ids)
    valid = ids >= 0
    return rgb, np.where(valid, t, 0.0).astype(np.float32), valid


def render_view(scene: Scene, intrinsics: np.ndarray, w2c: np.ndarray, height: int, width: int):
    """One view: image uint8 [H, W, 3], z-depth float32 [H, W] (0 = invalid), valid bool [H, W]."""
    rgb, depth, valid = render_pixels(scene, intrinsics, w2c, pixel_centers(height, width))
    img = np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
    return (img.reshape(height, width, 3), depth.reshape(height, width),
            valid.reshape(height, width))
