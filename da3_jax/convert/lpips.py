"""LPIPS weights: torchvision backbone + `lpips` lin layers -> one ``.safetensors`` for JAX.

  python -m da3_jax.convert.lpips --net vgg --backbone vgg16-397923af.pth \\
      --lin vgg.pth --out lpips_vgg.safetensors

* ``--backbone``: torchvision's ImageNet checkpoint (``alexnet-owt-7be5be79.pth`` for
  ``--net alex``, ``vgg16-397923af.pth`` for ``--net vgg``; keys ``features.<i>.weight|bias``,
  the ``classifier.*`` keys are ignored);
* ``--lin``: the lpips package's v0.1 linear layers (``lpips/weights/v0.1/alex.pth`` /
  ``vgg.pth``, shipped inside the ``lpips`` wheel; keys ``lin<l>.model.1.weight [1, C, 1, 1]``).

Output: the flat keys of `da3_jax.eval.lpips.expected_shapes` (kernels OIHW -> HWIO, lin
weights ``[C]``), float32, metadata ``{'net': ..., 'lpips_version': '0.1'}``. Torch is needed
here only; `da3_jax.eval.lpips.load_weights` reads the result with safetensors alone. Any
missing or mis-shaped key is an error naming the file and the key.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from da3_jax.eval.lpips import NETS, check_flat, expected_shapes


def read_torch(path: str | os.PathLike, what: str) -> dict[str, np.ndarray]:
    """A torch state dict file (`torch.load(weights_only=True)`) as float32 NumPy arrays."""
    import torch

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{what} {path!r}: no such file")
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(sd, dict):
        raise ValueError(f"{what} {path!r}: expected a state dict, got {type(sd).__name__}")
    return {k: v.detach().float().numpy() for k, v in sd.items()}


def _source(key: str) -> tuple[str, str]:
    """('backbone' | 'lin', torch key) of a flat JAX key."""
    name, *rest = key.split(".")
    if name == "features":
        return "backbone", f"features.{rest[0]}.{'weight' if rest[1] == 'kernel' else 'bias'}"
    return "lin", f"{name}.model.1.weight"


def convert(net: str, backbone: dict, lin: dict, backbone_name: str = "backbone",
            lin_name: str = "lin") -> dict[str, np.ndarray]:
    """State dicts (torchvision backbone, lpips lin) -> the flat JAX weights of `net`."""
    if net not in NETS:
        raise ValueError(f"net: expected one of {NETS}, got {net!r}")
    files = {"backbone": (backbone_name, backbone), "lin": (lin_name, lin)}
    flat = {}
    for key, shape in expected_shapes(net).items():
        which, src = _source(key)
        name, sd = files[which]
        if src not in sd:
            raise ValueError(f"{name}: missing key {src!r} for LPIPS-{net} (is it the "
                             f"{'torchvision' if which == 'backbone' else 'lpips v0.1'} "
                             f"{net} file?)")
        value = np.asarray(sd[src], np.float32)
        if key.endswith(".kernel") and value.ndim == 4:
            value = value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        elif which == "lin" and value.shape == (1, shape[0], 1, 1):
            value = value.reshape(shape)
        if value.shape != shape:
            raise ValueError(f"{name}: key {src!r} has shape {sd[src].shape}, which does not "
                             f"give LPIPS-{net}'s {shape}: wrong --net or wrong file?")
        flat[key] = np.ascontiguousarray(value)
    used = {_source(k)[1] for k in flat}
    unused = sorted(k for k in backbone if k.startswith("features.") and k not in used)
    if unused:
        raise ValueError(f"{backbone_name}: keys {unused} are not in torchvision's {net} "
                         "features: wrong --net or wrong file?")
    check_flat(flat, net, "converted")
    return flat


def save(path: str | os.PathLike, net: str, flat: dict[str, np.ndarray]) -> str:
    """Write `flat` to `path` (atomically: a temporary file renamed into place)."""
    from safetensors.numpy import save_file

    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    save_file(flat, tmp, metadata={"net": net, "lpips_version": "0.1"})
    os.replace(tmp, path)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m da3_jax.convert.lpips", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--net", required=True, choices=NETS)
    p.add_argument("--backbone", required=True, help="torchvision ImageNet checkpoint (.pth)")
    p.add_argument("--lin", required=True, help="lpips v0.1 lin weights (alex.pth / vgg.pth)")
    p.add_argument("--out", required=True, help="output .safetensors")
    a = p.parse_args(argv)
    try:
        out = save(a.out, a.net, convert(
            a.net, read_torch(a.backbone, "--backbone"), read_torch(a.lin, "--lin"),
            f"--backbone {a.backbone!r}", f"--lin {a.lin!r}"))
    except ValueError as e:
        p.error(str(e))  # usage + the message, exit status 2
    print(f"converted LPIPS-{a.net} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
