"""A 2-run smoke study (the tooling's test grid): ``seed`` x 2 of one tiny model.

Tiny model (4 blocks, width 48, ``targets=depth_cam``), 28x28 images, 2 views, batch 1,
``steps`` steps (default 4), eval on 2 held-out scenes every 2 steps, a checkpoint every step.
The two runs compile the same programs, so with the study's XLA cache only the first compiles.
"""

from __future__ import annotations

import ml_collections

from experiments.configs import common


def get_config(arg=None):
    a = common.parse_arg(arg, steps=4)
    s = ml_collections.ConfigDict()
    s.name = "smoke"
    s.base = "experiments/configs/study_cpu.py"
    s.base_arg = f"steps={a.steps},views=2,res=28,batch=1"
    s.common = [
        "model.overrides.depth=4", "model.overrides.embed_dim=48", "model.overrides.num_heads=2",
        "model.overrides.out_layers=(0, 1, 2, 3)", "model.overrides.head_features=8",
        "model.overrides.head_out_channels=(8, 8, 16, 16)", "eval_every=2",
        "checkpoint_every=1", "log_every=1", "async_checkpoint=False", "model.targets=depth_cam",
    ]
    s.axes = {"seed": {"0": ["seed=0"], "1": ["seed=1"]}}
    s.defaults = {}
    s.grids = [["seed"]]
    s.cost_analysis = "lowered"  # no extra compile in tests
    s.eval = dict(num_scenes=2, num_views=2, res=28, seed=2, trajectory_probs=(0.0, 1.0, 0.0))
    return s
