"""Subprocess entry for test_preemption: train the toy task in a workdir (resumes if present).

argv: workdir data_path total_steps step_sleep out_npz
"""

import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from da3_jax.train import loop  # noqa: E402
from tests.train.toy import toy_config, toy_task  # noqa: E402


def main():
    workdir, data, total, sleep, out = sys.argv[1:6]
    config = toy_config(data, int(total), checkpoint_every=2)
    state = loop.train(config, workdir, task=toy_task(config, step_sleep=float(sleep)),
                       echo=lambda s: print(s, flush=True))
    leaves = jax.tree_util.tree_leaves_with_path(
        {"params": state.params, "ema": state.ema_params, "opt": state.opt_state,
         "rng": state.rng})
    np.savez(out, **{jax.tree_util.keystr(p): np.asarray(v) for p, v in leaves})


if __name__ == "__main__":
    main()
