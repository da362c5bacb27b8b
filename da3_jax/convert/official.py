"""Load official DA3 checkpoints (`model.safetensors`) into da3_jax parameters.

The official files (Hugging Face `depth-anything/DA3-*`) hold the `DepthAnything3` wrapper's
state dict: every key starts with `model.` (nested: `model.da3.` / `model.da3_metric.`), and
`config.json` beside the file is `{"model_name": "<registry key>", "config": {...}}`
(DA3-official.md §6). The architecture always comes from the registry name, as upstream.

Unlike the official loader (`strict=False`), conversion is strict: every parameter of the flax
model must be provided with the right shape and every key must be used, except the documented
unused ones (`_DROPPED`): the DualDPT aux output convs of levels 0-2, which the official head
computes and discards. The aux LayerNorm is one module shared by the 4 aux levels; a safetensors
file may hold it only under level 0 (`...output_conv2_aux.0.2.*`), so level 3 (the one used) is
taken from there when absent. Files are read with `safetensors.numpy` (never pickle).
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from da3_jax.convert import naming
from da3_jax.model.configs import NAMES, get_config
from da3_jax.model.da3 import DA3

# Official keys present in the files but unused by the network (see the module docstring).
_DROPPED = re.compile(r"(^|\.)head\.scratch\.output_conv[12]_aux\.[012]\.")
_AUX_LN = re.compile(r"^(.*head\.scratch\.output_conv2_aux\.)(\d)(\.2\.(?:weight|bias))$")


def expected_params(config: ml_collections.ConfigDict) -> dict:
    """Shapes of the flax parameter tree of `DA3(config)`: {path: ShapeDtypeStruct}."""
    return dict(_expected_params(config.to_json()))


@functools.lru_cache(maxsize=16)
def _expected_params(config_json: str) -> tuple:
    config = ml_collections.ConfigDict(json.loads(config_json))
    images = jax.ShapeDtypeStruct((1, 1, 28, 28, 3), jnp.float32)
    tree = jax.eval_shape(DA3(config).init, jax.random.PRNGKey(0), images)["params"]
    return tuple(naming.flatten(tree).items())


def plan_conversion(
    shapes: Mapping[str, tuple[int, ...]], config: ml_collections.ConfigDict
) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Match official keys (with or without `model.`; shapes only) to the flax tree of `config`.

    Returns {official key without `model.`: (key to read in `shapes`, flax path)} for every
    used key (the level-3 aux LayerNorm reads the level-0 alias when absent; the documented
    unused keys are left out).
    Raises:
      ValueError listing every missing, unexpected and mis-shaped key (official names).
    """
    stripped = {}
    for key, shape in shapes.items():
        k = key[len("model.") :] if key.startswith("model.") else key
        stripped[k] = (key, tuple(shape))
    for k in list(stripped):
        m = _AUX_LN.match(k)
        if m and m.group(2) == "0":
            stripped.setdefault(f"{m.group(1)}3{m.group(3)}", stripped[k])
    expected = expected_params(config)
    plan, unexpected, misshaped, bad_paths = {}, [], [], set()
    for k in sorted(stripped):
        if _DROPPED.search(k):
            continue
        orig, shape = stripped[k]
        path = naming.flax_path(k, len(shape))
        if path not in expected:
            unexpected.append(f"model.{k} {shape}")
            continue
        got = naming.to_flax_layout(k, np.broadcast_to(np.float32(0), shape)).shape
        want = tuple(expected[path].shape)
        if tuple(got) != want:
            misshaped.append(
                f"model.{k}: got {shape} -> flax {tuple(got)}, expected {want} "
                f"(flax {'/'.join(path)})"
            )
            bad_paths.add(path)
            continue
        plan[k] = (orig, path)
    used = {path for _, path in plan.values()}
    missing = [
        f"model.{naming.official_key(p)} (flax {'/'.join(p)}, shape {tuple(s.shape)})"
        for p, s in expected.items()
        if p not in used and p not in bad_paths
    ]
    if missing or unexpected or misshaped:
        lines = [f"checkpoint does not match the {config.name!r} architecture:"]
        for title, items in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("mis-shaped", misshaped),
        ):
            if items:
                lines.append(f"  {len(items)} {title} key(s):")
                lines.extend(f"    {it}" for it in items)
        raise ValueError("\n".join(lines))
    return plan


def convert_state_dict(
    state_dict: Mapping[str, np.ndarray], config: ml_collections.ConfigDict
) -> dict:
    """Official state dict (keys with or without `model.`) -> flax params of `DA3(config)`.

    Raises:
      ValueError listing every missing, unexpected and mis-shaped key (see `plan_conversion`).
    """
    plan = plan_conversion({k: np.shape(v) for k, v in state_dict.items()}, config)
    flat = {}
    for key, (src, path) in plan.items():
        value = np.asarray(state_dict[src], dtype=np.float32)
        flat[path] = np.ascontiguousarray(naming.to_flax_layout(key, value))
    return naming.unflatten(flat)


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All tensors of a .safetensors file as float32 NumPy arrays (bf16/fp16 are upcast)."""
    from safetensors import safe_open

    if not os.path.isfile(path):
        raise ValueError(f"checkpoint {str(path)!r} does not exist")
    out = {}
    try:
        with safe_open(str(path), framework="numpy") as f:
            for k in f.keys():
                out[k] = np.asarray(f.get_tensor(k), dtype=np.float32)
    except TypeError:
        # NumPy has no bfloat16: read through flax's safetensors-compatible path.
        with safe_open(str(path), framework="flax") as f:
            for k in f.keys():
                out[k] = np.asarray(f.get_tensor(k).astype(jnp.float32))
    return out


def model_name_from_dir(path: str | os.PathLike) -> str | None:
    """`model_name` from the `config.json` beside a checkpoint file, or None."""
    cfg_path = os.path.join(os.path.dirname(os.path.abspath(path)), "config.json")
    if not os.path.isfile(cfg_path):
        return None
    with open(cfg_path) as f:
        data = json.load(f)
    name = data.get("model_name") if isinstance(data, dict) else None
    if name is not None and name not in NAMES:
        raise ValueError(f"{cfg_path}: model_name={name!r} is not one of {NAMES}")
    return name


def load_official(
    path: str | os.PathLike, name: str | None = None
) -> tuple[ml_collections.ConfigDict, dict]:
    """Read an official `model.safetensors` -> (config, flax params).

    The variant is `name` when given, else `model_name` of the `config.json` beside the file.
    Raises ValueError when neither is available or when the keys do not match (see
    `convert_state_dict`).
    """
    name = name or model_name_from_dir(path)
    if name is None:
        raise ValueError(
            f"cannot tell the variant of {str(path)!r}: no config.json with 'model_name' beside "
            f"it; pass name= (one of {NAMES})"
        )
    config = get_config(name)
    params = convert_state_dict(read_safetensors(path), config)
    return config, params
