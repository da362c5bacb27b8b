"""Rotations vs float64 SciPy/NumPy references and the official torch functions."""

import jax
import jax.numpy as jnp
import numpy as np
from scipy.spatial.transform import Rotation

from da3_jax.geometry import (
    quat_to_rotmat,
    relative_rotation_angle,
    rotmat_to_quat,
    standardize_quaternion,
)


def _hard_rotations():
    """Random rotations plus the branch-switching cases (angles near pi, axes, identity)."""
    rots = [Rotation.random(64, random_state=0)]
    axes = np.eye(3)
    for ang in (np.pi, np.pi - 1e-3, np.pi / 2, 1e-4):
        rots.append(Rotation.from_rotvec(axes * ang))
    rng = np.random.default_rng(1)
    ax = rng.normal(size=(16, 3))
    ax /= np.linalg.norm(ax, axis=-1, keepdims=True)
    rots.append(Rotation.from_rotvec(ax * (np.pi - rng.uniform(0, 1e-2, (16, 1)))))
    rots.append(Rotation.identity(2))
    return Rotation.concatenate(rots)


def test_rotmat_to_quat_matches_scipy():
    rot = _hard_rotations()
    q = np.asarray(rotmat_to_quat(jnp.asarray(rot.as_matrix(), jnp.float32)))
    ref = rot.as_quat()  # xyzw, float64
    ref = np.where(ref[:, 3:] < 0, -ref, ref)
    # w ~ 0 (angle pi): both signs are the same rotation; compare up to sign there
    err = np.minimum(np.abs(q - ref).max(-1), np.abs(q + ref).max(-1))
    assert err.max() < 5e-6
    away = np.abs(ref[:, 3]) > 1e-3
    assert np.abs(q - ref)[away].max() < 5e-6
    assert np.all(q[:, 3] >= 0)
    np.testing.assert_allclose(np.linalg.norm(q, axis=-1), 1.0, atol=1e-6)


def test_quat_to_rotmat_non_unit_and_batched():
    rng = np.random.default_rng(2)
    q = rng.normal(size=(3, 5, 4)) * rng.uniform(0.1, 10.0, (3, 5, 1))
    got = np.asarray(quat_to_rotmat(jnp.asarray(q, jnp.float32)))
    ref = Rotation.from_quat(q.reshape(-1, 4)).as_matrix().reshape(3, 5, 3, 3)
    np.testing.assert_allclose(got, ref, atol=2e-6)


def test_roundtrip_jit_vmap():
    rot = Rotation.random(20, random_state=3).as_matrix().astype(np.float32)
    f = jax.jit(jax.vmap(lambda r: quat_to_rotmat(rotmat_to_quat(r))))
    np.testing.assert_allclose(np.asarray(f(rot)), rot, atol=2e-6)


def test_standardize_quaternion():
    q = np.array([[0.1, 0.2, 0.3, -0.9], [0.1, 0.2, 0.3, 0.9]], np.float32)
    out = np.asarray(standardize_quaternion(q))
    np.testing.assert_array_equal(out, np.array([-q[0], q[1]]))


def test_relative_rotation_angle():
    r1 = Rotation.random(50, random_state=4)
    rng = np.random.default_rng(5)
    angles = np.concatenate([rng.uniform(0, np.pi, 46), [0.0, 1e-4, np.pi - 1e-3, 1e-2]])
    axis = rng.normal(size=(50, 3))
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    r2 = r1 * Rotation.from_rotvec(axis * angles[:, None])
    got = np.asarray(
        relative_rotation_angle(
            jnp.asarray(r1.as_matrix(), jnp.float32), jnp.asarray(r2.as_matrix(), jnp.float32)
        )
    )
    # float64 reference: arccos of the trace
    m = np.einsum("nji,njk->nik", r1.as_matrix(), r2.as_matrix())
    ref = np.arccos(np.clip((np.trace(m, axis1=1, axis2=2) - 1) / 2, -1, 1))
    np.testing.assert_allclose(got, angles, atol=2e-6)
    np.testing.assert_allclose(got, ref, atol=1e-3)  # arccos ref is itself inaccurate near 0/pi
    # finite gradient at identical rotations
    g = jax.grad(lambda r: relative_rotation_angle(r, r).sum())(jnp.eye(3))
    assert np.all(np.isfinite(np.asarray(g)))


def test_official_parity():
    import torch
    from depth_anything_3.model.utils import transform as off

    rot = _hard_rotations().as_matrix().astype(np.float32)
    ref = off.mat_to_quat(torch.from_numpy(rot)).numpy()
    got = np.asarray(rotmat_to_quat(rot))
    np.testing.assert_allclose(got, ref, atol=2e-6)
    q = np.random.default_rng(6).normal(size=(30, 4)).astype(np.float32)
    np.testing.assert_allclose(
        np.asarray(quat_to_rotmat(q)), off.quat_to_mat(torch.from_numpy(q)).numpy(), atol=2e-6
    )
