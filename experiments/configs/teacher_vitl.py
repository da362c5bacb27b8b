"""Teacher: monocular relative-depth DA3 ViT-L (N = 1, exp depth head, SSI loss), synthetic only.

The network is ``da3-large`` run on single views with the camera encoder/decoder disabled
(``cam_enc = cam_dec = False``); only the depth branch is supervised
(``losses.ssi_exp_depth_loss``). Sweep knobs: ``res``, ``batch``, ``steps``, ``lr``, ``data``,
``init`` / ``init_path`` (DINOv2 ViT-L by default), ``multihost``, ``runlocal``.
Mesh: ``data=-1, fsdp=4`` (a multiple of 4 devices whose data x fsdp divides the global batch
of 256).
"""

import ml_collections

from experiments.configs import common


def get_config(arg=None):
    a = common.parse_arg(arg, res=504, batch=256, steps=120_000, lr=2e-4, init="dinov2",
                         init_path="", data="gs://YOUR_BUCKET/da3_data", multihost=True,
                         runlocal=False)
    c = common.base_config()
    c.name = "teacher_vitl"
    c.task = "teacher"
    c.multihost = a.multihost
    c.batch_size = a.batch
    c.mesh_shape = common.mesh_config(data=-1, fsdp=4)
    c.ema_decay = 0.9999
    c.model = ml_collections.ConfigDict({"name": "da3-large", "overrides": {
        "dtype": "bfloat16", "conv_impl": "auto", "cam_enc": False, "cam_dec": False}})
    c.model.init_from = ml_collections.ConfigDict(
        {"kind": "" if a.init == "none" else a.init, "path": a.init_path})
    c.data = ml_collections.ConfigDict()
    c.data.train_sources = [f"{a.data}/synthetic/train.array_record"]
    c.data.eval_sources = []
    c.data.pipeline = ml_collections.ConfigDict(dict(
        image_hw=(a.res, a.res), min_views=1, max_views=1, num_threads=16,
        prefetch_buffer_size=4, num_workers=8))
    c.optim = common.optim_config(lr=a.lr, total_steps=a.steps, warmup_steps=min(2000, a.steps))
    c.log_every, c.eval_every, c.checkpoint_every = 100, 0, 2000
    if a.runlocal:
        c.multihost = False
        c.mesh_shape = common.mesh_config()
        c.batch_size = 2
        c.data.pipeline.update(image_hw=(112, 112), num_workers=0, num_threads=1)
        c.optim = common.optim_config(lr=a.lr, total_steps=10, warmup_steps=2)
        c.log_every, c.checkpoint_every = 1, 5
    return c
