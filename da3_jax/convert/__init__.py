"""Weight conversion: official DA3 checkpoints and DINOv2 backbones -> da3_jax parameters.

* `load_official(path, name=None) -> (config, params)`: official `model.safetensors`.
* `save_converted(dir, config, params)` / `load_converted(dir) -> (config, params)`: the orbax
  checkpoint + `config.json` written by `python -m da3_jax.convert`.
* `load_dinov2(path, config, params)`: DINOv2 weights (torch-hub `.pth` or Hugging Face
  safetensors) into the backbone of freshly initialised params, for training.
"""

from da3_jax.convert.checkpoint import load_converted, save_converted
from da3_jax.convert.dinov2 import load_dinov2
from da3_jax.convert.official import convert_state_dict, load_official, plan_conversion

__all__ = [
    "convert_state_dict",
    "load_converted",
    "load_dinov2",
    "load_official",
    "plan_conversion",
    "save_converted",
]
