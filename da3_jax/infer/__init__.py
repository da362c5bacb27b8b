"""Inference: Python API (`Predictor`, `Prediction`), input reading (`io`), exporters
(`export`: one module per format), streaming over long videos (`streaming`) and the `da3-jax`
command line (`cli`). The API names are imported on first use, so `da3-jax --help` does not
import jax."""

__all__ = ["Prediction", "Predictor", "load_checkpoint"]


def __getattr__(name: str):
    if name in __all__:
        from da3_jax.infer import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
