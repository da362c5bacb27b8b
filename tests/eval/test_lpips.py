"""LPIPS in JAX against the real `lpips` package (v0.1, its shipped lin weights).

torchvision cannot be installed beside the CPU torch wheel (the PyPI build is CUDA-linked), and
its ImageNet weights cannot be downloaded. So `sys.modules['torchvision']` gets a minimal module
whose `models.alexnet` / `models.vgg16` return torch modules with torchvision's `.features`
layer lists (written from torchvision's `AlexNet` and VGG cfg 'D'), seeded random weights. The
real `lpips.LPIPS(net=..., version='0.1', pretrained=True)` is built on them (its lin weights
come from the wheel); the backbone's state dict (torchvision key names) + the wheel's lin file
go through our converter, and the JAX distance and its input gradient are compared with the
package's forward (float32, as the metric runs) and torch autograd. The gradients are compared
in float64 on both sides: a max-pool window whose two largest values are closer than float32
rounding (a handful among the ~10^5 windows of random images) routes its gradient to different
pixels in torch's and XLA's float32, a genuine discontinuity of LPIPS, not a difference of the
formulas; float64 removes those ties and leaves the formulas' difference (~1e-7).
"""

from __future__ import annotations

import os
import sys
import types

import jax
import numpy as np
import pytest
import torch
from safetensors.numpy import save_file
from torch import nn

from da3_jax.convert import lpips as convert_lpips
from da3_jax.eval.lpips import expected_shapes, load_weights, lpips


def _alexnet_features():
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2))


def _vgg16_features():
    layers, c_in = [], 3
    for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"):
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            conv = nn.Conv2d(c_in, v, kernel_size=3, padding=1)
            # torchvision's VGG init (kaiming normal, fan_out), with random biases. Torch's
            # default init shrinks activations layer by layer until a 2x2 pool window holds
            # near ties (gaps < 1e-6) that float32 resolves differently in torch and XLA:
            # a legitimate gradient discontinuity, not what this test is about.
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.uniform_(conv.bias, -0.1, 0.1)
            layers += [conv, nn.ReLU(inplace=True)]
            c_in = v
    return nn.Sequential(*layers)


class _Net(nn.Module):
    def __init__(self, features):
        super().__init__()
        self.features = features


@pytest.fixture(scope="module")
def torchvision_stub():
    """`lpips` imported against the stub torchvision; yields {net: last built backbone}."""
    built = {}

    def factory(name, features):
        def make(pretrained=False, **_):
            torch.manual_seed(0)
            built[name] = _Net(features())
            return built[name]
        return make

    models = types.ModuleType("torchvision.models")
    models.alexnet = factory("alex", _alexnet_features)
    models.vgg16 = factory("vgg", _vgg16_features)
    tv = types.ModuleType("torchvision")
    tv.models = models
    saved = {k: sys.modules.get(k) for k in ("torchvision", "torchvision.models")}
    sys.modules.update({"torchvision": tv, "torchvision.models": models})
    try:
        import lpips as lpips_pkg

        yield lpips_pkg, built
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


@pytest.mark.parametrize("net,size", [("alex", 64), ("vgg", 32)])
def test_lpips_matches_package_value_and_gradient(torchvision_stub, tmp_path, net, size):
    lpips_pkg, built = torchvision_stub
    ref = lpips_pkg.LPIPS(net=net, version="0.1", pretrained=True, verbose=False)
    backbone = tmp_path / f"{net}_backbone.pth"
    torch.save(built[net].state_dict(), backbone)
    lin = os.path.join(os.path.dirname(lpips_pkg.__file__), "weights", "v0.1", f"{net}.pth")
    out = tmp_path / f"lpips_{net}.safetensors"
    assert convert_lpips.main(["--net", net, "--backbone", str(backbone), "--lin", lin,
                               "--out", str(out)]) == 0
    got_net, weights = load_weights(out)
    assert got_net == net

    rng = np.random.default_rng(1)
    x = rng.uniform(size=(2, 3, size, size)).astype(np.float32)
    y = np.clip(x + rng.normal(scale=0.2, size=x.shape), 0, 1).astype(np.float32)
    nhwc = lambda a: np.ascontiguousarray(a.transpose(0, 2, 3, 1))  # noqa: E731
    with torch.no_grad():
        want = ref(torch.from_numpy(x), torch.from_numpy(y), normalize=True).numpy()
    got = jax.jit(lambda a, b: lpips(weights, a, b, net, normalize=True))(nhwc(x), nhwc(y))
    np.testing.assert_allclose(np.asarray(got), want.reshape(-1), rtol=1e-5)
    assert np.all(want > 0)

    xt = torch.from_numpy(x).double().requires_grad_(True)
    ref.double()(xt, torch.from_numpy(y).double(), normalize=True).sum().backward()
    g_ref = nhwc(xt.grad.numpy())
    with jax.enable_x64(True):
        grad = jax.jit(jax.grad(lambda a, b: lpips(weights, a, b, net, normalize=True).sum()))(
            nhwc(x).astype(np.float64), nhwc(y).astype(np.float64))
        assert grad.dtype == np.float64
    assert np.abs(np.asarray(grad) - g_ref).max() <= 1e-4 * np.abs(g_ref).max()


def test_converter_and_loader_errors_name_file_and_key(tmp_path):
    shapes = expected_shapes("alex")
    backbone = {}
    for key, shape in shapes.items():
        if key.startswith("features"):
            i, kind = key.split(".")[1:]
            torch_shape = shape[::-1] if kind == "bias" else (shape[3], shape[2], *shape[:2])
            backbone[f"features.{i}.{'weight' if kind == 'kernel' else 'bias'}"] = np.zeros(
                torch_shape, np.float32)
    lin = {f"lin{i}.model.1.weight": np.zeros((1, c, 1, 1), np.float32)
           for i, c in enumerate((64, 192, 384, 256, 256))}
    flat = convert_lpips.convert("alex", backbone, lin)
    assert flat.keys() == shapes.keys()
    with pytest.raises(ValueError, match=r"features\.0\.weight.*wrong --net"):
        convert_lpips.convert("vgg", backbone, lin, "vgg16.pth")
    with pytest.raises(ValueError, match=r"alex\.pth: missing key 'lin3\.model\.1\.weight'"):
        convert_lpips.convert("alex", backbone, {k: v for k, v in lin.items() if "lin3" not in k},
                              lin_name="alex.pth")
    with pytest.raises(ValueError, match="no such file"):
        convert_lpips.read_torch(tmp_path / "missing.pth", "--backbone")
    with pytest.raises(SystemExit):
        convert_lpips.main(["--net", "alex", "--backbone", str(tmp_path / "nope.pth"),
                            "--lin", "x", "--out", str(tmp_path / "o")])
    with pytest.raises(ValueError, match="no such file"):
        load_weights(tmp_path / "none.safetensors")
    bad = tmp_path / "bad.safetensors"
    save_file({k: v for k, v in flat.items() if k != "lin2.weight"}, bad, metadata={"net": "alex"})
    with pytest.raises(ValueError, match=r"bad\.safetensors'.*missing keys \['lin2\.weight'\]"):
        load_weights(bad)
    save_file(flat, bad, metadata={"net": "vgg"})
    with pytest.raises(ValueError, match=r"bad\.safetensors': LPIPS-vgg weights: missing keys"):
        load_weights(bad)
    save_file(flat, bad)
    with pytest.raises(ValueError, match="metadata 'net'"):
        load_weights(bad)
