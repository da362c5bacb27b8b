"""Shared fixtures: one randomly initialised, shortened 'da3-tiny' saved as a converted orbax
checkpoint, and one Predictor (loaded through the CLI's cached loader, so the API and CLI tests
share compiled functions). Sizes: process_res 140 -> 84 x 140 for the sample images."""

import os

import jax
import numpy as np
import pytest

PROCESS_RES = 140
MVPD = 2  # heads in chunks of 2 views: one head compile serves N = 2 and N = 4


def tiny_config():
    from da3_jax.model import get_config

    cfg = get_config("da3-tiny")
    cfg.depth = 4
    cfg.out_layers = (0, 1, 2, 3)
    return cfg


def random_params(cfg, seed=0):
    from da3_jax.model import DA3

    shapes = jax.eval_shape(
        DA3(cfg).init, jax.random.key(0), jax.ShapeDtypeStruct((1, 1, 28, 28, 3), np.float32)
    )["params"]
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: (rng.normal(size=s.shape) * 0.02).astype(np.float32), shapes)


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    from da3_jax.convert import save_converted

    cfg = tiny_config()
    path = tmp_path_factory.mktemp("ckpt") / "da3_tiny"
    save_converted(path, cfg, random_params(cfg))
    return str(path)


@pytest.fixture(scope="session")
def predictor(tiny_ckpt):
    from da3_jax.infer.cli import load_predictor

    return load_predictor(tiny_ckpt, None, MVPD)


@pytest.fixture(scope="session")
def soh_paths(shared_data):
    d = shared_data / "da3_example_soh" / "images"
    return sorted(str(d / f) for f in os.listdir(d))


@pytest.fixture(scope="session")
def soh_pred(predictor, soh_paths):
    return predictor.predict(soh_paths, process_res=PROCESS_RES)
