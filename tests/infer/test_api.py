"""Predictor on the real sample images with a random shortened da3-tiny (process_res 140)."""

import jax
import numpy as np
import pytest

from da3_jax.infer import poses as poses_lib
from da3_jax.model import DA3, normalize_input_extrinsics
from da3_jax.model.preprocess import preprocess_images
from tests.infer.conftest import PROCESS_RES


def test_shapes_and_processed_images(soh_pred, soh_paths):
    p = soh_pred
    assert p.depth.shape == (2, 84, 140) and p.depth.dtype == np.float32
    assert p.conf.shape == (2, 84, 140) and (p.conf >= 1).all()
    assert p.extrinsics.shape == (2, 3, 4) and p.intrinsics.shape == (2, 3, 3)
    assert np.isfinite(p.depth).all() and (p.depth > 0).all()
    _, proc, _ = preprocess_images(soh_paths, PROCESS_RES)
    np.testing.assert_array_equal(p.processed_images, proc)
    assert p.image_names == ["000.png", "010.png"]
    assert p.original_sizes == [(680, 1208), (680, 1208)]
    assert p.sky is None and p.gaussians is None and p.is_metric == 0


def test_staged_forward_matches_model_apply(predictor, soh_pred):
    """Backbone + chunked heads (2 jits) == DA3.apply in one piece."""
    norm, _, _ = preprocess_images(list(soh_pred.processed_images), PROCESS_RES)
    ref = jax.jit(DA3(predictor.config).apply)({"params": predictor.params}, norm[None])
    for key, got in (("depth", soh_pred.depth), ("depth_conf", soh_pred.conf),
                     ("extrinsics", soh_pred.extrinsics), ("intrinsics", soh_pred.intrinsics)):
        np.testing.assert_allclose(got, np.asarray(ref[key])[0], rtol=1e-4, atol=1e-5,
                                   err_msg=key)


def test_content_change_does_not_recompile(predictor, soh_pred, soh_paths):
    count = predictor.forward.trace_count
    imgs = [np.asarray(im, np.float32) / 255.0 for im in soh_pred.processed_images[::-1]]
    out = predictor.predict(imgs, process_res=PROCESS_RES)  # float [0, 1] arrays
    assert predictor.forward.trace_count == count
    np.testing.assert_allclose(out.depth, soh_pred.depth[::-1], rtol=1e-4, atol=1e-5)


def test_heads_in_chunks_are_exact(predictor, soh_pred, soh_paths):
    fwd = predictor.forward
    old = fwd.max_views_per_device
    fwd.max_views_per_device = 1
    try:
        out = predictor.predict(soh_paths, process_res=PROCESS_RES)
    finally:
        fwd.max_views_per_device = old
    np.testing.assert_allclose(out.depth, soh_pred.depth, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.extrinsics, soh_pred.extrinsics, rtol=1e-5, atol=1e-6)


def test_batch_of_scenes_equals_single_scenes(predictor, soh_pred, soh_paths):
    rev = predictor.predict(soh_paths[::-1], process_res=PROCESS_RES)
    outs = predictor.predict_batch([soh_paths, {"images": soh_paths[::-1]}],
                                   process_res=PROCESS_RES)
    for got, want in zip(outs, (soh_pred, rev), strict=True):
        np.testing.assert_allclose(got.depth, want.depth, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got.extrinsics, want.extrinsics, rtol=1e-4, atol=1e-5)
        assert got.image_names == want.image_names


def test_input_forms_give_the_same_network_input(predictor, soh_paths):
    from PIL import Image

    ref = predictor._prepare(soh_paths[:1], None, None, PROCESS_RES, "upper_bound_resize")
    u8 = np.asarray(Image.open(soh_paths[0]).convert("RGB"))
    for form in (soh_paths[0], u8, u8[None], u8.astype(np.float32) / 255.0, [u8]):
        got = predictor._prepare(form, None, None, PROCESS_RES, "upper_bound_resize")
        np.testing.assert_array_equal(got["norm"], ref["norm"])


def _maupertuis(shared_data, n):
    from da3_jax.infer.io import read_colmap_folder

    inp = read_colmap_folder(str(shared_data / "colmap_maupertuis"))
    return inp.images[:n], inp.extrinsics[:n], inp.intrinsics[:n]


def _centres(w2c):
    return -np.einsum("nji,nj->ni", w2c[:, :3, :3], w2c[:, :3, 3])


def test_posed_two_views_aligned(predictor, shared_data):
    """Two views (the official evo Umeyama raises 'degenerate covariance' here): the Sim(3)
    maps the two input centres exactly onto the predicted ones; s = ratio of baselines."""
    imgs, ext, k = _maupertuis(shared_data, 2)
    out = predictor.predict(imgs, ext, k, process_res=PROCESS_RES)
    out34 = predictor.predict(imgs, ext[:, :3], k, process_res=PROCESS_RES)
    np.testing.assert_array_equal(out.depth, out34.depth)
    np.testing.assert_allclose(out.extrinsics, ext[:, :3], atol=1e-6)
    norm, _, k_proc = preprocess_images(imgs, PROCESS_RES, intrinsics=k)
    np.testing.assert_allclose(out.intrinsics, k_proc, rtol=1e-6)
    # reference: the raw network output (same compiled function, no recompilation)
    ext_n = np.asarray(normalize_input_extrinsics(ext[None].astype(np.float32)))
    raw = predictor.forward(norm[None], ext_n, k_proc[None])
    c_pred = _centres(raw["extrinsics"][0].astype(np.float64))
    c_in = _centres(ext)
    s = np.linalg.norm(c_pred[1] - c_pred[0]) / np.linalg.norm(c_in[1] - c_in[0])
    np.testing.assert_allclose(out.depth, raw["depth"][0] / s, rtol=1e-4)
    np.testing.assert_allclose(out.scale_factor, s, rtol=1e-4)
    free = predictor.predict(imgs, ext, k, process_res=PROCESS_RES, align_to_input_scale=False)
    np.testing.assert_allclose(free.depth, raw["depth"][0], rtol=1e-5)
    scale = np.abs(c_pred).max() + 1e-3
    np.testing.assert_allclose(_centres(free.extrinsics.astype(np.float64)), c_pred,
                               atol=1e-4 * scale)


def test_posed_single_view(predictor, shared_data):
    imgs, ext, k = _maupertuis(shared_data, 1)
    out = predictor.predict(imgs, ext, k, process_res=PROCESS_RES)
    assert out.depth.shape == (1, 84, 140) and np.isfinite(out.depth).all()
    np.testing.assert_allclose(out.extrinsics, ext[:, :3], atol=1e-6)
    assert out.scale_factor == 1.0


def test_bad_input_rejected_before_model_work(predictor, soh_paths, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("model ran")

    monkeypatch.setattr(predictor, "forward", boom)
    k = np.tile(np.diag([500.0, 500.0, 1.0]), (2, 1, 1))
    e = np.tile(np.eye(4), (2, 1, 1))
    cases = [
        (dict(extrinsics=e), "without intrinsics"),
        (dict(intrinsics=k), "without extrinsics"),
        (dict(extrinsics=e[:1], intrinsics=k[:1]), "expected 2 cameras"),
        (dict(process_res_method="nope"), "process_res_method"),
    ]
    for kwargs, msg in cases:
        with pytest.raises(ValueError, match=msg):
            predictor.predict(soh_paths, **kwargs)
    with pytest.raises(ValueError, match="too small"):
        predictor.predict(np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(ValueError, match="enlarged"):
        predictor.predict(np.zeros((30, 30, 3), np.uint8), process_res=504)
    with pytest.raises(ValueError, match="not found"):
        predictor.predict(["/nonexistent/x.png"])


def test_alignment_module_used_for_many_views():
    assert poses_lib.RANSAC_MIN_VIEWS == 10 and poses_lib.RANSAC_SEED == 42


def test_view_parallel_matches_single_device(predictor, soh_pred, soh_paths):
    """8 simulated devices: the 2 views sharded over a 2-way 'view' axis (all-gather attention
    from da3_jax.parallel) give the single-device result."""
    fwd = predictor.forward
    assert len(jax.devices()) >= 2
    fwd.view_parallel = True
    try:
        assert fwd._mesh_for(2) is not None
        out = predictor.predict(soh_paths, process_res=PROCESS_RES)
    finally:
        fwd.view_parallel = False
    np.testing.assert_allclose(out.depth, soh_pred.depth, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(out.extrinsics, soh_pred.extrinsics, rtol=2e-4, atol=2e-5)


def test_from_training_checkpoint(predictor, tmp_path):
    from da3_jax.infer import Predictor
    from da3_jax.train import checkpoint as train_ckpt

    params = jax.tree.map(np.asarray, predictor.params)
    mgr = train_ckpt.make_manager(str(tmp_path), async_save=False)
    train_ckpt.save(mgr, 7, {"params": params, "step": np.int32(7)})
    mgr.wait_until_finished()
    with pytest.raises(ValueError, match="config"):
        Predictor.from_checkpoint(str(tmp_path))
    loaded = Predictor.from_checkpoint(str(tmp_path), config=predictor.config)
    for a, b in zip(jax.tree.leaves(loaded.params), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a converted checkpoint"):
        Predictor.from_checkpoint(str(tmp_path / "empty"))
    (tmp_path / "x.ckpt").write_text("x")
    with pytest.raises(ValueError, match="safetensors"):
        Predictor.from_checkpoint(str(tmp_path / "x.ckpt"))


def test_view_parallel_padded_views_match_single_device(predictor, soh_paths, monkeypatch):
    """3 views on 2 devices: the forward pads to 4 views (view axis 2), masks the padded view
    out of cross-view attention and reference selection, and equals the single-device run."""
    paths = soh_paths + soh_paths[:1]
    ref = predictor.predict(paths, process_res=PROCESS_RES)
    fwd = predictor.forward
    two = jax.devices()[:2]
    monkeypatch.setattr(jax, "devices", lambda *a: two)
    fwd.view_parallel = True
    try:
        mesh = fwd._mesh_for(3)
        assert dict(mesh.shape)["view"] == 2
        out = predictor.predict(paths, process_res=PROCESS_RES)
    finally:
        fwd.view_parallel = False
    np.testing.assert_allclose(out.depth, ref.depth, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(out.extrinsics, ref.extrinsics, rtol=2e-4, atol=2e-5)
