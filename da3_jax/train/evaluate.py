"""Held-out evaluation of a multi-view depth+pose predictor, and the trivial baseline.

Metrics (``da3_jax.eval.metrics``): depth ``delta1`` and ``abs_rel`` after per-image *median*
scale alignment (``align='median'``; the student's depth is up to the scene scale), and pose
``auc03`` / ``auc30`` over all view pairs of each scene (official protocol). Per-scene values
are averaged over scenes.
"""

from __future__ import annotations

import grain
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


def scene_metrics(depth, w2c, record: SceneRecord) -> dict:
    """delta1 / abs_rel (median-aligned) and pose AUC@3/@30 of one scene's prediction."""
    d = metrics.depth_metrics(np.asarray(depth), record.depth, record.valid, align="median")
    p = metrics.pose_auc(np.asarray(w2c), record.extrinsics, thresholds=(3, 30))
    return {"delta1": d["delta1"], "abs_rel": d["abs_rel"],
            "pose_auc3": p["auc03"], "pose_auc30": p["auc30"]}


def _mean(per_scene: list[dict]) -> dict:
    return {k: float(np.mean([s[k] for s in per_scene])) for k in per_scene[0]}


def evaluate_records(predict, records: list[SceneRecord]) -> dict:
    """``predict(images [1,N,H,W,3] normalised) -> {'depth','extrinsics'}`` over ``records``.

    Returns ``{'mean': {...}, 'per_scene': [...], 'predictions': [(depth, w2c), ...]}``.
    """
    per, preds = [], []
    for r in records:
        out = predict(imagenet_normalize(r.images.astype(np.float32) / 255.0)[None])
        depth, w2c = np.asarray(out["depth"][0]), np.asarray(out["extrinsics"][0])
        preds.append((depth, w2c))
        per.append(scene_metrics(depth, w2c, r))
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
