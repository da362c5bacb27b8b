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
