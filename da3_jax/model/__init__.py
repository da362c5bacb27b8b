"""DA3 model: configs, the Flax network, and its building blocks (see `da3.py`)."""

from da3_jax.model.configs import get_config
from da3_jax.model.da3 import DA3, normalize_input_extrinsics

__all__ = ["DA3", "get_config", "normalize_input_extrinsics"]
