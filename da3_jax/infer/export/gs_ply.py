"""`gs_ply` export: ``<dir>/gs_ply/0000.ply`` in the standard 3D Gaussian Splatting layout.

Vertex properties (float32), as read by the INRIA 3DGS viewers/trainers: x, y, z; nx, ny, nz
(zeros); f_dc_0..2 (degree-0 SH); opacity (logit, i.e. inverse sigmoid); scale_0..2
(natural log); rot_0..3 (unit quaternion **w, x, y, z**). Only the DC colour is written
(upstream `save_sh_dc_only=True`); no pruning. `prediction.gaussians` holds `means [G,3]`,
`scales [G,3]`, `rotations [G,4]` (xyzw), `harmonics [G,3,9]`, `opacities [G]`.
"""

from __future__ import annotations

import os

import numpy as np
from plyfile import PlyData, PlyElement

_FIELDS = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"]
           + [f"scale_{i}" for i in range(3)] + [f"rot_{i}" for i in range(4)])


def export_gs_ply(prediction, export_dir: str) -> str:
    gs = prediction.gaussians
    if gs is None:
        raise ValueError("gs_ply export needs Gaussians: use a model with a GS head and "
                         "infer_gs=True (CLI: --infer-gs)")
    means = np.asarray(gs["means"], np.float32).reshape(-1, 3)
    g = len(means)
    scales = np.asarray(gs["scales"], np.float32).reshape(g, 3)
    q = np.asarray(gs["rotations"], np.float32).reshape(g, 4)
    q = q / np.maximum(np.linalg.norm(q, axis=-1, keepdims=True), 1e-12)
    dc = np.asarray(gs["harmonics"], np.float32).reshape(g, 3, -1)[:, :, 0]
    op = np.clip(np.asarray(gs["opacities"], np.float32).reshape(g), 1e-6, 1 - 1e-6)
    cols = [means, np.zeros((g, 3), np.float32), dc, np.log(op / (1 - op))[:, None],
            np.log(np.maximum(scales, 1e-12)), q[:, [3, 0, 1, 2]]]
    data = np.concatenate(cols, axis=1).astype(np.float32)
    vert = np.empty(g, dtype=[(f, "<f4") for f in _FIELDS])
    for i, f in enumerate(_FIELDS):
        vert[f] = data[:, i]
    folder = os.path.join(export_dir, "gs_ply")
    os.makedirs(folder, exist_ok=True)
    out = os.path.join(folder, "0000.ply")
    PlyData([PlyElement.describe(vert, "vertex")], byte_order="<").write(out)
    return out
