"""Student DA3-Large: multi-view training on synthetic GT + pseudo-labels (DA3.md §3).

Paper scale: 128 x H100, 200k steps (Giant). Arguments: see ``student_common``.
Mesh: ``data=-1`` (all devices), ``fsdp=8`` (params and optimizer state sharded 8 ways);
a multiple of 8 devices whose data x fsdp divides the global batch of 128.
Example: ``python -m experiments.main --config=experiments/configs/student_da3_large.py:views=8
--workdir=gs://bucket/runs/da3_large``.
"""

from experiments.configs.student_common import student_config


def get_config(arg=None):
    return student_config("da3-large", arg, lr=1e-4, batch=128, fsdp=8)
