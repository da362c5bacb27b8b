"""Base experiment of the CPU scaling studies (``experiments/studies/*.py``): the ``make demo``
student recipe (``tiny_cpu.py:stage=student``: optimizer, loss weights) trained on unlimited
on-the-fly procedural scenes instead of fixed files.

Every field a study varies exists here, so a run is reproducible from the command line alone
(``--config.model.targets=depth_cam``, ``--config.model.overrides.depth=8``, ...):
  * ``model``: ``da3-tiny`` with all its schedule fields spelled out in ``model.overrides``
    (8 blocks, width 192, 3 cross-view blocks) and ``model.targets`` (the prediction-target
    ablation, ``da3_jax.model.configs.TARGETS``);
  * ``data.pipeline``: fixed ``views`` per sample (so FLOPs per step are constant), ``res``
    pixels, procedural scenes rendered on the fly (``synthetic_*``; 'walk' camera paths);
  * ``data.eval_sources``: a tuple of held-out array_record files (the study renders them).
Sweep args: ``views``, ``res``, ``batch``, ``steps``.
"""

from __future__ import annotations

import ml_collections

from experiments.configs import common, tiny_cpu

# da3-tiny (da3_jax.model.configs), every field a size axis may change.
MODEL = dict(
    depth=8, embed_dim=192, num_heads=3, out_layers=(2, 3, 5, 7),
    alt_start=2, qknorm_start=2, rope_start=2, cam_enc_heads=2, cam_enc_depth=1,
    head_features=32, head_out_channels=(24, 48, 96, 192),
    conv_impl="auto",  # not a size axis: the heads' convolutions, fastest on the backend
)


def get_config(arg=None):
    a = common.parse_arg(arg, views=4, res=56, batch=4, steps=1000)
    c = tiny_cpu.get_config("stage=student")
    c.name = "study_cpu"
    c.batch_size = a.batch
    c.model = ml_collections.ConfigDict(
        {"name": "da3-tiny", "overrides": dict(MODEL), "targets": "depth_ray_cam"})
    pipeline = c.data.pipeline  # the demo recipe's sampling (reference_view='first', ...)
    c.data = ml_collections.ConfigDict()
    c.data.train_sources = ()  # none: on-the-fly procedural scenes (pipeline.default_sources)
    c.data.eval_sources = ()
    c.data.pipeline = pipeline
    c.data.pipeline.update(dict(
        image_hw=(a.res, a.res), min_views=a.views, max_views=a.views,
        synthetic_num_scenes=1_000_000, synthetic_num_views=a.views, synthetic_hw=(a.res, a.res),
        synthetic_seed=0, synthetic_trajectory_probs=(0.0, 1.0, 0.0)))
    c.optim.total_steps = a.steps
    c.optim.warmup_steps = min(c.optim.warmup_steps, max(a.steps // 10, 1))
    c.log_every = 25
    c.eval_every = max(a.steps // 10, 1)
    c.checkpoint_every = max(a.steps // 10, 1)
    c.progress = False
    return c
