"""Pseudo-labelling job: teacher depth, RANSAC-aligned to sparse/noisy GT, written as records.

For every view of every record in ``config.data.label_sources`` (array_record of
``SceneRecord`` with ``depth_kind='sparse_gt'``):
  1. the teacher (monocular, relative depth; restored from ``config.teacher.workdir``) predicts
     a dense depth map ``D_t`` for the single view;
  2. ``s, b`` = ``geometry.ransac_scale_shift(D_t, D_gt, valid_gt)``: robust fit of
     ``s D_t + b`` to the sparse GT (outliers rejected);
  3. the pseudo-label ``s D_t + b`` is stored as depth, valid only on the *measured surface
     support* (``surface_support``: pixels within the sensor's sample spacing of a GT sample, so
     sky / background, where a sensor returns nothing, stays invalid) where it is > 0 and the
     fit succeeded; ``depth_kind='pseudo_label'``, with provenance ``teacher_checkpoint``
     (path + step), per image ``inliers`` (count), ``residual`` (mean |s D_t + b - D_gt| over the
     inliers, GT units) and ``scale`` / ``shift``.
Output: ``config.data.output`` (array_record, ``data_pipelines.sources.write_array_record``).

``sparsify_depth`` simulates a depth sensor on dense synthetic GT (the demo's 'real-like' split).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from da3_jax import geometry
from da3_jax.imagenet import imagenet_normalize
from data_pipelines.record import SceneRecord


def sparsify_depth(
    record: SceneRecord, rng: np.random.Generator, keep_frac: float = 0.05,
    noise_std: float = 0.02, outlier_frac: float = 0.1,
) -> SceneRecord:
    """Sensor-like GT: keep ``keep_frac`` of the valid pixels (>= 90 % dropped for the default),
    multiplicative Gaussian noise ``noise_std``, and ``outlier_frac`` of the kept pixels replaced
    by uniform junk in [0.2, 3] x the true depth. Returns a ``sparse_gt`` record."""
    if not 0 < keep_frac <= 1:
        raise ValueError(f"keep_frac must be in (0, 1], got {keep_frac}")
    keep = record.valid & (rng.random(record.depth.shape) < keep_frac)
    depth = record.depth * (1.0 + noise_std * rng.standard_normal(record.depth.shape))
    outlier = keep & (rng.random(record.depth.shape) < outlier_frac)
    depth = np.where(outlier, record.depth * rng.uniform(0.2, 3.0, record.depth.shape), depth)
    depth = np.where(keep, np.maximum(depth, 1e-3), 0.0).astype(np.float32)
    return SceneRecord(
        images=record.images, depth=depth, valid=keep, intrinsics=record.intrinsics,
        extrinsics=record.extrinsics, dataset=record.dataset, scene_id=record.scene_id,
        is_metric=record.is_metric, depth_kind="sparse_gt",
        provenance={"sparsified_from": record.depth_kind, "keep_frac": keep_frac,
                    "noise_std": noise_std, "outlier_frac": outlier_frac},
    ).validate()


def surface_support(sparse_valid: np.ndarray, coverage: float = 0.95) -> np.ndarray:
    """Pixels near a sensor sample: bool ``[..., H, W]`` from the sparse GT mask ``[..., H, W]``.

    A sensor returns samples on real surfaces only, so a pixel far from every sample is sky or
    background. The radius is the distance within which a surface pixel has a sample with
    probability ``coverage`` when samples fall uniformly on the surface at density ``rho``
    (samples per surface pixel): ``r = sqrt(-ln(1 - coverage) / (pi rho))`` (r = 4.9 px at
    rho = 0.04). ``rho`` is first taken over the whole image, then over the support that radius
    gives (one refinement: sky-free images keep their radius, images with sky get a tighter one).
    The mask may reach ``r`` pixels past a silhouette; images without samples get none.
    """
    from scipy import ndimage

    sparse_valid = np.asarray(sparse_valid, bool)
    hw = sparse_valid.shape[-2:]
    flat = sparse_valid.reshape((-1,) + hw)
    out = np.zeros_like(flat)
    for i, m in enumerate(flat):
        if not m.any():
            continue
        dist = ndimage.distance_transform_edt(~m)
        support = np.ones(hw, bool)
        for _ in range(2):
            rho = m.sum() / support.sum()
            support = dist <= np.sqrt(-np.log(1.0 - coverage) / (np.pi * rho))
        out[i] = support
    return out.reshape(sparse_valid.shape)


def restore_params(workdir: str):
    """``(params, checkpoint_path)`` of the latest finalised checkpoint in ``workdir``."""
    from da3_jax.train import checkpoint as ckpt_lib

    manager = ckpt_lib.make_manager(workdir, async_save=False)
    step = ckpt_lib.latest_valid_step(manager)
    if step is None:
        raise ValueError(f"teacher workdir '{workdir}' has no finalised checkpoint")
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    manager.close()
    path = os.path.join(os.path.abspath(workdir), "checkpoints", str(step))
    return restored["state"]["params"], path


def label_record(predict, record: SceneRecord, key, teacher_ckpt: str, ransac) -> SceneRecord:
    """Pseudo-labels every view of ``record`` (see the module docstring)."""
    images = imagenet_normalize(record.images.astype(np.float32) / 255.0)
    pred = np.stack([np.asarray(predict(images[i][None, None]))[0, 0]
                     for i in range(record.num_views)])
    s, b, inl = geometry.ransac_scale_shift(
        jnp.asarray(pred), jnp.asarray(record.depth), jnp.asarray(record.valid), key,
        n_iter=int(ransac.num_iters), threshold=ransac.get("threshold"),
    )
    s, b, inl = np.asarray(s), np.asarray(b), np.asarray(inl)
    depth = s[:, None, None] * pred + b[:, None, None]
    counts = inl.sum(axis=(1, 2))
    ok = (counts >= int(ransac.min_inliers)) & (s > 0)
    valid = (depth > 0) & ok[:, None, None] & np.isfinite(depth) & surface_support(record.valid)
    resid = [float(np.abs(depth[i] - record.depth[i])[inl[i]].mean()) if counts[i] else -1.0
             for i in range(record.num_views)]
    return SceneRecord(
        images=record.images, depth=np.where(valid, depth, 0).astype(np.float32), valid=valid,
        intrinsics=record.intrinsics, extrinsics=record.extrinsics, dataset=record.dataset,
        scene_id=record.scene_id, is_metric=record.is_metric, depth_kind="pseudo_label",
        provenance={
            "teacher_checkpoint": teacher_ckpt,
            "inliers": [int(c) for c in counts],
            "residual": resid,
            "scale": [float(x) for x in s],
            "shift": [float(x) for x in b],
            "source_provenance": record.provenance,
        },
    ).validate()


def run(config, workdir: str) -> dict:
    """The job (``config.task == 'pseudo_label'``); returns a summary dict."""
    from da3_jax.model import DA3
    from da3_jax.train.da3_tasks import model_config
    from da3_jax.train.evaluate import load_records
    from data_pipelines.sources import write_array_record

    params, ckpt = restore_params(config.teacher.workdir)
    model = DA3(model_config(config.teacher))
    predict = jax.jit(lambda x: model.apply({"params": params}, x, ref_view_strategy="first")[
        "depth"])
    records = load_records(list(config.data.label_sources))
    key = jax.random.PRNGKey(int(config.seed))
    out = []
    for r in records:
        key, sub = jax.random.split(key)
        out.append(label_record(predict, r, sub, ckpt, config.ransac))
    os.makedirs(os.path.dirname(os.path.abspath(config.data.output)), exist_ok=True)
    write_array_record(out, config.data.output)
    inl = [c for r in out for c in r.provenance["inliers"]]
    res = [x for r in out for x in r.provenance["residual"] if x >= 0]
    return {"records": len(out), "output": config.data.output, "teacher_checkpoint": ckpt,
            "mean_inliers": float(np.mean(inl)), "mean_residual": float(np.mean(res)) if res
            else float("nan")}
