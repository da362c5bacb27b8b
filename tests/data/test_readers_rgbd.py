"""7-Scenes / HoloLens RGB-D readers: a 7-Scenes sequence written here (plane scene), the real
HoloLens clip (depth reprojected between frames agrees), and bad inputs."""

import shutil

import cv2
import numpy as np
import pytest

from data_pipelines.readers import rgbd
from tests.data import readers_scene as S

HW = (48, 64)


def _write_7scenes(seq, w2cs, k_cv):
    seq.mkdir(parents=True)
    for i, w2c in enumerate(w2cs):
        stem = seq / f"frame-{i:06d}"
        cv2.imwrite(str(stem) + ".color.png", S.texture(HW, i))
        k_edge = k_cv.copy()
        k_edge[:2, 2] += 0.5
        mm = np.round(S.plane_depth(k_edge, w2c, HW) * 1000).astype(np.uint16)
        mm[0, 0], mm[1, 1] = 65535, 0  # both 7-Scenes invalid markers
        cv2.imwrite(str(stem) + ".depth.png", mm)
        np.savetxt(str(stem) + ".pose.txt", S.c2w_of(w2c))


@pytest.fixture(scope="module")
def seq(tmp_path_factory):
    seq = tmp_path_factory.mktemp("7s") / "chess" / "seq-01"
    k_cv = np.array([[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]])
    _write_7scenes(seq, S.cameras(3), k_cv)
    return seq, k_cv


def test_7scenes_sequence(seq):
    path, k_cv = seq
    rec = rgbd.read_7scenes_sequence(path, k=k_cv)
    assert rec.scene_id == "chess" and rec.is_metric and rec.num_views == 3
    np.testing.assert_allclose(rec.extrinsics, S.cameras(3), atol=1e-5)
    np.testing.assert_allclose(rec.intrinsics[0, :2, 2], k_cv[:2, 2] + 0.5)
    assert not rec.valid[:, 0, 0].any() and not rec.valid[:, 1, 1].any()
    assert rec.valid.sum() == 3 * (HW[0] * HW[1] - 2)
    S.assert_on_plane(rec, 2e-3)  # mm quantisation


def test_7scenes_bad_inputs(seq, tmp_path):
    path, k_cv = seq
    bad = tmp_path / "seq"
    shutil.copytree(path, bad)
    np.savetxt(bad / "frame-000001.pose.txt", np.full((4, 4), np.nan))
    with pytest.raises(ValueError, match="frame-000001.pose.txt"):
        rgbd.read_7scenes_sequence(bad, k=k_cv)
    shutil.copy(path / "frame-000001.pose.txt", bad / "frame-000001.pose.txt")
    np.savetxt(bad / "frame-000002.pose.txt", np.eye(3))
    with pytest.raises(ValueError, match="frame-000002.pose.txt"):
        rgbd.read_7scenes_sequence(bad, k=k_cv)
    shutil.copy(path / "frame-000002.pose.txt", bad / "frame-000002.pose.txt")
    cv2.imwrite(str(bad / "frame-000000.depth.png"), np.ones((10, 10), np.uint16))
    with pytest.raises(ValueError, match="frame-000000.depth.png.*shape"):
        rgbd.read_7scenes_sequence(bad, k=k_cv)
    with pytest.raises(ValueError, match="frame-000000.depth.png"):
        rgbd.read_7scenes_sequence(bad, ["frame-000000"], k=k_cv)
    shutil.copy(path / "frame-000000.depth.png", bad / "frame-000000.depth.png")
    S.truncate(bad / "frame-000002.color.png")
    with pytest.raises(ValueError, match="frame-000002.color.png"):
        rgbd.read_7scenes_sequence(bad, k=k_cv)
    with pytest.raises(ValueError, match="frame-000009.pose.txt"):
        rgbd.read_7scenes_sequence(path, ["frame-000009"], k=k_cv)


def _reproject(rec, i, j):
    """Median |z_proj - depth_j| / depth_j of frame i's valid depth moved into frame j."""
    from da3_jax.geometry import points_from_depth, project

    pts = np.asarray(points_from_depth(rec.depth[i], rec.extrinsics[i], rec.intrinsics[i],
                                       pixel_center=0.5))[rec.valid[i]]
    uv, z = (np.asarray(a, np.float64) for a in project(pts, rec.extrinsics[j],
                                                         rec.intrinsics[j]))
    h, w = rec.image_hw
    col, row = np.floor(uv[:, 0]).astype(int), np.floor(uv[:, 1]).astype(int)
    ok = (z > 0) & (col >= 0) & (col < w) & (row >= 0) & (row < h)
    dj = rec.depth[j][row[ok], col[ok]]
    m = dj > 0
    rel = np.abs(z[ok][m] - dj[m]) / dj[m]
    return np.median(rel), np.mean(rel < 0.05), int(m.sum())


def test_real_hololens_reprojection(shared_data):
    rec = rgbd.read_hololens_clip(shared_data / "hololens_dvmvs_office")
    assert rec.images.shape == (11, 360, 540, 3) and rec.is_metric
    assert 0.4 < rec.valid.mean() < 0.7
    results = {j: _reproject(rec, 0, j) for j in (1, 5, 10)}
    print("hololens reprojection 00102 -> j: (median rel err, frac < 5%, n)", results)
    for med, frac, n in results.values():
        assert med < 0.01 and frac > 0.8 and n > 5000
    # reading the poses the wrong way round (as w2c) must break the agreement
    wrong = rec.select_views([0, 1])
    c2w = np.concatenate([wrong.extrinsics[:, :, :3].transpose(0, 2, 1),
                          -np.einsum("nji,nj->ni", wrong.extrinsics[:, :, :3],
                                     wrong.extrinsics[:, :, 3])[..., None]], -1)
    wrong.extrinsics = c2w.astype(np.float32)
    assert _reproject(wrong, 0, 1)[0] > 0.05


def test_tum_sequence(tmp_path):
    from scipy.spatial.transform import Rotation

    (tmp_path / "rgb").mkdir()
    (tmp_path / "depth").mkdir()
    k_cv = np.array([[50.0, 0, 31.0], [0, 51.0, 24.0], [0, 0, 1]])
    k_edge = k_cv + np.array([[0, 0, 0.5], [0, 0, 0.5], [0, 0, 0]])
    w2cs = S.cameras(3)
    rgb, dep, gt = ["# color images"], ["# depth"], ["# timestamp tx ty tz qx qy qz qw"]
    for i, w2c in enumerate(w2cs):
        t = 1305031102.0 + 0.1 * i
        cv2.imwrite(str(tmp_path / "rgb" / f"{t:.6f}.png"), S.texture(HW, i))
        d = np.round(S.plane_depth(k_edge, w2c, HW) * 5000).astype(np.uint16)
        cv2.imwrite(str(tmp_path / "depth" / f"{t + 0.004:.6f}.png"), d)
        rgb.append(f"{t:.6f} rgb/{t:.6f}.png")
        dep.append(f"{t + 0.004:.6f} depth/{t + 0.004:.6f}.png")
        c2w = S.c2w_of(w2c)
        if i != 1:  # no ground truth near frame 1: skipped and counted
            q = Rotation.from_matrix(c2w[:3, :3]).as_quat()
            vals = [*c2w[:3, 3], *q]
            gt.append(f"{t - 0.003:.4f} " + " ".join(map(str, vals)))
    (tmp_path / "rgb.txt").write_text("\n".join(rgb) + "\n")
    (tmp_path / "depth.txt").write_text("\n".join(dep) + "\n")
    (tmp_path / "groundtruth.txt").write_text("\n".join(gt) + "\n")
    rec = rgbd.read_tum_sequence(tmp_path, k=k_cv)
    assert rec.num_views == 2 and rec.provenance["skipped_unmatched"] == 1
    np.testing.assert_allclose(rec.extrinsics, w2cs[[0, 2]], atol=1e-5)
    S.assert_on_plane(rec, 1e-3)
    (tmp_path / "groundtruth.txt").write_text("1305031102.0 1 2 3\n")
    with pytest.raises(ValueError, match="groundtruth.txt"):
        rgbd.read_tum_sequence(tmp_path, k=k_cv)


def test_hololens_layout(tmp_path):
    k_cv = np.array([[45.0, 0, 31.2], [0, 44.0, 23.9], [0, 0, 1]])
    k_edge = k_cv + np.array([[0, 0, 0.5], [0, 0, 0.5], [0, 0, 0]])
    w2cs = S.cameras(2)
    (tmp_path / "images").mkdir()
    (tmp_path / "depth").mkdir()
    names = ["00010.png", "00012.png"]
    for i, (w2c, n) in enumerate(zip(w2cs, names, strict=True)):
        cv2.imwrite(str(tmp_path / "images" / n), S.texture(HW, i))
        cv2.imwrite(str(tmp_path / "depth" / n),
                    np.round(S.plane_depth(k_edge, w2c, HW) * 1000).astype(np.uint16))
    np.savetxt(tmp_path / "K.txt", k_cv)
    np.savetxt(tmp_path / "poses.txt", np.stack([S.c2w_of(w).reshape(-1) for w in w2cs]))
    (tmp_path / "frames.txt").write_text("# filename line\n00010.png 3\n00012.png 5\n")
    rec = rgbd.read_hololens_clip(tmp_path)
    np.testing.assert_allclose(rec.extrinsics, w2cs, atol=1e-5)
    np.testing.assert_allclose(rec.intrinsics[1], k_edge)
    S.assert_on_plane(rec, 2e-3)
    np.savetxt(tmp_path / "poses.txt", S.c2w_of(w2cs[0]).reshape(1, -1))  # one pose missing
    with pytest.raises(ValueError, match="poses.txt"):
        rgbd.read_hololens_clip(tmp_path)
    (tmp_path / "K.txt").unlink()
    with pytest.raises(ValueError, match="K.txt"):
        rgbd.read_hololens_clip(tmp_path)
