"""Predictors for the benchmark runner: `predict(record, kind) -> dict` (see `runner`).

* `CheckpointPredictor`: a da3_jax model loaded with `da3_jax.infer.Predictor.from_checkpoint`
  (imported lazily), run with reference view 'first' as the benchmark prescribes.
* `OraclePredictor`: the ground truth, optionally perturbed by known amounts (rotation noise
  about each camera centre, depth scale, a world Sim(3)). For sanity checks of the benchmark
  itself: with no perturbation every score is perfect.
"""

from __future__ import annotations

import numpy as np

from da3_jax.eval import protocols
from da3_jax.eval._jax import x64


def _rotation(axis: np.ndarray, angle_deg: float) -> np.ndarray:
    """Rodrigues rotation matrix about unit `axis` by `angle_deg` degrees (float64 [3, 3])."""
    a = np.asarray(axis, np.float64)
    a = a / np.linalg.norm(a)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    th = np.radians(angle_deg)
    return np.eye(3) + np.sin(th) * k + (1 - np.cos(th)) * k @ k


class OraclePredictor:
    """Ground truth as the prediction, with optional known perturbations.

    Args:
      rot_noise_deg: views 1..N-1 are all rotated about their own centres by the same
        camera-frame rotation N of this angle (axis drawn from `seed`; w2c R <- N R, t <- N t,
        so the centres are kept). Then exactly the pairs (0, j) are wrong, with rotation error
        `rot_noise_deg`, and the pairs (i, j), i, j >= 1, stay exact: pose AUC@T for
        T < rot_noise_deg is (N - 2) / N.
      depth_scale: predicted depth = GT depth * depth_scale (GT-invalid pixels stay 0).
      world_scale, world_rotation_deg: the predicted cameras live in a world mapped by
        x -> world_scale * R x (R about a random axis); depth is multiplied by world_scale too,
        so the prediction is exact up to this Sim(3) (pose AUC and aligned reconstruction are
        unaffected).
    """

    def __init__(self, rot_noise_deg: float = 0.0, depth_scale: float = 1.0,
                 world_scale: float = 1.0, world_rotation_deg: float = 0.0, seed: int = 0):
        if depth_scale <= 0 or world_scale <= 0:
            raise ValueError("depth_scale/world_scale: expected > 0")
        self.rot_noise_deg = float(rot_noise_deg)
        self.depth_scale = float(depth_scale)
        self.world_scale = float(world_scale)
        self.world_rotation_deg = float(world_rotation_deg)
        self.seed = int(seed)

    def __call__(self, record, kind: str) -> dict:
        rng = np.random.default_rng(self.seed)
        ext = np.asarray(record.extrinsics, np.float64).copy()
        if self.rot_noise_deg:
            noise = _rotation(rng.normal(size=3), self.rot_noise_deg)
            ext[1:] = noise @ ext[1:]
        depth = np.asarray(record.depth, np.float64) * self.depth_scale
        if self.world_scale != 1.0 or self.world_rotation_deg:
            from da3_jax import geometry

            rot = _rotation(rng.normal(size=3), self.world_rotation_deg)
            with x64():
                ext = np.asarray(geometry.transform_w2c_sim3(
                    ext, self.world_scale, rot, rng.normal(size=3)), np.float64)[:, :3, :]
            depth = depth * self.world_scale
        return {"depth": depth, "extrinsics": ext,
                "intrinsics": np.asarray(record.intrinsics, np.float64)}


class CheckpointPredictor:
    """A da3_jax checkpoint behind the predictor protocol.

    Loads with `da3_jax.infer.Predictor.from_checkpoint(checkpoint, **kwargs)` (any format it
    accepts) and calls `predict(images, extrinsics, intrinsics, process_res=...,
    ref_view_strategy='first')`; outputs are at the processed resolution (the runner resizes
    them back). 'posed' passes the record's GT cameras (outputs aligned back to them, as the
    official API does by default); 'mono' runs every view alone; 'gs' (the `nvs` mode) also
    predicts the 3D Gaussians (`infer_gs=True`; needs a GS head).
    """

    def __init__(self, checkpoint: str, process_res: int = 504,
                 ref_view_strategy: str = protocols.REF_VIEW_STRATEGY, **kwargs):
        from da3_jax.infer import Predictor  # lazy: heavy, and only needed for real models

        self.model = Predictor.from_checkpoint(checkpoint, **kwargs)
        self.process_res = int(process_res)
        self.ref_view_strategy = ref_view_strategy

    def __call__(self, record, kind: str) -> dict:
        if kind == "gs":  # nvs mode: Gaussians from the (context) images, predicted cameras
            out = self.model.predict(record.images, process_res=self.process_res,
                                     ref_view_strategy=self.ref_view_strategy, infer_gs=True)
            return {"gaussians": out.gaussians, "extrinsics": out.extrinsics,
                    "intrinsics": out.intrinsics, "depth": out.depth}
        if kind == "mono":
            outs = [self._run(record.images[i:i + 1]) for i in range(record.num_views)]
            return {"depth": np.concatenate([o["depth"] for o in outs])}
        if kind == "posed":
            return self._run(record.images, record.extrinsics, record.intrinsics)
        return self._run(record.images)

    def _run(self, images, extrinsics=None, intrinsics=None) -> dict:
        out = self.model.predict(images, extrinsics=extrinsics, intrinsics=intrinsics,
                                 process_res=self.process_res,
                                 ref_view_strategy=self.ref_view_strategy)
        return {k: None if getattr(out, k) is None else np.asarray(getattr(out, k))
                for k in ("depth", "extrinsics", "intrinsics")}
