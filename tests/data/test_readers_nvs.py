"""NVS benchmark readers (DL3DV nerfstudio / 3DGS, Tanks and Temples, MegaDepth): tiny scenes
written here in each exact layout from float64 ground truth (OpenGL c2w + full-resolution
intrinsics for DL3DV's transforms.json, COLMAP text models for the others), the real Maupertuis
COLMAP model in a Tanks-and-Temples layout (against pycolmap), the 270x480-style resize, errors."""

import json
import os

import cv2
import numpy as np
import pycolmap
import pytest
from scipy.spatial.transform import Rotation

from data_pipelines.readers import BENCHMARKS, _io, dl3dv, megadepth, tanks_temples
from tests.data import readers_scene as S

HW = (24, 40)  # stored images (DL3DV images_8-like)
FULL = 8  # full-resolution factor of the DL3DV calibration
GL = np.diag([1.0, -1.0, -1.0, 1.0])  # OpenCV <-> OpenGL camera axes (float64 reference)


def _truth(n, seed=0):
    """Random OpenCV w2c [n, 3, 4] and K [3, 3] at the full resolution (float64)."""
    rng = np.random.default_rng(seed)
    rot = Rotation.random(n, random_state=seed).as_matrix()
    w2c = np.concatenate([rot, rng.normal(scale=2.0, size=(n, 3, 1))], -1)
    k = np.array([[31.3 * FULL, 0, 20.6 * FULL], [0, 30.1 * FULL, 11.8 * FULL], [0, 0, 1]])
    return w2c, k


def _write_png(path, rgb):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(str(path), rgb[..., ::-1])


def _write_dl3dv(root, scene, w2c, k, images, order, **extra):
    """``<root>/<scene>/nerfstudio/{transforms.json, images_8/frame_XXXXX.png}`` as DL3DV."""
    ns = root / scene / "nerfstudio"
    frames = []
    for i in order:
        name = f"frame_{i + 1:05d}.png"
        _write_png(ns / "images_8" / name, images[i])
        frames.append({"file_path": f"images/{name}", "colmap_im_id": int(i + 1),
                       "transform_matrix": (S.c2w_of(w2c[i]) @ GL).tolist()})
    meta = {"w": HW[1] * FULL, "h": HW[0] * FULL, "fl_x": k[0, 0], "fl_y": k[1, 1],
            "cx": k[0, 2], "cy": k[1, 2], "k1": 0.01, "k2": -0.002, "p1": 0.0, "p2": 0.0,
            "camera_model": "OPENCV", "frames": frames,
            "applied_transform": [[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0]], **extra}
    (ns / "transforms.json").write_text(json.dumps(meta))
    return ns


@pytest.fixture(scope="module")
def dl3dv_scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("dl3dv")
    n = 11
    w2c, k = _truth(n)
    images = [S.texture(HW, i) for i in range(n)]
    order = np.random.default_rng(3).permutation(n)  # JSON order is not the frame order
    _write_dl3dv(root, "a1b2c3", w2c, k, images, order)
    return root, w2c, k, np.stack(images)


def test_dl3dv_nerfstudio_layout(dl3dv_scene):
    root, w2c, k, images = dl3dv_scene
    assert BENCHMARKS["dl3dv"] is dl3dv and dl3dv.list_scenes(root) == ["a1b2c3"]
    with pytest.warns(UserWarning, match="distortion is ignored"):
        rec = dl3dv.load_scene(root, "a1b2c3", hw=None)
    names = [os.path.basename(p) for p in rec.provenance["image_files"]]
    assert names == [f"frame_{i + 1:05d}.png" for i in range(11)]
    np.testing.assert_array_equal(rec.images, images)
    np.testing.assert_allclose(rec.extrinsics, w2c, atol=2e-5)
    k8 = np.diag([1 / FULL, 1 / FULL, 1]) @ k
    np.testing.assert_allclose(rec.intrinsics, np.broadcast_to(k8, (11, 3, 3)), rtol=1e-6)
    assert not rec.valid.any()
    # max_frames: the official random subset, still in frame order
    with pytest.warns(UserWarning):
        sub = dl3dv.load_scene(root, "a1b2c3", max_frames=4, hw=None)
    keep = _io.sample_frames(11, 4)
    assert sub.provenance["image_files"] == [rec.provenance["image_files"][i] for i in keep]
    np.testing.assert_allclose(sub.extrinsics, w2c[keep], atol=2e-5)


def test_resize_cover_crop_scales_k(dl3dv_scene):
    root, _, k, images = dl3dv_scene
    k8 = np.diag([1 / FULL, 1 / FULL, 1]) @ k
    half = images.reshape(11, 12, 2, 20, 2, 3).astype(np.float64).mean((2, 4))  # area average
    with pytest.warns(UserWarning):
        rec = dl3dv.load_scene(root, "a1b2c3", hw=(12, 20))  # same aspect: a pure resize
    assert np.abs(rec.images - half).max() <= 0.5 + 1e-9
    np.testing.assert_allclose(rec.intrinsics[0], np.diag([0.5, 0.5, 1]) @ k8, rtol=1e-6)
    with pytest.warns(UserWarning):
        rec = dl3dv.load_scene(root, "a1b2c3", hw=(12, 16))  # cover 12x20, centre crop x0 = 2
    assert np.abs(rec.images - half[:, :, 2:18]).max() <= 0.5 + 1e-9
    want = np.diag([0.5, 0.5, 1]) @ k8 - np.array([[0, 0, 2.0], [0, 0, 0], [0, 0, 0]])
    np.testing.assert_allclose(rec.intrinsics[0], want, rtol=1e-6)


def test_dl3dv_errors(dl3dv_scene, tmp_path):
    root, w2c, k, images = dl3dv_scene
    with pytest.raises(ValueError, match="scene folder .*nope"):
        dl3dv.load_scene(root, "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="transforms.json"):
        dl3dv.load_scene(tmp_path, "empty")
    with pytest.raises(ValueError, match="images_4.*found: \\['images_8'\\]"):
        dl3dv.load_scene(root, "a1b2c3", images="images_4")
    with pytest.raises(ValueError, match="hw"):
        dl3dv.load_scene(root, "a1b2c3", hw=(0, 5))
    ns = _write_dl3dv(tmp_path, "s", w2c, k, images, range(3))
    os.remove(ns / "images_8" / "frame_00002.png")
    with pytest.raises(ValueError, match="1 of the 3 frames .* missing.*frame_00002"):
        dl3dv.load_scene(tmp_path, "s")
    _write_dl3dv(tmp_path, "f", w2c, k, images, range(3), camera_model="OPENCV_FISHEYE")
    with pytest.raises(ValueError, match="OPENCV_FISHEYE"):
        dl3dv.load_scene(tmp_path, "f")
    bad = w2c.copy()
    bad[1, :, :3] *= 2.0  # not a rotation
    _write_dl3dv(tmp_path, "r", bad, k, images, range(3))
    with pytest.raises(ValueError, match="frame_00002.*not a proper rotation"):
        dl3dv.load_scene(tmp_path, "r")


def _write_colmap(model_dir, image_dir, cam_line, w2c, names, images, points):
    """COLMAP text model + images; every point is observed by every view that sees it."""
    os.makedirs(model_dir, exist_ok=True)
    k = _cam_k(cam_line)
    lines, tracks = [], {pid: [] for pid in points}
    for i, (name, pose) in enumerate(zip(names, w2c, strict=True)):
        q = Rotation.from_matrix(pose[:, :3]).as_quat()  # x y z w
        t = pose[:, 3]
        lines.append(f"{i + 1} {q[3]} {q[0]} {q[1]} {q[2]} {t[0]} {t[1]} {t[2]} 1 {name}")
        obs = []
        for pid, xyz in points.items():
            cam = pose[:, :3] @ xyz + pose[:, 3]
            x, y = (k @ (cam / cam[2]))[:2]
            if cam[2] > 0 and 0 <= x < images[i].shape[1] and 0 <= y < images[i].shape[0]:
                tracks[pid].append(f"{i + 1} {len(obs)}")
                obs.append(f"{x} {y} {pid}")
        lines.append(" ".join(obs))
        _write_png(os.path.join(image_dir, name), images[i])
    (model_dir / "cameras.txt").write_text(cam_line + "\n")
    (model_dir / "images.txt").write_text("\n".join(lines) + "\n")
    (model_dir / "points3D.txt").write_text("".join(
        f"{pid} {x} {y} {z} 128 128 128 0.5 {' '.join(tracks[pid])}\n"
        for pid, (x, y, z) in points.items()))


def _cam_k(cam_line):
    p = cam_line.split()
    f = [float(x) for x in p[4:]]
    if p[1] in ("PINHOLE",):
        return np.array([[f[0], 0, f[2]], [0, f[1], f[3]], [0, 0, 1]])
    return np.array([[f[0], 0, f[1]], [0, f[0], f[2]], [0, 0, 1]])


def _plane_scene(n=3):
    """Cameras at the calibration size 2*HW looking at the plane, points on it."""
    k = S.k_matrix(2 * HW[0], 2 * HW[1])
    w2c = S.cameras(n)
    rng = np.random.default_rng(1)
    points = {}
    for pid in range(1, 30):
        u, v = rng.uniform([4, 4], [2 * HW[1] - 4, 2 * HW[0] - 4])
        d = S.plane_depth(k, w2c[0], (2 * HW[0], 2 * HW[1]))[int(v), int(u)]
        ray = np.linalg.inv(k) @ [u, v, 1.0]
        points[pid] = w2c[0][:, :3].T @ (ray * d - w2c[0][:, 3])
    return k, w2c, points


def _check_sparse_depth(rec, points, tol=1e-4):
    """Each point's z lands in the pixel containing its projection through the record's K."""
    hits = 0
    for i in range(rec.num_views):
        w2c, k = rec.extrinsics[i].astype(np.float64), rec.intrinsics[i].astype(np.float64)
        for xyz in points.values():
            cam = w2c[:, :3] @ xyz + w2c[:, 3]
            u, v = (k @ (cam / cam[2]))[:2]
            if 0 <= u < rec.image_hw[1] and 0 <= v < rec.image_hw[0]:
                d = rec.depth[i, int(v), int(u)]
                assert 0 < d <= cam[2] * (1 + tol)
                hits += d > cam[2] * (1 - tol)
    assert hits > 20


def test_tanks_temples_layout_order_k_and_sparse_depth(tmp_path):
    k, w2c, points = _plane_scene(3)
    names = ["frame_10.png", "frame_2.png", "frame_1.png"]  # natural order: 1, 2, 10
    images = [S.texture(HW, i) for i in range(3)]
    cam = f"1 PINHOLE {2 * HW[1]} {2 * HW[0]} {k[0, 0]} {k[1, 1]} {k[0, 2]} {k[1, 2]}"
    model = tmp_path / "truck" / "sparse" / "0"
    _write_colmap(model, tmp_path / "truck" / "images", cam, w2c, names,
                  [cv2.resize(im, None, fx=2, fy=2) for im in images], points)
    pycolmap.Reconstruction(str(model)).write_binary(str(model))  # tandt_db ships .bin
    for part in ("cameras", "images", "points3D"):
        os.remove(model / f"{part}.txt")
    (tmp_path / "not_a_scene").mkdir()
    assert tanks_temples.list_scenes(tmp_path) == ["truck"]
    rec = tanks_temples.load_scene(tmp_path, "truck", hw=HW)  # 48x80 stored -> 24x40
    assert [os.path.basename(p) for p in rec.provenance["image_files"]] == names[::-1]
    np.testing.assert_allclose(rec.extrinsics, w2c[::-1], atol=2e-6)
    np.testing.assert_allclose(rec.intrinsics[0], np.diag([0.5, 0.5, 1]) @ k, rtol=1e-6)
    assert rec.images.shape == (3, *HW, 3)
    _check_sparse_depth(rec, points)
    with pytest.raises(ValueError, match="scene folder .*nope"):
        tanks_temples.load_scene(tmp_path, "nope")
    (tmp_path / "bare" / "images").mkdir(parents=True)
    with pytest.raises(ValueError, match="no COLMAP model .*bare/sparse/0.*bare/sparse'"):
        tanks_temples.load_scene(tmp_path, "bare")
    os.remove(tmp_path / "truck" / "images" / "frame_2.png")
    with pytest.raises(ValueError, match="1 of the 3 images .* missing.*frame_2.png"):
        tanks_temples.load_scene(tmp_path, "truck")


def test_dl3dv_gaussian_splat_and_megadepth_layouts(tmp_path):
    k, w2c, points = _plane_scene(3)
    names = ["frame_00001.png", "frame_00002.png", "frame_00003.png"]
    images = [S.texture(HW, i) for i in range(3)]
    full = [cv2.resize(im, None, fx=2, fy=2) for im in images]
    pin = f"1 PINHOLE {2 * HW[1]} {2 * HW[0]} {k[0, 0]} {k[1, 1]} {k[0, 2]} {k[1, 2]}"
    # DL3DV 3DGS format: model of the full-size images, the records read images_2
    gs = tmp_path / "dl3dv" / "h0" / "gaussian_splat"
    _write_colmap(gs / "sparse" / "0", gs / "images", pin, w2c, names, full, points)
    for name, im in zip(names, images, strict=True):
        _write_png(gs / "images_2" / name, im)
    rec = dl3dv.load_scene(tmp_path / "dl3dv", "h0", images="images_2", hw=None)
    np.testing.assert_array_equal(rec.images, np.stack(images))
    np.testing.assert_allclose(rec.intrinsics[0], np.diag([0.5, 0.5, 1]) @ k, rtol=1e-6)
    np.testing.assert_allclose(rec.extrinsics, w2c, atol=2e-6)
    _check_sparse_depth(rec, points)
    for name in names:  # not the calibrated size / an integer factor (e.g. distorted frames)
        _write_png(gs / "images_x" / name, S.texture((26, 40)))
    with pytest.raises(ValueError, match="frame_00001.png.*\\(26, 40\\).*\\(48, 80\\)"):
        dl3dv.load_scene(tmp_path / "dl3dv", "h0", images="images_x")
    # MegaDepth: Undistorted_SfM (model directly in sparse/) and MegaDepth_v1_SfM (manhattan/0)
    sr = f"1 SIMPLE_RADIAL {2 * HW[1]} {2 * HW[0]} {k[0, 0]} {k[0, 2]} {k[1, 2]} 0.01"
    und, v1 = tmp_path / "Undistorted_SfM", tmp_path / "MegaDepth_v1_SfM"
    _write_colmap(und / "0015" / "sparse", und / "0015" / "images", pin, w2c, names, full,
                  points)
    _write_colmap(v1 / "0015" / "sparse" / "manhattan" / "0", v1 / "0015" / "images", sr, w2c,
                  names, full, points)
    assert megadepth.list_scenes(und) == megadepth.list_scenes(v1) == ["0015"]
    a = megadepth.load_scene(und, "0015", hw=HW)
    with pytest.warns(UserWarning, match="distortion ignored"):
        b = megadepth.load_scene(v1, "0015", hw=HW)
    for r in (a, b):
        np.testing.assert_allclose(r.extrinsics, w2c, atol=2e-6)
    np.testing.assert_allclose(b.intrinsics[:, 0, 0], k[0, 0] / 2, rtol=1e-6)
    (und / "0016" / "images").mkdir(parents=True)
    with pytest.raises(ValueError, match="sparse.*sparse-txt.*manhattan"):
        megadepth.load_scene(und, "0016")


def test_real_maupertuis_in_tanks_temples_layout(shared_data, tmp_path):
    src = shared_data / "colmap_maupertuis"
    scene = tmp_path / "maupertuis"
    (scene / "sparse").mkdir(parents=True)
    os.symlink(src / "images", scene / "images")
    os.symlink(src / "sparse" / "0", scene / "sparse" / "0")
    ref = pycolmap.Reconstruction(str(src / "sparse" / "0"))
    ims = sorted(ref.images.values(), key=lambda im: im.name)
    pose = [im.cam_from_world() if callable(im.cam_from_world) else im.cam_from_world
            for im in ims]
    w2c = np.stack([np.asarray(p.matrix()) for p in pose])
    k = np.stack([np.asarray(im.camera.calibration_matrix()) for im in ims])
    rec = tanks_temples.load_scene(tmp_path, "maupertuis", hw=None)
    assert rec.images.shape == (4, 1079, 1919, 3)
    assert [os.path.basename(p) for p in rec.provenance["image_files"]] == [
        "00.jpg", "01.jpg", "02.jpg", "03.jpg"]
    np.testing.assert_allclose(rec.extrinsics, w2c, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(rec.intrinsics, k, rtol=1e-6)
    small = tanks_temples.load_scene(tmp_path, "maupertuis")  # the protocol's 270 x 480
    assert small.images.shape == (4, 270, 480, 3)
    np.testing.assert_allclose(small.intrinsics, np.diag([480 / 1919, 270 / 1079, 1]) @ k,
                               rtol=1e-6)
    np.testing.assert_allclose(small.extrinsics, w2c, rtol=1e-6, atol=1e-5)
