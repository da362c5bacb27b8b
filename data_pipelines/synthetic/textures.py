"""Procedural surface materials: flat (textureless), checker, stripes, value noise, gradient.

A material maps surface coordinates uv `[M, 2]` (metres along the surface) to linear RGB
`[M, 3]` in [0, 1]. Flat materials are deliberately textureless: on a planar face the rendered
colour is then constant up to shading, which is where classical SfM / MVS have nothing to match.
"""

from __future__ import annotations

import dataclasses

import numpy as np

KINDS = ("flat", "checker", "stripes", "noise", "gradient")


@dataclasses.dataclass(frozen=True)
class Material:
    """kind in KINDS; c1/c2 RGB float32 [3]; scale = pattern period in metres; angle = pattern
    rotation in radians; seed = noise lattice seed."""

    kind: str
    c1: np.ndarray
    c2: np.ndarray
    scale: float = 0.5
    angle: float = 0.0
    seed: float = 0.0


def random_material(rng: np.random.Generator, textureless_prob: float) -> Material:
    """A random material; flat (textureless) with probability `textureless_prob`."""
    c1 = rng.uniform(0.15, 0.95, 3).astype(np.float32)
    c2 = rng.uniform(0.05, 0.95, 3).astype(np.float32)
    if rng.random() < textureless_prob:
        kind = "flat"
    else:
        kind = KINDS[1 + int(rng.integers(len(KINDS) - 1))]
    return Material(
        kind=kind,
        c1=c1,
        c2=c2,
        scale=float(rng.uniform(0.08, 0.6)),
        angle=float(rng.uniform(0.0, np.pi)),
        seed=float(rng.uniform(0.0, 100.0)),
    )


def _hash2(ix: np.ndarray, iy: np.ndarray, seed: float) -> np.ndarray:
    # Classic sin-hash of integer lattice coordinates: a deterministic pseudo-random value per
    # lattice point (neighbouring cells evaluate identical inputs, so the noise is continuous).
    h = np.sin(ix * 12.9898 + iy * 78.233 + seed * 37.719) * 43758.5453
    return (h - np.floor(h)).astype(np.float32)


def value_noise(u: np.ndarray, v: np.ndarray, seed: float, octaves: int = 3) -> np.ndarray:
    """Fractal value noise in [0, 1], shape of u; lattice period 1 at the first octave."""
    total = np.zeros(u.shape, np.float32)
    amp, norm, freq = 1.0, 0.0, 1.0
    for o in range(octaves):
        x, y = u * freq, v * freq
        x0, y0 = np.floor(x), np.floor(y)
        fx, fy = (x - x0).astype(np.float32), (y - y0).astype(np.float32)
        fx = fx * fx * (3 - 2 * fx)
        fy = fy * fy * (3 - 2 * fy)
        s = seed + 17.0 * o
        a = _hash2(x0, y0, s)
        b = _hash2(x0 + 1, y0, s)
        c = _hash2(x0, y0 + 1, s)
        d = _hash2(x0 + 1, y0 + 1, s)
        total += amp * ((a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy)
        norm += amp
        amp *= 0.5
        freq *= 2.0
    return total / norm


def evaluate(mat: Material, uv: np.ndarray) -> np.ndarray:
    """Albedo [M, 3] float32 of `mat` at surface coordinates uv [M, 2] (metres)."""
    m = uv.shape[0]
    if mat.kind == "flat":
        return np.broadcast_to(mat.c1, (m, 3))
    ca, sa = np.cos(mat.angle), np.sin(mat.angle)
    u = (uv[:, 0] * ca - uv[:, 1] * sa) / mat.scale
    v = (uv[:, 0] * sa + uv[:, 1] * ca) / mat.scale
    if mat.kind == "checker":
        w = ((np.floor(u) + np.floor(v)) % 2).astype(np.float32)
    elif mat.kind == "stripes":
        w = (np.floor(u) % 2).astype(np.float32)
    elif mat.kind == "noise":
        w = value_noise(u, v, mat.seed)
    elif mat.kind == "gradient":
        w = np.abs(((u * 0.25) % 2.0) - 1.0).astype(np.float32)
    else:
        raise ValueError(f"material kind must be one of {KINDS}, got {mat.kind!r}")
    w = w[:, None]
    return mat.c1 * (1.0 - w) + mat.c2 * w
