"""Student DA3-Giant: multi-view training on synthetic GT + pseudo-labels (DA3.md §3).

Paper scale: 128 x H100, 200k steps (Giant). Arguments: see ``student_common``.
Mesh: ``data=-1`` (all devices), ``fsdp=16`` (params and optimizer state sharded 16 ways);
a multiple of 16 devices whose data x fsdp divides the global batch of 128.
Example: ``python -m experiments.main --config=experiments/configs/student_da3_giant.py:views=8
--workdir=gs://bucket/runs/da3_giant``.
"""

from experiments.configs.student_common import student_config


def get_config(arg=None):
    return student_config("da3-giant", arg, lr=5e-5, batch=128, fsdp=16)
