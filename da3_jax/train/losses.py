"""DA3 training losses (DA3.md §3): depth, ray, point, camera, gradient and the teacher's SSI loss.

Every term is a pure function of arrays, fp32, and *masked*: pixels (or views) outside the mask
never contribute a value or a gradient, and an all-invalid mask gives a loss of exactly 0 with
finite (zero) gradients. Invalid entries may hold NaN/Inf in the targets; they are replaced
before any arithmetic so they cannot leak through ``0 * nan``.

Shapes (``B`` batch, ``N`` views, ``H x W`` image, ``h x w`` ray-map resolution):
  depth, conf, masks ``[B, N, H, W]``; rays ``[B, N, h, w, 6]`` with channels
  ``[0:3]`` world direction ``d`` (unnormalised, ``P = t + D d``) and ``[3:6]`` origin ``t``;
  pose encodings ``[B, N, 9]`` = ``[t_c2w (3), q_xyzw (4), fov_h, fov_w]``.

Normalisation: each term is a mean over the valid set (sum / max(count, 1)), where a "pixel" error
is the L1 norm over its channels (3 for directions, origins and points). Targets are expected to be
scene-normalised already (``targets.normalize_batch``), so the terms of different scenes are on one
scale.

Total (``da3_loss``): ``L = L_D + L_M + L_P + beta * L_C + alpha * L_grad``; ``L_M`` is
confidence-weighted by ``ray_conf`` like ``L_D`` by ``depth_conf``. The paper text does
not give ``alpha, beta, lambda_c``; the defaults in ``LossWeights`` are our choice:
``lambda_c = 1.0`` (with ``c = 1 + exp(x) >= 1`` the optimum is ``c = max(1, lambda_c / |err|)``),
``beta = 1.0`` and ``alpha = 1.0``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from da3_jax import geometry


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """Weights of the student loss; see the module docstring for the defaults' rationale."""

    lambda_c: float = 1.0  # confidence regulariser in L_D
    beta: float = 1.0  # camera (pose-encoding) loss
    alpha: float = 1.0  # depth-gradient loss
    ray: float = 1.0  # L_M (the paper uses 1)
    point: float = 1.0  # L_P (the paper uses 1)

    @classmethod
    def from_config(cls, cfg) -> LossWeights:
        """Builds from a ConfigDict / mapping with (a subset of) the field names."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: float(v) for k, v in dict(cfg).items() if k in names})


def _masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    """sum(mask * values) / max(sum(mask), 1) with NaN-safe masking; ``mask`` broadcastable."""
    mask = jnp.broadcast_to(mask, values.shape).astype(jnp.float32)
    safe = jnp.where(mask > 0, values, 0.0)
    return jnp.sum(safe * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def _clean(x: jax.Array, mask: jax.Array, fill: float = 0.0) -> jax.Array:
    """Replaces entries outside ``mask`` (broadcast over trailing channels) by ``fill``."""
    while mask.ndim < x.ndim:
        mask = mask[..., None]
    return jnp.where(mask > 0, x, fill)


def depth_conf_loss(
    depth: jax.Array, conf: jax.Array, target: jax.Array, mask: jax.Array, lambda_c: float = 1.0
) -> jax.Array:
    """Confidence-aware depth loss L_D = mean_valid(c |D̂ - D| - lambda_c log c).

    Args: ``depth``, ``conf`` (> 0), ``target``, ``mask`` all ``[..., H, W]``. Returns a scalar.
    """
    m = mask.astype(jnp.float32)
    depth, target = _clean(depth, m), _clean(target, m)
    conf = _clean(conf, m, fill=1.0)
    per_pixel = conf * jnp.abs(depth - target) - lambda_c * jnp.log(conf)
    return _masked_mean(per_pixel, m)


def gradient_loss(depth: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
    """L_grad = mean |∇x D̂ - ∇x D| + mean |∇y D̂ - ∇y D| over pixel pairs that are both valid.

    Forward differences along W (x) and H (y) of ``[..., H, W]`` maps; each direction is averaged
    over its own valid-pair count. Returns a scalar.
    """
    m = mask.astype(jnp.float32)
    depth, target = _clean(depth, m), _clean(target, m)
    diff = depth - target
    gx = diff[..., :, 1:] - diff[..., :, :-1]
    mx = m[..., :, 1:] * m[..., :, :-1]
    gy = diff[..., 1:, :] - diff[..., :-1, :]
    my = m[..., 1:, :] * m[..., :-1, :]
    return _masked_mean(jnp.abs(gx), mx) + _masked_mean(jnp.abs(gy), my)


def ray_loss(
    ray: jax.Array, target: jax.Array, mask: jax.Array, conf: jax.Array | None = None,
    lambda_c: float = 1.0,
) -> jax.Array:
    """L_M: per-pixel L1 over directions plus L1 over origins, averaged over valid pixels.

    Args: ``ray``, ``target`` ``[..., h, w, 6]`` (``[0:3]`` direction, ``[3:6]`` origin);
    ``mask`` ``[..., h, w]`` (typically "this view's camera is known"); ``conf`` ``[..., h, w]``
    (> 0, the model's ``ray_conf``) or None. With ``conf`` the per-pixel error ``e`` becomes
    ``c e - lambda_c log c``, the same aleatoric form as ``depth_conf_loss``, so ``ray_conf`` is
    trained (optimum ``c = max(1, lambda_c / e)`` for DA3's ``c = 1 + exp(x)``) and the ray-map
    pose solver (``use_ray_pose``) weighs rays by a learned confidence. Returns a scalar.
    """
    m = mask.astype(jnp.float32)
    err = jnp.abs(_clean(ray, m) - _clean(target, m))
    per_pixel = jnp.sum(err[..., 0:3], axis=-1) + jnp.sum(err[..., 3:6], axis=-1)
    if conf is not None:
        conf = _clean(conf, m, fill=1.0)
        per_pixel = conf * per_pixel - lambda_c * jnp.log(conf)
    return _masked_mean(per_pixel, m)


def point_loss(points: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
    """L_P: per-pixel L1 norm of ``points - target`` (``[..., H, W, 3]``), mean over ``mask``."""
    m = mask.astype(jnp.float32)
    err = jnp.abs(_clean(points, m) - _clean(target, m))
    return _masked_mean(jnp.sum(err, axis=-1), m)


def camera_loss(pose_enc: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
    """L_C on the 9-number pose encoding: L1(t) + L1(q) + L1(fov), mean over known cameras.

    Args: ``pose_enc``, ``target`` ``[..., 9]``; ``mask`` ``[...]`` (1 where the camera is known).
    Quaternions are compared as stored (the encoder standardises w >= 0). Returns a scalar.
    """
    m = mask.astype(jnp.float32)
    err = jnp.abs(_clean(pose_enc, m) - _clean(target, m))
    per_view = jnp.sum(err[..., 0:3], -1) + jnp.sum(err[..., 3:7], -1) + jnp.sum(err[..., 7:9], -1)
    return _masked_mean(per_view, m)


def resize_rays(ray: jax.Array, hw: tuple[int, int]) -> jax.Array:
    """Bilinearly resizes a ray map ``[..., h, w, 6]`` to ``[..., H, W, 6]`` (half-pixel centres).

    Directions and origins are affine in the pixel coordinate, so this is exact away from the
    one-pixel border (where ``jax.image.resize`` clamps rather than extrapolates).
    """
    shape = ray.shape[:-3] + (int(hw[0]), int(hw[1]), ray.shape[-1])
    return jax.image.resize(ray.astype(jnp.float32), shape, method="linear")


def _affine_normalize(x: jax.Array, m: jax.Array, eps: float) -> tuple[jax.Array, jax.Array]:
    """Per map: ``(x - mean_m(x)) / mean_m|x - mean_m(x)|`` over ``[..., H, W]``; also the count."""
    count = jnp.sum(m, axis=(-2, -1), keepdims=True)
    mean = jnp.sum(m * x, axis=(-2, -1), keepdims=True) / jnp.maximum(count, 1.0)
    spread = jnp.sum(m * jnp.abs(x - mean), axis=(-2, -1), keepdims=True)
    spread = spread / jnp.maximum(count, 1.0)
    return (x - mean) / (spread + eps), count[..., 0, 0]


def ssi_exp_depth_loss(
    depth: jax.Array, target: jax.Array, mask: jax.Array, eps: float = 1e-6
) -> jax.Array:
    """Teacher loss: scale-and-shift-invariant L1 on depth from an exponential head.

    The teacher predicts ``depth = exp(x)`` (DA3's depth activation), so a step in ``x`` is the
    same *relative* change at every distance. Prediction and target are each normalised per image
    over the mask, ``n(d) = (d - mean(d)) / mean|d - mean(d)|`` (MiDaS-style, with the mean as the
    location), and the loss is ``mean_valid |n(D̂) - n(D)|``. ``n`` is invariant to a *positive*
    scale and any shift, so the relative depth is determined up to ``s > 0, b`` (a least-squares
    fit with free sign would let the network learn an anti-correlated, disparity-like map);
    pseudo-labelling then recovers ``s, b`` with ``geometry.ransac_scale_shift``.

    Args: ``depth``, ``target``, ``mask`` ``[..., H, W]``. Returns a scalar (mean over images with
    at least 2 valid pixels; 0 if none).
    """
    m = mask.astype(jnp.float32)
    depth, target = _clean(depth, m, fill=1.0), _clean(target, m)
    nd, count = _affine_normalize(depth, m, eps)
    nt, _ = _affine_normalize(target, m, eps)
    per_image = jnp.sum(m * jnp.abs(nd - nt), axis=(-2, -1)) / jnp.maximum(count, 1.0)
    ok = (count >= 2).astype(jnp.float32)
    return jnp.sum(jnp.where(ok > 0, per_image, 0.0)) / jnp.maximum(jnp.sum(ok), 1.0)


def point_map_loss(
    points: jax.Array, conf: jax.Array, target: jax.Array, mask: jax.Array, lambda_c: float = 1.0
) -> jax.Array:
    """Confidence-aware L1 on a predicted point map (the 'depth_point' ablation's second branch).

    ``mean_valid(c ||P̂ - P||_1 - lambda_c log c)``, the point-map analogue of ``depth_conf_loss``.
    Args: ``points``, ``target`` ``[..., H, W, 3]``; ``conf`` (> 0), ``mask`` ``[..., H, W]``.
    """
    m = mask.astype(jnp.float32)
    err = jnp.sum(jnp.abs(_clean(points, m) - _clean(target, m)), axis=-1)
    conf = _clean(conf, m, fill=1.0)
    return _masked_mean(conf * err - lambda_c * jnp.log(conf), m)


def da3_loss(outputs: dict, targets: dict, weights: LossWeights) -> tuple[jax.Array, dict]:
    """Student loss ``L_D + L_M + L_P + beta L_C + alpha L_grad`` on normalised targets.

    ``outputs``: the DA3 model dict (``depth``, ``depth_conf``, ``ray``, ``pose_enc``);
    ``targets``: ``train.targets.make_targets``. With ``ray_conf`` in ``outputs`` the ray term is
    confidence-weighted (``ray_loss``). Ray and camera terms only count views whose
    camera is known (``camera_valid``); the point term needs both a valid pixel and a known camera.
    The terms follow the model's prediction targets (``model.configs.target_parts``): without a
    ``ray`` output there is no L_M and no depth x ray L_P; without ``pose_enc`` no L_C; a
    ``points`` output (point-map target) adds ``point_map_loss`` as L_P (weight ``point``).
    Returns ``(total, {term: value})`` with only the active terms.
    """
    depth, valid = targets["depth"], targets["valid"]
    cam = targets["camera_valid"]
    hw = depth.shape[-2:]
    terms = {
        "loss_depth": depth_conf_loss(
            outputs["depth"], outputs["depth_conf"], depth, valid, weights.lambda_c
        ),
        "loss_grad": gradient_loss(outputs["depth"], depth, valid),
    }
    total = terms["loss_depth"] + weights.alpha * terms["loss_grad"]
    if "ray" in outputs:
        ray_hw = outputs["ray"].shape[-3:-1]
        terms["loss_ray"] = ray_loss(
            outputs["ray"], targets["ray"],
            jnp.broadcast_to(cam[..., None, None], cam.shape + tuple(ray_hw)),
            outputs.get("ray_conf"), weights.lambda_c,
        )
        ray_full = resize_rays(outputs["ray"], hw)
        points = geometry.points_from_depth_rays(
            outputs["depth"], ray_full[..., 3:6], ray_full[..., 0:3]
        )
        terms["loss_point"] = point_loss(points, targets["points"], valid & cam[..., None, None])
        total = total + weights.ray * terms["loss_ray"] + weights.point * terms["loss_point"]
    if "points" in outputs:
        terms["loss_point"] = point_map_loss(
            outputs["points"], outputs["point_conf"], targets["points"],
            valid & cam[..., None, None], weights.lambda_c,
        )
        total = total + weights.point * terms["loss_point"]
    if "pose_enc" in outputs:
        terms["loss_camera"] = camera_loss(outputs["pose_enc"], targets["pose_enc"], cam)
        total = total + weights.beta * terms["loss_camera"]
    return total, terms
