"""Input-camera validation and alignment vs the official `align_poses_umeyama` (evo)."""

import numpy as np
import pytest

from da3_jax.infer import poses


def _rand_w2c(n, rng):
    from scipy.spatial.transform import Rotation

    ext = np.tile(np.eye(4), (n, 1, 1))
    ext[:, :3, :3] = Rotation.random(n, random_state=rng.integers(1 << 30)).as_matrix()
    ext[:, :3, 3] = rng.normal(size=(n, 3)) * 2
    return ext


def _sim3_w2c(ext, s, rot, t):
    c2w = np.linalg.inv(ext)
    out = c2w.copy()
    out[:, :3, :3] = rot @ c2w[:, :3, :3]
    out[:, :3, 3] = s * c2w[:, :3, 3] @ rot.T + t
    return np.linalg.inv(out)


@pytest.mark.parametrize("n,outliers", [(4, 0), (12, 2)])
def test_alignment_matches_official(n, outliers):
    pose_align = pytest.importorskip("depth_anything_3.utils.pose_align")
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(n)
    inp = _rand_w2c(n, rng)
    s_true, rot = 0.37, Rotation.random(random_state=3).as_matrix()
    pred = _sim3_w2c(inp, s_true, rot, np.array([0.3, -1.0, 2.0]))
    if outliers:
        pred[:outliers, :3, 3] += 5.0
    else:
        pred[:, :3, 3] += rng.normal(size=(n, 3)) * 0.01
    depth = np.full((n, 2, 3), 2.0, np.float32)
    _, _, s_off, aligned_off = pose_align.align_poses_umeyama(
        pred[:, :3], inp, ransac=n >= 10, return_aligned=True, random_state=42)
    d, ext, s = poses.align_to_input(depth, pred[:, :3].astype(np.float32), inp, True)
    np.testing.assert_allclose(s, s_off, rtol=1e-4)
    if outliers:
        np.testing.assert_allclose(s, s_true, rtol=1e-4)
    np.testing.assert_allclose(d, depth / s_off, rtol=1e-4)
    np.testing.assert_allclose(ext, inp[:, :3], atol=1e-6)
    d2, ext2, _ = poses.align_to_input(depth, pred[:, :3].astype(np.float32), inp, False)
    np.testing.assert_array_equal(d2, depth)
    np.testing.assert_allclose(ext2, aligned_off[:, :3], atol=2e-4)


def test_single_view_alignment_is_rigid():
    rng = np.random.default_rng(0)
    inp, pred = _rand_w2c(1, rng), _rand_w2c(1, rng)
    _, ext, s = poses.align_to_input(np.ones((1, 2, 2), np.float32),
                                     pred[:, :3].astype(np.float32), inp, False)
    assert s == 1.0
    np.testing.assert_allclose(ext[0], pred[0, :3], atol=1e-5)


def test_validation_messages():
    k = np.tile(np.diag([100.0, 100.0, 1.0]), (2, 1, 1))
    e = np.tile(np.eye(4), (2, 1, 1))
    assert poses.validate_cameras(None, None, 2) == (None, None)
    with pytest.raises(ValueError, match="without intrinsics"):
        poses.validate_cameras(e, None, 2)
    with pytest.raises(ValueError, match="without extrinsics"):
        poses.validate_cameras(None, k, 2)
    with pytest.raises(ValueError, match="expected 3 cameras"):
        poses.validate_cameras(e, k, 3)
    with pytest.raises(ValueError, match=r"\(N, 3, 4\) or \(N, 4, 4\)"):
        poses.validate_cameras(np.zeros((2, 3, 3)), k, 2)
    with pytest.raises(ValueError, match="partial poses"):
        poses.validate_cameras([e[0], None], k, 2)
    bad = e.copy()
    bad[1] = np.nan
    with pytest.raises(ValueError, match="partial poses"):
        poses.validate_cameras(bad, k, 2)
    with pytest.raises(ValueError, match="rotations"):
        poses.validate_cameras(e * 2, k, 2)
    ext34, _ = poses.validate_cameras(e[:, :3], k, 2)
    assert ext34.shape == (2, 4, 4)
