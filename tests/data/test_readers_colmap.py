"""COLMAP reader: a text model written here by hand (and its pycolmap binary twin), the real
Maupertuis model (points3D reproject onto their recorded keypoints), and bad inputs."""

import os
import shutil

import cv2
import numpy as np
import pycolmap
import pytest
from scipy.spatial.transform import Rotation

from data_pipelines.readers import colmap
from tests.data import readers_scene as S

HW = (24, 32)


def _write_text_model(root, cam_line, w2cs, points, obs):
    """COLMAP text files exactly as COLMAP writes them (quaternion w x y z, w2c)."""
    model = root / "sparse"
    model.mkdir(parents=True)
    (model / "cameras.txt").write_text("# Camera list\n" + cam_line + "\n")
    lines = ["# Image list with two lines of data per image:"]
    for i, w2c in enumerate(w2cs):
        q = Rotation.from_matrix(w2c[:, :3]).as_quat()  # x y z w
        t = w2c[:, 3]
        lines.append(f"{i + 1} {q[3]} {q[0]} {q[1]} {q[2]} {t[0]} {t[1]} {t[2]} 1 v{i}.png")
        lines.append(" ".join(f"{x} {y} {pid}" for x, y, pid in obs[i]))
    (model / "images.txt").write_text("\n".join(lines) + "\n")
    pts = []
    for pid, xyz in points.items():
        track = " ".join(f"{i + 1} {j}" for i in range(len(w2cs)) for j, o in enumerate(obs[i])
                         if o[2] == pid)
        pts.append(f"{pid} {xyz[0]} {xyz[1]} {xyz[2]} 128 128 128 0.5 {track}")
    (model / "points3D.txt").write_text("\n".join(pts) + "\n")
    images = root / "images"
    images.mkdir()
    for i in range(len(w2cs)):
        cv2.imwrite(str(images / f"v{i}.png"), S.texture(HW, i))
    return model, images


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("colmap")
    k = S.k_matrix(*HW)
    w2cs = S.cameras(3)
    rng = np.random.default_rng(0)
    points, obs = {}, [[] for _ in w2cs]
    for pid in range(1, 40):
        uv = rng.uniform([4, 4], [HW[1] - 4, HW[0] - 4])
        d = S.plane_depth(k, w2cs[0], HW)[int(uv[1]), int(uv[0])]
        xyz = S.backproject(np.full(HW, d), k, w2cs[0])[int(uv[1]), int(uv[0])]
        points[pid] = xyz
        for i, w2c in enumerate(w2cs):
            cam = w2c[:, :3] @ xyz + w2c[:, 3]
            x, y = (k @ (cam / cam[2]))[:2]
            if 0 <= x < HW[1] and 0 <= y < HW[0]:
                obs[i].append((x, y, pid))
    cam_line = f"1 PINHOLE {HW[1]} {HW[0]} {k[0, 0]} {k[1, 1]} {k[0, 2]} {k[1, 2]}"
    model, images = _write_text_model(root, cam_line, w2cs, points, obs)
    return root, model, images, k, w2cs, points, obs


def test_text_model_cameras_and_sparse_depth(synthetic):
    root, model, images, k, w2cs, points, obs = synthetic
    rec = colmap.read_colmap(model, images)
    assert rec.depth_kind == "sparse_gt" and not rec.is_metric and rec.num_views == 3
    np.testing.assert_allclose(rec.intrinsics, np.broadcast_to(k, (3, 3, 3)), rtol=1e-6)
    np.testing.assert_allclose(rec.extrinsics, w2cs, atol=1e-5)
    for i, w2c in enumerate(w2cs):
        for x, y, pid in obs[i]:
            z = (w2c[:, :3] @ points[pid] + w2c[:, 3])[2]
            assert rec.depth[i, int(y), int(x)] == pytest.approx(z, rel=1e-5)
        assert 0 < rec.valid[i].sum() <= len(obs[i])


def test_binary_model_matches_text(synthetic, tmp_path):
    _, model, images, *_ = synthetic
    pycolmap.Reconstruction(str(model)).write_binary(str(tmp_path))
    assert sorted(os.listdir(tmp_path))[0].endswith(".bin")
    a = colmap.read_colmap(model, images)
    b = colmap.read_colmap(tmp_path, images)
    np.testing.assert_allclose(a.extrinsics, b.extrinsics, atol=1e-6)
    np.testing.assert_allclose(a.intrinsics, b.intrinsics, atol=1e-6)
    np.testing.assert_array_equal(a.valid, b.valid)


def test_dense_depth_maps(synthetic, tmp_path):
    _, model, images, k, w2cs, *_ = synthetic
    for i, w2c in enumerate(w2cs):
        d = S.plane_depth(k, w2c, HW).astype(np.float32)
        d[0, :5] = np.inf  # COLMAP writes no-depth pixels as 0/inf: invalid
        with open(tmp_path / f"v{i}.png.geometric.bin", "wb") as f:
            f.write(f"{HW[1]}&{HW[0]}&1&".encode() + d.T.astype("<f4").tobytes())
    rec = colmap.read_colmap(model, images, depth_dir=tmp_path)
    assert rec.depth_kind == "dense_gt" and not rec.valid[:, 0, :5].any()
    assert rec.valid.sum() == 3 * (HW[0] * HW[1] - 5)
    S.assert_on_plane(rec, 1e-4)


@pytest.mark.parametrize("model,params,warns", [
    ("SIMPLE_PINHOLE", "40 16 12", False),
    ("SIMPLE_RADIAL", "40 16 12 0.01", True),
    ("OPENCV", "40 44 16 12 0.01 0.0 0.0 0.0", True),
])
def test_camera_models_to_k(model, params, warns):
    cam = pycolmap.Camera.create_from_model_name(1, model, 40.0, 32, 24)
    cam.params = [float(x) for x in params.split()]
    if warns:
        with pytest.warns(UserWarning, match="ignored"):
            k = colmap.camera_to_k(cam)
    else:
        k = colmap.camera_to_k(cam)
    p = [float(x) for x in params.split()]
    fy = p[1] if model == "OPENCV" else p[0]
    cx, cy = (p[2], p[3]) if model == "OPENCV" else (p[1], p[2])
    np.testing.assert_allclose(k, [[p[0], 0, cx], [0, fy, cy], [0, 0, 1]])


def test_unsupported_model_raises():
    cam = pycolmap.Camera.create_from_model_name(1, "OPENCV_FISHEYE", 40.0, 32, 24)
    with pytest.raises(ValueError, match="OPENCV_FISHEYE"):
        colmap.camera_to_k(cam)


def test_bad_inputs(synthetic, tmp_path):
    root, model, images, *_ = synthetic
    bad_model = tmp_path / "model"
    shutil.copytree(model, bad_model)
    os.remove(bad_model / "points3D.txt")
    with pytest.raises(ValueError, match="points3D"):
        colmap.read_colmap(bad_model, images)
    bad_images = tmp_path / "images"
    shutil.copytree(images, bad_images)
    S.truncate(bad_images / "v1.png")
    with pytest.raises(ValueError, match="v1.png"):
        colmap.read_colmap(model, bad_images)
    with pytest.raises(ValueError, match="nope.png"):
        colmap.read_colmap(model, images, image_names=["nope.png"])
    depth_dir = tmp_path / "depth"
    depth_dir.mkdir()
    for i in range(3):  # wrong shape (transposed) depth maps
        d = np.ones((HW[1], HW[0]), np.float32)
        (depth_dir / f"v{i}.png.geometric.bin").write_bytes(
            f"{HW[0]}&{HW[1]}&1&".encode() + d.tobytes())
    with pytest.raises(ValueError, match="shape"):
        colmap.read_colmap(model, images, depth_dir=depth_dir)


def _parse_text_model(model_dir):
    """Reference parse of COLMAP text: {image name: [(x, y, point id)]} and {id: xyz}."""
    obs, pts = {}, {}
    with open(os.path.join(model_dir, "images.txt")) as f:
        lines = [ln.rstrip("\n") for ln in f if not ln.startswith("#")]
    for head, pts2d in zip(lines[0::2], lines[1::2], strict=True):
        vals = pts2d.split()
        obs[head.split()[9]] = [(float(vals[i]), float(vals[i + 1]), int(vals[i + 2]))
                                for i in range(0, len(vals), 3) if int(vals[i + 2]) != -1]
    with open(os.path.join(model_dir, "points3D.txt")) as f:
        for ln in f:
            if ln.strip() and not ln.startswith("#"):
                v = ln.split()
                pts[int(v[0])] = np.array([float(x) for x in v[1:4]])
    return obs, pts


def test_real_maupertuis_reprojection(shared_data):
    from da3_jax.geometry import project

    root = shared_data / "colmap_maupertuis"
    rec = colmap.read_colmap(root / "sparse" / "0", root / "images")
    assert rec.images.shape == (4, 1079, 1919, 3)
    obs, pts = _parse_text_model(root / "sparse" / "0")
    names = [os.path.basename(p) for p in rec.provenance["image_files"]]
    medians, maxima = [], []
    for i, name in enumerate(names):
        xy = np.array([(x, y) for x, y, _ in obs[name]])
        xyz = np.stack([pts[pid] for *_, pid in obs[name]])
        uv, z = project(xyz.astype(np.float32), rec.extrinsics[i], rec.intrinsics[i])
        err = np.linalg.norm(np.asarray(uv, np.float64) - xy, axis=-1)
        assert (np.asarray(z) > 0).all()
        medians.append(np.median(err))
        maxima.append(err.max())
        assert np.median(err) < 0.5 and err.max() < 3.5, (name, np.median(err), err.max())
        # sparse depth: the pixel containing each projection holds its z (the nearest point
        # wins when several land in one pixel)
        uv = np.asarray(uv, np.float64)
        d = rec.depth[i, np.floor(uv[:, 1]).astype(int), np.floor(uv[:, 0]).astype(int)]
        z = np.asarray(z, np.float64)
        assert (d > 0).all() and (d <= z * (1 + 1e-5)).all()
        assert np.mean(np.abs(d - z) < 1e-5 * z) > 0.95
    print("maupertuis reprojection error per image (px): median", np.round(medians, 3),
          "max", np.round(maxima, 2))
