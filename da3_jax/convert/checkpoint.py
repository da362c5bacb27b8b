"""Converted-weight storage: an orbax checkpoint of the params plus the model config as JSON.

Layout of a converted directory:
  DIR/config.json   the `ml_collections` model config (`get_config(name)`, as JSON)
  DIR/params/       orbax `StandardCheckpointer` checkpoint of the flax `params` tree
"""

from __future__ import annotations

import json
import os

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp


def save_converted(directory: str | os.PathLike, config: ml_collections.ConfigDict, params) -> str:
    """Write `params` and `config` under `directory` (created; must not hold `params/` yet)."""
    directory = os.path.abspath(directory)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.json"), "w") as f:
        f.write(config.to_json(indent=2))
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(os.path.join(directory, "params"), jax.tree_util.tree_map(np.asarray, params))
    ckptr.wait_until_finished()
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
