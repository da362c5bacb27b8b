"""Helpers for the parity tests: official DA3 networks with random weights (DA3-official.md §12).

* `build_official(name)`: the bare `DepthAnything3Net` from the packaged YAML, seeded, with the
  constant-initialised parameters (LayerNorm weights/biases, position table, cls/camera tokens,
  LayerScale gammas) perturbed so that a port that drops a bias or mis-resizes the table fails.
* `save_checkpoint(net, dir, name)`: `model.safetensors` as the Hub files hold it (keys prefixed
  `model.`; shared tensors stored once by `safetensors.torch.save_model`) + `config.json`.
* `run_official(net, ...)`: fp32 forward of the network (not the autocasting API wrapper) that
  also captures the head outputs (ray / ray_conf are deleted from the final dict upstream) and
  the camera decoder's pose encoding.
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch
from torch import nn

SEED = 0


def official_config(name: str):
    from depth_anything_3.cfg import load_config
    from depth_anything_3.registry import MODEL_REGISTRY

    return load_config(MODEL_REGISTRY[name])


def perturb_(net: nn.Module, seed: int = SEED + 1) -> nn.Module:
    """Add noise to every 1-D parameter (norms, biases, gammas) and to the tokens / table."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, p in net.named_parameters():
            if key.endswith(("pos_embed", "cls_token", "camera_token")):
                p.add_(0.5 * torch.randn(p.shape, generator=g))
            elif p.ndim == 1:
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    return net


def build_official(name: str, seed: int = SEED) -> nn.Module:
    from depth_anything_3.cfg import create_object

    torch.manual_seed(seed)
    return perturb_(create_object(official_config(name)).eval())


def save_checkpoint(net: nn.Module, directory: str, name: str | None) -> str:
    """Write `model.safetensors` (+ `config.json` with model_name when name is given)."""
    from safetensors.torch import save_model

    os.makedirs(directory, exist_ok=True)
    wrapper = nn.Module()
    wrapper.model = net
    path = os.path.join(directory, "model.safetensors")
    save_model(wrapper, path)
    if name is not None:
        with open(os.path.join(directory, "config.json"), "w") as f:
            json.dump({"model_name": name, "config": {}}, f)
    return path


def run_official(
    net: nn.Module,
    images: np.ndarray,
    extrinsics: np.ndarray | None = None,
    intrinsics: np.ndarray | None = None,
    use_ray_pose: bool = False,
    ref_view_strategy: str = "saddle_balanced",
    torch_seed: int = 0,
) -> dict[str, np.ndarray]:
    """Official fp32 forward. images [B,N,H,W,3] (NHWC, converted to NCHW here)."""
    captured: dict[str, torch.Tensor] = {}

    def head_hook(_m, _i, out):
        captured.update({f"head_{k}": v.detach().clone() for k, v in out.items()})

    def dec_hook(_m, _i, out):
        captured["pose_enc"] = out.detach().clone()

    hooks = [net.head.register_forward_hook(head_hook)]
    if getattr(net, "cam_dec", None) is not None:
        hooks.append(net.cam_dec.register_forward_hook(dec_hook))
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 1, 4, 2, 3)))
    ext = None if extrinsics is None else torch.from_numpy(extrinsics)
    ixt = None if intrinsics is None else torch.from_numpy(intrinsics)
    torch.manual_seed(torch_seed)
    try:
        with torch.no_grad():
            out = net(
                x, ext, ixt, use_ray_pose=use_ray_pose, ref_view_strategy=ref_view_strategy
            )
    finally:
        for h in hooks:
            h.remove()
    res = {k: v.numpy() for k, v in out.items() if isinstance(v, torch.Tensor)}
    for k, v in captured.items():
        res[k] = v.numpy()
    return res


def random_cameras(b: int, n: int, hw: tuple[int, int], seed: int):
    """Random rigid w2c [B,N,4,4] and pinhole K [B,N,3,3] (off-centre principal points)."""
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(b, n, 4))
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    x, y, z, w = np.moveaxis(q, -1, 0)
    rot = np.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ],
        axis=-1,
    ).reshape(b, n, 3, 3)
    ext = np.zeros((b, n, 4, 4))
    ext[..., :3, :3] = rot
    ext[..., :3, 3] = rng.normal(size=(b, n, 3)) * 2.0
    ext[..., 3, 3] = 1.0
    h, w_ = hw
    k = np.zeros((b, n, 3, 3))
    f = rng.uniform(0.7, 1.5, size=(b, n)) * max(h, w_)
    k[..., 0, 0] = f
    k[..., 1, 1] = f * rng.uniform(0.95, 1.05, size=(b, n))
    k[..., 0, 2] = w_ / 2 + rng.uniform(-5, 5, size=(b, n))
    k[..., 1, 2] = h / 2 + rng.uniform(-5, 5, size=(b, n))
    k[..., 2, 2] = 1.0
    return ext.astype(np.float32), k.astype(np.float32)


def rel_err(ours, ref) -> float:
    """max|ours - ref| / max|ref|."""
    ours = np.asarray(ours, np.float64)
    ref = np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    return float(np.abs(ours - ref).max() / max(np.abs(ref).max(), 1e-30))
