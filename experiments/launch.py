"""Job dispatch shared by ``experiments.main`` and ``experiments.demo`` (no absl flags here)."""

from __future__ import annotations

import os


def write_config(config, workdir: str) -> str:
    """Writes the resolved config as JSON into ``workdir`` (host 0 only); returns the path."""
    import jax

    path = os.path.join(workdir, "config.json")
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        with open(path, "w") as f:
            f.write(config.to_json_best_effort(indent=2, sort_keys=True))
    return path


def run(config, workdir: str):
    """Runs ``config.task`` in ``workdir``; returns the job's result (final state / summary)."""
    import jax

    if config.get("multihost", False):
        jax.distributed.initialize()
    write_config(config, workdir)
    if config.task == "pseudo_label":
        from da3_jax.train import pseudo_label

        return pseudo_label.run(config, workdir)
    from da3_jax.train import loop

    return loop.train(config, workdir)
