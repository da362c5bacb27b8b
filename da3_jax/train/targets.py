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


def normalize_scene(depth, valid, extrinsics_w2c, intrinsics):
    """Reference-frame (view 0), unit-mean-point-norm scene: ``geometry.normalize_scene_scale``.

    Args: ``depth [B,N,H,W]``, ``valid [B,N,H,W]`` bool, ``extrinsics_w2c [B,N,3,4]``,
    ``intrinsics [B,N,3,3]``. Returns ``(depth [B,N,H,W], w2c [B,N,3,4], scale [B])`` where
    ``scale`` is the *divisor* (mean valid point norm; 1 for scenes with no valid pixel),
    invalid depths are set to 0, and everything is a constant (``stop_gradient``).
    """
    valid = valid.astype(bool)
    depth = jnp.where(valid, depth, 0.0)
    depth_n, w2c, inv_scale = geometry.normalize_scene_scale(
        depth, extrinsics_w2c, intrinsics, mask=valid, ref_index=0, pixel_center=0.5
    )
    depth_n = jnp.where(valid, depth_n, 0.0)
    return jax.lax.stop_gradient((depth_n, w2c, 1.0 / inv_scale))


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
    if batch.get("view_mask") is not None:  # padding views (pipeline): no camera / ray / point term
        camera_valid = camera_valid & batch["view_mask"].astype(bool)
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
