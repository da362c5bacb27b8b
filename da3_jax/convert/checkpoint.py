"""Converted-weight storage: an orbax checkpoint of the params plus the model config as JSON.

Layout of a converted directory:
  DIR/config.json   the `ml_collections` model config (`get_config(name)`, as JSON)
  DIR/params/       orbax `StandardCheckpointer` checkpoint of the flax `params` tree

The pair is written together: into a fresh sibling folder that is renamed to DIR once both are
complete. An existing non-empty DIR is an error unless `overwrite=True`, which swaps the new
pair in (old folder renamed aside, new one renamed in, old one deleted), so DIR never holds a
config of one model beside the params of another.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp


def save_converted(directory: str | os.PathLike, config: ml_collections.ConfigDict, params,
                   overwrite: bool = False) -> str:
    """Write `params` and `config` as the pair `directory/{config.json, params/}`.

    `directory` must not exist or be empty, unless `overwrite` (then the old content is
    replaced by the new pair; see the module docstring). Returns the absolute path.
    """
    directory = os.path.abspath(directory)
    if os.path.isfile(directory):
        raise ValueError(f"--out {directory!r} is a file; expected a folder")
    if os.path.isdir(directory) and os.listdir(directory) and not overwrite:
        raise ValueError(f"--out {directory!r} already exists and is not empty (it holds "
                         f"{sorted(os.listdir(directory))[:4]}); choose a new folder or pass "
                         "--overwrite to replace its config.json + params/ pair")
    parent = os.path.dirname(directory)
    os.makedirs(parent, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    tmp = os.path.join(parent, f".{os.path.basename(directory)}.tmp-{tag}")
    try:
        os.makedirs(tmp)
        with open(os.path.join(tmp, "config.json"), "w") as f:
            f.write(config.to_json(indent=2))
        ckptr = ocp.StandardCheckpointer()
        ckptr.save(os.path.join(tmp, "params"), jax.tree_util.tree_map(np.asarray, params))
        ckptr.wait_until_finished()
        old = None
        if os.path.exists(directory):
            old = os.path.join(parent, f".{os.path.basename(directory)}.old-{tag}")
            os.rename(directory, old)
        os.rename(tmp, directory)
        if old is not None:
            shutil.rmtree(old)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
    return directory


def load_converted(directory: str | os.PathLike) -> tuple[ml_collections.ConfigDict, dict]:
    """Read a directory written by `save_converted` -> (config, params as jax arrays)."""
    directory = os.path.abspath(directory)
    cfg_path = os.path.join(directory, "config.json")
    if not os.path.isfile(cfg_path) or not os.path.isdir(os.path.join(directory, "params")):
        raise ValueError(f"{directory!r} is not a converted checkpoint (config.json + params/)")
    with open(cfg_path) as f:
        config = ml_collections.ConfigDict(_tuplify(json.load(f)))
    params = ocp.StandardCheckpointer().restore(os.path.join(directory, "params"))
    return config, params


def _tuplify(tree):
    """JSON lists back to the tuples the configs use (e.g. `out_layers`)."""
    if isinstance(tree, dict):
        return {k: _tuplify(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return tuple(_tuplify(v) for v in tree)
    return tree
