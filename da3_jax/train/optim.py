"""Optimizer: AdamW with linear warm-up + cosine decay, a lower LR for the backbone, clipping.

Parameters are labelled by their path (``'/'``-joined flax names): a path matching
``config.backbone_regex`` gets ``lr * config.backbone_lr_mult`` (pretrained DINOv2 weights move
slowly), everything else (DPT heads, camera encoder/decoder) gets the full ``lr``. Weight decay
skips 0-/1-D tensors (biases, LayerNorm scales, LayerScale gammas) and tokens / position
embeddings.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import jax
import optax

NO_DECAY_NAMES = ("cls_token", "camera_token", "pos_embed", "register_tokens", "mask_token")


def path_str(path) -> str:
    """Flax key path -> ``'a/b/c'``."""
    parts = []
    for k in path:
        parts.append(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))))
    return "/".join(parts)


def lr_schedule(config) -> Callable[[jax.Array], jax.Array]:
    """Warm-up from 0 to ``config.lr`` over ``warmup_steps``, cosine to ``lr * end_lr_ratio``."""
    total = max(int(config.total_steps), 1)
    warmup = min(int(config.warmup_steps), total - 1) if total > 1 else 0
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=float(config.lr),
        warmup_steps=warmup,
        decay_steps=total,
        end_value=float(config.lr) * float(config.get("end_lr_ratio", 0.01)),
    )


def param_labels(params, backbone_regex: str):
    """Pytree of ``'backbone'`` / ``'head'`` labels, by regex search on each leaf's path."""
    pattern = re.compile(backbone_regex)
    return jax.tree_util.tree_map_with_path(
        lambda p, _: "backbone" if pattern.search(path_str(p)) else "head", params
    )


def decay_mask(params):
    """True where weight decay applies: >= 2-D tensors that are not tokens / embeddings."""
    def keep(path, leaf):
        name = path_str(path)
        return leaf.ndim >= 2 and not any(n in name for n in NO_DECAY_NAMES)

    return jax.tree_util.tree_map_with_path(keep, params)


def make_optimizer(config, params) -> tuple[optax.GradientTransformation, Callable]:
    """Builds the optimizer for ``params`` from ``config`` (the ``config.optim`` block).

    Fields: ``lr``, ``warmup_steps``, ``total_steps``, ``end_lr_ratio``, ``weight_decay``,
    ``b1``, ``b2``, ``eps``, ``grad_clip`` (global norm; <= 0 disables), ``backbone_regex``,
    ``backbone_lr_mult``. Returns ``(tx, schedule)``; ``schedule(step)`` is the head LR.
    """
    schedule = lr_schedule(config)
    mult = float(config.get("backbone_lr_mult", 1.0))

    def adamw(scale: float):
        return optax.adamw(
            learning_rate=lambda step: schedule(step) * scale,
            b1=float(config.get("b1", 0.9)),
            b2=float(config.get("b2", 0.999)),
            eps=float(config.get("eps", 1e-8)),
            weight_decay=float(config.get("weight_decay", 0.05)),
            mask=decay_mask,
        )

    labels = param_labels(params, str(config.get("backbone_regex", r"^backbone/")))
    # A frozen group (mult 0) gets no optimizer at all: the same zero update as AdamW at lr 0
    # (its decoupled weight decay scales with the lr too), without moments or their compile.
    frozen = optax.set_to_zero() if mult == 0 else adamw(mult)
    tx = optax.multi_transform({"backbone": frozen, "head": adamw(1.0)}, labels)
    clip = float(config.get("grad_clip", 1.0))
    if clip > 0:
        tx = optax.chain(optax.clip_by_global_norm(clip), tx)
    return tx, schedule
