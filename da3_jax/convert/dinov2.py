"""DINOv2 backbone initialisation for training (DA3 starts from DINOv2 ViT-S/B/L/G).

Two key layouts are accepted:

* torch hub (`dinov2_vit{s,b,l,g}14_pretrain.pth`, read with `torch.load(weights_only=True)`):
  the official DA3 backbone keys without `backbone.pretrained.` (`cls_token`, `pos_embed`,
  `patch_embed.proj.*`, `blocks.{i}.{norm1,attn.qkv,attn.proj,ls1.gamma,norm2,mlp.fc1|w12,
  mlp.fc2|w3,ls2.gamma}.*`, `norm.*`) plus the unused `mask_token`;
* Hugging Face `facebook/dinov2-*` safetensors (`embeddings.*`, `encoder.layer.{i}.*`,
  `layernorm.*`, optionally under `dinov2.`): renamed to the hub layout, q/k/v concatenated.

DA3-only parameters (`camera_token`, q/k-norm of blocks >= qknorm_start) are not in DINOv2 and
keep their fresh initialisation. Every other backbone parameter must be provided with the right
shape and every DINOv2 key must be used (except `mask_token`); otherwise one ValueError lists
the missing, unexpected and mis-shaped keys.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import ml_collections
import numpy as np

from da3_jax.convert import naming
from da3_jax.convert.official import expected_params

_PREFIX = ("backbone", "pretrained")
_UNUSED = ("mask_token",)
_HF_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.(.+)$")
_HF_BLOCK_RENAMES = {
    "norm1.": "norm1.",
    "norm2.": "norm2.",
    "attention.output.dense.": "attn.proj.",
    "layer_scale1.lambda1": "ls1.gamma",
    "layer_scale2.lambda1": "ls2.gamma",
    "mlp.fc1.": "mlp.fc1.",
    "mlp.fc2.": "mlp.fc2.",
    "mlp.weights_in.": "mlp.w12.",
    "mlp.weights_out.": "mlp.w3.",
}
_HF_TOP = {
    "embeddings.cls_token": "cls_token",
    "embeddings.mask_token": "mask_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
}


def _is_da3_only(path: tuple[str, ...]) -> bool:
    return path[2] == "camera_token" or (len(path) > 4 and path[4] in ("q_norm", "k_norm"))


def hf_to_hub(state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rename a Hugging Face Dinov2Model state dict to the torch-hub layout."""
    sd = {k.removeprefix("dinov2."): np.asarray(v) for k, v in state_dict.items()}
    out, qkv = {}, {}
    for key, value in sd.items():
        if key in _HF_TOP:
            out[_HF_TOP[key]] = value
            continue
        m = _HF_LAYER.match(key)
        if m:
            i, rest = m.group(1), m.group(2)
            qm = re.match(r"^attention\.attention\.(query|key|value)\.(weight|bias)$", rest)
            if qm:
                qkv.setdefault((i, qm.group(2)), {})[qm.group(1)] = value
                continue
            for src, dst in _HF_BLOCK_RENAMES.items():
                if rest.startswith(src):
                    out[f"blocks.{i}.{dst}{rest[len(src):]}"] = value
                    break
            else:
                out[key] = value  # reported as unexpected
            continue
        out[key] = value
    for (i, leaf), parts in qkv.items():
        if set(parts) != {"query", "key", "value"}:
            missing = sorted({"query", "key", "value"} - set(parts))
            raise ValueError(f"encoder.layer.{i}.attention.attention: missing {missing} {leaf}")
        out[f"blocks.{i}.attn.qkv.{leaf}"] = np.concatenate(
            [parts["query"], parts["key"], parts["value"]], axis=0
        )
    return out


def dinov2_to_backbone(
    state_dict: Mapping[str, np.ndarray], config: ml_collections.ConfigDict
) -> dict[tuple[str, ...], np.ndarray]:
    """DINOv2 state dict (hub or HF layout) -> {flax path under backbone/pretrained: array}."""
    sd = {k: np.asarray(v) for k, v in state_dict.items()}
    if any(k.removeprefix("dinov2.").startswith(("embeddings.", "encoder.")) for k in sd):
        sd = hf_to_hub(sd)
    expected = {p: s for p, s in expected_params(config).items() if p[:2] == _PREFIX}
    flat, unexpected, misshaped = {}, [], []
    for key in sorted(sd):
        if key in _UNUSED:
            continue
        value = sd[key]
        path = _PREFIX + naming.flax_path(key, value.ndim)
        if path not in expected:
            unexpected.append(f"{key} {tuple(value.shape)}")
            continue
        arr = naming.to_flax_layout(key, value.astype(np.float32))
        if tuple(arr.shape) != tuple(expected[path].shape):
            misshaped.append(
                f"{key}: got {tuple(value.shape)}, expected flax {tuple(expected[path].shape)}"
            )
            continue
        flat[path] = np.ascontiguousarray(arr)
    missing = [
        f"{naming.official_key(p[2:])} (shape {tuple(s.shape)})"
        for p, s in expected.items()
        if p not in flat and not _is_da3_only(p)
        and not any(m.startswith(naming.official_key(p[2:]) + ":") for m in misshaped)
    ]
    if missing or unexpected or misshaped:
        lines = [f"DINOv2 weights do not match the {config.name!r} backbone:"]
        for title, items in (("missing", missing), ("unexpected", unexpected),
                             ("mis-shaped", misshaped)):
            if items:
                lines.append(f"  {len(items)} {title} key(s):")
                lines.extend(f"    {it}" for it in items)
        raise ValueError("\n".join(lines))
    return flat


def read_dinov2(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """State dict of a torch-hub `.pth` (weights_only) or a `.safetensors` file, as NumPy."""
    path = str(path)
    if not os.path.isfile(path):
        raise ValueError(f"DINOv2 checkpoint {path!r} does not exist")
    if path.endswith(".safetensors"):
        from da3_jax.convert.official import read_safetensors

        return read_safetensors(path)
    import torch

    sd = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(sd, Mapping):
        raise ValueError(f"{path!r}: expected a state dict, got {type(sd).__name__}")
    return {k: v.detach().float().numpy() for k, v in sd.items()}


def load_dinov2(path: str | os.PathLike, config: ml_collections.ConfigDict, params: dict) -> dict:
    """Return `params` (a full DA3 tree) with the DINOv2 weights of `path` in the backbone."""
    flat = naming.flatten(params)
    flat.update(dinov2_to_backbone(read_dinov2(path), config))
    return naming.unflatten(flat)
