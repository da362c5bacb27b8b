"""3D reconstruction metrics: Sim(3) camera alignment, depth -> points, Acc / Comp / F-score.

Follows the official benchmark (`depth_anything_3/bench/utils.py`, `utils/pose_align.py`,
`bench/datasets/*.py`; DA3-official.md §4.3, §8):

* **Camera alignment** (`align_cameras_sim3`): Umeyama Sim(3) from the predicted camera centres
  (c2w translations) to the ground-truth ones, with the official RANSAC wrapper: a first fit on
  all views; inlier threshold = median over predicted centres of the distance to the *nearest*
  GT centre after that fit; `max_iters` (10) fits on random subsets of size
  max(3, ceil(N / 2)) drawn with `np.random.default_rng(random_state)` (42 in the benchmark),
  inliers by same-index distance <= threshold, best by (most inliers, lowest mean inlier error);
  final refit on the best inliers when there are >= 3. The benchmark always uses RANSAC here.
  The protocol lives in `da3_jax.geometry.align_camera_centres_sim3` (Umeyama solves in
  float32, so the scale agrees with the official float64 `evo` solve to ~1e-6 relative).
* **Depth scaling**: predicted depth is multiplied by the Sim(3) scale s. `recon_unposed` then
  uses the predicted intrinsics and the Sim(3)-aligned predicted extrinsics; `recon_posed` uses
  the ground-truth intrinsics and extrinsics (official `_prep_unposed` / `_prep_posed`).
* **Masking**: predicted depth is resized to the ground-truth resolution with nearest
  neighbour (intrinsics rescaled accordingly) and kept only where the GT is valid.
* **Points** are unprojected with `da3_jax.geometry.points_from_depth` at pixel centres
  (`pixel_center=0.5`), since da3_jax intrinsics use the pixel-edge convention (the same rays as
  the official integer-index unprojection with OpenCV-convention K). `tsdf_points` converts K
  to the OpenCV convention (cx, cy - 0.5) for Open3D, which integrates at integer indices.
* **Metrics** (`point_cloud_metrics`, official `evaluate_3d_reconstruction`): acc = mean NN
  distance prediction -> GT, comp = mean NN distance GT -> prediction, overall = (acc + comp)/2,
  precision / recall = fraction of those distances < tau, F-score = 2PR / (P + R).

The official benchmark fuses depth with an Open3D TSDF and compares against a GT mesh or fused
cloud. Without Open3D (not a dependency) the default here is **direct point clouds**: the masked,
scaled predicted depth is unprojected, voxel-downsampled (`voxel_down_sample`,
Open3D semantics) and compared with the benchmark's GT cloud / mesh (`load_gt_points`) or, when
the record names none, the GT depth unprojected. `tsdf_points` gives the official TSDF fusion
when Open3D is importable. Units are the GT's (metres for the benchmark datasets).
"""

from __future__ import annotations

import os

import numpy as np
from scipy.spatial import cKDTree

from da3_jax.eval._jax import geometry_fn, x64


def _check_poses(w2c, name: str) -> np.ndarray:
    arr = np.asarray(w2c, np.float64)
    if arr.ndim != 3 or arr.shape[-1] != 4 or arr.shape[-2] not in (3, 4):
        raise ValueError(f"{name}: expected w2c poses [N, 3, 4] or [N, 4, 4], got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: poses contain non-finite values")
    return arr[:, :3, :]


def align_cameras_sim3(pred_w2c, gt_w2c, ransac: bool = True, random_state: int | None = 42,
                       max_iters: int = 10, sub_n: int | None = None,
                       inlier_thresh: float | None = None) -> dict:
    """Sim(3) aligning predicted camera centres to the GT ones (official benchmark protocol).

    Args:
      pred_w2c, gt_w2c: `[N, 3|4, 4]` world-to-camera poses of the same N >= 3 views.
      ransac, random_state, max_iters, sub_n, inlier_thresh: the official
        `align_poses_umeyama(gt, pred, ransac=True, random_state=42)` knobs
        (`da3_jax.geometry.align_camera_centres_sim3`).

    Returns:
      dict with `scale` (float), `rotation` `[3, 3]`, `translation` `[3]` (GT = s R pred + t on
      centres) and `aligned_w2c` `[N, 3, 4]` float64 (predicted cameras mapped into the GT frame
      by `da3_jax.geometry.transform_w2c_sim3`).
    """
    from da3_jax import geometry

    pred = _check_poses(pred_w2c, "pred_w2c")
    gt = _check_poses(gt_w2c, "gt_w2c")
    if pred.shape != gt.shape:
        raise ValueError(f"pred_w2c {pred.shape} and gt_w2c {gt.shape} must hold the same views")
    n = pred.shape[0]
    if n < 3:
        raise ValueError(f"pred_w2c: Sim(3) alignment needs >= 3 views, got {n}")
    with x64():  # float64 camera centres and aligned poses
        s, r, t = geometry.align_camera_centres_sim3(
            pred, gt, ransac=ransac, random_state=random_state, max_iters=max_iters,
            sub_n=sub_n, inlier_thresh=inlier_thresh)
        aligned = np.asarray(geometry.transform_w2c_sim3(pred, s, r, t), np.float64)
    return {"scale": s, "rotation": r, "translation": t, "aligned_w2c": aligned}


def voxel_down_sample(points, voxel: float) -> np.ndarray:
    """Centroid of the points in each occupied voxel (Open3D `voxel_down_sample` semantics).

    The grid is anchored at min(points) - voxel / 2; voxel index = floor((p - anchor) / voxel).
    Output order: sorted by voxel index (Open3D's order is unspecified).
    """
    pts = np.asarray(points, np.float64).reshape(-1, 3)
    if voxel <= 0:
        raise ValueError(f"voxel: expected > 0, got {voxel}")
    if pts.shape[0] == 0:
        return pts
    anchor = pts.min(axis=0) - voxel * 0.5
    idx = np.floor((pts - anchor) / voxel).astype(np.int64)
    dims = idx.max(axis=0) + 1
    key = (idx[:, 0] * dims[1] + idx[:, 1]) * dims[2] + idx[:, 2]  # lexicographic voxel id
    _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    sums = np.zeros((counts.size, 3))
    np.add.at(sums, inverse, pts)
    return sums / counts[:, None]


def point_cloud_metrics(pred_points, gt_points, threshold: float = 0.05,
                        down_sample: float | None = None) -> dict:
    """Acc / Comp / Overall / Precision / Recall / F-score (official `evaluate_3d_reconstruction`).

    Args:
      pred_points, gt_points: `[P, 3]` / `[G, 3]` point clouds in the same units.
      threshold: tau for precision / recall (0.05 m; 0.25 m for ETH3D).
      down_sample: optional voxel size applied to both clouds first (`voxel_down_sample`).

    Returns:
      dict of floats `acc`, `comp`, `overall`, `precision`, `recall`, `fscore`; empty clouds
      give inf distances and zero scores, as in the official code.
    """
    pred = np.asarray(pred_points, np.float64).reshape(-1, 3)
    gt = np.asarray(gt_points, np.float64).reshape(-1, 3)
    if not (np.all(np.isfinite(pred)) and np.all(np.isfinite(gt))):
        raise ValueError("pred_points/gt_points: point clouds contain non-finite values")
    if down_sample is not None and down_sample > 0:
        pred, gt = voxel_down_sample(pred, down_sample), voxel_down_sample(gt, down_sample)
    if len(pred) == 0 or len(gt) == 0:
        return {"acc": float("inf"), "comp": float("inf"), "overall": float("inf"),
                "precision": 0.0, "recall": 0.0, "fscore": 0.0}
    d_pred = cKDTree(gt).query(pred, workers=-1)[0]
    d_gt = cKDTree(pred).query(gt, workers=-1)[0]
    acc, comp = float(np.mean(d_pred)), float(np.mean(d_gt))
    prec = float(np.mean(d_pred < threshold))
    rec = float(np.mean(d_gt < threshold))
    f = 2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0
    return {"acc": acc, "comp": comp, "overall": (acc + comp) / 2, "precision": prec,
            "recall": rec, "fscore": f}


def resize_depth_nearest(depth, intrinsics, hw) -> tuple[np.ndarray, np.ndarray | None]:
    """Resize `[N, h, w]` depth to `hw` with nearest neighbour (cv2), rescaling K `[N, 3, 3]`
    (pixel-edge convention; `intrinsics=None` -> None). Float64 outputs."""
    import cv2

    from da3_jax import geometry

    depth = np.asarray(depth, np.float64)
    h0, w0 = depth.shape[-2:]
    h, w = int(hw[0]), int(hw[1])
    if (h0, w0) == (h, w):
        return depth, None if intrinsics is None else np.asarray(intrinsics, np.float64)
    out = np.stack([cv2.resize(d, (w, h), interpolation=cv2.INTER_NEAREST) for d in depth])
    if intrinsics is None:
        return out, None
    k = np.asarray(geometry.rescale_intrinsics(np.asarray(intrinsics, np.float32), w / w0,
                                               h / h0), np.float64)
    return out, k


def scene_points(depth, w2c, intrinsics, mask=None) -> np.ndarray:
    """World points `[P, 3]` (float64) of all views' pixels with depth > 0 (and mask)."""
    depth = np.asarray(depth, np.float64)
    keep = np.isfinite(depth) & (depth > 0)
    if mask is not None:
        keep &= np.asarray(mask, bool)
    with x64():
        pts = np.asarray(geometry_fn("points_from_depth")(np.where(keep, depth, 0.0),
                                                      np.asarray(w2c, np.float64),
                                                      np.asarray(intrinsics, np.float64),
                                                      pixel_center=0.5))
    return pts[keep]


def prepare_fusion_inputs(pred_depth, pred_w2c, pred_intrinsics, gt_w2c, gt_intrinsics,
                          gt_valid, mode: str = "recon_unposed", random_state: int = 42) -> dict:
    """Scaled, masked predicted depth and the cameras to fuse it with (official `_prep_*`).

    Args:
      pred_depth `[N, h, w]`, pred_w2c `[N, 3|4, 4]`, pred_intrinsics `[N, 3, 3]` (for h x w);
      gt_w2c `[N, 3|4, 4]`, gt_intrinsics `[N, 3, 3]`, gt_valid bool `[N, H, W]`.
      mode: 'recon_unposed' (predicted K, Sim(3)-aligned predicted poses) or 'recon_posed'
        (GT K and poses).

    Returns:
      dict with `depth` `[N, H, W]` (x scale, 0 outside the GT mask), `w2c`, `intrinsics`,
      `scale`.
    """
    if mode not in ("recon_unposed", "recon_posed"):
        raise ValueError(f"mode: expected 'recon_unposed' or 'recon_posed', got {mode!r}")
    gt_valid = np.asarray(gt_valid, bool)
    align = align_cameras_sim3(pred_w2c, gt_w2c, ransac=True, random_state=random_state)
    depth, k = resize_depth_nearest(pred_depth, pred_intrinsics, gt_valid.shape[-2:])
    depth = np.where(gt_valid & np.isfinite(depth), depth, 0.0) * align["scale"]
    if mode == "recon_unposed":
        return {"depth": depth, "w2c": align["aligned_w2c"], "intrinsics": k,
                "scale": align["scale"]}
    return {"depth": depth, "w2c": _check_poses(gt_w2c, "gt_w2c"),
            "intrinsics": np.asarray(gt_intrinsics, np.float64), "scale": align["scale"]}


def reconstruction_metrics(pred_depth, pred_w2c, pred_intrinsics, gt_depth, gt_w2c,
                           gt_intrinsics, gt_valid=None, mode: str = "recon_unposed",
                           threshold: float = 0.05, down_sample: float | None = 4.0 / 512.0,
                           gt_points=None) -> dict:
    """Reconstruction metrics of one scene with direct point clouds (no TSDF).

    Predicted depth is scaled, masked and unprojected as in `prepare_fusion_inputs`; the GT
    cloud is `gt_points` `[G, 3]` when given, else the GT depth unprojected with GT cameras.
    Returns `point_cloud_metrics` plus `scale` (the Sim(3) scale applied to the prediction).
    """
    gt_depth = np.asarray(gt_depth, np.float64)
    valid = (gt_depth > 0) if gt_valid is None else np.asarray(gt_valid, bool) & (gt_depth > 0)
    fused = prepare_fusion_inputs(pred_depth, pred_w2c, pred_intrinsics, gt_w2c, gt_intrinsics,
                                  valid, mode=mode)
    pred_pts = scene_points(fused["depth"], fused["w2c"], fused["intrinsics"])
    if gt_points is None:
        gt_points = scene_points(gt_depth, _check_poses(gt_w2c, "gt_w2c"), gt_intrinsics, valid)
    out = point_cloud_metrics(pred_pts, gt_points, threshold=threshold, down_sample=down_sample)
    out["scale"] = float(fused["scale"])
    return out


def load_gt_points(provenance, num_points: int = 1_000_000, seed: int = 42):
    """The benchmark's GT cloud named in a record's provenance, or None when absent.

    `provenance['gt_pcd']`: a PLY point cloud (HiRoom `fused_pcd`), read with plyfile;
    `provenance['gt_mesh']`: a PLY mesh (ETH3D, 7Scenes, ScanNet++), `num_points` sampled
    uniformly on its surface (trimesh, fixed seed; the official samples 1M points with Open3D).
    Returns float64 `[P, 3]`.
    """
    prov = provenance or {}
    path = prov.get("gt_pcd")
    if path and os.path.isfile(path):
        from plyfile import PlyData

        v = PlyData.read(path)["vertex"]
        return np.stack([np.asarray(v[c], np.float64) for c in ("x", "y", "z")], axis=1)
    path = prov.get("gt_mesh")
    if path and os.path.isfile(path):
        import trimesh

        mesh = trimesh.load(path, force="mesh")
        pts, _ = trimesh.sample.sample_surface(mesh, num_points, seed=seed)
        return np.asarray(pts, np.float64)
    return None


def tsdf_points(depth, images, w2c, intrinsics, voxel_length: float, sdf_trunc: float,
                max_depth: float, num_points: int = 1_000_000) -> np.ndarray:
    """Official TSDF fusion (Open3D `ScalableTSDFVolume`, RGB8) -> `[num_points, 3]` samples.

    `intrinsics` are pixel-edge (da3_jax convention).
    Optional: needs `open3d` (not a da3_jax dependency; raises ImportError without it). Mirrors
    `create_tsdf_volume`, `fuse_depth_to_tsdf` and `sample_points_from_mesh` of the official
    `bench/utils.py`; constants per dataset in `da3_jax.eval.protocols.PROTOCOLS`.
    """
    import open3d as o3d

    integ = o3d.pipelines.integration
    volume = integ.ScalableTSDFVolume(voxel_length=voxel_length, sdf_trunc=sdf_trunc,
                                      color_type=integ.TSDFVolumeColorType.RGB8)
    for d, img, ext, k in zip(depth, images, w2c, intrinsics, strict=True):
        h, w = d.shape
        rgbd = o3d.geometry.RGBDImage.create_from_color_and_depth(
            o3d.geometry.Image(np.ascontiguousarray(img, np.uint8)),
            o3d.geometry.Image(np.ascontiguousarray(d, np.float32)),
            depth_trunc=max_depth, convert_rgb_to_intensity=False, depth_scale=1.0)
        cam = o3d.camera.PinholeCameraIntrinsic(w, h, k[0, 0], k[1, 1], k[0, 2] - 0.5,
                                                k[1, 2] - 0.5)
        ext44 = np.eye(4)
        ext44[:3, :] = np.asarray(ext)[:3, :]
        volume.integrate(rgbd, cam, ext44)
    mesh = volume.extract_triangle_mesh()
    return np.asarray(mesh.sample_points_uniformly(number_of_points=num_points).points)
