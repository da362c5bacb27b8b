"""`nvs` mode: the view split, and the alignment + render plumbing against float64 NumPy renders
of a known scene whose 'prediction' lives in a Sim(3)-transformed frame."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from da3_jax.eval import nvs
from da3_jax.eval.__main__ import main as eval_main
from da3_jax.eval.lpips import LpipsMetric
from da3_jax.eval.runner import evaluate_scene
from data_pipelines.record import SceneRecord
from tests.eval._lpips_weights import write_random_weights
from tests.render._reference import render_reference

HW = (24, 32)
K = np.array([[28.0, 0, 16.0], [0, 28.0, 12.0], [0, 0, 1]])
C0 = 0.28209479177387814


def _cameras(n, seed=0):
    rng = np.random.default_rng(seed)
    w2c = np.tile(np.eye(4), (n, 1, 1))
    for i in range(n):
        w2c[i, :3, :3] = Rotation.from_rotvec(rng.normal(scale=0.08, size=3)).as_matrix()
        w2c[i, :3, 3] = [0.4 * np.sin(i / 3), 0.1 * np.cos(i / 2), 0.02 * i]
    return w2c


def test_split_views_targets_and_farthest_point_contexts():
    w2c = _cameras(30)
    ctx, tgt = nvs.split_views(w2c)
    np.testing.assert_array_equal(tgt, [0, 8, 16, 24])
    assert len(ctx) == 12 and not set(ctx) & set(tgt) and 1 in ctx
    # the second pick is the farthest from frame 1 under the documented distance
    rest = np.setdiff1d(np.arange(30), tgt)
    c = np.stack([-r.T @ t for r, t in zip(w2c[rest, :3, :3], w2c[rest, :3, 3], strict=True)])
    spread = np.median(np.linalg.norm(c - c.mean(0), axis=1))
    ang = Rotation.from_matrix(w2c[rest, :3, :3] @ w2c[1, :3, :3].T).magnitude()
    d = np.linalg.norm(c - c[0], axis=1) / spread + ang
    assert rest[int(np.argmax(d))] in ctx


def gaussian_scene(seed=1, g=150):
    """Random isotropic Gaussians in front of `_cameras` (float64, final colours `rgb`)."""
    rng = np.random.default_rng(seed)
    return {"means": rng.uniform([-1.2, -0.9, 2.5], [1.2, 0.9, 4.0], (g, 3)),
            "sigma": rng.uniform(0.05, 0.15, g), "op": rng.uniform(0.5, 0.95, g),
            "rgb": rng.uniform(0.1, 0.9, (g, 3)), "quats": np.tile([1.0, 0, 0, 0], (g, 1))}


def reference_images(scene, w2c, k=K, hw=HW):
    """uint8 `[N, H, W, 3]` float64 reference renders of `scene` (black background)."""
    sc = scene
    images = np.stack([render_reference(sc["means"], sc["quats"],
                                        np.repeat(sc["sigma"][:, None], 3, 1), sc["op"],
                                        sc["rgb"], c, k, hw, np.zeros(3))["rgb"] for c in w2c])
    return np.round(np.clip(images, 0, 1) * 255).astype(np.uint8)


def sim3_predictor(scene, num_context=12):
    """A 'prediction': the same scene in a world x' = s R x + t (s, R, t known), as the `gs`
    predictor of `evaluate_nvs` (context cameras mapped into that world, Gaussians too)."""
    s, rot = 0.5, Rotation.from_rotvec([0.3, -0.2, 0.5]).as_matrix()
    t = np.array([1.0, -2.0, 0.5])
    sc = scene

    def predict(rec, kind):
        assert kind == "gs" and rec.num_views == num_context
        w = np.asarray(rec.extrinsics, np.float64)
        return {"extrinsics": np.concatenate([w[:, :, :3] @ rot.T, (
            s * w[:, :, 3] - np.einsum("nij,j->ni", w[:, :, :3] @ rot.T, t))[..., None]], -1),
                "gaussians": {"means": sc["means"] @ rot.T * s + t, "rotations": sc["quats"],
                              "scales": np.repeat(sc["sigma"][:, None], 3, 1) * s,
                              "opacities": sc["op"],
                              "harmonics": ((sc["rgb"] - 0.5) / C0)[:, :, None]}}

    return predict


def test_evaluate_nvs_recovers_the_frame_and_renders_targets(tmp_path):
    scene = gaussian_scene()
    n = 17
    w2c = _cameras(n, seed=2)
    record = SceneRecord(
        images=reference_images(scene, w2c),
        depth=np.ones((n,) + HW, np.float32), valid=np.ones((n,) + HW, bool),
        intrinsics=np.tile(K, (n, 1, 1)).astype(np.float32),
        extrinsics=w2c[:, :3].astype(np.float32), dataset="synthetic", scene_id="s0",
        is_metric=False, depth_kind="dense_gt")
    metric = LpipsMetric(write_random_weights(tmp_path / "lpips_vgg.safetensors"))
    seen = []

    def lpips(pred, gt):
        seen.append((pred, gt))
        return metric(pred, gt)

    out = evaluate_scene(record, sim3_predictor(scene), ["nvs"], lpips=lpips)
    res, per = out["nvs"], out["nvs_per_target"]
    assert res["num_target"] == 3 and res["render_overflow"] == 0
    assert res["psnr"] > 40 and res["ssim"] > 0.99, res
    # LPIPS per target: the renders against the target frames in [0, 1], in frame order
    (pred, gt), = seen
    assert per["frame"] == [0, 8, 16] and len(per["lpips"]) == 3
    np.testing.assert_array_equal(gt, record.images[[0, 8, 16]] / 255.0)
    np.testing.assert_allclose(per["psnr"], -10 * np.log10(np.mean((pred - gt) ** 2, (1, 2, 3))))
    np.testing.assert_allclose(per["lpips"], metric(pred, gt), rtol=1e-6)
    assert res["lpips"] == pytest.approx(np.mean(per["lpips"]))
    assert max(per["lpips"]) < 0.5 * float(metric(pred, gt[::-1])[0])  # wrong target: further
    with pytest.raises(ValueError, match="lpips_weights: only the nvs mode"):  # CLI -> runner
        eval_main(["--checkpoint", "oracle", "--dataset", "hiroom", "--data-dir", str(tmp_path),
                   "--out", str(tmp_path), "--modes", "pose", "--lpips-weights",
                   str(tmp_path / "lpips_vgg.safetensors")])
