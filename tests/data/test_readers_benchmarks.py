"""DA3 benchmark layouts (HiRoom, ETH3D, 7Scenes, ScanNet++, DTU-64) written here in their exact
folder formats; frame sampling checked against the official evaluator."""

import os
import warnings
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from data_pipelines.readers import BENCHMARKS, _io, dtu64, eth3d, hiroom, scannetpp, sevenscenes
from tests.data import readers_scene as S

HW = (24, 32)


def test_registry():
    assert set(BENCHMARKS) == {"hiroom", "eth3d", "7scenes", "scannetpp", "dtu64", "dl3dv",
                               "tanks_temples", "megadepth"}
    for mod in BENCHMARKS.values():
        assert callable(mod.list_scenes) and callable(mod.load_scene)
        assert callable(mod.list_frames)


def test_sampling_matches_official_evaluator():
    from addict import Dict
    from depth_anything_3.bench.evaluator import Evaluator

    for n, m in ((250, 100), (101, 100), (64, 100), (37, 5)):
        data = Dict(image_files=[f"f{i}" for i in range(n)], extrinsics=np.zeros((n, 4, 4)),
                    intrinsics=np.zeros((n, 3, 3)), aux=Dict())
        ref = Evaluator._sample_frames(SimpleNamespace(max_frames=m), data, "s")
        assert [data.image_files[i] for i in _io.sample_frames(n, m)] == list(ref.image_files)
    assert _io.sample_frames(5, None) == list(range(5))


# ----------------------------------------------------------------------------- HiRoom
@pytest.fixture(scope="module")
def hiroom_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("hiroom")
    (root / "selected_scene_list_val.txt").write_text("a/b/s1\na/b/missing\n")
    scene = root / "data" / "a" / "b" / "s1"
    for sub in ("image", "depth", "pose", "aliasing_mask"):
        (scene / sub).mkdir(parents=True)
    k_cv = S.k_matrix(*HW) - np.array([[0, 0, 0.5], [0, 0, 0.5], [0, 0, 0]])
    np.save(scene / "cam_K.npy", k_cv.astype(np.float32))
    w2cs = S.cameras(5)
    for i, w2c in enumerate(w2cs):
        cv2.imwrite(str(scene / "image" / f"{i:04d}.jpg"), S.texture(HW, i))
        d = S.plane_depth(S.k_matrix(*HW), w2c, HW)
        cv2.imwrite(str(scene / "depth" / f"{i:04d}.png"),
                    np.round(d / 100 * 65535).astype(np.uint16))
        if i != 2:  # frame 2 has no pose: skipped like the official loader
            np.save(scene / "pose" / f"{i:04d}.npy", np.vstack([w2c, [0, 0, 0, 1]]))
    mask = np.zeros(HW, np.uint8)
    mask[:4] = 255
    cv2.imwrite(str(scene / "aliasing_mask" / "0000.png"), mask)
    return root, w2cs


def test_hiroom(hiroom_root):
    root, w2cs = hiroom_root
    assert hiroom.list_scenes(root) == ["a/b/s1"]
    rec = hiroom.load_scene(root, "a/b/s1")
    assert rec.num_views == 4 and rec.is_metric and rec.depth_kind == "dense_gt"
    np.testing.assert_allclose(rec.extrinsics, w2cs[[0, 1, 3, 4]], atol=1e-5)
    np.testing.assert_allclose(rec.intrinsics[0], S.k_matrix(*HW), atol=1e-5)
    assert not rec.valid[0, :4].any() and rec.valid[0, 4:].all() and rec.valid[1].all()
    S.assert_on_plane(rec, 3e-3)  # 100 m / 65535 quantisation
    assert rec.provenance["gt_pcd"].endswith(os.path.join("fused_pcd", "a-b-s1.ply"))
    sub = hiroom.load_scene(root, "a/b/s1", max_frames=2)
    files = hiroom.list_frames(root, "a/b/s1")
    assert sub.provenance["image_files"] == [files[i] for i in _io.sample_frames(4, 2)]


def test_hiroom_bad_inputs(hiroom_root, tmp_path):
    root, _ = hiroom_root
    scene = root / "data" / "a" / "b" / "s1"
    k = np.load(scene / "cam_K.npy")
    os.remove(scene / "cam_K.npy")
    try:
        with pytest.raises(ValueError, match="cam_K.npy"):
            hiroom.load_scene(root, "a/b/s1")
    finally:
        np.save(scene / "cam_K.npy", k)
    pose = scene / "pose" / "0001.npy"
    good = pose.read_bytes()
    pose.write_bytes(good[:40])
    try:
        with pytest.raises(ValueError, match="0001.npy"):
            hiroom.load_scene(root, "a/b/s1")
    finally:
        pose.write_bytes(good)
    with pytest.raises(ValueError, match="selected_scene_list_val.txt"):
        hiroom.list_scenes(tmp_path)


# ----------------------------------------------------------------------------- 7Scenes
def test_sevenscenes(tmp_path):
    k_edge = sevenscenes.rgbd.SEVEN_SCENES_K + np.array([[0, 0, 0.5], [0, 0, 0.5], [0, 0, 0]])
    w2cs = S.cameras(4)
    for scene, seq in (("chess", "seq-01"), ("stairs", "seq-02")):
        d = tmp_path / "7Scenes" / scene / seq
        d.mkdir(parents=True)
        for i, w2c in enumerate(w2cs):
            stem = str(d / f"frame-{i:06d}")
            cv2.imwrite(stem + ".color.png", S.texture((48, 64), i))
            mm = np.round(S.plane_depth(k_edge, w2c, (48, 64)) * 1000).astype(np.uint16)
            cv2.imwrite(stem + ".depth.png", mm)
            np.savetxt(stem + ".pose.txt", S.c2w_of(w2c))
    (tmp_path / "7Scenes" / "fire" / "seq-02").mkdir(parents=True)  # wrong sequence: absent
    assert sevenscenes.list_scenes(tmp_path) == ["chess", "stairs"]
    rec = sevenscenes.load_scene(tmp_path, "stairs", max_frames=3)
    keep = _io.sample_frames(4, 3)
    np.testing.assert_allclose(rec.extrinsics, w2cs[keep], atol=1e-5)
    np.testing.assert_allclose(rec.intrinsics[0], k_edge)
    S.assert_on_plane(rec, 3e-3)
    assert rec.provenance["gt_mesh"].endswith(os.path.join("meshes", "stairs.ply"))


# ----------------------------------------------------------------------------- ETH3D
def _colmap_image_line(i, w2c, cam, name):
    q = Rotation.from_matrix(w2c[:, :3]).as_quat()
    t = w2c[:, 3]
    return f"{i} {q[3]} {q[0]} {q[1]} {q[2]} {t[0]} {t[1]} {t[2]} {cam} {name}\n\n"


def test_eth3d(tmp_path):
    scene = tmp_path / "delivery_area"
    calib = scene / "dslr_calibration_jpg"
    calib.mkdir(parents=True)
    k = S.k_matrix(*HW)
    (calib / "cameras.txt").write_text(
        "# Camera list with one line of data per camera:\n#   CAMERA_ID, MODEL, WIDTH, HEIGHT, "
        "PARAMS[]\n# Number of cameras: 1\n"
        f"7 THIN_PRISM_FISHEYE {HW[1]} {HW[0]} {k[0, 0]} {k[1, 1]} {k[0, 2]} {k[1, 2]} "
        + "0 " * 8 + "\n")
    w2cs = S.cameras(4)
    names = ["dslr_images/DSC_0900.JPG", "dslr_images/DSC_0100.JPG",
             "dslr_images/DSC_0711.JPG", "dslr_images/DSC_0500.JPG"]  # 711 is filtered
    header = "# Image list with two lines of data per image:\n#   IMAGE_ID, ...\n#   POINTS2D\n" \
             "# Number of images: 5\n"
    body = "".join(_colmap_image_line(i + 1, w, 7, n) for i, (w, n) in enumerate(zip(
        w2cs, names, strict=True)))
    body += _colmap_image_line(9, w2cs[0], 7, "dslr_images/DSC_0999.JPG")  # image missing
    (calib / "images.txt").write_text(header + body)
    (scene / "images" / "dslr_images").mkdir(parents=True)
    (scene / "ground_truth_depth" / "dslr_images").mkdir(parents=True)
    (scene / "masks_for_images" / "dslr_images").mkdir(parents=True)
    for w2c, n in zip(w2cs, names, strict=True):
        cv2.imwrite(str(scene / "images" / n), S.texture(HW))
        d = S.plane_depth(k, w2c, HW).astype("<f4")
        d[0, 0] = np.inf
        d.tofile(scene / "ground_truth_depth" / n)
    mask = np.zeros(HW, np.uint8)
    mask[5, :] = 1
    cv2.imwrite(str(scene / "masks_for_images" / "dslr_images" / "DSC_0900.png"), mask)
    assert eth3d.list_scenes(tmp_path) == ["delivery_area"]
    with pytest.warns(UserWarning, match="THIN_PRISM_FISHEYE"):
        rec = eth3d.load_scene(tmp_path, "delivery_area")
    assert [os.path.basename(p) for p in rec.provenance["image_files"]] == [
        "DSC_0900.JPG", "DSC_0100.JPG", "DSC_0500.JPG"]  # images.txt order, 711 filtered
    np.testing.assert_allclose(rec.extrinsics, w2cs[[0, 1, 3]], atol=1e-5)
    np.testing.assert_allclose(rec.intrinsics[0], k, rtol=1e-6)
    assert not rec.valid[:, 0, 0].any() and not rec.valid[0, 5].any() and rec.valid[1, 5].all()
    S.assert_on_plane(rec, 1e-4)
    # truncated GT depth file -> error naming it
    (scene / "ground_truth_depth" / names[1]).write_bytes(b"\0" * 16)
    with warnings.catch_warnings(), pytest.raises(ValueError, match="DSC_0100.JPG"):
        warnings.simplefilter("ignore")
        eth3d.load_scene(tmp_path, "delivery_area")


# ----------------------------------------------------------------------------- ScanNet++
def test_scannetpp_undistort_crop_resize(tmp_path):
    src_hw = (192, 256)
    merge = tmp_path / "09c1414f1b" / "merge_dslr_iphone"
    model = merge / "colmap" / "sparse_render_rgb"
    model.mkdir(parents=True)
    fx, fy, cx, cy = 160.0, 158.0, 129.0, 95.0  # COLMAP (pixel-edge) values
    dist = np.array([0.08, -0.03, 0.002, -0.001])
    (model / "cameras.txt").write_text(
        f"1 OPENCV {src_hw[1]} {src_hw[0]} {fx} {fy} {cx} {cy} " + " ".join(map(str, dist)))
    w2cs = S.cameras(2)
    names = ["iphone/frame_000010.jpg", "iphone/frame_000000.jpg"]
    (model / "images.txt").write_text(
        "".join(_colmap_image_line(i + 1, w, 1, n) for i, (w, n) in enumerate(
            zip(w2cs, names, strict=True)))
        + _colmap_image_line(3, w2cs[0], 1, "dslr/DSC_0001.JPG"))
    (model / "points3D.txt").write_text("")
    (merge / "images" / "iphone").mkdir(parents=True)
    (merge / "render_depth").mkdir()
    k_cv = np.array([[fx, 0, cx - 0.5], [0, fy, cy - 0.5], [0, 0, 1]])
    rng = np.random.default_rng(1)
    points = {}
    for w2c, n in zip(w2cs, names, strict=True):
        # ground truth: 3D points on the plane seen at distorted pixels (drawn as bright dots)
        cam_dirs = np.concatenate([rng.uniform(-0.35, 0.35, (6, 2)), np.ones((6, 1))], 1)
        c2w = S.c2w_of(w2c)
        rays = cam_dirs @ c2w[:3, :3].T
        t = (S.PLANE_D - S.PLANE_N @ c2w[:3, 3]) / (rays @ S.PLANE_N)
        pts = c2w[:3, 3] + t[:, None] * rays
        px, _ = cv2.projectPoints(pts, cv2.Rodrigues(w2c[:, :3])[0], w2c[:, 3], k_cv,
                                  np.append(dist, 0.0))
        img = np.zeros((*src_hw, 3), np.uint8)
        for u, v in px[:, 0]:
            cv2.circle(img, (int(round(u * 16)), int(round(v * 16))), 3 * 16, (255, 255, 255),
                       -1, cv2.LINE_AA, shift=4)
        cv2.imwrite(str(merge / "images" / n), img, [cv2.IMWRITE_JPEG_QUALITY, 100])
        # distorted-view depth: undistort each pixel centre, intersect with the plane
        u, v = np.meshgrid(np.arange(src_hw[1], dtype=np.float64),
                           np.arange(src_hw[0], dtype=np.float64))
        und = cv2.undistortPoints(np.stack([u, v], -1).reshape(-1, 1, 2), k_cv,
                                  np.append(dist, 0.0)).reshape(*src_hw, 2)
        rays = np.concatenate([und, np.ones((*src_hw, 1))], -1) @ c2w[:3, :3].T
        z = (S.PLANE_D - S.PLANE_N @ c2w[:3, 3]) / (rays @ S.PLANE_N)
        stem = os.path.splitext(os.path.basename(n))[0]
        cv2.imwrite(str(merge / "render_depth" / f"{stem}.png"),
                    np.round(z * 1000).astype(np.uint16))
        points[n] = pts
    assert scannetpp.list_scenes(tmp_path) == ["09c1414f1b"]
    rec = scannetpp.load_scene(tmp_path, "09c1414f1b")
    assert rec.images.shape == (2, 768, 1024, 3)
    assert [os.path.basename(p) for p in rec.provenance["image_files"]] == [
        "frame_000000.jpg", "frame_000010.jpg"]
    S.assert_on_plane(rec, 0.02)  # nearest resampling of a slanted plane
    for i, n in enumerate(sorted(names)):
        w2c = rec.extrinsics[i].astype(np.float64)
        cam = points[n] @ w2c[:, :3].T + w2c[:, 3]
        uv = cam[:, :2] / cam[:, 2:] @ rec.intrinsics[i][:2, :2].T + rec.intrinsics[i][:2, 2]
        grey = rec.images[i].mean(-1)
        for u, v in uv:  # intensity centroid of the dot around the predicted position
            r0, c0 = int(v) - 24, int(u) - 24
            win = grey[r0:r0 + 48, c0:c0 + 48]
            win = np.where(win > 60, win, 0)
            rr, cc = np.mgrid[r0:r0 + 48, c0:c0 + 48] + 0.5
            cen = np.array([(cc * win).sum(), (rr * win).sum()]) / win.sum()
            assert np.linalg.norm(cen - [u, v]) < 1.5, (n, cen, (u, v))


# ----------------------------------------------------------------------------- DTU-64
def _write_cam(path, w2c, k):
    ext = "\n".join(" ".join(map(str, r)) for r in np.vstack([w2c, [0, 0, 0, 1]]))
    intr = "\n".join(" ".join(map(str, r)) for r in k)
    path.write_text(f"extrinsic\n{ext}\n\nintrinsic\n{intr}\n\n425 2.5\n")


def test_dtu64(tmp_path):
    (tmp_path / "scan24" / "image").mkdir(parents=True)
    (tmp_path / "Cameras").mkdir()
    k = np.array([[2892.3, 0, 823.2], [0, 2883.2, 619.1], [0, 0, 1]])
    w2cs = S.cameras(36)
    for i in range(36):
        cv2.imwrite(str(tmp_path / "scan24" / "image" / f"{i:08d}.png"), S.texture((6, 8), i))
        if i != 5:
            _write_cam(tmp_path / "Cameras" / f"{i:08d}_cam.txt", w2cs[i], k)
    assert dtu64.list_scenes(tmp_path) == ["scan24"]
    files = dtu64.list_frames(tmp_path, "scan24")
    order = [33] + [i for i in range(36) if i not in (33, 5)]
    assert [int(os.path.basename(f)[:8]) for f in files] == order
    rec = dtu64.load_scene(tmp_path, "scan24", max_frames=10)
    keep = [order[i] for i in _io.sample_frames(35, 10)]
    np.testing.assert_allclose(rec.extrinsics, w2cs[keep], atol=1e-5)
    np.testing.assert_allclose(rec.intrinsics[0, :2, 2], k[:2, 2] + 0.5)
    assert not rec.valid.any() and not rec.is_metric
    (tmp_path / "Cameras" / "00000033_cam.txt").write_text("extrinsic\n1 2 3\n")
    with pytest.raises(ValueError, match="00000033_cam.txt"):
        dtu64.load_scene(tmp_path, "scan24")
