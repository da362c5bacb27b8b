"""Held-out evaluation of a multi-view depth+pose predictor, the trivial and the chance baseline.

Metrics (``da3_jax.eval.metrics``): depth ``delta1`` and ``abs_rel`` after per-image *median*
scale alignment (``align='median'``; the student's depth is up to the scene scale), and pose
``auc03`` / ``auc30`` over all view pairs of each scene (official protocol: rotation error and
translation-*direction* error, sign ambiguity removed). Per-scene values are averaged over
scenes. A DA3 student is scored twice on pose: the camera decoder (``pose_auc3``,
``pose_auc30``) and the ray-map solver (``ray_pose_auc3``, ``ray_pose_auc30``:
``model.da3.ray_pose`` on ``ray`` weighted by ``ray_conf``, as ``use_ray_pose=True``).

Baselines: ``evaluate_baseline`` (constant depth, identity poses: zero translation counts as
90 deg, so its pose AUC is 0 by construction) and ``evaluate_chance`` (the true rotations with
random translation directions, averaged over draws: the pose AUC a predictor gets that knows
the rotations but nothing about where the cameras moved).
"""

from __future__ import annotations

import functools

import grain
import jax
import numpy as np

from da3_jax.eval import metrics
from da3_jax.imagenet import imagenet_normalize
from data_pipelines.record import SceneRecord


def load_records(sources) -> list[SceneRecord]:
    """All records of the given array_record files."""
    out = []
    for path in sources:
        src = grain.sources.ArrayRecordDataSource([path])
        out.extend(SceneRecord.from_bytes(src[i]) for i in range(len(src)))
    return out


def pose_metrics(w2c, record: SceneRecord, prefix: str = "") -> dict:
    """``{prefix}pose_auc3`` / ``{prefix}pose_auc30`` of predicted w2c ``[N, 3|4, 4]``."""
    p = metrics.pose_auc(np.asarray(w2c), record.extrinsics, thresholds=(3, 30))
    return {f"{prefix}pose_auc3": p["auc03"], f"{prefix}pose_auc30": p["auc30"]}


def scene_metrics(depth, w2c, record: SceneRecord) -> dict:
    """delta1 / abs_rel (median-aligned) and pose AUC@3/@30 of one scene's prediction."""
    d = metrics.depth_metrics(np.asarray(depth), record.depth, record.valid, align="median")
    return {"delta1": d["delta1"], "abs_rel": d["abs_rel"], **pose_metrics(w2c, record)}


def _mean(per_scene: list[dict]) -> dict:
    return {k: float(np.mean([s[k] for s in per_scene])) for k in per_scene[0]}


def bootstrap_interval(per_scene: list[dict], key: str, draws: int = 2000, seed: int = 0,
                       quantiles=(0.05, 0.95)) -> tuple[float, float]:
    """Bootstrap interval of the all-scene mean of ``per_scene[i][key]``: the scenes are
    resampled with replacement ``draws`` times and the ``quantiles`` of the resampled means are
    returned (how much a metric would move on another held-out set of the same size)."""
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    values = np.asarray([s[key] for s in per_scene], np.float64)
    idx = np.random.default_rng(seed).integers(0, len(values), (draws, len(values)))
    lo, hi = np.quantile(values[idx].mean(axis=1), quantiles)
    return float(lo), float(hi)


@functools.cache
def _ray_pose_fn(image_hw: tuple[int, int]):
    from da3_jax.model.da3 import ray_pose

    return jax.jit(lambda ray, conf: ray_pose(ray, conf, image_hw)[0])


def _ray_extrinsics(ray, ray_conf, image_hw) -> np.ndarray:
    """w2c ``[N, 3, 4]`` from one scene's ray map ``[N, h, w, 6]`` and ``ray_conf``."""
    return np.asarray(_ray_pose_fn(tuple(int(x) for x in image_hw))(ray, ray_conf))


def evaluate_records(predict, records: list[SceneRecord]) -> dict:
    """``predict(images [1,N,H,W,3] normalised) -> {'depth','extrinsics'[, 'ray','ray_conf']}``.

    With ``ray`` / ``ray_conf`` in the prediction the ray-map pose is scored too
    (``ray_pose_auc3`` / ``ray_pose_auc30``). Returns ``{'mean': {...}, 'per_scene': [...],
    'predictions': [(depth, w2c), ...]}`` (camera-decoder w2c).
    """
    per, preds = [], []
    for r in records:
        out = predict(imagenet_normalize(r.images.astype(np.float32) / 255.0)[None])
        depth, w2c = np.asarray(out["depth"][0]), np.asarray(out["extrinsics"][0])
        preds.append((depth, w2c))
        m = scene_metrics(depth, w2c, r)
        if "ray" in out and "ray_conf" in out:
            ray_w2c = _ray_extrinsics(out["ray"][0], out["ray_conf"][0], r.image_hw)
            m.update(pose_metrics(ray_w2c, r, prefix="ray_"))
        per.append(m)
    return {"mean": _mean(per), "per_scene": per, "predictions": preds}


def evaluate_baseline(records: list[SceneRecord]) -> dict:
    """Trivial predictor: a constant depth (the median of nothing-known = 1; after median
    alignment any constant is the GT median) and identity poses for every view."""
    per = []
    for r in records:
        n = r.num_views
        depth = np.ones(r.depth.shape, np.float32)
        w2c = np.broadcast_to(np.eye(4, dtype=np.float32)[:3], (n, 3, 4))
        per.append(scene_metrics(depth, w2c, r))
    return {"mean": _mean(per), "per_scene": per}


def chance_w2c(record: SceneRecord, rng: np.random.Generator) -> np.ndarray:
    """w2c ``[N, 3, 4]``: the true rotations, each camera centre at a random point of the unit
    sphere around the first one (so pairwise translation directions are random)."""
    rot = np.asarray(record.extrinsics[:, :3, :3], np.float64)
    centres = rng.standard_normal((record.num_views, 3))
    centres /= np.linalg.norm(centres, axis=-1, keepdims=True)
    centres[0] = 0.0
    t = -np.einsum("nij,nj->ni", rot, centres)
    return np.concatenate([rot, t[..., None]], axis=-1)


def evaluate_chance(records: list[SceneRecord], draws: int = 32, seed: int = 0) -> dict:
    """Pose AUC of ``chance_w2c`` averaged over ``draws`` draws per scene.

    Returns ``{'mean': {'pose_auc3', 'pose_auc30'}, 'draws': draws, 'p05', 'p95'}`` where
    ``p05`` / ``p95`` are the 5 / 95 % quantiles over draws of the all-scene mean AUC@30.
    """
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    rng = np.random.default_rng(seed)
    per_draw = [_mean([pose_metrics(chance_w2c(r, rng), r) for r in records])
                for _ in range(draws)]
    auc30 = [d["pose_auc30"] for d in per_draw]
    return {"mean": _mean(per_draw), "draws": draws,
            "p05": float(np.quantile(auc30, 0.05)), "p95": float(np.quantile(auc30, 0.95))}
