"""The CPU demo schedule (``make demo``): tiny DA3, 56x56 synthetic scenes, minutes on 2 cores.

``--config=experiments/configs/tiny_cpu.py:stage=teacher|pseudo_label|student|nvs,data=DIR``
selects the stage (``nvs``: the GS-DPT head trained on rendered held-out views with the
backbone frozen, ``da3_jax.train.nvs``; each scene's last view is the target, the others are
contexts; ``init_from=DIR``: start from a converted student checkpoint, GS head fresh);
``data`` is the directory holding the demo's array_record files (``experiments/demo.py`` writes
them: ``reallike_sparse``, ``pseudo``, ``eval``). Without
``data`` the student trains on the on-the-fly procedural scenes alone (no pseudo-labels).
Mesh: one device by default; e.g. ``--config.mesh_shape.data=2 --config.mesh_shape.fsdp=2
--config.mesh_shape.view=2`` on 8 (simulated) devices, across processes with
``--config.multihost=True``.

Recipe (issue 13, measured in experiments/README.md):
  * data: teacher and student train on *on-the-fly* procedural scenes (``config.data.synthetic``,
    scene seed ``seed``, which also seeds init and data order; effectively unlimited: a student
    never sees a scene twice) at 56x56, 'walk' camera paths; with ``data`` the student mixes in
    the pseudo-labelled split (``pseudo.array_record``);
  * model: ``da3-tiny`` shrunk (width 96). Teacher: 4 blocks (``TINY_MODEL``); student:
    ``depth`` blocks of which ``xview`` are cross-view (``model_overrides``);
  * student: the views of the evaluation (``views=4``), known cameras for ``pose_cond_frac`` of
    the samples (trains the camera encoder), camera loss weight ``beta``, ``ray_conf`` trained.
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
    conv_impl="auto",  # the heads' convolutions: fastest measured on the backend (model.conv)
)
TRAJECTORY_PROBS = (0.0, 1.0, 0.0)  # (orbit, walk, random): 'walk' = video-clip-like motion
HW = 56
STUDENT_STEPS = 1200
HELD_OUT_SEEDS = (1, 2)  # scene seeds of the demo's held-out splits (``experiments/demo.py``)


def model_overrides(depth: int, xview: int) -> dict:
    """``TINY_MODEL`` with ``depth`` blocks of which the last ``xview`` odd ones are cross-view.

    Cross-view blocks are the odd indices >= ``alt_start`` (``model.vit.is_global_block``);
    the four out layers are the last four blocks (the camera decoder reads the last one).
    """
    alt_start = depth - 2 * xview + (depth % 2 == 0)
    if xview < 1 or alt_start < 1:
        raise ValueError(f"need 1 <= xview <= depth // 2; got depth={depth}, xview={xview}")
    return dict(TINY_MODEL, depth=depth, out_layers=tuple(range(depth - 4, depth)),
                alt_start=alt_start, qknorm_start=alt_start, rope_start=alt_start)


def synthetic_data(seed: int, views: int) -> ml_collections.ConfigDict:
    """On-the-fly procedural scenes (``da3_tasks.synthetic_source``)."""
    return ml_collections.ConfigDict(dict(
        num_scenes=10_000_000, num_views=views, hw=(HW, HW), seed=seed,
        trajectory_probs=TRAJECTORY_PROBS))


def get_config(arg=None):
    a = common.parse_arg(arg, stage="student", data="", steps=0, views="4",
                         teacher_workdir="runs/demo/teacher", batch=4, depth=6, xview=3,
                         pose_cond=0.25, beta=5.0, lr=1e-3, eval_every=0,
                         init_from="", cap=512, seed=0)
    if a.seed in HELD_OUT_SEEDS:
        raise ValueError(f"config arg seed={a.seed}: seeds {HELD_OUT_SEEDS} render the demo's "
                         "held-out scenes; pick another training seed")
    c = common.base_config()
    c.seed = a.seed
    c.name = f"tiny_cpu_{a.stage}"
    c.task = a.stage
    c.batch_size = a.batch
    c.log_every = 25
    c.eval_every = a.eval_every
    c.checkpoint_every = 100
    c.async_checkpoint = True
    model = model_overrides(a.depth, a.xview)
    c.model = ml_collections.ConfigDict({"name": "da3-tiny", "overrides": model})
    c.data = ml_collections.ConfigDict()
    views = [int(v) for v in a.views.split("+")]
    c.data.pipeline = ml_collections.ConfigDict(dict(
        image_hw=(HW, HW), min_views=min(views), max_views=max(views), zoom_range=(1.0, 1.0),
        reference_view="first",
        photometric=False, num_threads=1, prefetch_buffer_size=2))
    c.data.train_sources = []
    c.data.synthetic = synthetic_data(a.seed, max(views))
    c.data.eval_sources = []
    steps = a.steps
    teacher_model = dict(TINY_MODEL, cam_enc=False, cam_dec=False)  # monocular: no cross-view
    if a.stage == "teacher":
        c.model.overrides = teacher_model
        c.data.pipeline.update(min_views=1, max_views=1)
        c.batch_size = 8
        c.optim = common.optim_config(lr=1e-3, total_steps=steps or 200, warmup_steps=20)
    elif a.stage == "student":
        c.loss.beta = a.beta
        c.pose_cond_frac = a.pose_cond
        if a.data:  # pseudo-labels first, then the synthetic source: 1 pseudo-labelled scene in 4
            c.data.train_sources = [os.path.join(a.data, "pseudo.array_record")]
            c.data.weights = [1.0, 3.0]
        if a.data and a.eval_every:
            c.data.eval_sources = [os.path.join(a.data, "eval.array_record")]
        c.optim = common.optim_config(lr=a.lr, total_steps=steps or STUDENT_STEPS, warmup_steps=30)
    elif a.stage == "pseudo_label":
        c.teacher = ml_collections.ConfigDict()
        c.teacher.workdir = a.teacher_workdir
        c.teacher.model = ml_collections.ConfigDict(
            {"name": "da3-tiny", "overrides": teacher_model})
        data = a.data or "runs/demo/data"
        c.data.label_sources = [os.path.join(data, "reallike_sparse.array_record")]
        c.data.output = os.path.join(data, "pseudo.array_record")
        c.ransac = common.ransac_config()
        c.optim = common.optim_config(lr=0.0, total_steps=1, warmup_steps=0)
    elif a.stage == "nvs":
        # Our adapter deviations are model options (`configs.py`: they travel with the
        # checkpoint to Predictor / render / eval): context colours as SH DC residual, z-depth.
        c.model.overrides.update(gs_head=True, gs_color_residual=True, gs_z_depth=True)
        c.data.pipeline.update(min_views=max(views), max_views=max(views))
        # Only the fresh GS head trains (everything else is frozen: lr 0 outside gs_head/);
        # it starts as opaque pixel-sized discs in the context pixels' colours, placed at the
        # predicted z-depth (`nvs.init_gs_head`, the model's gs_* options); 8x8 tiles keep
        # the per-tile Gaussian lists short at 3 x 56 x 56 Gaussians.
        c.nvs = ml_collections.ConfigDict(dict(
            context_views=max(views) - 1, mse=1.0, ssim=0.1, depth=0.0, tile_capacity=a.cap,
            eval_tile_capacity=1024, tile_size=8, init_from=a.init_from,
            lpips=0.0, lpips_weights="",  # e.g. 0.05 + a converted file (README Novel views)
            train_depth_head=False,
            gs_init=dict(opacity=0.98, scale_px=0.7, kernel_scale=0.1)))
        c.optim = common.optim_config(lr=a.lr, total_steps=steps or 300, warmup_steps=5)
        c.optim.backbone_regex = r"^(?!gs_head/)"
        c.optim.backbone_lr_mult = 0.0  # frozen backbone (the paper's NVS stage) and heads
        return c
    else:
        raise ValueError(f"stage must be teacher|pseudo_label|student|nvs, got {a.stage!r}")
    c.optim.backbone_lr_mult = 1.0  # trained from scratch: no pretrained backbone to protect
    return c
