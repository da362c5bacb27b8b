"""Novel-view-synthesis evaluation (mode ``nvs``): the paper's protocol for the DA3 NVS benchmark.

Protocol (DA3 paper, "Feed-Forward Novel View Synthesis"; DL3DV 140 / Tanks and Temples 6 /
MegaDepth 19 scenes at 270 × 480 with the scenes' COLMAP poses):

* every 8th frame (indices 0, 8, 16, ...) is a target view;
* 12 context views are chosen from the remaining frames by farthest-point sampling on camera
  pose (`context_views`): the distance between two cameras is the distance of their centres
  divided by the median distance of all centres to their mean, plus their relative rotation
  angle in radians; sampling starts from the first non-target frame;
* the model predicts Gaussians (and cameras) from the context images alone; a Sim(3) fitted on
  the context camera centres, ground truth -> prediction (`geometry.align_camera_centres_sim3`,
  Umeyama + the official RANSAC, seed 42), maps the ground-truth target cameras into the
  prediction's frame; the targets are rendered there (`da3_jax.render`) at the
  record's resolution with the ground-truth intrinsics, black background;
* metrics per target and per scene (mean over targets): PSNR and SSIM (`eval.metrics`, images
  in [0, 1]) and, when LPIPS weights are given (`eval.lpips`, converted with
  ``python -m da3_jax.convert.lpips``), LPIPS v0.1. LPIPS needs pretrained ImageNet + lin
  weights that cannot be downloaded here: without them it is not reported.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from da3_jax.eval import metrics

TARGET_EVERY = 8
NUM_CONTEXT = 12


def split_views(w2c: np.ndarray, every: int = TARGET_EVERY, num_context: int = NUM_CONTEXT):
    """(context indices, target indices) of `N` cameras `w2c [N, 3|4, 4]` (see module doc)."""
    w2c = np.asarray(w2c, np.float64)
    n = len(w2c)
    targets = np.arange(0, n, every)
    rest = np.setdiff1d(np.arange(n), targets)
    if len(rest) == 0 or len(targets) == 0:
        raise ValueError(f"extrinsics: {n} frames leave no context or no target view "
                         f"(every {every}th frame is a target)")
    return rest[context_views(w2c[rest], min(num_context, len(rest)))], targets


def context_views(w2c: np.ndarray, k: int) -> np.ndarray:
    """Farthest-point sampling of `k` of the cameras `w2c [M, 3|4, 4]` -> sorted indices."""
    rot = w2c[:, :3, :3]
    centres = -np.einsum("nji,nj->ni", rot, w2c[:, :3, 3])
    spread = np.median(np.linalg.norm(centres - centres.mean(0), axis=1))
    pos = centres / max(spread, 1e-12)
    chosen = [0]
    dist = np.full(len(w2c), np.inf)
    for _ in range(k - 1):
        last = chosen[-1]
        rel = np.einsum("ij,nkj->nik", rot[last], rot)  # R_last R_n^T
        cos = np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1.0, 1.0)
        d = np.linalg.norm(pos - pos[last], axis=1) + np.arccos(cos)
        dist = np.minimum(dist, d)
        dist[chosen] = -1.0
        chosen.append(int(np.argmax(dist)))
    return np.sort(np.asarray(chosen))


def select(record, idx):
    """The views `idx` of a `SceneRecord`."""
    return dataclasses.replace(record, images=record.images[idx], depth=record.depth[idx],
                               valid=record.valid[idx], intrinsics=record.intrinsics[idx],
                               extrinsics=record.extrinsics[idx])


def evaluate_nvs(record, predict, render_options=None, lpips=None) -> dict:
    """PSNR / SSIM (/ LPIPS) of one scene (see module doc).

    `predict(record, 'gs')` gets the context views and returns `gaussians` (adapter dict),
    `extrinsics [C, 3, 4]` (predicted w2c of the contexts, the Gaussians' frame). `lpips`:
    optional `(pred, gt) -> [T]` distances of `[T, H, W, 3]` images in [0, 1]
    (`eval.lpips.LpipsMetric`). The scene's means come with a `per_target` dict of lists
    (`frame` indices, `psnr`, `ssim`, `lpips`).
    """
    from da3_jax.geometry import align_camera_centres_sim3, transform_w2c_sim3
    from da3_jax.render import render_views

    ctx, tgt = split_views(record.extrinsics)
    pred = predict(select(record, ctx), "gs")
    if pred.get("gaussians") is None:
        raise ValueError("prediction (gs): missing 'gaussians' (needs a model with a GS head)")
    gt_ctx = np.asarray(record.extrinsics, np.float64)[ctx]
    # GT frame -> prediction frame: C_pred ~ s R C_gt + t
    sim3 = align_camera_centres_sim3(gt_ctx, np.asarray(pred["extrinsics"], np.float64),
                                     ransac=len(ctx) >= 3)
    w2c_t = np.asarray(transform_w2c_sim3(np.asarray(record.extrinsics, np.float64)[tgt],
                                          *sim3))
    out = render_views(pred["gaussians"], w2c_t, np.asarray(record.intrinsics)[tgt],
                       record.image_hw, **(render_options or {"tile_capacity": 1024}))
    gt = np.asarray(record.images, np.float64)[tgt] / 255.0
    rgb = np.clip(out["rgb"], 0.0, 1.0)
    pairs = list(zip(rgb, gt, strict=True))
    per = {"frame": tgt.tolist(), "psnr": [metrics.psnr(a, b) for a, b in pairs],
           "ssim": [metrics.ssim(a, b) for a, b in pairs]}
    if lpips is not None:
        per["lpips"] = [float(v) for v in lpips(rgb, gt)]
    means = {k: float(np.mean(v)) for k, v in per.items() if k != "frame"}
    return {**means, "num_context": float(len(ctx)), "num_target": float(len(tgt)),
            "render_overflow": float(np.sum(out["overflow"])), "per_target": per}
