"""SceneRecord: validation names the bad field; serialisation round-trips exactly."""

import dataclasses

import numpy as np
import pytest

from data_pipelines.record import DEPTH_KINDS, EXAMPLE_KEYS, SceneRecord


def _record(n=3, h=5, w=7, seed=0):
    rng = np.random.default_rng(seed)
    depth = rng.uniform(0.5, 4.0, (n, h, w)).astype(np.float32)
    depth[:, 0, :2] = 0.0
    valid = depth > 0
    k = np.array([[10.0, 0, 3.5], [0, 11.0, 2.5], [0, 0, 1]], np.float32)
    ang = rng.uniform(0, np.pi, n)
    rot = np.stack([np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
                    for a in ang])
    ext = np.concatenate([rot, rng.normal(size=(n, 3, 1))], axis=2).astype(np.float32)
    return SceneRecord(
        images=rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8), depth=depth, valid=valid,
        intrinsics=np.repeat(k[None], n, 0), extrinsics=ext, dataset="unit", scene_id="s0",
        is_metric=True, depth_kind="sparse_gt",
        provenance={"teacher_checkpoint": "ckpt/7", "inliers": [10, 12, 9],
                    "residual": [0.1, 0.2, 0.05]})


def _assert_equal(a: SceneRecord, b: SceneRecord):
    for f in dataclasses.fields(SceneRecord):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), f.name
        else:
            assert x == y, f.name


def test_valid_record_passes_and_roundtrips():
    rec = _record().validate()
    ex = rec.to_example()
    assert tuple(sorted(ex)) == tuple(sorted(EXAMPLE_KEYS))
    _assert_equal(SceneRecord.from_example(ex), rec)
    _assert_equal(SceneRecord.from_bytes(rec.to_bytes()), rec)
    # TFDS decodes Text features to bytes and scalars to numpy values.
    ex_tfds = {k: (v.encode() if isinstance(v, str) else v) for k, v in ex.items()}
    ex_tfds["is_metric"] = np.bool_(True)
    _assert_equal(SceneRecord.from_example(ex_tfds), rec)
    assert SceneRecord.from_bytes(dataclasses.replace(rec, provenance=None).to_bytes()
                                  ).provenance is None


def test_select_views_keeps_order():
    rec = _record(n=4)
    sub = rec.select_views([2, 0])
    assert sub.num_views == 2
    np.testing.assert_array_equal(sub.depth[0], rec.depth[2])
    np.testing.assert_array_equal(sub.extrinsics[1], rec.extrinsics[0])


def _bad(field, fn):
    return pytest.param(field, fn, id=f"{field}-{fn.__name__}")


def _images_float(r):
    r.images = r.images.astype(np.float32)


def _images_gray(r):
    r.images = r.images[..., 0]


def _depth_shape(r):
    r.depth = r.depth[:, :-1]


def _depth_nan(r):
    r.depth[1, 2, 3] = np.nan


def _depth_inf(r):
    r.depth[0, 1, 1] = np.inf


def _depth_negative(r):
    r.depth[0, 1, 1] = -1.0


def _valid_on_zero_depth(r):
    r.valid[:, 0, 0] = True


def _valid_dtype(r):
    r.valid = r.valid.astype(np.uint8)


def _k_singular(r):
    r.intrinsics[1, 0, 0] = 0.0


def _k_nan(r):
    r.intrinsics[0, 1, 2] = np.nan


def _k_last_row(r):
    r.intrinsics[0, 2, 2] = 2.0


def _k_shape(r):
    r.intrinsics = r.intrinsics[:2]


def _ext_nan(r):
    r.extrinsics[2, 0, 3] = np.inf


def _ext_not_rotation(r):
    r.extrinsics[0, :, :3] *= 2.0


def _ext_reflection(r):
    r.extrinsics[0, :, 0] *= -1.0


def _kind(r):
    r.depth_kind = "lidar"


def _scene_id(r):
    r.scene_id = ""


def _provenance(r):
    r.provenance = {"x": object()}


@pytest.mark.parametrize("field,mutate", [
    _bad("images", _images_float), _bad("images", _images_gray), _bad("depth", _depth_shape),
    _bad("depth", _depth_nan), _bad("depth", _depth_inf), _bad("depth", _depth_negative),
    _bad("valid", _valid_on_zero_depth), _bad("valid", _valid_dtype),
    _bad("intrinsics", _k_singular), _bad("intrinsics", _k_nan), _bad("intrinsics", _k_last_row),
    _bad("intrinsics", _k_shape), _bad("extrinsics", _ext_nan),
    _bad("extrinsics", _ext_not_rotation), _bad("extrinsics", _ext_reflection),
    _bad("depth_kind", _kind), _bad("scene_id", _scene_id), _bad("provenance", _provenance),
])
def test_validate_names_bad_field(field, mutate):
    rec = _record()
    mutate(rec)
    with pytest.raises(ValueError, match=f"'{field}'"):
        rec.validate()


def test_from_bytes_and_example_reject_garbage():
    with pytest.raises(ValueError, match="not a serialised record"):
        SceneRecord.from_bytes(b"\x00garbage")
    ex = _record().to_example()
    del ex["extrinsics"]
    with pytest.raises(ValueError, match="extrinsics"):
        SceneRecord.from_example(ex)


def test_depth_kinds_are_the_documented_three():
    assert DEPTH_KINDS == ("dense_gt", "sparse_gt", "pseudo_label")
