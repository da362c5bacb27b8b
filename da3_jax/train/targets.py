"""Training targets from a batch: reference-frame + scale normalisation, rays, points, poses.

Batch fields (from ``data_pipelines.pipeline``): ``depth [B,N,H,W]`` z-depth, ``valid [B,N,H,W]``,
``extrinsics [B,N,3,4]`` w2c (OpenCV axes), ``intrinsics [B,N,3,3]`` (pixels, pixel-edge
convention), ``camera_valid [B,N]`` (optional; all cameras known when absent).

Normalisation (DA3.md §1, "Scale"): every scene is re-expressed in the frame of its reference
view (view 0: the student runs with ``ref_view_strategy='first'``), then depth and camera
translations are divided by the mean L2 norm of the valid world points in that frame
(the definition of ``geometry.normalize_scene_scale``). All camera math is ``da3_jax.geometry``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from da3_jax import geometry


def to_reference_frame(extrinsics_w2c: jax.Array) -> jax.Array:
    """w2c ``[B,N,3,4]`` -> w2c ``[B,N,4,4]`` with view 0 at the identity: ``E_i @ E_0^-1``."""
    e = geometry.to_homogeneous(extrinsics_w2c)
    c2w0 = geometry.w2c_to_c2w(e[:, :1])
    return e @ c2w0


def normalize_scene(depth, valid, extrinsics_w2c, intrinsics, eps: float = 1e-6):
    """Reference-frame, unit-mean-point-norm scene. Returns ``(depth, w2c [B,N,3,4], scale [B])``.

    ``scale`` is the divisor (1 for scenes with no valid pixel). Invalid depths are set to 0.
    Same definition as ``geometry.normalize_scene_scale`` (which, at the time of writing, rejects
    ``[B, N, H, W]`` depth with ``[B, N, 3, 4]`` cameras unless B == N or B == 1: its batch check
    compares depth's leading dims without N to the cameras' with N).
    """
    m = valid.astype(jnp.float32)
    depth = jnp.where(valid, depth, 0.0)
    e = to_reference_frame(extrinsics_w2c)
    pts = geometry.points_from_depth(depth, e[..., :3, :], intrinsics, pixel_center=0.5)
    norms = jnp.linalg.norm(pts, axis=-1)
    count = jnp.sum(m, axis=(1, 2, 3))
    mean = jnp.sum(jnp.where(valid, norms, 0.0), axis=(1, 2, 3)) / jnp.maximum(count, 1.0)
    scale = jnp.where((count > 0) & (mean > eps), mean, 1.0)
    scale = jax.lax.stop_gradient(scale)
    e = e[..., :3, :]
    e = e.at[..., :, 3].divide(scale[:, None, None])
    return depth / scale[:, None, None, None], e, scale


def make_targets(batch: dict, ray_hw: tuple[int, int]) -> dict:
    """Normalised depth, valid mask, target rays at ``ray_hw``, world points and pose encodings.

    Returns ``depth [B,N,H,W]``, ``valid``, ``camera_valid [B,N]``, ``ray [B,N,h,w,6]`` (dir,
    origin), ``points [B,N,H,W,3]``, ``pose_enc [B,N,9]``, ``extrinsics [B,N,3,4]``, ``scale [B]``.
    """
    depth, valid, k = batch["depth"], batch["valid"].astype(bool), batch["intrinsics"]
    hw = depth.shape[-2:]
    camera_valid = batch.get("camera_valid")
    if camera_valid is None:
        camera_valid = jnp.ones(depth.shape[:2], bool)
    camera_valid = camera_valid.astype(bool)
    ndepth, w2c, scale = normalize_scene(depth, valid, batch["extrinsics"], k)
    k_ray = geometry.rescale_intrinsics(k, ray_hw[1] / hw[1], ray_hw[0] / hw[0])
    origins, dirs = geometry.camera_rays(w2c, k_ray, ray_hw, pixel_center=0.5)
    return {
        "depth": ndepth,
        "valid": valid,
        "camera_valid": camera_valid,
        "ray": jnp.concatenate([dirs, origins], axis=-1),
        "points": geometry.points_from_depth(ndepth, w2c, k, pixel_center=0.5),
        "pose_enc": geometry.encode_pose(w2c, k, hw),
        "extrinsics": w2c,
        "scale": scale,
    }
