"""Sensor-like sparsification and RANSAC pseudo-labelling against the known dense GT."""

import jax
import ml_collections
import numpy as np

from da3_jax.train import pseudo_label
from data_pipelines.synthetic.render import render_scene


def test_sparsify_drops_90_percent_and_adds_outliers():
    rec = render_scene(0, 2, 28, 28, seed=7)
    sparse = pseudo_label.sparsify_depth(rec, np.random.default_rng(0), keep_frac=0.05,
                                         noise_std=0.02, outlier_frac=0.1)
    assert sparse.depth_kind == "sparse_gt"
    assert sparse.valid.sum() <= 0.1 * rec.valid.sum() and sparse.valid.sum() > 0
    assert not (sparse.valid & ~rec.valid).any()
    rel = np.abs(sparse.depth[sparse.valid] / rec.depth[sparse.valid] - 1)
    assert 0.005 < np.median(rel) < 0.05  # noisy
    assert (rel > 0.2).mean() > 0.03  # outliers present


def test_label_record_recovers_dense_depth_from_affine_teacher():
    rec = render_scene(1, 2, 28, 28, seed=7)
    sparse = pseudo_label.sparsify_depth(rec, np.random.default_rng(1), keep_frac=0.1,
                                         noise_std=0.01, outlier_frac=0.15)
    truth = {i: rec.depth[i] for i in range(rec.num_views)}
    calls = []

    def teacher(x):  # relative depth: an unknown affine map of the truth, per view
        i = len(calls)
        calls.append(x.shape)
        return ((truth[i] - 0.3 * (i + 1)) / (2.0 + i))[None, None]

    ransac = ml_collections.ConfigDict(dict(num_iters=64, threshold=None, min_inliers=8))
    out = pseudo_label.label_record(teacher, sparse, jax.random.PRNGKey(0), "ckpt/7", ransac)
    assert calls == [(1, 1, 28, 28, 3)] * 2
    assert out.depth_kind == "pseudo_label" and out.provenance["teacher_checkpoint"] == "ckpt/7"
    np.testing.assert_allclose(out.provenance["scale"], [2.0, 3.0], rtol=0.03)
    np.testing.assert_allclose(out.provenance["shift"], [0.3, 0.6], atol=0.1)
    assert min(out.provenance["inliers"]) >= 0.7 * sparse.valid.sum() / 2
    assert max(out.provenance["residual"]) < 0.05
    m = rec.valid & out.valid
    assert m.sum() > 0.9 * rec.valid.sum()
    assert np.median(np.abs(out.depth[m] / rec.depth[m] - 1)) < 0.02


def test_pseudo_labels_valid_on_surfaces_only():
    # Object scenes: a third of the pixels is sky (invalid GT). The sensor samples surfaces only,
    # so pseudo-labels may be valid near samples but must leave (almost all) sky invalid.
    from data_pipelines.synthetic.scenes import SceneConfig

    rec = render_scene(4, 3, 56, 56, seed=1, cfg=SceneConfig(room_prob=0.0))
    sky = ~rec.valid
    assert sky.mean() > 0.15
    sparse = pseudo_label.sparsify_depth(rec, np.random.default_rng(2))

    def teacher(x):  # a perfect relative-depth teacher that predicts something in the sky too
        i = teacher.calls
        teacher.calls += 1
        return np.where(rec.valid[i], rec.depth[i], 50.0)[None, None]

    teacher.calls = 0
    ransac = ml_collections.ConfigDict(dict(num_iters=64, threshold=None, min_inliers=8))
    out = pseudo_label.label_record(teacher, sparse, jax.random.PRNGKey(0), "ckpt/1", ransac)
    assert (out.valid & sky).sum() < 0.2 * sky.sum()  # was: every sky pixel valid
    assert (out.valid & rec.valid).sum() > 0.9 * rec.valid.sum()
    support = pseudo_label.surface_support(sparse.valid)
    assert not (out.valid & ~support).any()
