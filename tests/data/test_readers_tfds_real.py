"""TFDS builder of converted real scenes: build from records saved here (two scene sizes, two
splits), read back through the array_record data source and compare arrays; max504 shrinking."""

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

from data_pipelines.readers import rgbd
from data_pipelines.record import SceneRecord
from data_pipelines.tfds import real_builder
from tests.data import readers_scene as S
from tests.data.test_readers_rgbd import _write_7scenes


def _records(tmp_path):
    k_cv = np.array([[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]])
    _write_7scenes(tmp_path / "raw" / "chess" / "seq-01", S.cameras(3), k_cv)
    a = rgbd.read_7scenes_sequence(tmp_path / "raw" / "chess" / "seq-01", k=k_cv)
    b = SceneRecord(  # another size and view count
        images=S.texture((2, 10, 14)).reshape(2, 10, 14, 3)[..., :3].copy(),
        depth=np.full((2, 10, 14), 2.5, np.float32), valid=np.ones((2, 10, 14), bool),
        intrinsics=np.broadcast_to(S.k_matrix(10, 14), (2, 3, 3)).astype(np.float32),
        extrinsics=S.cameras(2).astype(np.float32), dataset="toy", scene_id="x/y",
        is_metric=False, depth_kind="sparse_gt", provenance={"note": "b"})
    return a, b


def test_build_and_read_back(tmp_path):
    import tensorflow_datasets as tfds

    a, b = _records(tmp_path)
    manual = tmp_path / "manual"
    real_builder.save_record(a, manual / "train")
    real_builder.save_record(b, manual / "test")
    builder = real_builder.RealScenes(config="full", data_dir=str(tmp_path / "tfds"),
                                      file_format="array_record")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
    for split, want in (("train", a), ("test", b)):
        ds = tfds.data_source("real_scenes/full", data_dir=str(tmp_path / "tfds"), split=split)
        assert len(ds) == 1
        got = SceneRecord.from_example(ds[0]).validate()
        for f in ("images", "depth", "valid", "intrinsics", "extrinsics"):
            np.testing.assert_array_equal(getattr(got, f), getattr(want, f), err_msg=f)
        assert (got.dataset, got.scene_id, got.is_metric, got.depth_kind) == (
            want.dataset, want.scene_id, want.is_metric, want.depth_kind)
        assert got.provenance == want.provenance


def test_shrink_keeps_geometry(tmp_path):
    a, _ = _records(tmp_path)
    small = real_builder.shrink(a, 32)
    assert small.image_hw == (24, 32)
    np.testing.assert_allclose(small.intrinsics[:, :2], a.intrinsics[:, :2] / 2, rtol=1e-6)
    # nearest-sampled depth stays on the plane with the new K (up to the half-source-pixel
    # offset of nearest sampling); with the old K it does not
    S.assert_on_plane(small, 0.03)
    with pytest.raises(AssertionError):
        S.assert_on_plane(dataclasses.replace(small, intrinsics=a.intrinsics), 0.3)
    assert real_builder.shrink(a, 64) is a


def test_corrupt_record_and_empty_manual_dir(tmp_path):
    import tensorflow_datasets as tfds

    bad = tmp_path / "manual" / "bad.npz"
    bad.parent.mkdir()
    bad.write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(ValueError, match="bad.npz"):
        real_builder.load_record(bad)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no records here")
    builder = real_builder.RealScenes(config="full", data_dir=str(tmp_path / "tfds"),
                                      file_format="array_record")
    with pytest.raises(ValueError, match="no .npz records"):
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=str(tmp_path / "empty")))


def test_reading_does_not_import_tensorflow(tmp_path):
    import tensorflow_datasets as tfds

    a, _ = _records(tmp_path)
    real_builder.save_record(a, tmp_path / "manual")
    builder = real_builder.RealScenes(config="max504", data_dir=str(tmp_path / "tfds"),
                                      file_format="array_record")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(tmp_path / "manual")))
    code = (
        "import sys, tensorflow_datasets as tfds\n"
        "from data_pipelines.record import SceneRecord\n"
        f"ds = tfds.data_source('real_scenes/max504', data_dir={str(tmp_path / 'tfds')!r}, "
        "split='train')\n"
        "rec = SceneRecord.from_example(ds[0]).validate()\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
        "print(rec.images.shape)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=str(__import__("pathlib").Path(__file__).parents[2]))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "(3, 48, 64, 3)" in out.stdout


def test_convert_cli_real_hololens(shared_data, tmp_path, capsys):
    from data_pipelines.readers import convert

    convert.main(["--format", "hololens", "--root", str(shared_data / "hololens_dvmvs_office"),
                  "--out", str(tmp_path / "train")])
    paths = capsys.readouterr().out.split()
    assert len(paths) == 1 and paths[0].endswith("hololens__hololens_dvmvs_office.npz")
    got = real_builder.load_record(paths[0])
    want = rgbd.read_hololens_clip(shared_data / "hololens_dvmvs_office")
    for f in ("images", "depth", "valid", "intrinsics", "extrinsics"):
        np.testing.assert_array_equal(getattr(got, f), getattr(want, f), err_msg=f)
    with pytest.raises(ValueError, match="category/sequence"):
        convert.convert("co3d", str(tmp_path), str(tmp_path / "x"), ["noslash"])
