"""Value checks for Gaussian scenes and render cameras (concrete inputs only; no-ops on tracers).

Each error names the argument and what was expected.
"""

from __future__ import annotations

import numpy as np

from da3_jax.geometry import check_finite
from da3_jax.geometry.checks import is_concrete


def check_gaussians(means, quats, scales, opacities, colors) -> None:
    """Finite values everywhere, scales >= 0, opacities in [0, 1], non-zero quaternions."""
    for name, x in (("means", means), ("quats", quats), ("scales", scales),
                    ("opacities", opacities), ("colors", colors)):
        check_finite(x, name)
    if is_concrete(scales) and np.size(scales) and np.min(np.asarray(scales)) < 0:
        bad = int(np.sum(np.asarray(scales) < 0))
        raise ValueError(f"scales: expected non-negative standard deviations, found {bad} "
                         "negative entries")
    if is_concrete(opacities) and np.size(opacities):
        o = np.asarray(opacities)
        if o.min() < 0 or o.max() > 1:
            raise ValueError(f"opacities: expected values in [0, 1], got range "
                             f"[{o.min():.4g}, {o.max():.4g}]")
    if is_concrete(quats) and np.size(quats):
        if np.any(np.sum(np.asarray(quats, np.float64) ** 2, axis=-1) == 0):
            raise ValueError("quats: expected non-zero quaternions, found an all-zero row")


def check_scene_in_front(means, w2c, near: float, name: str = "w2c") -> None:
    """Raise when a non-empty scene lies entirely behind the camera(s) (`z < near`).

    `means [G, 3]`; `w2c [..., 3|4, 4]` (any leading camera dims).
    """
    if not (is_concrete(means) and is_concrete(w2c)) or np.size(means) == 0:
        return
    w = np.asarray(w2c, np.float64)
    check_finite(w, name)
    m = np.asarray(means, np.float64)
    z = np.einsum("...j,gj->...g", w[..., 2, :3], m) + w[..., 2, 3][..., None]  # [..., G]
    seen = np.any(z >= near, axis=-1)
    if not np.all(seen):
        bad = np.argwhere(~seen).tolist() if w.ndim > 2 else []
        where = f" (cameras {bad[:5]})" if bad else ""
        raise ValueError(f"{name}: all {m.shape[0]} Gaussians lie behind the camera{where} "
                         f"(camera z < near={near}); check the pose (w2c, OpenCV axes)")
