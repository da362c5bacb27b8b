"""Student DA3-Small: multi-view training on synthetic GT + pseudo-labels (DA3.md §3).

Paper scale: 128 x H100, 200k steps (Giant). Arguments: see ``student_common``.
Mesh: ``data=-1`` (all devices) (pure data parallel: the model fits one chip);
any device count that divides the global batch of 128.
Example: ``python -m experiments.main --config=experiments/configs/student_da3_small.py:views=8
--workdir=gs://bucket/runs/da3_small``.
"""

from experiments.configs.student_common import student_config


def get_config(arg=None):
    return student_config("da3-small", arg, lr=2e-4, batch=128)
