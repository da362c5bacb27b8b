"""`nvs` mode end to end over an NVS benchmark layout: a synthetic DL3DV-layout scene (float64
reference renders, OpenGL c2w and full-resolution K in transforms.json) run through
`run_benchmark` by the registry name, with the known-Sim(3) predictor of `test_nvs`."""

import json

import cv2
import numpy as np
import pytest

from da3_jax.eval import report, runner
from da3_jax.eval.__main__ import _reader_options
from tests.data import readers_scene as S
from tests.eval.test_nvs import HW, K, _cameras, gaussian_scene, reference_images, sim3_predictor

FULL = 8  # transforms.json calibrates the full-resolution frames, images_8 is 1/8


def test_run_benchmark_nvs_on_a_dl3dv_layout(tmp_path):
    scene = gaussian_scene()
    n = 17
    w2c = _cameras(n, seed=2)[:, :3]
    images = reference_images(scene, w2c)
    ns = tmp_path / "dl3dv" / "0a1b" / "nerfstudio"
    (ns / "images_8").mkdir(parents=True)
    frames = []
    for i in range(n):
        name = f"frame_{i + 1:05d}.png"
        cv2.imwrite(str(ns / "images_8" / name), images[i][..., ::-1])
        c2w_gl = S.c2w_of(w2c[i]) @ np.diag([1.0, -1.0, -1.0, 1.0])
        frames.append({"file_path": f"images/{name}", "transform_matrix": c2w_gl.tolist()})
    kf = K * [[FULL], [FULL], [1]]
    (ns / "transforms.json").write_text(json.dumps({
        "camera_model": "PINHOLE", "w": HW[1] * FULL, "h": HW[0] * FULL, "fl_x": kf[0, 0],
        "fl_y": kf[1, 1], "cx": kf[0, 2], "cy": kf[1, 2], "frames": frames[::-1]}))
    agg = runner.run_benchmark("dl3dv", str(tmp_path / "dl3dv"), sim3_predictor(scene),
                               str(tmp_path / "out"), modes=("nvs",), max_frames=0,
                               reader_options=_reader_options("dl3dv", f"{HW[0]},{HW[1]}"),
                               plots=False, progress=False)
    res = agg["nvs"]["0a1b"]
    assert res["num_target"] == 3 and res["render_overflow"] == 0
    assert res["psnr"] > 40 and res["ssim"] > 0.99, res
    # resumed with LPIPS weights: the scene is re-scored (not skipped), the net is recorded
    from tests.eval._lpips_weights import write_random_weights
    weights = write_random_weights(tmp_path / "lpips_vgg.safetensors")
    agg2 = runner.run_benchmark("dl3dv", str(tmp_path / "dl3dv"), sim3_predictor(scene),
                                str(tmp_path / "out"), modes=("nvs",), max_frames=0,
                                reader_options=_reader_options("dl3dv", f"{HW[0]},{HW[1]}"),
                                plots=False, progress=False, lpips_weights=weights)
    saved = json.loads((tmp_path / "out" / "dl3dv" / "scenes" / "0a1b.json").read_text())
    assert saved["lpips_net"] == "vgg" and len(saved["per_target"]["lpips"]) == 3
    assert agg2["nvs"]["mean"]["lpips"] == pytest.approx(np.mean(saved["per_target"]["lpips"]))
    assert agg2["nvs"]["mean"]["psnr"] == pytest.approx(res["psnr"])
    # a mean covers only what every scene has: no LPIPS mean over a mixed (resumed) run
    mixed = report.aggregate({"a": saved, "b": {"metrics": {"nvs": res}}}, ["nvs"])["nvs"]["mean"]
    assert "lpips" not in mixed and mixed["psnr"] == pytest.approx(res["psnr"])
    # the nerfstudio layout has no depth: the depth modes say so instead of scoring nothing
    with pytest.raises(ValueError, match="'recon_posed' needs ground-truth depth.*'0a1b'"):
        runner.run_benchmark("dl3dv", str(tmp_path / "dl3dv"), sim3_predictor(scene),
                             str(tmp_path / "out"), modes=("recon_posed",), max_frames=0,
                             plots=False, progress=False)


def test_cli_reader_options():
    assert _reader_options("megadepth", "270,480") == {"hw": (270, 480)}
    assert _reader_options("tanks_temples", "native") == {"hw": None}
    assert _reader_options("eth3d", None) == {}
    with pytest.raises(ValueError, match="only for the NVS readers"):
        _reader_options("eth3d", "270,480")
    with pytest.raises(ValueError, match="expected 'H,W'"):
        _reader_options("dl3dv", "big")
