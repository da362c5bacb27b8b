"""Hypersim, TartanAir, ARKitScenes and CO3D readers on scenes written here in each exact layout
(cameras looking at a known plane), plus each format's documented axis semantics and bad inputs."""

import gzip
import json
import os
import shutil

import cv2
import h5py
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from data_pipelines.readers import arkitscenes, co3d, hypersim, tartanair
from tests.data import readers_scene as S


# ----------------------------------------------------------------------------- Hypersim
def _h5(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("dataset", data=arr)


@pytest.fixture(scope="module")
def hypersim_scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("hs") / "ai_001_001"
    hw = (24, 32)
    f = 16.0 / np.tan(np.pi / 6)  # 60 deg horizontal fov at W = 32
    k = np.array([[f, 0, 16.0], [0, f, 12.0], [0, 0, 1]])
    w2cs = S.cameras(3)
    (root / "_detail").mkdir(parents=True)
    (root / "_detail" / "metadata_scene.csv").write_text(
        "parameter_name,parameter_value\nmeters_per_asset_unit,0.5\n")
    c2w = np.stack([S.c2w_of(w) for w in w2cs])
    gl = np.diag([1.0, -1.0, -1.0])  # Hypersim camera: x right, y up, z backward
    _h5(root / "_detail" / "cam_00" / "camera_keyframe_orientations.hdf5", c2w[:, :3, :3] @ gl)
    _h5(root / "_detail" / "cam_00" / "camera_keyframe_positions.hdf5", c2w[:, :3, 3] / 0.5)
    for i, w2c in enumerate(w2cs):
        img_dir = root / "images" / "scene_cam_00_final_preview"
        img_dir.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(img_dir / f"frame.{i:04d}.tonemap.jpg"), S.texture(hw, i))
        dist = S.plane_distance(k, w2c, hw).astype(np.float16 if i == 0 else np.float32)
        dist[2, 3] = np.nan  # no geometry
        _h5(root / "images" / "scene_cam_00_geometry_hdf5" / f"frame.{i:04d}.depth_meters.hdf5",
            dist)
    return root, k, w2cs


def test_hypersim(hypersim_scene):
    root, k, w2cs = hypersim_scene
    rec = hypersim.read_hypersim(root)
    assert rec.scene_id == "ai_001_001/cam_00" and rec.is_metric and rec.num_views == 3
    np.testing.assert_allclose(rec.intrinsics[0], k, rtol=1e-6)
    np.testing.assert_allclose(rec.extrinsics, w2cs, atol=1e-5)
    assert not rec.valid[:, 2, 3].any() and rec.valid.sum() == 3 * (24 * 32 - 1)
    S.assert_on_plane(rec.select_views([1, 2]), 1e-4)
    S.assert_on_plane(rec.select_views([0]), 1e-2)  # float16 distances
    assert abs(hypersim.hypersim_k(768, 1024)[0, 0] - 886.81) < 0.01


def test_hypersim_bad_inputs(hypersim_scene, tmp_path):
    root, *_ = hypersim_scene
    with pytest.raises(ValueError, match="no depth_meters.hdf5"):
        hypersim.read_hypersim(tmp_path)  # nothing there
    shutil.copytree(root, tmp_path / "s")
    os.remove(tmp_path / "s" / "_detail" / "metadata_scene.csv")
    with pytest.raises(ValueError, match="metadata_scene.csv"):
        hypersim.read_hypersim(tmp_path / "s")
    dpath = root / "images" / "scene_cam_00_geometry_hdf5" / "frame.0001.depth_meters.hdf5"
    good = dpath.read_bytes()
    try:
        _h5(dpath, np.ones((5, 5), np.float32))
        with pytest.raises(ValueError, match="frame.0001.depth_meters.hdf5.*shape"):
            hypersim.read_hypersim(root)
        dpath.write_bytes(good[:100])
        with pytest.raises(ValueError, match="frame.0001.depth_meters.hdf5"):
            hypersim.read_hypersim(root)
    finally:
        dpath.write_bytes(good)
    with pytest.raises(ValueError, match="pose"):
        hypersim.read_hypersim(root, frames=[0, 7])


# ----------------------------------------------------------------------------- TartanAir
def test_tartanair_ned_axes():
    # identity NED pose: body looks north (world x), right = east (world y), down = world z
    c2w = tartanair.ned_pose_to_opencv_c2w(np.array([1.0, 2.0, 3.0, 0, 0, 0, 1]))
    np.testing.assert_allclose(c2w[:, 2], [1, 0, 0])  # optical axis
    np.testing.assert_allclose(c2w[:, 0], [0, 1, 0])  # image right
    np.testing.assert_allclose(c2w[:, 1], [0, 0, 1])  # image down
    # yaw 90 deg about NED down: body now looks east
    q = Rotation.from_euler("z", 90, degrees=True).as_quat()
    c2w = tartanair.ned_pose_to_opencv_c2w(np.array([0, 0, 0, *q]))
    np.testing.assert_allclose(c2w[:, 2], [0, 1, 0], atol=1e-6)


def test_tartanair(tmp_path):
    root = tmp_path / "office" / "Easy" / "P000"
    (root / "image_left").mkdir(parents=True)
    (root / "depth_left").mkdir()
    hw = (480, 640)
    k = np.array([[320.0, 0, 320], [0, 320, 240], [0, 0, 1]])
    w2cs = S.cameras(2)
    cv_from_body = np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]], np.float64)  # rows: x=y_b, ...
    lines = []
    for i, w2c in enumerate(w2cs):
        cv2.imwrite(str(root / "image_left" / f"{i:06d}_left.png"), np.zeros((*hw, 3), np.uint8))
        d = S.plane_depth(k, w2c, hw).astype(np.float32)
        d[0, :10] = 5e4  # sky
        np.save(root / "depth_left" / f"{i:06d}_left_depth.npy", d)
        c2w = S.c2w_of(w2c)
        r_ned = c2w[:3, :3] @ cv_from_body  # body axes -> world
        lines.append([*c2w[:3, 3], *Rotation.from_matrix(r_ned).as_quat()])
    np.savetxt(root / "pose_left.txt", np.array(lines))
    rec = tartanair.read_tartanair(root)
    assert rec.scene_id == "office/Easy/P000"
    np.testing.assert_allclose(rec.extrinsics, w2cs, atol=1e-5)
    assert not rec.valid[:, 0, :10].any()
    S.assert_on_plane(rec, 1e-3)
    np.save(root / "depth_left" / "000001_left_depth.npy", np.full(hw, np.nan, np.float32))
    with pytest.raises(ValueError, match="000001_left_depth.npy.*NaN"):
        tartanair.read_tartanair(root)
    os.remove(root / "pose_left.txt")
    with pytest.raises(ValueError, match="pose_left.txt"):
        tartanair.read_tartanair(root)


# ----------------------------------------------------------------------------- ARKitScenes
def test_arkitscenes(tmp_path):
    video = "41069021"
    base = tmp_path / video / f"{video}_frames"
    for sub in ("lowres_wide", "lowres_depth", "lowres_wide_intrinsics"):
        (base / sub).mkdir(parents=True)
    hw = (24, 32)
    k_cv = np.array([[30.0, 0, 15.7], [0, 30.5, 11.2], [0, 0, 1]])
    k_edge = k_cv + np.array([[0, 0, 0.5], [0, 0, 0.5], [0, 0, 0]])
    w2cs = S.cameras(3)
    stamps = ["100.100", "100.200", "100.300"]
    traj = []
    for i, (w2c, t) in enumerate(zip(w2cs, stamps, strict=True)):
        stem = f"{video}_{t}"
        cv2.imwrite(str(base / "lowres_wide" / f"{stem}.png"), S.texture(hw, i))
        mm = np.round(S.plane_depth(k_edge, w2c, hw) * 1000).astype(np.uint16)
        mm[3, 3] = 0
        cv2.imwrite(str(base / "lowres_depth" / f"{stem}.png"), mm)
        (base / "lowres_wide_intrinsics" / f"{stem}.pincam").write_text(
            f"{hw[1]} {hw[0]} {k_cv[0, 0]} {k_cv[1, 1]} {k_cv[0, 2]} {k_cv[1, 2]}\n")
        if i != 1:  # frame 1 has no trajectory sample nearby -> skipped and counted
            rv = Rotation.from_matrix(w2c[:, :3]).as_rotvec()
            traj.append([float(t) + 0.004, *rv, *w2c[:, 3]])
    np.savetxt(base / "lowres_wide.traj", np.array(traj))
    rec = arkitscenes.read_arkitscenes(tmp_path / video, max_dt=0.02)
    assert rec.num_views == 2 and rec.provenance["skipped_no_pose"] == 1
    np.testing.assert_allclose(rec.extrinsics, w2cs[[0, 2]], atol=1e-5)
    np.testing.assert_allclose(rec.intrinsics[0], k_edge)
    assert not rec.valid[:, 3, 3].any()
    S.assert_on_plane(rec, 2e-3)
    with pytest.raises(ValueError, match="lowres_wide.traj"):
        arkitscenes.read_arkitscenes(tmp_path / video, max_dt=1e-4)
    (base / "lowres_wide_intrinsics" / f"{video}_100.100.pincam").write_text("32 24 30\n")
    with pytest.raises(ValueError, match="100.100.pincam"):
        arkitscenes.read_arkitscenes(tmp_path / video)


# ----------------------------------------------------------------------------- CO3D
def test_co3d_pytorch3d_axes():
    # PyTorch3D camera with R = I, T = 0: x left, y up, z forward -> OpenCV flips x and y
    k, w2c = co3d.viewpoint_to_opencv(
        {"R": np.eye(3).tolist(), "T": [0, 0, 0], "focal_length": [2.0, 2.0],
         "principal_point": [0.0, 0.0], "intrinsics_format": "ndc_isotropic"}, (100, 200), "t")
    np.testing.assert_allclose(w2c[:, :3], np.diag([-1, -1, 1]))
    np.testing.assert_allclose(k, [[100, 0, 100], [0, 100, 50], [0, 0, 1]])


def test_co3d(tmp_path):
    cat, seq = "apple", "110_13051_23361"
    hw = (24, 40)
    seq_dir = tmp_path / cat / seq
    for sub in ("images", "depths", "depth_masks"):
        (seq_dir / sub).mkdir(parents=True)
    k = S.k_matrix(*hw)
    w2cs = S.cameras(3)
    flip = np.diag([-1.0, -1.0, 1.0])
    s = min(hw) / 2
    half = np.array([hw[1], hw[0]]) / 2
    anns = []
    for i, w2c in enumerate(w2cs):
        name = f"frame{i + 1:06d}"
        cv2.imwrite(str(seq_dir / "images" / f"{name}.jpg"), S.texture(hw, i))
        depth = (S.plane_depth(k, w2c, hw) / 2.0).astype(np.float16)  # stored / scale_adj
        cv2.imwrite(str(seq_dir / "depths" / f"{name}.jpg.geometric.png"), depth.view(np.uint16))
        mask = np.full(hw, 255, np.uint8)
        mask[0] = 0
        cv2.imwrite(str(seq_dir / "depth_masks" / f"{name}.png"), mask)
        anns.append({
            "sequence_name": seq, "frame_number": i + 1, "frame_timestamp": 0.1 * i,
            "image": {"path": f"{cat}/{seq}/images/{name}.jpg", "size": list(hw)},
            "depth": {"path": f"{cat}/{seq}/depths/{name}.jpg.geometric.png",
                      "scale_adjustment": 2.0, "mask_path": f"{cat}/{seq}/depth_masks/{name}.png"},
            "viewpoint": {"R": (w2c[:, :3].T @ flip).tolist(), "T": (flip @ w2c[:, 3]).tolist(),
                          "focal_length": [k[0, 0] / s, k[1, 1] / s],
                          "principal_point": ((half - k[:2, 2]) / s).tolist(),
                          "intrinsics_format": "ndc_isotropic"},
        })
    anns.append({**anns[0], "sequence_name": "other"})
    with gzip.open(tmp_path / cat / "frame_annotations.jgz", "wt") as f:
        json.dump(anns[::-1], f)
    assert co3d.list_sequences(tmp_path, cat) == [seq, "other"]
    rec = co3d.read_co3d(tmp_path, cat, seq)
    assert rec.num_views == 3 and rec.scene_id == f"{cat}/{seq}" and not rec.is_metric
    np.testing.assert_allclose(rec.intrinsics[0], k, rtol=1e-6)
    np.testing.assert_allclose(rec.extrinsics, w2cs, atol=1e-5)
    assert not rec.valid[:, 0].any() and rec.valid[:, 1:].all()
    S.assert_on_plane(rec, 0.01)  # float16 depth
    (tmp_path / cat / "frame_annotations.jgz").write_bytes(b"not gzip")
    with pytest.raises(ValueError, match="frame_annotations.jgz"):
        co3d.read_co3d(tmp_path, cat, seq)
