"""Shared config pieces (big_vision style): ``parse_arg`` and the default blocks.

Every experiment config is a plain Python file with ``get_config(arg=None)``; ``arg`` is the
text after ``:`` in ``--config=path.py:arg`` and holds sweep knobs, e.g.
``--config=experiments/configs/student_da3_base.py:views=8,res=504,steps=100000``.
Any field can also be overridden with ``--config.optim.lr=1e-4``.
"""

from __future__ import annotations

import ml_collections


def parse_arg(arg: str | None, **defaults):
    """``'a=1,b=x,runlocal'`` -> ConfigDict with typed values (type taken from ``defaults``).

    A bare name sets a bool default to True. Unknown keys raise ValueError.
    """
    out = ml_collections.ConfigDict(defaults)
    if not arg:
        return out
    for item in arg.split(","):
        if not item:
            continue
        key, _, value = item.partition("=")
        if key not in defaults:
            raise ValueError(f"config arg: unknown key {key!r}; expected one of {sorted(defaults)}")
        kind = type(defaults[key])
        if kind is bool:
            out[key] = value.lower() in ("", "1", "true", "yes")
        else:
            out[key] = kind(value)
    return out


def loss_config() -> ml_collections.ConfigDict:
    """Weights of L = L_D + L_M + L_P + beta L_C + alpha L_grad (``train.losses.LossWeights``)."""
    return ml_collections.ConfigDict(
        dict(lambda_c=1.0, beta=1.0, alpha=1.0, ray=1.0, point=1.0)
    )


def optim_config(lr: float, total_steps: int, warmup_steps: int) -> ml_collections.ConfigDict:
    """AdamW + warm-up/cosine; backbone (``^backbone/``) at ``backbone_lr_mult * lr``."""
    return ml_collections.ConfigDict(
        dict(
            lr=lr,
            total_steps=total_steps,
            warmup_steps=warmup_steps,
            end_lr_ratio=0.01,
            weight_decay=0.05,
            b1=0.9,
            b2=0.999,
            eps=1e-8,
            grad_clip=1.0,
            backbone_regex=r"^backbone/",
            backbone_lr_mult=0.1,
        )
    )


def mesh_config(data: int = 1, fsdp: int = 1, view: int = 1,
                tensor: int = 1) -> ml_collections.ConfigDict:
    """``config.mesh_shape``: device mesh axes (``da3_jax.parallel.mesh``). One axis may be -1
    (all remaining devices); all ones = a single-device run. Override any axis on the command
    line: ``--config.mesh_shape.fsdp=16 --config.mesh_shape.data=4``. The global batch must
    divide by data x fsdp."""
    return ml_collections.ConfigDict(dict(data=data, fsdp=fsdp, view=view, tensor=tensor))


def base_config() -> ml_collections.ConfigDict:
    """Fields every run has (loop, checkpointing, logging, multi-host, mesh)."""
    c = ml_collections.ConfigDict()
    c.name = "da3"
    c.task = "student"
    c.seed = 0
    c.batch_size = 8
    c.log_every = 50
    c.eval_every = 1000
    c.checkpoint_every = 1000
    c.keep_checkpoints = 3
    c.async_checkpoint = True
    c.max_nonfinite = 10
    c.ema_decay = 0.0
    c.progress = True
    c.multihost = False  # call jax.distributed.initialize() (TPU pod / multi-node GPU)
    c.mesh_shape = mesh_config()  # one device unless a config / override says otherwise
    c.loss = loss_config()
    return c


def ransac_config() -> ml_collections.ConfigDict:
    """RANSAC scale-and-shift alignment of teacher depth to sparse GT (pseudo-labelling).

    ``threshold=None``: adaptive inlier band (3 x 1.4826 x median residual of the best
    hypothesis, ``geometry.ransac_scale_shift``); a float is an absolute band in GT units.
    """
    return ml_collections.ConfigDict(dict(num_iters=128, threshold=None, min_inliers=8))
