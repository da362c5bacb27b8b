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


def _umeyama64(src, dst):
    """Float64 NumPy Umeyama reference: dst ~ s R src + t."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    u, d, vt = np.linalg.svd(xd.T @ xs / len(src))
    sign = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rot = u @ sign @ vt
    s = np.trace(np.diag(d) @ sign) / (xs**2).sum(-1).mean()
    return s, rot, mu_d - s * rot @ mu_s


def test_georeferenced_poses_keep_precision():
    """Poses ~1e6 m from the origin: conditioning and alignment are centred in float64 before
    any float32 cast (a float32 cast first loses ~0.06 m, i.e. the whole 0.1 m motion)."""
    from da3_jax.model import normalize_input_extrinsics

    rng = np.random.default_rng(0)
    local = _rand_w2c(5, rng)
    local[:, :3, 3] *= 0.05  # a 0.1 m trajectory ...
    offset = np.array([4.5e6, -2.3e6, 1.1e6])  # ... at UTM-like coordinates
    geo = _sim3_w2c(local, 1.0, np.eye(3), offset)
    ext, _ = poses.validate_cameras(geo, np.tile(np.eye(3), (5, 1, 1)), 5)
    np.testing.assert_array_equal(ext, geo)  # float64 kept
    got = np.asarray(normalize_input_extrinsics(poses.centre_world(ext)[None].astype(np.float32)))
    rel = local @ np.linalg.inv(local[0])  # float64 reference of the normalisation
    rel[:, :3, 3] /= max(np.sort(np.linalg.norm(
        -np.einsum("nji,nj->ni", rel[:, :3, :3], rel[:, :3, 3]), axis=-1))[2], 0.1)
    np.testing.assert_allclose(got[0], rel, atol=1e-5)

    pred = _sim3_w2c(local, 0.5, np.eye(3), np.array([0.1, 0.2, 0.3]))
    s, rot, t = poses.fit_input_to_prediction(geo, pred[:, :3].astype(np.float32))
    centres = lambda e: -np.einsum("nji,nj->ni", e[:, :3, :3], e[:, :3, 3])
    s_ref, rot_ref, t_ref = _umeyama64(centres(geo), centres(pred))
    np.testing.assert_allclose(s, s_ref, rtol=1e-4)
    np.testing.assert_allclose(rot, rot_ref, atol=1e-4)
    mapped = s * centres(geo) @ rot.T + t
    np.testing.assert_allclose(mapped, centres(pred), atol=1e-4)
