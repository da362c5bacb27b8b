"""Benchmark runner: a tiny synthetic benchmark in the HiRoom layout, and the real scenes of
../shared/data with ground truth (optionally perturbed by known amounts) as the prediction."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from da3_jax.eval import __main__ as cli
from da3_jax.eval import metrics, predictors, runner

# ----------------------------------------------------------------------- synthetic benchmark


def _write_ply_points(path, pts):
    from plyfile import PlyData, PlyElement

    v = np.array([tuple(p) for p in pts], dtype=[("x", "f8"), ("y", "f8"), ("z", "f8")])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    PlyData([PlyElement.describe(v, "vertex")]).write(path)


def _unproject_opencv(depth, k, w2c):
    """Independent reference: X_cam = d K^-1 [j, i, 1] (OpenCV K, integer pixel indices)."""
    i, j = np.nonzero(depth > 0)
    pix = np.stack([j, i, np.ones_like(i)], axis=0).astype(np.float64)
    cam = np.linalg.inv(k) @ pix * depth[i, j]
    return (w2c[:3, :3].T @ (cam - w2c[:3, 3:4])).T


def _write_hiroom(root, scenes=("a/b/c", "a/b/d"), n=5, hw=(24, 32)):
    """HiRoom layout (official loader): data/<scene>/{image,depth,pose,cam_K.npy}, scene list,
    and for the first scene the GT cloud fused_pcd/<a-b-c>.ply (GT depth unprojected)."""
    rng = np.random.default_rng(0)
    h, w = hw
    k = np.array([[30.0, 0, w / 2 - 0.5], [0, 30.0, h / 2 - 0.5], [0, 0, 1]])  # OpenCV conv.
    for si, scene in enumerate(scenes):
        d = os.path.join(root, "data", scene)
        for sub in ("image", "depth", "pose"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        np.save(os.path.join(d, "cam_K.npy"), k)
        rots = Rotation.random(n, random_state=si).as_matrix()
        cloud = []
        for i in range(n):
            img = rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)
            Image.fromarray(img).save(os.path.join(d, "image", f"{i:04d}.png"))
            depth = rng.uniform(1.0, 4.0, size=(h, w))
            depth[0, :3] = 0.0  # a few invalid pixels
            png = np.round(depth / 100.0 * 65535).astype(np.uint16)
            Image.fromarray(png).save(os.path.join(d, "depth", f"{i:04d}.png"))
            pose = np.eye(4)
            pose[:3, :3] = rots[i]
            pose[:3, 3] = rng.normal(size=3)
            np.save(os.path.join(d, "pose", f"{i:04d}.npy"), pose)
            cloud.append(_unproject_opencv(png.astype(np.float64) / 65535 * 100, k, pose))
        if si == 0:
            _write_ply_points(os.path.join(root, "fused_pcd", scene.replace("/", "-") + ".ply"),
                              np.concatenate(cloud))
    with open(os.path.join(root, "selected_scene_list_val.txt"), "w") as f:
        f.write("\n".join(scenes) + "\n")
    return list(scenes)


def _write_7scenes(root, n=6, hw=(24, 32)):
    """7Scenes layout: 7Scenes/chess/seq-01/frame-XXXXXX.{color.png,depth.png,pose.txt} (c2w)."""
    rng = np.random.default_rng(1)
    seq = os.path.join(root, "7Scenes", "chess", "seq-01")
    os.makedirs(seq)
    rots = Rotation.random(n, random_state=3).as_matrix()
    for i in range(n):
        stem = os.path.join(seq, f"frame-{i:06d}")
        Image.fromarray(rng.integers(0, 255, size=hw + (3,), dtype=np.uint8)).save(
            stem + ".color.png")
        Image.fromarray(rng.integers(500, 4000, size=hw).astype(np.uint16)).save(
            stem + ".depth.png")
        c2w = np.eye(4)
        c2w[:3, :3], c2w[:3, 3] = rots[i], rng.normal(size=3)
        np.savetxt(stem + ".pose.txt", c2w)
    return ["chess"]


def _write_dtu64(root, n=5, hw=(24, 32)):
    """DTU-64 layout: scan24/image/XXXXXXXX.png, Cameras/XXXXXXXX_cam.txt (MVSNet, w2c)."""
    rng = np.random.default_rng(2)
    os.makedirs(os.path.join(root, "scan24", "image"))
    os.makedirs(os.path.join(root, "Cameras"))
    rots = Rotation.random(n, random_state=4).as_matrix()
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, size=hw + (3,), dtype=np.uint8)).save(
            os.path.join(root, "scan24", "image", f"{i:08d}.png"))
        ext = np.eye(4)
        ext[:3, :3], ext[:3, 3] = rots[i], rng.normal(size=3) * 100
        k = "30 0 15.5\n0 30 11.5\n0 0 1"
        rows = "\n".join(" ".join(f"{v:.12f}" for v in r) for r in ext)
        with open(os.path.join(root, "Cameras", f"{i:08d}_cam.txt"), "w") as f:
            f.write(f"extrinsic\n{rows}\n\nintrinsic\n{k}\n\n425 2.5\n")
    return ["scan24"]


@pytest.mark.parametrize("dataset,writer", [("7scenes", _write_7scenes),
                                            ("dtu64", _write_dtu64)])
def test_runner_other_layouts(tmp_path, dataset, writer):
    data, out = str(tmp_path / dataset), str(tmp_path / "out")
    scenes = writer(data)
    agg = runner.run_benchmark(dataset, data, predictors.OraclePredictor(), out,
                               modes=("pose", "recon_unposed"), max_frames=4, progress=False,
                               plots=False)
    assert agg["pose"]["mean"]["auc03"] == 1.0
    with open(runner.scene_json_path(out, dataset, scenes[0])) as f:
        assert json.load(f)["num_views"] == 4  # sampled down from more frames
    if dataset == "dtu64":  # pose-only benchmark: no reconstruction entry
        assert "recon_unposed" not in agg
    else:
        assert agg["recon_unposed"]["mean"]["fscore"] == 1.0


class _Counting:
    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def __call__(self, record, kind):
        self.calls.append((record.scene_id, kind))
        return self.inner(record, kind)


def test_runner_synthetic_hiroom_perfect_and_resumable(tmp_path):
    data, out = str(tmp_path / "hiroom"), str(tmp_path / "out")
    scenes = _write_hiroom(data)
    pred = _Counting(predictors.OraclePredictor(world_scale=3.0, world_rotation_deg=50.0))
    agg = runner.run_benchmark("hiroom", data, pred, out,
                               modes=("pose", "recon_unposed", "recon_posed"), progress=False)
    assert sorted(pred.calls) == sorted([(s, k) for s in scenes for k in ("unposed", "posed")])
    mean = agg["pose"]["mean"]
    assert mean["auc03"] == 1.0 and mean["auc30"] == 1.0
    for mode in ("recon_unposed", "recon_posed"):
        m = agg[mode]["mean"]
        # Scene 0 is scored against its fused_pcd PLY (written from an independent
        # unprojection), scene 1 against its unprojected GT depth.
        assert m["fscore"] == 1.0 and m["overall"] < 1e-4, mode
        assert agg[mode][scenes[0]]["scale"] == pytest.approx(1 / 3.0, rel=1e-5)
    ddir = os.path.join(out, "hiroom")
    for f in ("metrics.json", "results.md", "plots/pose_error_cdf.png",
              "plots/per_scene_pose.png", "plots/per_scene_recon_unposed.png"):
        assert os.path.getsize(os.path.join(ddir, f)) > 0, f
    with open(runner.scene_json_path(out, "hiroom", scenes[1])) as f:
        js = json.load(f)
    assert js["num_views"] == 5 and len(js["errors"]["pose_errors"]["pair_err"]) == 10
    with open(os.path.join(ddir, "metrics.json")) as f:
        assert json.load(f)["pose"]["mean"]["auc03"] == 1.0
    md = open(os.path.join(ddir, "results.md")).read()
    assert "| da3_jax | 1.0000 | 1.0000 | 1.0000 |" in md
    assert "HiRoom AUC@3" in open(os.path.join(out, "summary.md")).read()

    # Resume: finished modes are not recomputed; only the new mode calls the predictor.
    pred.calls.clear()
    agg = runner.run_benchmark("hiroom", data, pred, out, modes=("pose", "mono"),
                               progress=False, plots=False)
    assert sorted(pred.calls) == sorted([(s, "mono") for s in scenes])
    assert agg["mono"]["mean"]["abs_rel"] == 0.0 and agg["pose"]["mean"]["auc03"] == 1.0


def test_load_gt_points_mesh(tmp_path):
    from plyfile import PlyData, PlyElement

    from da3_jax.eval import recon

    verts = np.array([(0, 0, 0), (2, 0, 0), (2, 1, 0), (0, 1, 0)],
                     dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    faces = np.array([([0, 1, 2],), ([0, 2, 3],)], dtype=[("vertex_indices", "i4", (3,))])
    path = str(tmp_path / "mesh.ply")
    PlyData([PlyElement.describe(verts, "vertex"), PlyElement.describe(faces, "face")]).write(path)
    pts = recon.load_gt_points({"gt_mesh": path}, num_points=2000)
    assert pts.shape == (2000, 3) and np.all(pts[:, 2] == 0)
    assert 0 <= pts[:, 0].min() and pts[:, 0].max() <= 2 and pts[:, 1].max() <= 1
    assert abs(np.mean(pts[:, 0]) - 1.0) < 0.05  # uniform over the 2 x 1 rectangle
    assert recon.load_gt_points({"gt_mesh": str(tmp_path / "missing.ply")}) is None


def test_cli_oracle_perturbed(tmp_path, capsys):
    data, out = str(tmp_path / "hiroom"), str(tmp_path / "out")
    _write_hiroom(data, scenes=("x/y/z",), n=6)
    rc = cli.main(["--checkpoint", "oracle", "--dataset", "hiroom", "--data-dir", data,
                   "--out", out, "--modes", "pose,mono", "--no-plots",
                   "--oracle-rot-noise", "4", "--oracle-depth-scale", "1.2",
                   "--depth-align", "none"])
    assert rc == 0
    with open(os.path.join(out, "hiroom", "metrics.json")) as f:
        agg = json.load(f)
    assert agg["pose"]["mean"]["auc03"] == pytest.approx(4 / 6, abs=1e-12)  # (N - 2) / N
    # GT depth was quantised to uint16 in the PNG; the prediction is that depth * 1.2.
    assert agg["mono"]["mean"]["abs_rel"] == pytest.approx(0.2, abs=1e-6)
    assert "pose" in capsys.readouterr().out
    with pytest.raises(ValueError, match="modes"):
        runner.check_modes("pose,bogus")


# ------------------------------------------------------------------------- real shared data


def _strided(record, step):
    """Every `step`-th pixel (from 0) of a record; K follows (pixel-edge convention)."""
    from da3_jax import geometry

    k = geometry.rescale_intrinsics(geometry.crop_intrinsics(record.intrinsics, -0.5 * (step - 1),
                                                             -0.5 * (step - 1)),
                                    1.0 / step, 1.0 / step)
    return dataclasses.replace(
        record, images=record.images[:, ::step, ::step], depth=record.depth[:, ::step, ::step],
        valid=record.valid[:, ::step, ::step], intrinsics=np.asarray(k, np.float32)).validate()


@pytest.fixture(scope="module")
def hololens(shared_data):
    from data_pipelines.readers.rgbd import read_hololens_clip

    return _strided(read_hololens_clip(shared_data / "hololens_dvmvs_office"), 3)


def test_hololens_ground_truth_is_perfect(hololens):
    res = runner.evaluate_scene(hololens, predictors.OraclePredictor(),
                                ("pose", "recon_unposed", "recon_posed", "mono"))
    assert res["pose"]["auc03"] == 1.0 and res["pose"]["auc30"] == 1.0
    for mode in ("recon_unposed", "recon_posed"):
        # Sub-0.1 mm: geometry.umeyama works in float32 (scale, rotation to ~1e-7).
        assert res[mode]["fscore"] == 1.0 and res[mode]["acc"] < 1e-4, mode
    assert res["mono"]["abs_rel"] == 0.0 and res["mono"]["delta1"] == 1.0


def test_hololens_known_perturbations(hololens):
    n = hololens.num_views
    k = 4.0
    res = runner.evaluate_scene(hololens, predictors.OraclePredictor(rot_noise_deg=k), ("pose",))
    assert res["pose"]["auc03"] == pytest.approx((n - 2) / n, abs=1e-12)
    errs = metrics.relative_pose_errors(
        predictors.OraclePredictor(rot_noise_deg=k)(hololens, "unposed")["extrinsics"],
        hololens.extrinsics)
    first = errs["pairs"][:, 0] == 0
    # Not exactly k: the stored GT rotations are orthonormal only to ~6e-6.
    np.testing.assert_allclose(errs["rot_err"][first], k, atol=0.05)
    assert errs["pair_err"][~first].max() < 1e-4
    # Depth scaled by s: abs_rel = |s - 1| unaligned, 0 after median alignment.
    s = 1.1
    scaled = predictors.OraclePredictor(depth_scale=s)
    res = runner.evaluate_scene(hololens, scaled, ("mono",), depth_align="none")
    assert res["mono"]["abs_rel"] == pytest.approx(abs(s - 1), abs=1e-6)
    assert res["mono"]["delta1"] == 1.0
    res = runner.evaluate_scene(hololens, scaled, ("mono",), depth_align="median")
    assert res["mono"]["abs_rel"] < 1e-6
    # Prediction exact up to a world Sim(3): pose AUC and aligned reconstruction stay perfect;
    # with depth scaled too, reconstruction degrades (points move by 10 % of ~1-7 m).
    sim3 = predictors.OraclePredictor(world_scale=0.3, world_rotation_deg=60.0)
    res = runner.evaluate_scene(hololens, sim3, ("pose", "recon_unposed"))
    assert res["pose"]["auc03"] == 1.0 and res["recon_unposed"]["fscore"] == 1.0
    bad = predictors.OraclePredictor(world_scale=0.3, world_rotation_deg=60.0, depth_scale=s)
    res = runner.evaluate_scene(hololens, bad, ("recon_unposed",))
    assert res["recon_unposed"]["fscore"] < 0.5


def test_colmap_pose_ground_truth_and_noise(shared_data):
    from data_pipelines.readers.colmap import read_colmap

    root = shared_data / "colmap_maupertuis"
    rec = read_colmap(root / "sparse" / "0", root / "images")
    n = rec.num_views
    gt = metrics.pose_auc(rec.extrinsics, rec.extrinsics)
    assert gt["auc03"] == 1.0 and gt["auc30"] == 1.0
    res = runner.evaluate_scene(rec, predictors.OraclePredictor(rot_noise_deg=5.0), ("pose",))
    assert res["pose"]["auc03"] == pytest.approx((n - 2) / n, abs=1e-12)
    assert res["pose"]["auc30"] < 1.0


def test_prediction_at_lower_resolution_is_resized_back():
    """Predictions at half resolution (K for that size) are resized back like the official
    benchmark: nearest-neighbour depth, K rescaled. With GT depth constant on 2x2 blocks this
    is lossless, so the scores stay perfect."""
    from data_pipelines.record import SceneRecord

    rng = np.random.default_rng(9)
    n, h, w = 4, 12, 16
    depth = np.repeat(np.repeat(rng.uniform(1, 3, size=(n, h // 2, w // 2)), 2, 1), 2, 2)
    ext = np.tile(np.eye(4)[:3], (n, 1, 1))
    ext[:, :, :3] = Rotation.random(n, random_state=9).as_matrix()
    ext[:, :, 3] = rng.normal(size=(n, 3))
    k = np.array([[20.0, 0, 8], [0, 20.0, 6], [0, 0, 1]])
    rec = SceneRecord(images=np.zeros((n, h, w, 3), np.uint8), depth=depth.astype(np.float32),
                      valid=np.ones((n, h, w), bool), intrinsics=np.tile(k, (n, 1, 1)).astype(
                          np.float32), extrinsics=ext.astype(np.float32), dataset="synthetic",
                      scene_id="s", is_metric=True, depth_kind="dense_gt").validate()
    k_half = np.diag([0.5, 0.5, 1.0]) @ k

    def half_res(record, kind):
        return {"depth": record.depth[:, ::2, ::2], "extrinsics": record.extrinsics,
                "intrinsics": np.tile(k_half, (n, 1, 1))}

    res = runner.evaluate_scene(rec, half_res, ("mono", "recon_unposed", "recon_posed"))
    assert res["mono"]["abs_rel"] == 0.0
    assert res["recon_unposed"]["fscore"] == 1.0 and res["recon_unposed"]["acc"] < 1e-4
    assert res["recon_posed"]["fscore"] == 1.0 and res["recon_posed"]["acc"] < 1e-4
    depth_only = runner.evaluate_scene(rec, lambda r, k: {"depth": r.depth[:, ::2, ::2]},
                                       ("mono",))
    assert depth_only["mono"]["abs_rel"] == 0.0  # mono predictions need only depth
    with pytest.raises(ValueError, match="intrinsics"):
        runner.evaluate_scene(rec, lambda r, k: {**half_res(r, k), "intrinsics": k_half},
                              ("recon_posed",))
