"""The CPU demo schedule (``make demo``): tiny DA3, 56x56 synthetic scenes, minutes on 2 cores.

``--config=experiments/configs/tiny_cpu.py:stage=teacher|pseudo_label|student|nvs,data=DIR``
selects the stage (``nvs``: the GS-DPT head trained on rendered held-out views with the
backbone frozen, `da3_jax.train.nvs`; 3-view scenes = 2 contexts + 1 target); ``data`` is
the directory holding the demo's array_record files (``experiments/demo.py`` writes them:
``synthetic_train``, ``reallike_sparse``, ``pseudo``, ``eval``). Model: ``da3-tiny`` shrunk
further (4 blocks, width 96) so a step takes ~0.1-0.3 s.
"""

from __future__ import annotations

import os

import ml_collections

from experiments.configs import common

TINY_MODEL = dict(
    depth=4, embed_dim=96, num_heads=2, out_layers=(0, 1, 2, 3),
    alt_start=2, qknorm_start=2, rope_start=2, cam_enc_heads=2, cam_enc_depth=1,
    # At 56x56 the backbone sees 16 tokens per view; the DPT head dominates the cost.
    head_features=16, head_out_channels=(16, 32, 48, 64),
)


def get_config(arg=None):
    a = common.parse_arg(arg, stage="student", data="runs/demo/data", steps=0, views="3",
                         teacher_workdir="runs/demo/teacher", batch=4)
    c = common.base_config()
    c.name = f"tiny_cpu_{a.stage}"
    c.task = a.stage
    c.batch_size = a.batch
    c.log_every = 25
    c.eval_every = 0
    c.checkpoint_every = 100
    c.async_checkpoint = True
    c.model = ml_collections.ConfigDict({"name": "da3-tiny", "overrides": dict(TINY_MODEL)})
    c.data = ml_collections.ConfigDict()
    views = [int(v) for v in a.views.split("+")]
    c.data.pipeline = ml_collections.ConfigDict(dict(
        image_hw=(56, 56), min_views=min(views), max_views=max(views), zoom_range=(1.0, 1.0),
        photometric=False, num_threads=1, prefetch_buffer_size=2))
    c.data.train_sources = [os.path.join(a.data, "synthetic_train.array_record")]
    c.data.eval_sources = []
    steps = a.steps
    if a.stage == "teacher":
        c.model.overrides.update(cam_enc=False, cam_dec=False)
        c.data.pipeline.update(min_views=1, max_views=1)
        c.batch_size = 8
        c.optim = common.optim_config(lr=1e-3, total_steps=steps or 200, warmup_steps=20)
    elif a.stage == "student":
        c.loss.beta = 5.0  # pose is the slowest thing to learn from scratch in a few hundred steps
        c.data.train_sources.append(os.path.join(a.data, "pseudo.array_record"))
        c.optim = common.optim_config(lr=1e-3, total_steps=steps or 2000, warmup_steps=30)
    elif a.stage == "pseudo_label":
        c.teacher = ml_collections.ConfigDict()
        c.teacher.workdir = a.teacher_workdir
        c.teacher.model = ml_collections.ConfigDict(
            {"name": "da3-tiny", "overrides": dict(TINY_MODEL, cam_enc=False, cam_dec=False)})
        c.data.label_sources = [os.path.join(a.data, "reallike_sparse.array_record")]
        c.data.output = os.path.join(a.data, "pseudo.array_record")
        c.ransac = common.ransac_config()
        c.optim = common.optim_config(lr=0.0, total_steps=1, warmup_steps=0)
    elif a.stage == "nvs":
        c.model.overrides.update(gs_head=True)
        c.data.pipeline.update(min_views=max(views), max_views=max(views))
        c.nvs = ml_collections.ConfigDict(dict(
            context_views=max(views) - 1, mse=1.0, ssim=0.1, depth=0.1, tile_capacity=512))
        c.optim = common.optim_config(lr=1e-3, total_steps=steps or 300, warmup_steps=20)
        c.optim.backbone_lr_mult = 0.0  # frozen backbone (the paper's NVS stage)
        return c
    else:
        raise ValueError(f"stage must be teacher|pseudo_label|student|nvs, got {a.stage!r}")
    c.optim.backbone_lr_mult = 1.0  # trained from scratch: no pretrained backbone to protect
    return c
