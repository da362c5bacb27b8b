"""Grain pipeline: batch contract, geometry of resize/crop (re-rendered references), reference
frame, mixture weights, sharding, determinism, checkpoint resume and bad data."""

import dataclasses

import grain
import numpy as np
import pytest

from da3_jax.imagenet import IMAGENET_MEAN, IMAGENET_STD
from data_pipelines import pipeline, sensor, transforms
from data_pipelines.pipeline import PipelineConfig, make_train_iterator
from data_pipelines.record import SceneRecord
from data_pipelines.sources import InMemorySource, SyntheticSource
from data_pipelines.synthetic import raycast, scenes

BASE = dict(process_index=0, process_count=1)


def _tiny(i, n=4, h=16, w=20, dataset="tiny", kind="dense_gt", metric=True):
    rng = np.random.default_rng(i)
    depth = rng.uniform(1.0, 3.0, (n, h, w)).astype(np.float32)
    k = np.array([[20.0, 0, w / 2], [0, 20.0, h / 2], [0, 0, 1]], np.float32)
    ext = np.concatenate([np.repeat(np.eye(3)[None], n, 0), rng.normal(size=(n, 3, 1))],
                         axis=2).astype(np.float32)
    return SceneRecord(rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8), depth, depth > 0,
                       np.repeat(k[None], n, 0), ext, dataset, f"{dataset}_{i}", metric, kind)


@pytest.fixture(scope="module")
def synth():
    return SyntheticSource(6, num_views=5, height=56, width=70, seed=2, cache_size=6)


def _take(it, k):
    return [next(it) for _ in range(k)]


def _assert_batches_equal(a, b):
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def test_batch_contract_and_varying_views(synth):
    cfg = PipelineConfig(batch_size=2, image_hw=(28, 42), min_views=1, max_views=4, **BASE)
    batches = _take(make_train_iterator(cfg, [synth]), 6)
    views = set()
    for b in batches:
        bsz, n = b["images"].shape[:2]
        views.add(n)
        assert bsz == 2 and 1 <= n <= 4
        assert b["images"].shape == (2, n, 28, 42, 3) and b["images"].dtype == np.float32
        assert b["depth"].shape == b["valid"].shape == (2, n, 28, 42)
        assert b["intrinsics"].shape == (2, n, 3, 3) and b["extrinsics"].shape == (2, n, 3, 4)
        assert b["is_metric"].dtype == bool and b["is_metric"].all()
        assert (b["depth_kind"] == 0).all() and (b["source"] == 0).all()
        for key in ("images", "depth", "intrinsics", "extrinsics"):
            assert np.isfinite(b[key]).all()
        assert (b["depth"][~b["valid"]] == 0).all() and (b["depth"][b["valid"]] > 0).all()
        # Reference view first, at the origin of the batch's frame.
        np.testing.assert_allclose(b["extrinsics"][:, 0], np.broadcast_to(
            np.eye(3, 4), (2, 3, 4)), atol=1e-5)
    assert len(views) >= 2


def test_resize_crop_matches_rerendered_view():
    """Downsample by 3 (nearest index exact) + crop: depth equals a render with the new K."""
    scene, ks, w2cs, _ = scenes.make_scene((9, 1), 1, 168, 252)
    img, depth, valid = raycast.render_view(scene, ks[0], w2cs[0], 168, 252)
    rng = np.random.default_rng(0)
    plan = transforms.resize_crop_plan((168, 252), (56, 56), rng)
    assert (plan.rh, plan.rw) == (56, 84) and plan.x0 > 0
    _, d2, v2 = transforms.apply_plan(plan, img, depth, valid)
    k2 = transforms.plan_intrinsics(ks[:1], np.array([[168, 252]], np.float32), [plan])[0]
    ref_k = np.array(ks[0], np.float64)
    ref_k[:2] /= 3.0
    ref_k[0, 2] -= plan.x0
    np.testing.assert_allclose(k2, ref_k, rtol=1e-6, atol=1e-5)
    _, d_ref, v_ref = raycast.render_view(scene, k2, w2cs[0], 56, 56)
    np.testing.assert_array_equal(v2, v_ref)
    np.testing.assert_allclose(d2[v2], d_ref[v2], rtol=5e-5)  # float32 rays


def test_relative_poses_preserved_in_reference_frame(synth):
    cfg = PipelineConfig(batch_size=1, image_hw=(28, 28), min_views=3, max_views=3, seed=5,
                         ray_maps=True, **BASE)
    (b,), = [_take(make_train_iterator(cfg, [synth]), 1)]
    # Ray maps (float64 reference): direction R^T K^-1 [j + .5, i + .5, 1], origin -R^T t.
    e, k = b["extrinsics"][0, 1].astype(np.float64), b["intrinsics"][0, 1].astype(np.float64)
    v, u = np.meshgrid(np.arange(28) + 0.5, np.arange(28) + 0.5, indexing="ij")
    pix = np.stack([u, v, np.ones_like(u)], axis=-1)
    np.testing.assert_allclose(b["ray"][0, 1, ..., :3], pix @ np.linalg.inv(k).T @ e[:, :3],
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(b["ray"][0, 1, ..., 3:], np.broadcast_to(
        -e[:, :3].T @ e[:, 3], (28, 28, 3)), atol=1e-5)
    cfg_world = dataclasses.replace(cfg, reference_frame=False, ray_maps=False)
    (bw,), = [_take(make_train_iterator(cfg_world, [synth]), 1)]
    np.testing.assert_array_equal(b["depth"], bw["depth"])  # same sampling either way

    def h(e):
        return np.concatenate([e.astype(np.float64), [[0, 0, 0, 1]]], axis=0)

    for j in (1, 2):  # w2c_j @ c2w_0 is frame independent (float64 reference)
        rel_world = h(bw["extrinsics"][0, j]) @ np.linalg.inv(h(bw["extrinsics"][0, 0]))
        np.testing.assert_allclose(h(b["extrinsics"][0, j]), rel_world, atol=2e-5)


def test_imagenet_normalisation_and_photometric_jitter(synth):
    plain = PipelineConfig(batch_size=1, image_hw=(56, 70), zoom_range=(1.0, 1.0),
                           photometric=False, min_views=5, max_views=5, shuffle=False, **BASE)
    (b,) = _take(make_train_iterator(plain, [synth]), 1)
    x = b["images"][0] * IMAGENET_STD + IMAGENET_MEAN
    rec = synth[0]
    ref = np.stack([rec.images[i] for i in range(5)]).astype(np.float32) / 255.0
    # Same size, no zoom: the image is the record's (up to view order).
    assert any(np.allclose(x[0], r, atol=1e-5) for r in ref)
    jit = dataclasses.replace(plain, photometric=True)
    (bj,) = _take(make_train_iterator(jit, [synth]), 1)
    assert not np.allclose(bj["images"], b["images"], atol=1e-3)
    np.testing.assert_array_equal(bj["depth"], b["depth"])
    (bj2,) = _take(make_train_iterator(jit, [synth]), 1)
    np.testing.assert_array_equal(bj["images"], bj2["images"])


def test_resume_yields_identical_batches(synth, tmp_path):
    src2 = InMemorySource([_tiny(i, h=56, w=70, dataset="other", kind="pseudo_label",
                                 metric=False) for i in range(5)])
    cfg = PipelineConfig(batch_size=2, image_hw=(28, 28), min_views=1, max_views=3, seed=3,
                         **BASE)
    it = make_train_iterator(cfg, [synth, src2], [1.0, 1.0])
    _take(it, 2)
    state = it.get_state()
    # Through the grain checkpoint handler too (what orbax saves beside the train state).
    handler = grain.checkpoint.CheckpointHandler()
    (tmp_path / "ckpt").mkdir()
    handler.save(tmp_path / "ckpt", item=it)
    expected = _take(it, 3)
    it2 = make_train_iterator(cfg, [synth, src2], [1.0, 1.0])
    it2.set_state(state)
    _assert_batches_equal(_take(it2, 3), expected)
    it3 = make_train_iterator(cfg, [synth, src2], [1.0, 1.0])
    handler.restore(tmp_path / "ckpt", item=it3)
    _assert_batches_equal(_take(it3, 3), expected)
    assert {0, 1} <= set(np.concatenate([b["source"] for b in expected]).tolist())
    assert any((b["depth_kind"] == 2).any() and not b["is_metric"].all() for b in expected)


def test_mixture_weights_and_host_sharding():
    a = InMemorySource([_tiny(i, dataset="a") for i in range(8)])
    b = InMemorySource([_tiny(100 + i, dataset="b") for i in range(8)])
    cfg = PipelineConfig(batch_size=4, image_hw=(14, 14), min_views=1, max_views=1,
                         photometric=False, **BASE)
    srcs = np.concatenate([x["source"] for x in _take(make_train_iterator(cfg, [a, b], [3, 1]),
                                                      25)])
    assert abs((srcs == 0).mean() - 0.75) < 0.06
    # Two hosts see disjoint scenes whose union is the dataset.
    seen = []
    for pi in range(2):
        c = dataclasses.replace(cfg, process_index=pi, process_count=2, num_epochs=1,
                                shuffle=False, batch_size=1)
        ids = set()
        for x in make_train_iterator(c, [a]):
            # Identify the scene by its first pixel row (images are random per scene).
            ids.add(int(x["images"][0, 0, 0, 0, 0] * 1e4))
        seen.append(ids)
    assert len(seen[0]) == len(seen[1]) == 4 and not seen[0] & seen[1]


def test_bad_data_is_skipped_counted_and_never_nan():
    good = [_tiny(i) for i in range(4)]
    nan_depth = _tiny(10)
    nan_depth.depth[0, 3, 3] = np.nan
    wrong_shape = _tiny(11)
    wrong_shape.depth = wrong_shape.depth[:, :-2]
    no_valid = _tiny(12)
    no_valid.depth[:] = 0.0
    no_valid.valid[:] = False
    one_empty_view = _tiny(13)
    one_empty_view.depth[2] = 0.0
    one_empty_view.valid[2] = False
    src = InMemorySource([nan_depth, good[0], wrong_shape, good[1], no_valid, one_empty_view,
                          good[2], good[3]])
    before = pipeline.skip_counts()
    cfg = PipelineConfig(batch_size=2, image_hw=(14, 14), min_views=2, max_views=4, **BASE)
    for b in _take(make_train_iterator(cfg, [src]), 12):
        for key in ("images", "depth", "intrinsics", "extrinsics"):
            assert np.isfinite(b[key]).all(), key
        has_valid = b["valid"].reshape(*b["valid"].shape[:2], -1).any(-1)
        assert (has_valid == b["view_mask"]).all() and b["view_mask"][:, :2].all()
    after = pipeline.skip_counts()
    assert after.get("invalid_record", 0) - before.get("invalid_record", 0) >= 2
    assert after.get("too_few_valid_views", 0) - before.get("too_few_valid_views", 0) >= 1
    assert after.get("empty_valid_view", 0) > before.get("empty_valid_view", 0)
    all_bad = InMemorySource([nan_depth, wrong_shape])
    with pytest.raises(ValueError, match="consecutive bad records"):
        next(make_train_iterator(dataclasses.replace(cfg, max_retries=4), [all_bad]))


def test_config_validation():
    with pytest.raises(ValueError, match="multiples of 14"):
        PipelineConfig(image_hw=(224, 225))
    with pytest.raises(ValueError, match="min_views"):
        PipelineConfig(min_views=3, max_views=2)
    with pytest.raises(ValueError, match="unknown"):
        PipelineConfig.from_mapping({"batch_sz": 2})
    cfg = PipelineConfig.from_mapping({"batch_size": 3, "image_hw": [28, 28]})
    assert cfg.batch_size == 3 and cfg.image_hw == (28, 28)
    with pytest.raises(ValueError, match="weights"):
        pipeline.make_dataset(PipelineConfig(**BASE), [InMemorySource([_tiny(0)])], [0.0])


def test_multiprocessing_prefetch_matches_and_resumes():
    src = SyntheticSource(4, num_views=3, height=28, width=42, seed=1)
    cfg = PipelineConfig(batch_size=2, image_hw=(28, 28), min_views=1, max_views=3, **BASE)
    expected = _take(make_train_iterator(cfg, [src]), 4)
    mp_cfg = dataclasses.replace(cfg, num_workers=1)
    it = make_train_iterator(mp_cfg, [src])
    try:
        got = _take(it, 2)
        state = it.get_state()
        got += _take(it, 2)
        _assert_batches_equal(got, expected)
        it.set_state(state)  # rewind the running workers
        _assert_batches_equal(_take(it, 2), expected[2:])
    finally:
        it.close()


def test_sensor_simulation_sparse_noisy_outliers():
    rec = _tiny(3, n=2, h=120, w=150)
    rec.depth[:, :10] = 0.0
    rec.valid[:, :10] = False
    sp = sensor.sparsify_record(rec, seed=1, keep_fraction=0.05, rel_noise=0.02,
                                outlier_fraction=0.1)
    assert sp.depth_kind == "sparse_gt" and sp.provenance["sensor_sim"]["keep_fraction"] == 0.05
    assert not (sp.valid & ~rec.valid).any() and (sp.depth[~sp.valid] == 0).all()
    frac = sp.valid.sum() / rec.valid.sum()
    assert 0.04 < frac < 0.06
    rel = np.abs(sp.depth[sp.valid] / rec.depth[sp.valid] - 1)
    assert 0.008 < np.median(rel) < 0.02  # median |N(0, .02)| = 0.0135, outliers on top
    assert 0.05 < (rel > 0.15).mean() < 0.15
    again = sensor.sparsify_record(rec, seed=1, keep_fraction=0.05, outlier_fraction=0.1)
    np.testing.assert_array_equal(again.depth, sp.depth)
    with pytest.raises(ValueError, match="keep_fraction"):
        sensor.sparsify_record(rec, keep_fraction=0.0)


def test_view_window_reference_first_and_frame_order():
    rec = _tiny(7, n=12)
    rec.extrinsics[:, :, 3] = 0.0
    rec.extrinsics[:, 0, 3] = np.arange(12)  # frame index readable from the pose
    cfg = PipelineConfig(batch_size=1, image_hw=(14, 14), min_views=3, max_views=3,
                         max_frame_gap=2, reference_frame=False, **BASE)
    refs = set()
    for b in _take(make_train_iterator(cfg, [InMemorySource([rec])]), 8):
        frames = b["extrinsics"][0, :, 0, 3].astype(int)
        refs.add(int(frames[0]))
        assert len(set(frames)) == 3 and (np.abs(frames - frames[0]) <= 2).all()
        assert (np.diff(frames[1:]) > 0).all()
    assert len(refs) >= 4


def test_reference_view_first_takes_consecutive_views_in_frame_order():
    # _tiny: identity rotations, camera translation t_v = ext[v, :, 3]; in the reference frame
    # view j's translation is t_j - t_ref, so the chosen frames can be read back.
    rec = _tiny(3, n=6)
    cfg = PipelineConfig(batch_size=1, image_hw=(14, 14), min_views=3, max_views=3,
                         reference_view="first", zoom_range=(1.0, 1.0), photometric=False, **BASE)
    t = rec.extrinsics[:, :, 3]
    starts = set()
    for b in _take(make_train_iterator(cfg, [InMemorySource([rec])]), 8):
        rel = b["extrinsics"][0, :, :, 3]
        start = int(np.argmin(np.abs(t[:4] + rel[1] - t[1:5]).sum(-1)))  # t_j = rel_j + t_ref
        starts.add(start)
        np.testing.assert_allclose(rel, t[start:start + 3] - t[start], atol=1e-5)
    assert len(starts) > 1
    with pytest.raises(ValueError, match="reference_view"):
        PipelineConfig(reference_view="middle")
