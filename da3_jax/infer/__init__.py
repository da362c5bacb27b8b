"""Inference: Python API (`Predictor`, `Prediction`), input reading (`io`), exporters
(`export`: one module per format) and the `da3-jax` command line (`cli`)."""

from da3_jax.infer.api import Prediction, Predictor, load_checkpoint

__all__ = ["Prediction", "Predictor", "load_checkpoint"]
