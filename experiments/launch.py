"""Runs an experiment config in a work dir (``experiments.main`` calls ``run``).

The work dir is any ``etils.epath`` path: a local folder or a ``gs://`` (or other remote) URL.
"""

from __future__ import annotations

from etils import epath


def write_config(config, workdir) -> epath.Path:
    """Writes the resolved config as JSON into ``workdir`` (host 0 only); returns the path."""
    import jax

    path = epath.Path(workdir) / "config.json"
    if jax.process_index() == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / ".config.json.tmp"
        tmp.write_text(config.to_json_best_effort(indent=2, sort_keys=True))
        tmp.replace(path)
    return path


def run(config, workdir):
    """Runs ``config.task`` in ``workdir``; returns the job's result (final state / summary).

    With ``config.multihost`` the process joins the distributed runtime first
    (``da3_jax.parallel.multihost.maybe_initialize_distributed``).
    """
    from da3_jax.parallel import multihost

    multihost.maybe_initialize_distributed(config)
    write_config(config, workdir)
    if config.task == "pseudo_label":
        from da3_jax.train import pseudo_label

        return pseudo_label.run(config, str(workdir))
    from da3_jax.train import loop

    return loop.train(config, workdir)
