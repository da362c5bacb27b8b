"""Analytic primitives for the procedural renderer: ray intersection, normals, surface coords.

Every primitive lives in its own local frame: x_world = rot @ x_local + center. Rays are given
in that local frame as one origin `o [3]` (all rays of a view start at the camera centre) and
directions `d` = three [M] arrays (structure of arrays: fast in NumPy). Directions are not
normalised: the renderer uses d with camera-z component 1 so that the ray parameter t IS the
z-depth. Kinds (local frame, `size` = 3 numbers):

- 'box':      axis-aligned box |x_k| <= size[k]; faces 0..5 = (-x, +x, -y, +y, -z, +z).
- 'room':     the same box seen from inside (its far wall is hit); used for indoor scenes.
- 'sphere':   |x| <= size[0]; one face.
- 'cylinder': x^2 + y^2 <= size[0]^2, |z| <= size[2]; faces 0 = side, 1 = bottom, 2 = top.
- 'disk':     z = 0, x^2 + y^2 <= size[0]^2 (a ground plane of finite radius); one face.

`intersect` returns t [M] (inf where missed, only t > EPS counts); `surface` returns the local
normal [M, 3] (unit, outward; inward for 'room'), surface coordinates uv [M, 2] in metres, and
face index [M] for per-face materials.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from data_pipelines.synthetic.textures import Material

EPS = 1e-4
NUM_FACES = {"box": 6, "room": 6, "sphere": 1, "cylinder": 3, "disk": 1}


@dataclasses.dataclass(frozen=True)
class Primitive:
    """kind in NUM_FACES; center [3] and rot [3, 3] (world-from-local) float32; size [3];
    materials: one per face (len NUM_FACES[kind])."""

    kind: str
    center: np.ndarray
    rot: np.ndarray
    size: np.ndarray
    materials: tuple[Material, ...]

    def __post_init__(self):
        if self.kind not in NUM_FACES:
            raise ValueError(f"Primitive.kind must be one of {tuple(NUM_FACES)}, got {self.kind}")
        if len(self.materials) != NUM_FACES[self.kind]:
            raise ValueError(f"Primitive '{self.kind}' needs {NUM_FACES[self.kind]} materials, "
                             f"got {len(self.materials)}")

    def bounding_radius(self) -> float:
        """Radius of a sphere around `center` enclosing the primitive."""
        if self.kind in ("box", "room"):
            return float(np.linalg.norm(self.size))
        if self.kind == "cylinder":
            return float(np.hypot(self.size[0], self.size[2]))
        return float(self.size[0])


def _slab(o, d, h):
    """Entry/exit parameters of the slab |o + t d| <= h along one axis ([M] each)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d
        t1 = (-h - o) * inv
        t2 = (h - o) * inv
    # fmin/fmax ignore the NaN of 0 * inf (ray parallel to and on a slab plane).
    return np.fmin(t1, t2), np.fmax(t1, t2)


def intersect(p: Primitive, o: np.ndarray, d: tuple[np.ndarray, np.ndarray, np.ndarray]):
    """Ray parameter t [M] float32 of the first hit with t > EPS; inf where the ray misses.

    o: local ray origin [3]; d: local directions as three [M] arrays (dx, dy, dz).
    """
    inf = np.float32(np.inf)
    dx, dy, dz = d
    if p.kind in ("box", "room"):
        lo0, hi0 = _slab(o[0], dx, p.size[0])
        lo1, hi1 = _slab(o[1], dy, p.size[1])
        lo2, hi2 = _slab(o[2], dz, p.size[2])
        tmin = np.fmax(np.fmax(lo0, lo1), lo2)
        tmax = np.fmin(np.fmin(hi0, hi1), hi2)
        if p.kind == "room":
            return np.where((tmax > EPS) & (tmax >= tmin), tmax, inf)
        return np.where((tmax >= tmin) & (tmin > EPS), tmin, inf)
    if p.kind == "sphere":
        r = p.size[0]
        a = dx * dx + dy * dy + dz * dz
        b = o[0] * dx + o[1] * dy + o[2] * dz
        c = float(o @ o - r * r)
        disc = b * b - a * c
        sq = np.sqrt(np.maximum(disc, 0.0))
        t0 = (-b - sq) / a
        t1 = (-b + sq) / a
        t = np.where(t0 > EPS, t0, np.where(t1 > EPS, t1, inf))
        return np.where(disc >= 0, t, inf)
    if p.kind == "cylinder":
        r, hh = p.size[0], p.size[2]
        a = dx * dx + dy * dy
        b = o[0] * dx + o[1] * dy
        c = float(o[0] ** 2 + o[1] ** 2 - r * r)
        disc = b * b - a * c
        sq = np.sqrt(np.maximum(disc, 0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            ts = (-b - sq) / a
            zs = o[2] + ts * dz
            best = np.where((disc >= 0) & (ts > EPS) & (np.abs(zs) <= hh), ts, inf)
            for zc in (-hh, hh):
                tc = (zc - o[2]) / dz
                xc, yc = o[0] + tc * dx, o[1] + tc * dy
                ok = (tc > EPS) & (xc * xc + yc * yc <= r * r)
                best = np.where(ok & (tc < best), tc, best)
        return np.where(np.isnan(best), inf, best).astype(np.float32)
    if p.kind == "disk":
        r = p.size[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = -o[2] / dz
            x, y = o[0] + t * dx, o[1] + t * dy
            ok = (t > EPS) & (x * x + y * y <= r * r)
        return np.where(ok, t, inf).astype(np.float32)
    raise ValueError(f"unknown primitive kind {p.kind!r}")


def surface(p: Primitive, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """At local hit points x [M, 3]: (unit normal [M, 3], uv [M, 2] metres, face [M] int)."""
    m = x.shape[0]
    if p.kind in ("box", "room"):
        rel = np.abs(x) / p.size
        axis = np.argmax(rel, axis=1)
        sign = np.sign(x[np.arange(m), axis])
        sign = np.where(sign == 0, 1.0, sign)
        normal = np.zeros((m, 3), np.float32)
        normal[np.arange(m), axis] = -sign if p.kind == "room" else sign
        face = 2 * axis + (sign > 0)
        # uv: the two in-face coordinates, measured from a box corner so patterns tile walls.
        shifted = x + p.size
        ua = np.take_along_axis(shifted, ((axis + 1) % 3)[:, None], axis=1)[:, 0]
        va = np.take_along_axis(shifted, ((axis + 2) % 3)[:, None], axis=1)[:, 0]
        return normal, np.stack([ua, va], axis=1), face.astype(np.int64)
    if p.kind == "sphere":
        r = p.size[0]
        normal = x / r
        uv = np.stack([np.arctan2(x[:, 1], x[:, 0]) * r, np.arcsin(np.clip(normal[:, 2], -1, 1))
                       * r], axis=1)
        return normal.astype(np.float32), uv, np.zeros(m, np.int64)
    if p.kind == "cylinder":
        r, hh = p.size[0], p.size[2]
        on_cap = np.abs(np.abs(x[:, 2]) - hh) < 1e-3 * max(hh, 1.0)
        on_cap &= (x[:, 0] ** 2 + x[:, 1] ** 2) < (r * (1 - 1e-4)) ** 2
        side_n = np.concatenate([x[:, :2] / r, np.zeros((m, 1), x.dtype)], axis=1)
        cap_n = np.zeros((m, 3), np.float32)
        cap_n[:, 2] = np.sign(x[:, 2])
        normal = np.where(on_cap[:, None], cap_n, side_n).astype(np.float32)
        uv_side = np.stack([np.arctan2(x[:, 1], x[:, 0]) * r, x[:, 2]], axis=1)
        uv = np.where(on_cap[:, None], x[:, :2], uv_side)
        face = np.where(on_cap, np.where(x[:, 2] > 0, 2, 1), 0)
        return normal, uv, face.astype(np.int64)
    if p.kind == "disk":
        normal = np.zeros((m, 3), np.float32)
        normal[:, 2] = 1.0
        return normal, x[:, :2], np.zeros(m, np.int64)
    raise ValueError(f"unknown primitive kind {p.kind!r}")


def rot_z(angle: float) -> np.ndarray:
    """Rotation about the world z (up) axis, float32 [3, 3]."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], np.float32)
