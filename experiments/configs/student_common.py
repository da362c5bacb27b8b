"""Shared builder of the accelerator-scale student configs (``student_da3_*.py``).

Sweep knobs (``--config=experiments/configs/student_da3_large.py:KEY=VALUE,...``):
  ``res`` (square training size, multiple of 14), ``views`` (max views per sample; the number of
  views per batch is drawn in [1 or 2, views]), ``batch``, ``steps``, ``lr``, ``init``
  ('dinov2' | 'official' | 'converted' | 'none'), ``init_path``, ``data`` (root with the
  array_record files: ``synthetic/*.array_record`` and ``pseudo/*.array_record``), ``pseudo_weight``
  (mixture weight of the pseudo-labelled real data), ``multihost``, ``runlocal`` (tiny smoke
  settings). Scaling studies are sweeps over these, e.g. model size x ``views`` x ``steps``.

Mesh (``config.mesh_shape``): ``data=-1`` (every remaining device) with the variant's ``fsdp``
size; many-view runs (``views >= 16``) also shard the views of each scene over ``view=4`` and
use view-parallel cross-view attention (``model.overrides.attention_impl='allgather_view'``;
``'ring_view'`` passes K/V around a ring instead). Sweep knobs ``view_axis`` (0 = that rule)
and ``view_attention`` (allgather | ring) override it.
"""

from __future__ import annotations

import ml_collections

from experiments.configs import common


def student_config(model_name: str, arg, *, lr: float, batch: int, res: int = 504,
                   fsdp: int = 1):
    a = common.parse_arg(arg, res=res, views=8, min_views=1, batch=batch, steps=200_000,
                         lr=lr, init="dinov2", init_path="", data="gs://YOUR_BUCKET/da3_data",
                         pseudo_weight=1.0, multihost=True, runlocal=False, view_axis=0,
                         view_attention="allgather")
    c = common.base_config()
    c.name = f"student_{model_name}"
    c.task = "student"
    c.multihost = a.multihost
    c.batch_size = a.batch
    c.ema_decay = 0.9999
    view = a.view_axis or (4 if a.views >= 16 else 1)
    c.mesh_shape = common.mesh_config(data=-1, fsdp=fsdp, view=view)
    if a.view_attention not in ("allgather", "ring"):
        raise ValueError(f"view_attention must be allgather|ring, got {a.view_attention!r}")
    c.model = ml_collections.ConfigDict({"name": model_name, "overrides": {
        "dtype": "bfloat16", "conv_impl": "auto",
        "attention_impl": f"{a.view_attention}_view" if view > 1 else "auto"}})
    c.model.init_from = ml_collections.ConfigDict(
        {"kind": "" if a.init == "none" else a.init, "path": a.init_path})
    c.data = ml_collections.ConfigDict()
    c.data.train_sources = [f"{a.data}/synthetic/train.array_record",
                            f"{a.data}/pseudo/train.array_record"]
    c.data.weights = [1.0, a.pseudo_weight]
    c.data.eval_sources = [f"{a.data}/synthetic/eval.array_record"]
    c.data.pipeline = ml_collections.ConfigDict(dict(
        image_hw=(a.res, a.res), min_views=a.min_views, max_views=a.views, num_threads=16,
        prefetch_buffer_size=4, num_workers=8))
    c.optim = common.optim_config(lr=a.lr, total_steps=a.steps, warmup_steps=min(2000, a.steps))
    c.log_every, c.eval_every, c.checkpoint_every = 100, 5000, 2000
    if a.runlocal:  # one CPU device; the mesh can still be set with --config.mesh_shape.*
        c.multihost = False
        c.mesh_shape = common.mesh_config()
        c.batch_size = 2
        c.data.pipeline.update(image_hw=(112, 112), max_views=3, num_workers=0, num_threads=1)
        c.optim = common.optim_config(lr=a.lr, total_steps=10, warmup_steps=2)
        c.log_every, c.eval_every, c.checkpoint_every = 1, 0, 5
    return c
