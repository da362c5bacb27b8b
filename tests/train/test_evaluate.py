"""Held-out evaluation: the chance pose baseline against its closed form, ray-map pose scoring."""

import numpy as np

from da3_jax.eval import metrics
from da3_jax.train import evaluate
from data_pipelines.synthetic.render import render_scene
from data_pipelines.synthetic.scenes import SceneConfig


def test_chance_baseline_matches_closed_form():
    # True rotations, uniformly random translation axes: P(axis error < t) = 1 - cos(t), so
    # AUC@T (mean over 1-degree thresholds of the cumulative fraction) = mean_t (1 - cos t).
    recs = [render_scene(i, 4, 14, 14, 3, SceneConfig(trajectory_probs=(0, 1, 0)))
            for i in range(6)]
    out = evaluate.evaluate_chance(recs, draws=150, seed=1)
    t = np.radians(np.arange(1, 31, dtype=np.float64))
    np.testing.assert_allclose(out["mean"]["pose_auc30"], np.mean(1 - np.cos(t)), atol=0.006)
    t3 = np.radians(np.arange(1, 4, dtype=np.float64))
    np.testing.assert_allclose(out["mean"]["pose_auc3"], np.mean(1 - np.cos(t3)), atol=0.002)
    assert out["p05"] <= out["mean"]["pose_auc30"] <= out["p95"]
    rot = metrics.relative_pose_errors(evaluate.chance_w2c(recs[0], np.random.default_rng(0)),
                                       recs[0].extrinsics)["rot_err"]
    assert rot.max() < 0.1  # rotations are the true ones


def test_evaluate_records_scores_ray_map_pose():
    rec = render_scene(0, 3, 14, 14, 3, SceneConfig(trajectory_probs=(0, 1, 0)))
    from da3_jax import geometry

    def predict(images):  # perfect depth; rays of the true cameras; a wrong camera decoder
        del images
        w2c = rec.extrinsics @ np.linalg.inv(np.concatenate(
            [rec.extrinsics[:1], np.array([[[0, 0, 0, 1.0]]])], axis=1))
        origins, dirs = geometry.camera_rays(w2c[None], rec.intrinsics[None], (14, 14),
                                             pixel_center=0.5)
        ray = np.concatenate([np.asarray(dirs), np.asarray(origins)], axis=-1)
        eye = np.broadcast_to(np.eye(4)[:3], (1, 3, 3, 4))
        return {"depth": rec.depth[None], "extrinsics": eye, "ray": ray,
                "ray_conf": np.ones(ray.shape[:-1], np.float32)}

    m = evaluate.evaluate_records(predict, [rec])["mean"]
    assert m["delta1"] == 1.0 and m["pose_auc30"] == 0.0
    assert m["ray_pose_auc30"] > 0.9 and m["ray_pose_auc3"] > 0.5


def test_bootstrap_interval_matches_normal_theory():
    # For the mean of n iid values the bootstrap 5-95 % interval approaches the normal one,
    # mean -/+ 1.645 * s / sqrt(n) with s the plug-in (1/n) standard deviation.
    values = np.random.default_rng(0).uniform(0.0, 1.0, 200)
    lo, hi = evaluate.bootstrap_interval([{"auc": v} for v in values], "auc", draws=8000)
    half = 1.6449 * values.std() / np.sqrt(values.size)
    np.testing.assert_allclose([lo, hi], [values.mean() - half, values.mean() + half],
                               atol=0.08 * half)
