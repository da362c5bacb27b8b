"""The parameter naming rule: official PyTorch state-dict key <-> flax parameter path.

Rule (COMMON interface): drop the `model.` prefix; a numeric component joins the previous name
with '_' (`blocks.3.attn.qkv.weight` -> `blocks_3/attn/qkv/kernel`,
`head.scratch.output_conv2_aux.3.2.weight` -> `head/scratch/output_conv2_aux_3_2/scale`);
Linear / Conv `weight` -> `kernel` in flax layout, LayerNorm `weight` -> `scale`, `bias` -> `bias`;
other parameters (`gamma`, `cls_token`, `pos_embed`, `camera_token`) keep name and layout.

Layouts: Linear (out, in) -> (in, out); Conv2d (out, in, kh, kw) -> (kh, kw, in, out);
ConvTranspose2d (`resize_layers.0/1` of the DPT heads) (in, out, kh, kw) -> (kh, kw, in, out).
"""

from __future__ import annotations

import re

import numpy as np

# ConvTranspose2d modules: their torch weight is (in, out, kh, kw).
_CONV_TRANSPOSE = re.compile(r"(^|\.)(head|gs_head)\.resize_layers\.[01]\.weight$")
_TRAILING_INDEX = re.compile(r"^(.*?)((?:_\d+)+)$")


def flax_path(key: str, ndim: int) -> tuple[str, ...]:
    """Flax path of an official key (without the `model.` prefix) holding an ndim tensor."""
    parts: list[str] = []
    for comp in key.split("."):
        if comp.isdigit() and parts:
            parts[-1] = f"{parts[-1]}_{comp}"
        else:
            parts.append(comp)
    if parts[-1] == "weight":
        parts[-1] = "scale" if ndim == 1 else "kernel"
    return tuple(parts)


def official_key(path: tuple[str, ...]) -> str:
    """Inverse of `flax_path` (without the `model.` prefix)."""
    comps = []
    for p in path:
        m = _TRAILING_INDEX.match(p)
        if m and m.group(1):
            comps.append(m.group(1))
            comps.extend(m.group(2).split("_")[1:])
        else:
            comps.append(p)
    if comps[-1] in ("kernel", "scale"):
        comps[-1] = "weight"
    return ".".join(comps)


def to_flax_layout(key: str, value: np.ndarray) -> np.ndarray:
    """Official tensor -> flax layout (see module docstring)."""
    if not key.endswith(".weight"):
        return value
    if value.ndim == 2:
        return value.T
    if value.ndim == 4:
        if _CONV_TRANSPOSE.search(key):
            return value.transpose(2, 3, 0, 1)
        return value.transpose(2, 3, 1, 0)
    return value


def to_torch_layout(key: str, value: np.ndarray) -> np.ndarray:
    """Flax array -> the official layout of `key` (inverse of `to_flax_layout`)."""
    if not key.endswith(".weight"):
        return value
    if value.ndim == 2:
        return value.T
    if value.ndim == 4:
        if _CONV_TRANSPOSE.search(key):
            return value.transpose(2, 3, 0, 1)
        return value.transpose(3, 2, 0, 1)
    return value


def flatten(tree: dict, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], object]:
    """Nested dict -> {path tuple: leaf}."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict) or hasattr(v, "items") and not hasattr(v, "shape"):
            out.update(flatten(dict(v), prefix + (k,)))
        else:
            out[prefix + (k,)] = v
    return out


def unflatten(flat: dict[tuple[str, ...], object]) -> dict:
    """{path tuple: leaf} -> nested dict."""
    tree: dict = {}
    for path, v in flat.items():
        node = tree
        for p in path[:-1]:
            node = node.setdefault(p, {})
        node[path[-1]] = v
    return tree
