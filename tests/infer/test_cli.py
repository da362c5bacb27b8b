"""`da3-jax` command line, run in-process (shares the compiled model with the API tests)."""

import os

import numpy as np
import pytest

from da3_jax.infer import cli
from tests.infer.conftest import MVPD, PROCESS_RES


def _run(*args):
    return cli.main([str(a) for a in args])


def _predict(inp, ckpt, out, export, *extra):
    return _run("predict", inp, "--checkpoint", ckpt, "--out", out, "--export", export,
                "--process-res", PROCESS_RES, "--max-views-per-device", MVPD, *extra)


def test_folder_all_exports(predictor, tiny_ckpt, shared_data, tmp_path):
    out = tmp_path / "out"
    rc = _predict(shared_data / "da3_example_soh" / "images", tiny_ckpt, out,
                  "npz,mini_npz,ply,glb,colmap,depth_vis")
    assert rc == 0
    for rel in ("exports/npz/results.npz", "exports/mini_npz/results.npz", "points.ply",
                "scene.glb", "colmap/cameras.bin", "depth_vis/0001.jpg"):
        assert (out / rel).is_file(), rel
    npz = np.load(out / "exports" / "npz" / "results.npz")
    assert npz["depth"].shape == (2, 84, 140) and npz["image"].dtype == np.uint8


def test_colmap_input_roundtrips_cameras(predictor, tiny_ckpt, shared_data, tmp_path):
    import pycolmap

    src = shared_data / "colmap_maupertuis"
    out = tmp_path / "out"
    assert _predict(src, tiny_ckpt, out, "colmap") == 0
    ref = pycolmap.Reconstruction(str(src / "sparse" / "0"))
    got = pycolmap.Reconstruction(str(out / "colmap"))
    ref_by_name = {im.name: im for im in ref.images.values()}
    assert sorted(im.name for im in got.images.values()) == sorted(ref_by_name)

    def mat(im):
        p = im.cam_from_world
        return (p() if callable(p) else p).matrix()

    for im in got.images.values():
        r = ref_by_name[im.name]
        np.testing.assert_allclose(mat(im), mat(r), atol=1e-6)
        cam, rcam = im.camera, r.camera
        assert cam.model.name == "PINHOLE" and (cam.width, cam.height) == (1919, 1079)
        f, cx, cy = rcam.params  # SIMPLE_PINHOLE
        np.testing.assert_allclose(cam.params, [f, f, cx, cy], rtol=1e-5)


def test_video_input_with_fps(predictor, tiny_ckpt, shared_data, tmp_path):
    import imageio.v2 as imageio
    from PIL import Image

    src = shared_data / "da3_example_soh" / "images"
    frames = [np.asarray(Image.open(src / f).convert("RGB").resize((224, 128)))
              for f in sorted(os.listdir(src))]
    path = tmp_path / "clip.mp4"
    w = imageio.get_writer(str(path), fps=4, codec="libx264", quality=9)
    for fr in (frames[0], frames[0], frames[1], frames[1]):
        w.append_data(fr)
    w.close()
    out = tmp_path / "out"
    assert _predict(path, tiny_ckpt, out, "mini_npz", "--fps", 2) == 0
    d = np.load(out / "exports" / "mini_npz" / "results.npz")
    assert d["depth"].shape == (2, 84, 140) and d["extrinsics"].shape == (2, 3, 4)


def test_failed_export_exits_nonzero(predictor, tiny_ckpt, shared_data, tmp_path, capsys):
    rc = _predict(shared_data / "da3_example_soh" / "images", tiny_ckpt, tmp_path,
                  "mini_npz,gs_ply")
    # gs_ply fails (no GS head) with the reason on stderr; the other format is still written
    assert rc == 1
    assert (tmp_path / "exports" / "mini_npz" / "results.npz").is_file()
    assert "gs_ply" in capsys.readouterr().err


def test_errors_before_inference(tiny_ckpt, shared_data, tmp_path, capsys, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("model loaded")

    monkeypatch.setattr(cli, "load_predictor", boom)
    img = shared_data / "da3_example_soh" / "images"
    assert _predict(img, tiny_ckpt, tmp_path, "npz,obj") == 1
    assert "unknown format" in capsys.readouterr().err
    (tmp_path / "bad.jpg").write_bytes(b"\x00\x01")
    assert _predict(tmp_path / "bad.jpg", tiny_ckpt, tmp_path / "o", "npz") == 1
    assert "unreadable" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("x")
    assert _predict(tmp_path / "notes.txt", tiny_ckpt, tmp_path / "o", "npz") == 1
    assert "unsupported extension" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert _predict(tmp_path / "empty", tiny_ckpt, tmp_path / "o", "npz") == 1
    assert "no images" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _run("predict", img)  # missing --checkpoint: argparse usage error


def test_info(predictor, tiny_ckpt, capsys):
    import jax

    assert _run("info", tiny_ckpt) == 0
    text = capsys.readouterr().out
    n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(predictor.params))
    assert "variant: da3-tiny" in text and f"parameters: {n:,}" in text
    assert f"devices: {len(jax.devices())}" in text


def test_help_imports_no_jax():
    """`da3-jax --help` stays light (lazy imports): neither jax nor the exporters load."""
    import subprocess
    import sys

    from da3_jax.model.preprocess import METHODS

    assert cli.PROCESS_RES_METHODS == METHODS
    from da3_jax.infer.render_cmd import TRAJECTORY_MODES
    from da3_jax.render.trajectory import MODES

    assert TRAJECTORY_MODES == tuple(MODES)
    code = ("import sys; from da3_jax.infer import cli\n"
            "try:\n    cli.main(['predict', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('jax', 'flax', 'trimesh', 'cv2') if m in sys.modules))")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root,
                         env={**os.environ, "PYTHONPATH": root}, check=True).stdout
    assert "--checkpoint" in out and out.strip().endswith("[]")


def test_path_errors_before_reading(tiny_ckpt, shared_data, tmp_path, capsys, monkeypatch):
    """Bad --checkpoint / --out / --fps: one-line errors before any image is read."""
    from da3_jax.infer import io as io_lib

    def boom(*a, **k):
        raise AssertionError("work started")

    monkeypatch.setattr(cli, "load_predictor", boom)
    monkeypatch.setattr(io_lib, "collect_inputs", boom)
    img = shared_data / "da3_example_soh" / "images"
    a_file = tmp_path / "taken.txt"
    a_file.write_text("x")
    cases = [
        ((img, tmp_path / "nope", tmp_path / "o"), "--checkpoint"),
        ((img, tiny_ckpt, a_file), "exists and is not a folder"),
        ((img, tiny_ckpt, a_file / "sub"), "not writable"),
    ]
    for (inp, ckpt, out), msg in cases:
        assert _predict(inp, ckpt, out, "npz") == 1
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1 and "Traceback" not in err, err
    for fps in ("nan", "inf", "0", "x"):
        with pytest.raises(SystemExit) as e:
            _predict(img, tiny_ckpt, tmp_path / "o", "npz", "--fps", fps)
        assert e.value.code == 2 and "--fps" in capsys.readouterr().err


def test_rerun_removes_stale_outputs(predictor, tiny_ckpt, shared_data, tmp_path):
    out = tmp_path / "out"
    (out / "depth_vis").mkdir(parents=True)
    for name in ("0005.jpg", "0006.jpg"):  # from an earlier, larger run
        (out / "depth_vis" / name).write_bytes(b"old")
    (out / "scene.glb").write_bytes(b"old")
    (out / "notes.txt").write_text("mine")
    assert _predict(shared_data / "da3_example_soh" / "images", tiny_ckpt, out,
                    "mini_npz,depth_vis") == 0
    assert sorted(os.listdir(out / "depth_vis")) == ["0000.jpg", "0001.jpg"]
    assert not (out / "scene.glb").exists() and (out / "notes.txt").read_text() == "mine"


def test_makefile_demo_installs_only_the_package(tmp_path):
    """`make demo` set-up: no torch, no official package; `make test` still installs both."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    dry = lambda target: subprocess.run(
        ["make", "-n", target, f"VENV={tmp_path / 'fresh'}"], cwd=root, capture_output=True,
        text=True, check=True).stdout
    demo, test = dry("demo"), dry("test")
    assert "experiments.demo" in demo and "pip install -q -e ." in demo
    assert "torch" not in demo and "depth-anything-3" not in demo and "[dev" not in demo
    assert "torch==" in test and "depth-anything-3==" in test and "pytest" in test
    assert "venv" in test  # a fresh clone still gets its venv from `make test`


def test_streaming_video(predictor, tiny_ckpt, tmp_path, monkeypatch, capsys):
    """`predict clip.mp4 --streaming`: chunks are the network's predictions of those frames,
    one compiled shape serves every chunk, exports cover the sequence with capped points, a
    re-run resumes (no chunk is predicted again)."""
    import imageio.v2 as imageio
    from plyfile import PlyData

    from da3_jax.eval.streaming import loop_scene
    from da3_jax.infer import io as io_lib

    images = loop_scene(6, 64, 96)[0]
    path = tmp_path / "clip.mp4"
    with imageio.get_writer(str(path), fps=8, codec="libx264", quality=9) as w:
        for im in images:
            w.append_data(im)
    out = tmp_path / "out"
    args = ("--streaming", "--chunk", 4, "--overlap", 3, "--fps", 8, "--num-max-points", 300)
    assert _predict(path, tiny_ckpt, out, "mini_npz,ply,colmap", *args) == 0
    assert "frames/s" in capsys.readouterr().err
    frames = io_lib.read_video(str(path), fps=8)
    chunk = np.load(out / "streaming" / "chunk_00001.npz")
    traces = predictor.forward.trace_count
    ref = predictor.predict(frames[1:5], process_res=PROCESS_RES)
    assert predictor.forward.trace_count == traces  # the chunk shape was compiled once
    np.testing.assert_allclose(chunk["depth"], ref.depth, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(chunk["extrinsics"], ref.extrinsics, atol=1e-5)
    d = np.load(out / "exports" / "mini_npz" / "results.npz")
    assert d["extrinsics"].shape == (6, 3, 4)
    assert 0 < len(PlyData.read(str(out / "points.ply"))["vertex"]) <= 300

    calls = []
    monkeypatch.setattr(predictor, "predict", lambda *a, **k: calls.append(a) or 1 / 0)
    assert _predict(path, tiny_ckpt, out, "mini_npz", *args) == 0  # resumed: nothing to do
    assert calls == [] and predictor.forward.trace_count == traces
    np.testing.assert_array_equal(np.load(out / "exports" / "mini_npz" / "results.npz")[
        "extrinsics"], d["extrinsics"])
