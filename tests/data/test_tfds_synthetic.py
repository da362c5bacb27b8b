"""TFDS builder (array_record) and the TF-free array_record source: built data equals the
renderer's scenes, reading never imports TensorFlow, records feed the pipeline."""

import sys

import numpy as np
import pytest

from data_pipelines.pipeline import PipelineConfig, make_train_iterator
from data_pipelines.record import SceneRecord
from data_pipelines.sources import (
    ArrayRecordSceneSource,
    TfdsSceneSource,
    write_array_record,
)
from data_pipelines.synthetic.render import render_scene


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from data_pipelines.tfds.synthetic_builder import SyntheticScenes

    builder = SyntheticScenes(config="tiny", data_dir=str(tmp_path_factory.mktemp("tfds")),
                              file_format="array_record")
    builder.download_and_prepare()
    return builder


def test_tfds_builder_roundtrip_without_tensorflow(built):
    train = built.as_data_source(split="train")
    test = built.as_data_source(split="test")
    assert len(train) == 8 and len(test) == 2
    seen = set()
    for i in (0, 5):
        rec = SceneRecord.from_example(train[i]).validate()
        ref = render_scene(rec.provenance["index"], 4, 56, 56, seed=0)
        assert rec.scene_id == ref.scene_id
        for f in ("images", "depth", "valid", "intrinsics", "extrinsics"):
            np.testing.assert_array_equal(getattr(rec, f), getattr(ref, f), err_msg=f)
        seen.add(rec.provenance["index"])
    test_idx = {SceneRecord.from_example(test[i]).provenance["index"] for i in range(2)}
    assert test_idx == {8, 9} and not seen & test_idx
    assert "tensorflow" not in sys.modules


def test_tfds_source_feeds_pipeline(built):
    src = TfdsSceneSource(built.as_data_source(split="train"))
    cfg = PipelineConfig(batch_size=2, image_hw=(28, 28), min_views=2, max_views=3,
                         process_index=0, process_count=1)
    b = next(make_train_iterator(cfg, [src]))
    assert b["images"].shape[0] == 2 and np.isfinite(b["images"]).all()
    assert "tensorflow" not in sys.modules


def test_array_record_source_roundtrip(tmp_path):
    recs = [render_scene(i, 2, 28, 28, seed=4) for i in range(3)]
    path = tmp_path / "scenes.array_record"
    assert write_array_record(recs, path) == 3
    src = ArrayRecordSceneSource(path)
    assert len(src) == 3
    for i in range(3):
        got = src[i]
        assert got.scene_id == recs[i].scene_id and got.provenance == recs[i].provenance
        np.testing.assert_array_equal(got.depth, recs[i].depth)
        np.testing.assert_array_equal(got.images, recs[i].images)
    with pytest.raises(ValueError, match="does not exist"):
        ArrayRecordSceneSource(tmp_path / "missing.array_record")
    bad = recs[0].select_views([0])
    bad.depth = bad.depth[:, :3]
    with pytest.raises(ValueError, match="'depth'"):
        write_array_record([bad], tmp_path / "bad.array_record")
