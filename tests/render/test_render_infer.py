"""`Predictor.render`, the `gs_video` export and `da3-jax render` on a random-weight tiny model
with a GS head (the giant head's structure on da3-tiny; 2 views of 28 x 42)."""

import os

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from gsplat.cuda import _torch_impl as impl  # the parity reference (Makefile installs it)
from PIL import Image

from da3_jax.infer.api import Predictor
from tests.infer.conftest import random_params, tiny_config
from tests.render._reference import render_reference

RES = 42


@pytest.fixture(scope="module")
def gs_ckpt(tmp_path_factory):
    from da3_jax.convert import save_converted

    cfg = tiny_config()
    cfg.gs_head = True
    path = tmp_path_factory.mktemp("ckpt") / "da3_tiny_gs"
    save_converted(path, cfg, random_params(cfg))
    return str(path)


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    rng = np.random.default_rng(0)
    d = tmp_path_factory.mktemp("imgs")
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (28, 42, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return str(d)


@pytest.fixture(scope="module")
def gs_pred(gs_ckpt, image_dir):
    from da3_jax.infer.cli import load_predictor

    paths = sorted(os.path.join(image_dir, f) for f in os.listdir(image_dir))
    # same cache key as the CLI's call, so the render command reuses the compiled model
    return load_predictor(gs_ckpt, None).predict(paths, process_res=RES, infer_gs=True)


def test_predictor_render_matches_bruteforce_reference(gs_pred):
    g = gs_pred.gaussians
    hw = gs_pred.depth.shape[1:]
    w2c, k = gs_pred.extrinsics[:1], gs_pred.intrinsics[:1]
    out = Predictor.render(gs_pred, w2c, k, hw, tile_capacity=len(g["means"]))
    assert out["rgb"].shape == (1,) + hw + (3,) and int(out["overflow"][0]) == 0
    # official convention: adapter rotations go to gsplat's wxyz slot unchanged
    centre = -w2c[0, :3, :3].T @ w2c[0, :3, 3]
    sh = torch.tensor(np.swapaxes(g["harmonics"], 1, 2), dtype=torch.float64)
    rgb = torch.clamp_min(impl._spherical_harmonics(
        2, torch.tensor(g["means"] - centre, dtype=torch.float64), sh) + 0.5, 0.0).numpy()
    w2c4 = np.concatenate([w2c[0], [[0, 0, 0, 1]]])
    ref = render_reference(g["means"], g["rotations"], g["scales"], g["opacities"], rgb, w2c4,
                           k[0], hw, np.zeros(3))
    assert ref["alpha"].mean() > 0.5
    for key in ("rgb", "alpha", "depth"):
        np.testing.assert_allclose(out[key][0], ref[key], atol=1e-4, err_msg=key)


def test_render_errors(gs_pred):
    hw = gs_pred.depth.shape[1:]
    with pytest.raises(ValueError, match="empty trajectory"):
        Predictor.render(gs_pred, np.zeros((0, 4, 4)), np.zeros((0, 3, 3)), hw)
    flipped = np.array(gs_pred.extrinsics[:1])
    flipped[:, 2, :] *= -1  # camera turned around: every Gaussian behind it
    flipped[:, 0, :] *= -1
    with pytest.raises(ValueError, match="lie behind the camera"):
        Predictor.render(gs_pred, flipped, gs_pred.intrinsics[:1], hw)
    bad = {**gs_pred.gaussians, "scales": -np.abs(gs_pred.gaussians["scales"])}
    import dataclasses

    with pytest.raises(ValueError, match="scales: expected non-negative"):
        Predictor.render(dataclasses.replace(gs_pred, gaussians=bad), gs_pred.extrinsics[:1],
                         gs_pred.intrinsics[:1], hw)


def test_cli_render_writes_video(gs_ckpt, image_dir, gs_pred, tmp_path):
    from da3_jax.infer.cli import main
    from da3_jax.render import camera_path

    rc = main(["render", image_dir, "--checkpoint", gs_ckpt, "--out", str(tmp_path),
               "--trajectory", "wander", "--frames", "3", "--process-res", str(RES),
               "--tile-capacity", "2352"])
    assert rc == 0
    frames = [f for f in imageio.get_reader(str(tmp_path / "gs_video" / "wander.mp4"))]
    hw = gs_pred.depth.shape[1:]
    assert len(frames) == 5 and frames[0].shape == (hw[0], 2 * hw[1], 3)  # rgb | depth
    w2c, k = camera_path(gs_pred.extrinsics, gs_pred.intrinsics, hw, "wander", 3)
    want = Predictor.render(gs_pred, w2c[2:3], k[2:3], hw, tile_capacity=2352)["rgb"][0]
    got = frames[2][:, : hw[1]].astype(np.float64) / 255.0
    assert np.abs(got - np.clip(want, 0, 1)).mean() < 0.03  # H.264 is lossy
    assert main(["render", image_dir, "--checkpoint", gs_ckpt, "--out", str(tmp_path),
                 "--render-hw", "bad"]) == 1
