"""``make study``: the paper's two questions at CPU scale (<= 60 min on 2 cores).

1. Model size: does pose improve more with size than depth does? ``size`` in {XS, S}:
   XS = 4 blocks, width 96, 1 cross-view block (the old demo student); S = da3-tiny (8 blocks,
   width 192, 3 cross-view blocks), both with ``targets=depth_ray``.
2. Prediction targets: does depth + ray beat the others on pose? ``targets`` over
   ``da3_jax.model.configs.TARGETS`` at size S.
Runs: size x {depth_ray} and {S} x targets = 5 (S/depth_ray is shared). Every run trains
``STEPS`` steps of the ``study_cpu.py`` recipe (56x56, 4 views, batch 4, on-the-fly 'walk'
scenes) and is scored on 24 held-out scenes x 4 views every ``STEPS/10`` steps.

``experiments/studies/cpu_scaling.py:steps=N`` shortens every run (smoke / reduced studies).
"""

from __future__ import annotations

import ml_collections

from experiments.configs import common

STEPS = 600
XS = ["model.overrides.depth=4", "model.overrides.embed_dim=96", "model.overrides.num_heads=2",
      "model.overrides.out_layers=(0, 1, 2, 3)", "model.overrides.head_features=16",
      "model.overrides.head_out_channels=(16, 32, 48, 64)"]
S = ["model.overrides.depth=8", "model.overrides.embed_dim=192", "model.overrides.num_heads=3",
     "model.overrides.out_layers=(2, 3, 5, 7)", "model.overrides.head_features=32",
     "model.overrides.head_out_channels=(24, 48, 96, 192)"]


def get_config(arg=None):
    a = common.parse_arg(arg, steps=STEPS)
    s = ml_collections.ConfigDict()
    s.name = "cpu_scaling"
    s.base = "experiments/configs/study_cpu.py"
    s.base_arg = f"steps={a.steps},views=4,res=56,batch=4"
    s.common = []
    s.axes = {
        "size": {"XS": XS, "S": S},
        "targets": {t: [f"model.targets={t}"]
                    for t in ("depth_ray", "depth_ray_cam", "depth_cam", "depth_point")},
    }
    s.defaults = {"size": "S", "targets": "depth_ray"}
    s.grids = [["size"], ["targets"]]
    s.eval = dict(num_scenes=24, num_views=4, res=56, seed=2, trajectory_probs=(0.0, 1.0, 0.0))
    return s
