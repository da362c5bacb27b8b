"""Input cameras for inference: validation, and aligning predictions back to them.

Semantics of the official API (`api.py`, DA3-official.md §3.2 / §4.3):

* input extrinsics are w2c (OpenCV axes), ``[N, 4, 4]`` or ``[N, 3, 4]``; intrinsics ``[N, 3, 3]``
  in pixels of the original images. Both or neither; one camera per view (partial poses, i.e.
  known cameras for only some views, are rejected: the camera encoder conditions all views);
* before conditioning, the poses are normalised (view 0 = world, median camera distance 1):
  `da3_jax.model.normalize_input_extrinsics`;
* after the forward, a Sim(3) is fitted between the **camera centres** of the input poses
  (source) and of the predicted poses (target), `dst ~ s R src + t`, by the official
  `align_poses_umeyama(pred, input, ransac=N >= 10, random_state=42)` protocol
  (`da3_jax.geometry.align_camera_centres_sim3`: Umeyama, with >= 10 views RANSAC with
  upstream's NumPy sampling).
* ``align_to_input_scale=True``: output extrinsics = input extrinsics, depth / s;
  False: output extrinsics = input poses mapped by the Sim(3) into the prediction's frame,
  depth unchanged. Intrinsics = the input intrinsics after preprocessing, in both cases.

Degenerate fits: with one view, or when all input centres coincide, the scale is undefined;
then s = 1 and the Sim(3) is the rigid transform taking the (first) input camera onto the
predicted one.
"""

from __future__ import annotations

import numpy as np

from da3_jax.geometry import (
    align_camera_centres_sim3,
    camera_center,
    transform_w2c_sim3,
    w2c_to_c2w,
)

RANSAC_MIN_VIEWS = 10
RANSAC_ITERS = 10
RANSAC_SEED = 42


def validate_cameras(extrinsics, intrinsics, num_views: int):
    """Check user cameras before any model work -> (w2c [N, 4, 4] f64, K [N, 3, 3] f64) or Nones.

    Raises ValueError naming the argument: one given without the other, wrong shapes / counts,
    partial poses (None entries or NaN rows), non-finite values, non-positive focal lengths,
    non-rotation matrices.
    """
    if extrinsics is None and intrinsics is None:
        return None, None
    if extrinsics is None or intrinsics is None:
        given, missing = ("extrinsics", "intrinsics") if intrinsics is None else (
            "intrinsics", "extrinsics")
        raise ValueError(f"{given} were given without {missing}: pass both (one camera per "
                         "view) or neither")
    for name, value in (("extrinsics", extrinsics), ("intrinsics", intrinsics)):
        if isinstance(value, (list, tuple)) and any(v is None for v in value):
            raise ValueError(f"{name}: partial poses (None for some views) are not supported; "
                             "give a camera for every view or none at all")
    ext = np.asarray(extrinsics, np.float64)
    k = np.asarray(intrinsics, np.float64)
    if ext.ndim != 3 or ext.shape[1:] not in ((3, 4), (4, 4)):
        raise ValueError(f"extrinsics: expected shape (N, 3, 4) or (N, 4, 4) w2c, got {ext.shape}")
    if k.ndim != 3 or k.shape[1:] != (3, 3):
        raise ValueError(f"intrinsics: expected shape (N, 3, 3), got {k.shape}")
    if ext.shape[0] != num_views or k.shape[0] != num_views:
        raise ValueError(f"extrinsics/intrinsics: expected {num_views} cameras (one per image), "
                         f"got {ext.shape[0]} extrinsics and {k.shape[0]} intrinsics")
    bad = ~np.isfinite(ext).all(axis=(1, 2))
    if bad.any() and not bad.all():
        raise ValueError(f"extrinsics: views {np.flatnonzero(bad).tolist()} have no finite pose; "
                         "partial poses are not supported (give every view a camera or none)")
    if bad.any() or not np.isfinite(k).all():
        raise ValueError("extrinsics/intrinsics: non-finite values")
    if (k[:, 0, 0] <= 0).any() or (k[:, 1, 1] <= 0).any():
        raise ValueError("intrinsics: focal lengths fx, fy must be > 0")
    rot = ext[:, :3, :3]
    err = np.abs(rot @ np.swapaxes(rot, 1, 2) - np.eye(3)).max()
    if err > 1e-3 or (np.linalg.det(rot) < 0).any():
        raise ValueError(f"extrinsics: the 3x3 blocks must be rotations (orthonormal, det +1); "
                         f"max |R R^T - I| = {err:.2e}")
    hom = np.tile(np.eye(4), (num_views, 1, 1))
    hom[:, :3, :] = ext[:, :3, :]
    return hom, k


def centre_world(w2c: np.ndarray, origin=None) -> np.ndarray:
    """Re-express w2c ``[N, 3|4, 4]`` in a world translated so that ``origin`` (default: the
    first camera's centre) is at 0, computed in float64: ``t' = t + R origin``.

    Geo-referenced poses (centres ~1e6 m) keep their relative geometry when cast to float32
    afterwards; the normalisation before conditioning and the centre alignment are invariant to
    this rigid change of world, so it is applied before any float32 cast.
    """
    w2c = np.array(w2c, np.float64)
    rot = w2c[:, :3, :3]
    if origin is None:
        origin = -rot[0].T @ w2c[0, :3, 3]
    w2c[:, :3, 3] += rot @ np.asarray(origin, np.float64)
    return w2c


def fit_input_to_prediction(input_w2c: np.ndarray, pred_w2c: np.ndarray):
    """Sim(3) ``(s, R, t)`` with ``C_pred ~ s R C_input + t`` over camera centres (see module).

    The input centres are centred in float64 (`centre_world`) before the float32 solve and
    ``t`` is mapped back, so large (geo-referenced) coordinates keep their precision."""
    s, rot, t, origin, _ = _fit(input_w2c, pred_w2c)
    return s, rot, t - s * rot @ origin


def _fit(input_w2c, pred_w2c):
    """-> s, R, t (float64) of the fit on the input centred at ``origin`` (mean centre), origin,
    and the centred input w2c (float32)."""
    input_w2c = np.asarray(input_w2c, np.float64)
    centres = -np.einsum("nji,nj->ni", input_w2c[:, :3, :3], input_w2c[:, :3, 3])
    origin = centres.mean(0)
    centred = centre_world(input_w2c, origin).astype(np.float32)
    s, rot, t = _fit_centred(centred, np.asarray(pred_w2c, np.float32))
    return float(s), np.asarray(rot, np.float64), np.asarray(t, np.float64), origin, centred


def _fit_centred(input_w2c: np.ndarray, pred_w2c: np.ndarray):
    src = np.asarray(camera_center(input_w2c), np.float64)
    n = src.shape[0]
    spread = np.linalg.norm(src - src.mean(0), axis=-1).max()
    if n == 1 or spread < 1e-9:
        dst = np.asarray(camera_center(pred_w2c), np.float64)
        c2w_in = np.asarray(w2c_to_c2w(input_w2c[0]), np.float64)
        c2w_pr = np.asarray(w2c_to_c2w(pred_w2c[0]), np.float64)
        rot = c2w_pr[:3, :3] @ c2w_in[:3, :3].T
        return 1.0, rot, dst[0] - rot @ src[0]
    return align_camera_centres_sim3(input_w2c, pred_w2c, ransac=n >= RANSAC_MIN_VIEWS,
                                     random_state=RANSAC_SEED, max_iters=RANSAC_ITERS)


def align_to_input(
    depth: np.ndarray,
    pred_w2c: np.ndarray,
    input_w2c: np.ndarray,
    align_to_input_scale: bool = True,
):
    """Official `_align_to_input_extrinsics_intrinsics` for one scene.

    Args:
      depth: [N, H, W] predicted depth; pred_w2c: [N, 3, 4]; input_w2c: [N, 4, 4].
    Returns:
      (depth, extrinsics [N, 3, 4], s) as described in the module docstring.
    """
    s, rot, t, _, centred = _fit(input_w2c, pred_w2c)
    if align_to_input_scale:
        return depth / np.float32(s), np.asarray(input_w2c[:, :3, :], np.float32), s
    aligned = transform_w2c_sim3(
        centred[:, :3, :],
        np.float32(s),
        rot.astype(np.float32),
        t.astype(np.float32),
    )
    return depth, np.asarray(aligned, np.float32), s
