"""Inference: Python API (`Predictor`, `Prediction`), input reading, exporters and the
`da3-jax` command line (`da3_jax.infer.cli`)."""

from da3_jax.infer.api import Prediction, Predictor, load_checkpoint
from da3_jax.infer.export import FORMATS, export, parse_formats

__all__ = ["FORMATS", "Prediction", "Predictor", "export", "load_checkpoint", "parse_formats"]
