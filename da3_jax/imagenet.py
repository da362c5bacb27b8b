"""ImageNet RGB normalisation: the one home of the mean / std shared by the network's
preprocessing (``da3_jax.model.preprocess``) and the data side (``data_pipelines``).

Neutral on purpose: importing it pulls in NumPy only, never the network or JAX.
"""

from __future__ import annotations

import numpy as np

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def imagenet_normalize(images01: np.ndarray) -> np.ndarray:
    """``(x - IMAGENET_MEAN) / IMAGENET_STD`` for float RGB in [0, 1], channels last; float32."""
    return ((images01 - IMAGENET_MEAN) / IMAGENET_STD).astype(np.float32)


def imagenet_denormalize(images):
    """The inverse of `imagenet_normalize`: ``x * IMAGENET_STD + IMAGENET_MEAN`` (RGB in [0, 1]
    for normalised images, channels last); NumPy or JAX arrays, float32."""
    return (images * IMAGENET_STD + IMAGENET_MEAN).astype(np.float32)
