"""LPIPS v0.1 (Zhang et al. 2018, the `lpips` package) in JAX: differentiable, jittable, batched.

The semantics of ``lpips.LPIPS(net='alex'|'vgg', version='0.1')(x, y, normalize=...)``:

1. inputs in [-1, 1] (``normalize=True``: inputs in [0, 1], mapped by ``2 x - 1``);
2. the ScalingLayer: ``(x - shift) / scale``, shift ``(-.030, -.088, -.188)``, scale
   ``(.458, .448, .450)`` per RGB channel;
3. the torchvision ImageNet backbone's ``features`` cut into 5 slices; each slice's last ReLU
   output is a feature map (AlexNet: relu1..relu5; VGG16: relu1_2, relu2_2, relu3_3, relu4_3,
   relu5_3);
4. per layer: both feature maps unit-normalised over channels (``f / (||f||_2 + 1e-10)``), the
   squared difference weighted by the layer's 1x1 linear layer (no bias, no dropout at eval),
   averaged over positions;
5. the sum over the 5 layers: one distance per image pair (0 = identical, larger = further).

Layout: images are **NHWC** ``[B, H, W, 3]`` RGB (torch's LPIPS takes NCHW); kernels are HWIO.
The weights are a pytree ``{'features': {'<i>': {'kernel', 'bias'}}, 'lin': {'<l>': [C_l]}}``
(``<i>`` the torchvision ``features.<i>`` index), read from the one ``.safetensors`` file that
``python -m da3_jax.convert.lpips`` writes (flat keys ``features.<i>.kernel`` / ``.bias``,
``lin<l>.weight``; metadata ``net``). They are constants, never trained.

Smallest image (every feature map at least 1 x 1): AlexNet H, W >= 31 px, VGG16 >= 16 px
(`min_size`).
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

NETS = ("alex", "vgg")
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10

# torchvision `features` as slices of ops: ('conv', index, c_in, c_out, kernel, stride, padding)
# (each conv is followed by its ReLU) and ('pool', kernel, stride) (max pool, no padding).
_ALEX = (
    (("conv", 0, 3, 64, 11, 4, 2),),
    (("pool", 3, 2), ("conv", 3, 64, 192, 5, 1, 2)),
    (("pool", 3, 2), ("conv", 6, 192, 384, 3, 1, 1)),
    (("conv", 8, 384, 256, 3, 1, 1),),
    (("conv", 10, 256, 256, 3, 1, 1),),
)


def _vgg16():
    widths = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
    slices, index, c_in = [], 0, 3
    for i, block in enumerate(widths):
        ops = []
        if i:
            ops.append(("pool", 2, 2))
            index += 1
        for c_out in block:
            ops.append(("conv", index, c_in, c_out, 3, 1, 1))
            index, c_in = index + 2, c_out
        slices.append(tuple(ops))
    return tuple(slices)


ARCH = {"alex": _ALEX, "vgg": _vgg16()}


def _convs(net: str):
    return [op for ops in ARCH[net] for op in ops if op[0] == "conv"]


def min_size(net: str) -> int:
    """Smallest H (= W) for which every compared feature map of `net` is at least 1 x 1."""
    def out(n):
        for ops in ARCH[net]:
            for op in ops:
                k, s, p = (op[1], op[2], 0) if op[0] == "pool" else op[4:]
                n = (n + 2 * p - k) // s + 1
        return n

    return next(n for n in range(1, 256) if out(n) >= 1)


def layer_channels(net: str) -> tuple[int, ...]:
    """Channels of the 5 compared feature maps (AlexNet 64, 192, 384, 256, 256; VGG16 64, 128,
    256, 512, 512)."""
    return tuple([op for op in ops if op[0] == "conv"][-1][3] for ops in ARCH[net])


def expected_shapes(net: str) -> dict[str, tuple[int, ...]]:
    """Flat key -> shape of the converted weights file of `net` (kernels HWIO, lin `[C]`)."""
    if net not in NETS:
        raise ValueError(f"net: expected one of {NETS}, got {net!r}")
    out = {}
    for _, i, c_in, c_out, k, _, _ in _convs(net):
        out[f"features.{i}.kernel"] = (k, k, c_in, c_out)
        out[f"features.{i}.bias"] = (c_out,)
    for layer, c in enumerate(layer_channels(net)):
        out[f"lin{layer}.weight"] = (c,)
    return out


def unflatten(flat: dict) -> dict:
    """Flat file keys -> the weights pytree (see module doc)."""
    feats, lin = {}, {}
    for key, value in flat.items():
        name, *rest = key.split(".")
        if name == "features":
            feats.setdefault(rest[0], {})[rest[1]] = value
        else:
            lin[name[len("lin"):]] = value
    return {"features": feats, "lin": lin}


def load_weights(path: str | os.PathLike) -> tuple[str, dict]:
    """(net, weights pytree of float32 NumPy arrays) from a converted LPIPS ``.safetensors``.

    `path`: a local path or any ``etils.epath`` URL (e.g. ``gs://``). Raises ValueError naming
    the file and the key for a missing / unreadable file, an unknown ``net`` in the metadata,
    and missing, unexpected or mis-shaped tensors.
    """
    import json

    from etils import epath
    from safetensors.numpy import load

    path = epath.Path(path)
    if not path.is_file():
        raise ValueError(f"LPIPS weights '{path}': no such file (convert the torchvision "
                         "backbone + lpips lin weights with python -m da3_jax.convert.lpips)")
    data = path.read_bytes()
    try:  # safetensors: 8-byte little-endian header size, JSON header (with __metadata__)
        header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
        net = (header.get("__metadata__") or {}).get("net")
        flat = {k: np.asarray(v, np.float32) for k, v in load(data).items()}
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise ValueError(f"LPIPS weights '{path}': not a readable safetensors file ({e})") from e
    if net not in NETS:
        raise ValueError(f"LPIPS weights '{path}': metadata 'net' must be one of {NETS}, got "
                         f"{net!r} (write the file with python -m da3_jax.convert.lpips)")
    check_flat(flat, net, f"LPIPS weights '{path}'")
    return net, unflatten(flat)


def check_flat(flat: dict, net: str, source: str) -> None:
    """ValueError naming `source` and the key if `flat` is not exactly `expected_shapes(net)`."""
    want = expected_shapes(net)
    missing = sorted(set(want) - set(flat))
    extra = sorted(set(flat) - set(want))
    if missing or extra:
        raise ValueError(f"{source}: LPIPS-{net} weights: missing keys {missing}, unexpected "
                         f"keys {extra}")
    for key, shape in want.items():
        if tuple(np.shape(flat[key])) != shape:
            raise ValueError(f"{source}: key {key!r} has shape {tuple(np.shape(flat[key]))}, "
                             f"LPIPS-{net} expects {shape}")


def _features(weights: dict, x: jax.Array, net: str, precision) -> list[jax.Array]:
    """The 5 ReLU feature maps `[B, h_l, w_l, C_l]` of ScalingLayer-ed NHWC images `x`."""
    outs = []
    for ops in ARCH[net]:
        for op in ops:
            if op[0] == "pool":
                k, s = op[1], op[2]
                x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, k, k, 1), (1, s, s, 1),
                                          "VALID")
            else:
                _, i, _, _, _, stride, pad = op
                p = weights["features"][str(i)]
                x = jax.lax.conv_general_dilated(
                    x, jnp.asarray(p["kernel"], x.dtype), (stride, stride),
                    ((pad, pad), (pad, pad)),
                    dimension_numbers=("NHWC", "HWIO", "NHWC"),
                    precision=precision)
                x = jax.nn.relu(x + jnp.asarray(p["bias"], x.dtype))
        outs.append(x)
    return outs


def lpips(weights: dict, x: jax.Array, y: jax.Array, net: str, normalize: bool = False,
          precision=None) -> jax.Array:
    """LPIPS v0.1 distance of image pairs -> `[B]` (see module doc).

    Args:
      weights: the pytree of `load_weights` (NumPy or jax arrays; constants).
      x, y: `[B, H, W, 3]` RGB, NHWC, in [-1, 1] (or [0, 1] with `normalize=True`); computed
        in float32 (float64 inputs under `jax.enable_x64` stay float64).
      net: 'alex' or 'vgg' (static; must match the weights).
      normalize: map [0, 1] inputs to [-1, 1] first (the package's ``normalize=True``).
      precision: the convolutions' `jax.lax.Precision` (None: XLA's default, e.g. one bf16
        pass on TPU, for the training loss; the evaluator asks for HIGHEST).
    """
    if net not in NETS:
        raise ValueError(f"net: expected one of {NETS}, got {net!r}")
    if x.shape != y.shape or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"x, y: expected two [B, H, W, 3] image batches, got {x.shape} and "
                         f"{y.shape}")
    if min(x.shape[1:3]) < min_size(net):
        raise ValueError(f"x, y: LPIPS-{net} needs H, W >= {min_size(net)}, got {x.shape[1:3]}")
    b = x.shape[0]
    both = jnp.concatenate([x, y])
    both = both.astype(jnp.promote_types(both.dtype, jnp.float32))  # float64 stays float64
    if normalize:
        both = 2.0 * both - 1.0
    both = (both - jnp.asarray(SHIFT, both.dtype)) / jnp.asarray(SCALE, both.dtype)
    total = jnp.zeros((b,), both.dtype)
    for layer, f in enumerate(_features(weights, both, net, precision)):
        f = f / (jnp.sqrt(jnp.sum(f * f, axis=-1, keepdims=True)) + EPS)
        d = (f[:b] - f[b:]) ** 2
        total = total + jnp.mean(jnp.matmul(d, jnp.asarray(weights["lin"][str(layer)], d.dtype),
                                            precision=precision),
                                 axis=(1, 2))
    return total


class LpipsMetric:
    """Host-side LPIPS for the evaluator: `metric(pred, gt) -> [B]` NumPy distances.

    `path`: a converted weights file (`load_weights`); images `[B, H, W, 3]` in [0, 1]
    (NHWC). Pairs go through in chunks of `chunk` (the last one padded: one compile per image
    size, bounded activation memory: LPIPS-VGG at 270 x 480 holds ~0.2 GB per pair); the
    weights are put on device once.
    """

    def __init__(self, path: str | os.PathLike, chunk: int = 4):
        self.net, weights = load_weights(path)
        self.path = os.fspath(path)
        self.chunk = int(chunk)
        self._weights = jax.device_put(weights)
        self._fn = jax.jit(functools.partial(lpips, net=self.net, normalize=True,
                                             precision=jax.lax.Precision.HIGHEST))

    def __call__(self, pred, gt) -> np.ndarray:
        pred, gt = np.asarray(pred, np.float32), np.asarray(gt, np.float32)
        if pred.shape != gt.shape or pred.ndim != 4:
            raise ValueError(f"pred, gt: expected two [B, H, W, 3] image batches, got "
                             f"{pred.shape} and {gt.shape}")
        out = []
        for i in range(0, len(pred), self.chunk):
            p, g = pred[i:i + self.chunk], gt[i:i + self.chunk]
            pad = ((0, self.chunk - len(p)),) + ((0, 0),) * 3
            out.append(np.asarray(self._fn(self._weights, np.pad(p, pad), np.pad(g, pad)))
                       [:len(p)])
        return np.concatenate(out).astype(np.float64) if out else np.zeros(0)
