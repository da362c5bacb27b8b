"""The official DA3 9-number pose encoding (``model/utils/transform.py``).

``pose_enc [..., 9] = [t_x, t_y, t_z, q_x, q_y, q_z, q_w, fov_h, fov_w]`` where

* ``t`` = translation of the **camera-to-world** matrix (camera centre in world coordinates);
* ``q`` = quaternion of the c2w rotation, scalar-last (xyzw), standardised to ``w >= 0``
  (pytorch3d-style robust conversion, see :func:`da3_jax.geometry.rotation.rotmat_to_quat`);
* ``fov_h = 2 atan((H / 2) / fy)``, ``fov_w = 2 atan((W / 2) / fx)`` in radians, with
  ``(H, W)`` the processed (network input) image size.

Decoding fixes the principal point at the image centre ``(W / 2, H / 2)`` and accepts non-unit
quaternions. The public API of da3_jax uses **w2c** extrinsics, so ``encode_pose`` takes w2c and
``decode_pose`` returns w2c (the official code converts with ``affine_inverse`` around these
calls: ``cam_enc.py`` encodes ``affine_inverse(w2c)``, ``da3.py`` inverts the decoded c2w).
"""

from __future__ import annotations

import jax.numpy as jnp

from da3_jax.geometry.cameras import _check_extrinsics, w2c_to_c2w
from da3_jax.geometry.checks import (
    check_batch_compatible,
    check_finite,
    check_image_hw,
    check_intrinsics,
    check_trailing_shape,
    checked_jit,
)
from da3_jax.geometry.rotation import quat_to_rotmat, rotmat_to_quat

__all__ = ["encode_pose", "decode_pose", "FOV_TAN_FLOOR"]

FOV_TAN_FLOOR = 1e-6  # official clamp of tan(fov / 2) when decoding focal lengths


@checked_jit(
    {"extrinsics_w2c": _check_extrinsics, "intrinsics": check_intrinsics},
    static_argnames=("image_hw",),
)
def encode_pose(extrinsics_w2c: jnp.ndarray, intrinsics: jnp.ndarray, image_hw) -> jnp.ndarray:
    """Encode cameras as the official 9-number pose encoding.

    Args:
      extrinsics_w2c: ``[..., 3|4, 4]`` world-to-camera.
      intrinsics: ``[..., 3, 3]`` pixel intrinsics of the ``image_hw`` image (only fx, fy used).
      image_hw: static ``(H, W)`` processed image size.

    Returns:
      ``[..., 9]`` float32 ``[t_c2w (3), q_c2w xyzw (3+1), fov_h, fov_w]``.
    """
    b_e = _check_extrinsics(extrinsics_w2c, "extrinsics_w2c")
    b_k = check_trailing_shape(intrinsics, "intrinsics", (3, 3))
    check_intrinsics(intrinsics, "intrinsics")
    batch = check_batch_compatible(extrinsics_w2c=b_e, intrinsics=b_k)
    h, w = check_image_hw(image_hw)
    c2w = w2c_to_c2w(jnp.asarray(extrinsics_w2c, dtype=jnp.float32))
    k = jnp.asarray(intrinsics, dtype=jnp.float32)
    t = jnp.broadcast_to(c2w[..., :3, 3], batch + (3,))
    q = jnp.broadcast_to(rotmat_to_quat(c2w[..., :3, :3]), batch + (4,))
    fov_h = jnp.broadcast_to(2.0 * jnp.arctan((h / 2.0) / k[..., 1, 1]), batch)
    fov_w = jnp.broadcast_to(2.0 * jnp.arctan((w / 2.0) / k[..., 0, 0]), batch)
    return jnp.concatenate([t, q, fov_h[..., None], fov_w[..., None]], axis=-1)


@checked_jit({"pose_enc": check_finite}, static_argnames=("image_hw",))
def decode_pose(pose_enc: jnp.ndarray, image_hw) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Decode the 9-number pose encoding.

    Args:
      pose_enc: ``[..., 9]`` as produced by :func:`encode_pose` or the camera decoder
        (quaternion need not be unit).
      image_hw: static ``(H, W)`` processed image size.

    Returns:
      ``extrinsics_w2c [..., 3, 4]`` and ``intrinsics [..., 3, 3]`` with
      ``fy = (H/2) / max(tan(fov_h/2), 1e-6)``, ``fx = (W/2) / max(tan(fov_w/2), 1e-6)`` and the
      principal point at ``(W/2, H/2)``.
    """
    check_trailing_shape(pose_enc, "pose_enc", (9,))
    check_finite(pose_enc, "pose_enc")
    h, w = check_image_hw(image_hw)
    enc = jnp.asarray(pose_enc)
    t = enc[..., :3]
    rot = quat_to_rotmat(enc[..., 3:7])
    c2w = jnp.concatenate([rot, t[..., None]], axis=-1)
    w2c = w2c_to_c2w(c2w)  # rigid inverse (same formula both ways)
    fy = (h / 2.0) / jnp.maximum(jnp.tan(enc[..., 7] / 2.0), FOV_TAN_FLOOR)
    fx = (w / 2.0) / jnp.maximum(jnp.tan(enc[..., 8] / 2.0), FOV_TAN_FLOOR)
    zero = jnp.zeros_like(fx)
    one = jnp.ones_like(fx)
    k = jnp.stack(
        [
            jnp.stack([fx, zero, zero + w / 2.0], axis=-1),
            jnp.stack([zero, fy, zero + h / 2.0], axis=-1),
            jnp.stack([zero, zero, one], axis=-1),
        ],
        axis=-2,
    )
    return w2c, k
