"""Launcher: ``python -m experiments.main --config=experiments/configs/tiny_cpu.py --workdir=DIR``.

Any config field can be overridden on the command line (``--config.optim.lr=3e-4``) and config
files accept a sweep argument after ``:`` (``--config=...student_da3_base.py:views=8``). The
resolved config is written to ``<workdir>/config.json`` before training starts. With
``config.multihost=True`` the process joins JAX's distributed runtime first (TPU pod slices
and SLURM need no arguments; elsewhere set ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``,
``JAX_PROCESS_ID``; see ``da3_jax.parallel.multihost.maybe_initialize_distributed``).
Re-running the same command resumes from the latest finalised checkpoint in the workdir.

``config.task`` picks the job: ``teacher`` / ``student`` (training, ``da3_jax.train.loop``) or
``pseudo_label`` (``da3_jax.train.pseudo_label``).
"""

from __future__ import annotations

import json

from absl import app, flags, logging
from ml_collections import config_flags

from experiments.launch import run

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (checkpoints, logs, config).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    logging.set_verbosity(logging.WARNING)  # orbax logs every file it writes at INFO
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    result = run(_CONFIG.value, _WORKDIR.value)
    if isinstance(result, dict):
        print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    app.run(main)
