"""A converted LPIPS weights file with random (He-initialised) backbone and non-negative lin
weights, for plumbing tests (the metric itself is checked against the `lpips` package in
test_lpips.py)."""

from __future__ import annotations

import numpy as np

from da3_jax.convert.lpips import save
from da3_jax.eval.lpips import expected_shapes


def write_random_weights(path, net: str = "vgg", seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    flat = {}
    for key, shape in expected_shapes(net).items():
        if key.endswith(".kernel"):
            fan_in = shape[0] * shape[1] * shape[2]
            flat[key] = rng.normal(scale=np.sqrt(2.0 / fan_in), size=shape)
        elif key.endswith(".bias"):
            flat[key] = rng.uniform(-0.1, 0.1, shape)
        else:
            flat[key] = rng.uniform(0.0, 0.2, shape)
    return save(path, net, {k: v.astype(np.float32) for k, v in flat.items()})
