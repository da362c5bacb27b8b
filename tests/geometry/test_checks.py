"""Bad input raises ValueError naming the argument, at trace time for shapes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from da3_jax.geometry import (
    camera_rays,
    check_finite,
    check_intrinsics,
    decode_pose,
    encode_pose,
    fit_scale_shift,
    points_from_depth,
    project,
    quat_to_rotmat,
    ransac_umeyama,
    rotmat_to_quat,
    umeyama,
    w2c_to_c2w,
)

K = np.array([[100.0, 0, 50], [0, 100, 40], [0, 0, 1]], np.float32)
EXT = np.eye(3, 4, dtype=np.float32)


def test_shape_and_rank_errors():
    with pytest.raises(ValueError, match=r"q_xyzw.*\[\.\.\., 4\]"):
        quat_to_rotmat(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="rotmat"):
        rotmat_to_quat(np.zeros((3,)))
    with pytest.raises(ValueError, match="extrinsics_w2c"):
        w2c_to_c2w(np.zeros((2, 2, 4)))
    with pytest.raises(ValueError, match="intrinsics"):
        encode_pose(EXT, np.eye(4), (10, 10))
    with pytest.raises(ValueError, match="pose_enc"):
        decode_pose(np.zeros((3, 8)), (10, 10))
    with pytest.raises(ValueError, match="image_hw"):
        decode_pose(np.zeros((3, 9)), (10, 0))
    with pytest.raises(ValueError, match="hw"):
        camera_rays(EXT, K, (4,))
    with pytest.raises(ValueError, match="depth"):
        points_from_depth(np.ones((5,), np.float32), EXT, K)
    with pytest.raises(ValueError, match="points"):
        project(np.ones((3, 2)), EXT, K)
    with pytest.raises(ValueError, match="src"):
        umeyama(np.ones((4, 2)), np.ones((4, 3)))


def test_mismatched_batch_dims():
    with pytest.raises(ValueError, match="mismatched batch dims.*extrinsics_w2c"):
        encode_pose(np.tile(EXT, (3, 1, 1)), np.tile(K, (2, 1, 1)), (10, 10))
    with pytest.raises(ValueError, match="mismatched batch dims"):
        points_from_depth(np.ones((2, 4, 5), np.float32), np.tile(EXT, (3, 1, 1)), K)
    with pytest.raises(ValueError, match="src, dst"):
        ransac_umeyama(np.ones((5, 3)), np.ones((6, 3)))
    # broadcasting of a shared camera is allowed
    assert encode_pose(np.tile(EXT, (3, 1, 1)), K, (10, 10)).shape == (3, 9)


def test_value_errors_outside_jit():
    with pytest.raises(ValueError, match="intrinsics: singular"):
        check_intrinsics(np.diag([0.0, 100.0, 1.0]))
    with pytest.raises(ValueError, match="intrinsics: expected last row"):
        check_intrinsics(np.eye(3) * 2)
    with pytest.raises(ValueError, match="intrinsics: expected finite"):
        camera_rays(EXT, np.where(np.eye(3) > 0, np.nan, K), (2, 2))
    with pytest.raises(ValueError, match="extrinsics_w2c: expected finite"):
        encode_pose(np.full((3, 4), np.inf, np.float32), K, (10, 10))
    with pytest.raises(ValueError, match="my_arg: expected finite.*1 NaN"):
        check_finite(np.array([1.0, np.nan]), "my_arg")
    check_finite(np.array([1, 2]), "ints")  # non-float arrays pass
    with pytest.raises(ValueError, match=r"mismatched batch dims.*pred \(3, 4\)"):
        fit_scale_shift(np.ones((3, 4)), np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"mismatched batch dims.*mask \(5,\)"):
        fit_scale_shift(np.ones((3, 4)), np.ones((3, 4)), np.ones((5,), bool))


def test_shape_errors_at_trace_time_and_values_skipped_under_jit():
    f = jax.jit(lambda q: quat_to_rotmat(q))
    with pytest.raises(ValueError, match="q_xyzw"):
        f(jnp.zeros((3,)))
    # value checks cannot see traced values: no error inside jit, valid output elsewhere
    g = jax.jit(lambda k: camera_rays(EXT, k, (2, 2))[1])
    assert np.isnan(np.asarray(g(jnp.where(jnp.eye(3) > 0, jnp.nan, K)))).any()
    check_intrinsics(jnp.asarray(K))  # a valid K passes


def test_static_args_normalised_or_rejected():
    a = camera_rays(EXT, K, [2, 3])[1]  # a list is accepted as a static (h, w)
    b = camera_rays(EXT, K, np.array([2, 3]))[1]
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match="hw: expected a static"):
        jax.jit(lambda hw: camera_rays(EXT, K, hw)[1])(jnp.array([2, 3]))
