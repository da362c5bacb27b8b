"""Pinhole cameras: extrinsics, intrinsics, per-pixel rays, unprojection and projection.

Conventions (used by every da3_jax module)
------------------------------------------
* **Extrinsics are world-to-camera (w2c)** ``[..., 3, 4] = [R | t]``: ``X_cam = R @ X_world + t``.
  The camera centre in world coordinates is ``C = -R^T t`` (= translation of the c2w matrix).
* **OpenCV camera axes**: x right, y down, z forward. Depth is **z-depth** (not range).
* **Intrinsics** ``K [..., 3, 3] = [[fx, s, cx], [0, fy, cy], [0, 0, 1]]`` in pixels, in the
  *pixel-edge* convention: the continuous image coordinate of pixel ``(i, j)`` (row, column)
  spans ``[j, j + 1) x [i, i + 1)``, so its centre is ``(j + 0.5, i + 0.5)``. Resizing an image
  by ``(sx, sy)`` maps K to ``diag(sx, sy, 1) @ K`` (:func:`rescale_intrinsics`).
* **Pixel sampling (``pixel_center``)**: functions that build a per-pixel grid evaluate it at
  ``u = j + pixel_center``, ``v = i + pixel_center``.

  - ``pixel_center=0.0``: integer pixel indices, as the official DA3 unprojection / point-cloud
    export (``_depths_to_world_points_with_colors``) does. Default of :func:`points_from_depth`.
  - ``pixel_center=0.5``: cell centres, as the official canonical ray grid of the ray head
    (``unproject_depth(..., ixt_normalized=True)``). Default of :func:`camera_rays`.

* Ray maps: ``directions`` are **unnormalised** world-frame ``d = R^T K^{-1} [u, v, 1]`` so that
  a pixel at z-depth ``D`` is ``P = C + D * d``. In the 6-channel DA3 ray map,
  ``ray[..., 0:3]`` = direction and ``ray[..., 3:6]`` = origin (camera centre).

All functions are pure JAX, batched over leading dims (camera batch dims broadcast), jit/vmap-able.
Shape errors raise ``ValueError`` at trace time; value checks (finite, non-singular K) run on
concrete inputs only (see :mod:`da3_jax.geometry.checks`).
"""

from __future__ import annotations

import jax.numpy as jnp

from da3_jax.geometry.checks import (
    check_batch_compatible,
    check_finite,
    check_image_hw,
    check_intrinsics,
    check_trailing_shape,
    checked_jit,
)

__all__ = [
    "to_homogeneous",
    "w2c_to_c2w",
    "c2w_to_w2c",
    "opengl_to_opencv_c2w",
    "camera_center",
    "invert_intrinsics",
    "rescale_intrinsics",
    "crop_intrinsics",
    "pixel_grid",
    "camera_rays",
    "camera_ray_map",
    "points_from_depth_rays",
    "points_from_depth",
    "project",
]


def _check_extrinsics(ext, name: str) -> tuple[int, ...]:
    shape = check_trailing_shape(ext, name, (None, 4))
    if ext.shape[-2] not in (3, 4):
        raise ValueError(f"{name}: expected shape [..., 3, 4] or [..., 4, 4], got {ext.shape}")
    check_finite(ext, name)
    return shape


_CAM_CHECKS = {"extrinsics_w2c": _check_extrinsics, "intrinsics": check_intrinsics}


@checked_jit({"extrinsics": _check_extrinsics})
def to_homogeneous(extrinsics: jnp.ndarray) -> jnp.ndarray:
    """``[..., 3, 4]`` rigid transform -> ``[..., 4, 4]`` with last row ``[0, 0, 0, 1]``.

    A ``[..., 4, 4]`` input is returned unchanged.
    """
    _check_extrinsics(extrinsics, "extrinsics")
    ext = jnp.asarray(extrinsics)
    if ext.shape[-2] == 4:
        return ext
    last = jnp.broadcast_to(
        jnp.asarray([0.0, 0.0, 0.0, 1.0], dtype=ext.dtype), ext.shape[:-2] + (1, 4)
    )
    return jnp.concatenate([ext, last], axis=-2)


def _rigid_inverse(ext: jnp.ndarray) -> jnp.ndarray:
    rot = ext[..., :3, :3]
    t = ext[..., :3, 3:]
    rot_t = jnp.swapaxes(rot, -1, -2)
    top = jnp.concatenate([rot_t, -rot_t @ t], axis=-1)
    if ext.shape[-2] == 4:
        return jnp.concatenate([top, ext[..., 3:, :]], axis=-2)
    return top


@checked_jit({"extrinsics_w2c": _check_extrinsics})
def w2c_to_c2w(extrinsics_w2c: jnp.ndarray) -> jnp.ndarray:
    """Invert a rigid w2c ``[..., 3|4, 4]`` to c2w of the same shape: ``[R^T | -R^T t]``.

    Assumes ``R`` is a rotation (uses the transpose, like the official ``affine_inverse``).
    """
    _check_extrinsics(extrinsics_w2c, "extrinsics_w2c")
    return _rigid_inverse(jnp.asarray(extrinsics_w2c))


@checked_jit({"extrinsics_c2w": _check_extrinsics})
def c2w_to_w2c(extrinsics_c2w: jnp.ndarray) -> jnp.ndarray:
    """Invert a rigid c2w ``[..., 3|4, 4]`` to w2c of the same shape (see :func:`w2c_to_c2w`)."""
    _check_extrinsics(extrinsics_c2w, "extrinsics_c2w")
    return _rigid_inverse(jnp.asarray(extrinsics_c2w))


@checked_jit({"extrinsics_c2w": _check_extrinsics})
def opengl_to_opencv_c2w(extrinsics_c2w: jnp.ndarray) -> jnp.ndarray:
    """c2w ``[..., 3|4, 4]`` with OpenGL / Blender / nerfstudio camera axes (x right, y up,
    z backward) -> the same camera with OpenCV axes (x right, y down, z forward).

    ``c2w @ diag(1, -1, -1, 1)``: the camera's y and z columns change sign; the centre and the
    world frame are unchanged. The map is its own inverse (OpenCV -> OpenGL is the same call).
    """
    _check_extrinsics(extrinsics_c2w, "extrinsics_c2w")
    ext = jnp.asarray(extrinsics_c2w)
    flip = jnp.asarray([1.0, -1.0, -1.0, 1.0], ext.dtype)
    return ext * flip


@checked_jit({"extrinsics_w2c": _check_extrinsics})
def camera_center(extrinsics_w2c: jnp.ndarray) -> jnp.ndarray:
    """Camera centre in world ``C = -R^T t``, ``[..., 3]``, from w2c ``[..., 3|4, 4]``."""
    _check_extrinsics(extrinsics_w2c, "extrinsics_w2c")
    ext = jnp.asarray(extrinsics_w2c)
    rot = ext[..., :3, :3]
    return -jnp.einsum("...ji,...j->...i", rot, ext[..., :3, 3])


@checked_jit({"intrinsics": check_intrinsics})
def invert_intrinsics(intrinsics: jnp.ndarray) -> jnp.ndarray:
    """Closed-form inverse of upper-triangular pinhole ``K [..., 3, 3]`` (skew allowed)."""
    check_intrinsics(intrinsics, "intrinsics")
    k = jnp.asarray(intrinsics)
    fx, s, cx = k[..., 0, 0], k[..., 0, 1], k[..., 0, 2]
    fy, cy = k[..., 1, 1], k[..., 1, 2]
    zero = jnp.zeros_like(fx)
    one = jnp.ones_like(fx)
    rows = [
        jnp.stack([1.0 / fx, -s / (fx * fy), (s * cy - cx * fy) / (fx * fy)], axis=-1),
        jnp.stack([zero, 1.0 / fy, -cy / fy], axis=-1),
        jnp.stack([zero, zero, one], axis=-1),
    ]
    return jnp.stack(rows, axis=-2)


@checked_jit({"intrinsics": check_intrinsics})
def rescale_intrinsics(intrinsics: jnp.ndarray, sx, sy) -> jnp.ndarray:
    """Intrinsics after resizing the image by factors ``(sx, sy)``: ``diag(sx, sy, 1) @ K``.

    Pixel-edge convention (the image rectangle ``[0, W] x [0, H]`` maps to ``[0, sx W] x
    [0, sy H]``), e.g. ``sx = W_new / W_old``. ``sx``/``sy``: scalars or arrays broadcasting
    with the batch dims of ``intrinsics [..., 3, 3]``.
    """
    check_intrinsics(intrinsics, "intrinsics")
    k = jnp.asarray(intrinsics)
    sx = jnp.asarray(sx, dtype=k.dtype)
    sy = jnp.asarray(sy, dtype=k.dtype)
    one = jnp.ones_like(sx * sy)
    scale = jnp.stack(jnp.broadcast_arrays(sx, sy, one), axis=-1)  # [..., 3]
    return k * scale[..., :, None]


@checked_jit({"intrinsics": check_intrinsics})
def crop_intrinsics(intrinsics: jnp.ndarray, x0, y0) -> jnp.ndarray:
    """Intrinsics after cropping the image at top-left corner ``(x0, y0)`` pixels.

    ``cx -= x0``, ``cy -= y0``; focal lengths unchanged. ``x0``/``y0`` broadcast with the batch.
    """
    check_intrinsics(intrinsics, "intrinsics")
    k = jnp.asarray(intrinsics)
    x0 = jnp.asarray(x0, dtype=k.dtype)
    y0 = jnp.asarray(y0, dtype=k.dtype)
    k = k.at[..., 0, 2].add(-x0)
    return k.at[..., 1, 2].add(-y0)


@checked_jit({}, static_argnames=("hw", "pixel_center", "dtype"))
def pixel_grid(hw, pixel_center: float = 0.5, dtype=jnp.float32) -> jnp.ndarray:
    """Homogeneous pixel coordinates ``[h, w, 3] = (j + pixel_center, i + pixel_center, 1)``."""
    h, w = check_image_hw(hw, "hw")
    u = jnp.arange(w, dtype=dtype) + pixel_center
    v = jnp.arange(h, dtype=dtype) + pixel_center
    uu, vv = jnp.meshgrid(u, v, indexing="xy")
    return jnp.stack([uu, vv, jnp.ones_like(uu)], axis=-1)


def _batch_of_camera(extrinsics_w2c, intrinsics) -> tuple[int, ...]:
    b_ext = _check_extrinsics(extrinsics_w2c, "extrinsics_w2c")
    b_k = check_trailing_shape(intrinsics, "intrinsics", (3, 3))
    check_intrinsics(intrinsics, "intrinsics")
    return check_batch_compatible(extrinsics_w2c=b_ext, intrinsics=b_k)


@checked_jit(_CAM_CHECKS, static_argnames=("hw", "pixel_center"))
def camera_rays(
    extrinsics_w2c: jnp.ndarray,
    intrinsics: jnp.ndarray,
    hw,
    pixel_center: float = 0.5,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Per-pixel world ray origins and unnormalised directions.

    Args:
      extrinsics_w2c: ``[..., 3|4, 4]`` world-to-camera.
      intrinsics: ``[..., 3, 3]`` pixel intrinsics **for a ``hw``-sized image** (rescale first
        with :func:`rescale_intrinsics` when the ray grid is smaller than the image).
      hw: static ``(h, w)`` of the grid.
      pixel_center: offset added to integer pixel indices; 0.5 = cell centres (official ray-map
        grid, default), 0.0 = integer indices (official depth unprojection).

    Returns:
      ``origins [..., h, w, 3]``: camera centre ``C = -R^T t`` repeated per pixel;
      ``directions [..., h, w, 3]``: ``R^T K^{-1} [u, v, 1]`` (unnormalised, z-component in the
      camera frame is 1, so ``C + D * d`` is the point at z-depth ``D``).
    """
    batch = _batch_of_camera(extrinsics_w2c, intrinsics)
    ext = jnp.asarray(extrinsics_w2c)
    k = jnp.asarray(intrinsics)
    dtype = jnp.result_type(ext.dtype, k.dtype)
    grid = pixel_grid(hw, pixel_center, dtype=dtype)  # [h, w, 3]
    h, w = grid.shape[:2]
    # M = R^T K^-1 maps homogeneous pixels to world directions.
    m = jnp.swapaxes(ext[..., :3, :3], -1, -2) @ invert_intrinsics(k)
    m = jnp.broadcast_to(m, batch + (3, 3))
    dirs = jnp.einsum("...ij,hwj->...hwi", m, grid)
    centre = jnp.broadcast_to(camera_center(ext), batch + (3,))
    origins = jnp.broadcast_to(centre[..., None, None, :], batch + (h, w, 3))
    return origins, dirs


@checked_jit(_CAM_CHECKS, static_argnames=("image_hw", "grid_hw"))
def camera_ray_map(
    extrinsics_w2c: jnp.ndarray, intrinsics: jnp.ndarray, image_hw, grid_hw
) -> jnp.ndarray:
    """DA3 ray map ``[..., h, w, 6]`` (official channel order: direction 0:3, origin 3:6).

    The supervision target of the ray head: intrinsics of the ``image_hw = (H, W)`` image are
    rescaled to the ``grid_hw = (h, w)`` ray grid (pixel-edge, ``diag(w/W, h/H, 1) K``) and
    rays are taken at cell centres (``pixel_center=0.5``), which is the canonical grid that
    :func:`da3_jax.geometry.rays_to_camera` assumes. Directions are unnormalised
    (``R^T K^{-1} [u, v, 1]``, unit camera-z); origins are the camera centre.
    """
    big_h, big_w = check_image_hw(image_hw, "image_hw")
    h, w = check_image_hw(grid_hw, "grid_hw")
    k_grid = rescale_intrinsics(intrinsics, w / big_w, h / big_h)
    origins, dirs = camera_rays(extrinsics_w2c, k_grid, (h, w), pixel_center=0.5)
    return jnp.concatenate([dirs, origins], axis=-1)


@checked_jit({})
def points_from_depth_rays(
    depth: jnp.ndarray, origins: jnp.ndarray, directions: jnp.ndarray
) -> jnp.ndarray:
    """World points ``P = origins + depth * directions``, ``[..., h, w, 3]``.

    ``depth [..., h, w]`` is z-depth when ``directions`` come from :func:`camera_rays`
    (unnormalised, unit camera-z). Leading dims broadcast.
    """
    b_d = check_trailing_shape(depth, "depth", (None, None))
    b_o = check_trailing_shape(origins, "origins", (None, None, 3))
    b_r = check_trailing_shape(directions, "directions", (None, None, 3))
    check_batch_compatible(depth=b_d, origins=b_o, directions=b_r)
    check_batch_compatible(
        depth=depth.shape[-2:], origins=origins.shape[-3:-1], directions=directions.shape[-3:-1]
    )
    return origins + depth[..., None] * directions


@checked_jit(_CAM_CHECKS, static_argnames=("pixel_center",))
def points_from_depth(
    depth: jnp.ndarray,
    extrinsics_w2c: jnp.ndarray,
    intrinsics: jnp.ndarray,
    pixel_center: float = 0.0,
) -> jnp.ndarray:
    """Unproject a z-depth map to world points, ``[..., H, W, 3]``.

    ``X_cam = depth(u, v) K^{-1} [u, v, 1]``, ``X_world = R^T (X_cam - t)``, with
    ``u = j + pixel_center``. The default ``pixel_center=0.0`` (integer pixel indices) matches the
    official DA3 point-cloud export; use 0.5 for exact pixel-edge geometry.

    Args:
      depth: ``[..., H, W]`` z-depth (same units as the translation).
      extrinsics_w2c: ``[..., 3|4, 4]``; intrinsics: ``[..., 3, 3]`` for the ``H x W`` image.
    """
    b_d = check_trailing_shape(depth, "depth", (None, None))
    batch = _batch_of_camera(extrinsics_w2c, intrinsics)
    check_batch_compatible(depth=b_d, cameras=batch)
    origins, dirs = camera_rays(extrinsics_w2c, intrinsics, depth.shape[-2:], pixel_center)
    return points_from_depth_rays(depth, origins, dirs)


@checked_jit(_CAM_CHECKS)
def project(
    points: jnp.ndarray, extrinsics_w2c: jnp.ndarray, intrinsics: jnp.ndarray
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Project world points into cameras.

    Args:
      points: ``[..., *P, 3]`` world points, where ``...`` are the camera batch dims (they
        broadcast with those of the cameras) and ``*P`` any number of point dims, e.g.
        ``[B, N, H, W, 3]`` with cameras ``[B, N, 3, 4]``, or ``[M, 3]`` with one camera.
      extrinsics_w2c: ``[..., 3|4, 4]``; intrinsics: ``[..., 3, 3]``.

    Returns:
      ``uv [..., *P, 2]`` continuous pixel coordinates (pixel-edge convention, same as K) and
      ``z [..., *P]`` camera z-depth. Points with ``z <= 0`` are behind the camera; their ``uv``
      is meaningless (Inf at ``z == 0``): mask with ``z > 0``.
    """
    batch = _batch_of_camera(extrinsics_w2c, intrinsics)
    check_trailing_shape(points, "points", (3,))
    n_point_dims = points.ndim - 1 - len(batch)
    if n_point_dims < 0:
        raise ValueError(
            f"points: expected shape [..., *P, 3] whose leading dims match the camera batch "
            f"{batch}, got {points.shape}"
        )
    check_batch_compatible(points=points.shape[: len(batch)], cameras=batch)
    ext = jnp.asarray(extrinsics_w2c)
    k = jnp.broadcast_to(jnp.asarray(intrinsics), batch + (3, 3))
    ext = jnp.broadcast_to(ext, batch + ext.shape[-2:])
    expand = (1,) * n_point_dims
    rot = ext[..., :3, :3].reshape(batch + expand + (3, 3))
    t = ext[..., :3, 3].reshape(batch + expand + (3,))
    k = k.reshape(batch + expand + (3, 3))
    x_cam = jnp.einsum("...ij,...j->...i", rot, points) + t
    pix = jnp.einsum("...ij,...j->...i", k, x_cam)
    z = x_cam[..., 2]
    uv = pix[..., :2] / z[..., None]
    return uv, z
