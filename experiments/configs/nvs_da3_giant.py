"""Novel-view-synthesis stage on DA3-Giant (``task='nvs'``, `da3_jax.train.nvs`; DA3 paper §8).

DA3-Giant has the GS-DPT head. It starts from a converted DA3-Giant checkpoint
(``config.nvs.init_from``, ``python -m da3_jax.convert``); the backbone and the depth / ray /
camera heads are frozen (learning rate 0, as the paper freezes the backbone) and the GS-DPT head
trains on held-out target views: each scene's first ``views - targets`` views are contexts, the
last ``targets`` views are rendered from the Gaussians and compared with the images.

Loss: MSE 1.0 + LPIPS 0.05 on the targets (pixelSplat / MVSplat / DepthSplat) when
``lpips_weights`` names a converted LPIPS file (``python -m da3_jax.convert.lpips``; local or
``gs://``); without it MSE 1.0 + SSIM 0.1. ``train_depth_head``: also train the depth head (the
backbone stays frozen) with the scale-and-shift-invariant depth loss on the contexts.

Arguments (``--config=experiments/configs/nvs_da3_giant.py:KEY=VALUE,...``): ``init_from``,
``lpips_weights``, ``data`` (root with ``synthetic/train.array_record`` and
``pseudo/train.array_record``, read through the Grain pipeline like the student configs),
``pseudo_weight``, ``res`` (``H``x``W``, multiples of 14; default 252x448, the 9:16 of the NVS
benchmark's 270x480), ``views``, ``targets``, ``batch``, ``steps``, ``lr``, ``cap`` (rasterizer
tile capacity; the step reports ``render_overflow``), ``train_depth_head``, ``multihost``,
``runlocal`` (one CPU device, tiny shapes: a smoke run).
Mesh: ``data=-1`` (every remaining device) x ``fsdp=16`` as ``student_da3_giant``; the global
batch divides by data x fsdp.
Example: ``python -m experiments.main --config=experiments/configs/nvs_da3_giant.py:init_from=gs://BUCKET/da3_giant,lpips_weights=gs://BUCKET/lpips_vgg.safetensors
--workdir=gs://BUCKET/runs/nvs_giant``.
"""

from __future__ import annotations

import ml_collections

from experiments.configs import common


def _hw(res: str) -> tuple[int, int]:
    h, _, w = res.partition("x")
    hw = (int(h), int(w or h))
    if any(v % 14 for v in hw):
        raise ValueError(f"config arg res={res!r}: H and W must be multiples of 14 (patch size)")
    return hw


def get_config(arg=None):
    a = common.parse_arg(arg, init_from="gs://YOUR_BUCKET/da3_giant_converted",
                         lpips_weights="", data="gs://YOUR_BUCKET/da3_data", pseudo_weight=1.0,
                         res="252x448", views=8, targets=2, batch=64, steps=100_000, lr=2e-4,
                         cap=2048, train_depth_head=False, multihost=True, runlocal=False)
    if not 1 <= a.targets < a.views:
        raise ValueError(f"config args: need 1 <= targets < views, got targets={a.targets}, "
                         f"views={a.views}")
    c = common.base_config()
    c.update(dict(name="nvs_da3-giant", task="nvs", multihost=a.multihost, batch_size=a.batch,
                  mesh_shape=common.mesh_config(data=-1, fsdp=16)))
    c.model = ml_collections.ConfigDict({"name": "da3-giant", "overrides": {
        "dtype": "bfloat16", "conv_impl": "auto"}})
    c.model.init_from = ml_collections.ConfigDict({"kind": "", "path": ""})
    c.data = ml_collections.ConfigDict()
    c.data.train_sources = [f"{a.data}/synthetic/train.array_record",
                            f"{a.data}/pseudo/train.array_record"]
    c.data.weights = [1.0, a.pseudo_weight]
    c.data.eval_sources = []
    c.data.pipeline = ml_collections.ConfigDict(dict(
        image_hw=_hw(a.res), min_views=a.views, max_views=a.views, reference_view="first",
        num_threads=16, prefetch_buffer_size=4, num_workers=8))
    lpips = 0.05 if a.lpips_weights else 0.0
    c.nvs = ml_collections.ConfigDict(dict(
        context_views=a.views - a.targets, mse=1.0, ssim=0.0 if lpips else 0.1, lpips=lpips,
        lpips_weights=a.lpips_weights, depth=1.0 if a.train_depth_head else 0.0,
        train_depth_head=a.train_depth_head, tile_capacity=a.cap, tile_size=16,
        init_from=a.init_from))
    c.optim = common.optim_config(lr=a.lr, total_steps=a.steps, warmup_steps=min(2000, a.steps))
    # Frozen (learning rate 0): everything but the GS head, or but the GS and depth heads.
    c.optim.backbone_regex = r"^(?!gs_head/|head/)" if a.train_depth_head else r"^(?!gs_head/)"
    c.optim.backbone_lr_mult = 0.0
    c.log_every, c.eval_every, c.checkpoint_every = 100, 0, 2000
    if a.runlocal:  # one CPU device; the mesh can still be set with --config.mesh_shape.*
        c.multihost = False
        c.mesh_shape = common.mesh_config()
        c.batch_size = 1
        c.data.pipeline.update(image_hw=(56, 112), min_views=3, max_views=3, num_workers=0,
                               num_threads=1)
        c.nvs.update(context_views=2, tile_capacity=512)
        c.optim = common.optim_config(lr=a.lr, total_steps=10, warmup_steps=2)
        c.optim.backbone_regex, c.optim.backbone_lr_mult = r"^(?!gs_head/)", 0.0
        c.log_every, c.checkpoint_every = 1, 5
    return c
