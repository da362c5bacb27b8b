"""Streaming inference: chunking, Sim(3) alignment with outliers, sim(3) pose graph, loop
closure and resume after a kill, against known ground truth (float64 NumPy / SciPy
references); the oracle predictor puts every chunk in a random Sim(3) gauge."""

import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.linalg
from scipy.spatial.transform import Rotation

from da3_jax.eval.streaming import OracleChunks, loop_scene, thumbnail_descriptors
from da3_jax.eval.trajectory import ate, seam_consistency
from da3_jax.infer import sim3
from da3_jax.infer.streaming import (
    StreamingConfig,
    StreamingRun,
    chunk_ranges,
    fit_sim3,
    owners,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def loop120():
    return loop_scene(120, 24, 32)


def _generator(xi):
    rho, w, sigma = xi[:3], xi[3:6], xi[6]
    g = np.zeros((4, 4))
    g[:3, :3] = sigma * np.eye(3) + np.array([[0, -w[2], w[1]], [w[2], 0, -w[0]],
                                               [-w[1], w[0], 0]])
    g[:3, 3] = rho
    return g


def _v64(w, sigma):
    """Closed-form V of the sim(3) exponential (integral of e^(s tau) R(tau w), float64)."""
    th = np.linalg.norm(w)
    s = np.exp(sigma)
    c0 = 1.0 if sigma == 0 else (s - 1) / sigma
    if th < 1e-12:
        return c0 * np.eye(3)
    om = _generator(np.r_[0, 0, 0, w, 0])[:3, :3]
    den = sigma**2 + th**2
    c1 = (s * (sigma * np.sin(th) - th * np.cos(th)) + th) / den
    c2 = c0 - (s * (sigma * np.cos(th) + th * np.sin(th)) - sigma) / den
    return c0 * np.eye(3) + c1 / th * om + c2 / th**2 * om @ om


def _exp64(xi):
    m = np.eye(4)
    m[:3, :3] = np.exp(xi[6]) * Rotation.from_rotvec(xi[3:6]).as_matrix()
    m[:3, 3] = _v64(xi[3:6], xi[6]) @ xi[:3]
    return m


def _log64(m):
    s = np.cbrt(np.linalg.det(m[:3, :3]))
    w = Rotation.from_matrix(m[:3, :3] / s).as_rotvec()
    return np.r_[np.linalg.solve(_v64(w, np.log(s)), m[:3, 3]), w, np.log(s)]


def test_chunk_ranges_fixed_shape_and_owners():
    for n, c, o in [(10, 4, 2), (100, 24, 8), (25, 10, 3), (5, 8, 4), (24, 24, 8)]:
        r = chunk_ranges(n, c, o)
        assert all(e - s == min(c, n) for s, e in r) and r[0][0] == 0 and r[-1][1] == n
        assert all(a[1] - b[0] >= o for a, b in zip(r, r[1:], strict=False))
        own = owners(r, n)
        assert all(r[k][0] <= f < r[k][1] for f, k in enumerate(own))
    assert chunk_ranges(10, 4, 2) == [(0, 4), (2, 6), (4, 8), (6, 10)]
    with pytest.raises(ValueError, match="overlap"):
        StreamingConfig(chunk=8, overlap=8).validate()


def test_sim3_exp_log_match_scipy():
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        xi = rng.normal(size=(6, 7)) * [1, 1, 1, 0.9, 0.9, 0.9, 0.4]
        xi[0, 3:6] = 0.0  # pure translation + scale
        m = np.asarray(jax.jit(sim3.exp)(jnp.asarray(xi)))
        np.testing.assert_allclose(m, [scipy.linalg.expm(_generator(x)) for x in xi], atol=1e-12)
        np.testing.assert_allclose(np.asarray(jax.jit(sim3.log)(jnp.asarray(m))), xi, atol=1e-10)
    m = sim3.matrix(0.3, Rotation.random(random_state=1).as_matrix(), [1, -2, 3])
    np.testing.assert_allclose(sim3.inverse(m), np.linalg.inv(m), atol=1e-12)


def test_fit_sim3_rejects_outliers():
    """40 % gross outliers, 0.5 % noise: the fit equals float64 Umeyama on the clean points."""
    rng = np.random.default_rng(1)
    src = rng.normal(size=(2048, 3)) * [2, 1, 0.5] + [0, 0, 4]
    truth = sim3.matrix(0.6, Rotation.random(random_state=2).as_matrix(), [1e3, 2.0, -3.0])
    dst = src @ truth[:3, :3].T + truth[:3, 3] + rng.normal(size=src.shape) * 0.005
    bad = rng.random(len(src)) < 0.4
    dst[bad] += rng.normal(size=(bad.sum(), 3)) * 3
    conf = 1 + rng.random(len(src))
    m, inliers = fit_sim3(src, dst, conf, conf, conf_percentile=0.0)
    assert 0.5 * len(src) < inliers <= (~bad).sum() + 20
    np.testing.assert_allclose(sim3.split(m)[0], 0.6, rtol=2e-3)
    np.testing.assert_allclose(m[:3, :3], truth[:3, :3], atol=2e-3)
    np.testing.assert_allclose(src[~bad] @ m[:3, :3].T + m[:3, 3],
                               src[~bad] @ truth[:3, :3].T + truth[:3, 3], atol=0.02)


def test_pose_graph_against_float64_reference():
    """Exact edges from a perturbed start: the truth is recovered. Noisy odometry + two loop
    edges: the LM result is a stationary point of the same weighted sim(3) least squares
    written in closed form in float64 NumPy (central-difference gradient ~ 0), below the
    odometry chain's cost."""
    rng = np.random.default_rng(3)
    k = 5
    truth = np.stack([np.eye(4)] + [sim3.matrix(
        np.exp(rng.normal() * 0.3), Rotation.random(random_state=i).as_matrix(),
        rng.normal(size=3)) for i in range(1, k)])
    edges = [(i, i + 1) for i in range(k - 1)] + [(0, k - 1), (1, 3)]
    exact = np.stack([sim3.inverse(truth[i]) @ truth[j] for i, j in edges])
    init = np.stack([truth[0]] + [t @ _exp64(rng.normal(size=7) * 0.1) for t in truth[1:]])
    opt, info = sim3.optimize_pose_graph(init, edges, exact, iters=20)
    np.testing.assert_allclose(opt, truth, atol=1e-8)
    assert info["cost"] < 1e-16 < info["cost_init"]

    noisy = exact.copy()
    for e in range(k - 1):
        noisy[e] = noisy[e] @ _exp64(rng.normal(size=7) * 0.05)
    w = np.array([1.0] * (k - 1) + [4.0, 4.0])
    chain = [np.eye(4)]
    for e in range(k - 1):
        chain.append(chain[-1] @ noisy[e])
    opt, info = sim3.optimize_pose_graph(np.stack(chain), edges, noisy, w, iters=20)

    def cost(x):
        p = [np.eye(4)] + [opt[i + 1] @ _exp64(x[7 * i: 7 * i + 7]) for i in range(k - 1)]
        r = np.concatenate([np.sqrt(wi) * _log64(np.linalg.inv(m) @ np.linalg.inv(p[i]) @ p[j])
                            for (i, j), m, wi in zip(edges, noisy, w, strict=True)])
        return r @ r

    h = 1e-6
    grad = [(cost(h * e) - cost(-h * e)) / (2 * h) for e in np.eye(7 * (k - 1))]
    assert np.abs(grad).max() < 1e-5
    np.testing.assert_allclose(cost(np.zeros(7 * (k - 1))), info["cost"], rtol=1e-6)
    assert info["cost"] < 0.5 * info["cost_init"]


def test_streaming_recovers_trajectory_through_random_gauges(loop120, tmp_path):
    """Every chunk in a random Sim(3) gauge, 12 % depth outliers per chunk: the aligned
    trajectory equals the truth up to one global Sim(3); the seams agree."""
    images, depth, w2c, k = loop120
    oracle = OracleChunks(depth, w2c, k, outliers=0.12, seed=4)
    cfg = StreamingConfig(chunk=16, overlap=8, align_points=1024)
    res = StreamingRun(tmp_path, len(depth), oracle, cfg).run()
    extent = np.ptp(-np.einsum("nji,nj->ni", w2c[:, :, :3], w2c[:, :, 3]), axis=0).max()
    assert ate(res.w2c, w2c) < 1e-3 * extent
    seams = seam_consistency(res)
    assert seams["seam_frames"] == sum(a[1] - b[0] for a, b in zip(res.ranges, res.ranges[1:],
                                                                  strict=False))
    assert seams["seam_rel_mean"] < 1e-3  # outlier pixels differ, the median does not
    np.testing.assert_allclose(res.intrinsics, k, rtol=1e-6)


def test_loop_closure_reduces_drift(tmp_path):
    """Bent chunks make sequential alignment drift; closing the loop (thumbnail retrieval,
    loop chunk, pose graph) brings the ATE down."""
    images, depth, w2c, k = loop_scene(240, 24, 32)
    noise = dict(bend_deg=1.0, bend_scale=0.02, depth_noise=0.01, outliers=0.1, seed=0)
    desc = thumbnail_descriptors(images)
    cfg = dict(chunk=12, overlap=4, align_points=1024)
    results = {}
    for lc in (False, True):
        oracle = OracleChunks(depth, w2c, k, desc, **noise)
        results[lc] = StreamingRun(tmp_path / str(lc), len(depth), oracle,
                                   StreamingConfig(loop_closure=lc, **cfg)).run()
    loops = [lp for lp in results[True].loops if lp["used"]]
    assert loops and all(lp["b"] - lp["a"] >= 24 for lp in loops)
    assert any(lp["a"] < 12 and lp["b"] >= 228 for lp in loops)  # the start is revisited
    assert ate(results[True].w2c, w2c) < 0.8 * ate(results[False].w2c, w2c)


_KILL_SCRIPT = """
import os, signal, sys
import numpy as np
from da3_jax.eval.streaming import OracleChunks, loop_scene
from da3_jax.infer.streaming import StreamingConfig, StreamingRun
_, depth, w2c, k = loop_scene(120, 24, 32)
oracle = OracleChunks(depth, w2c, k, outliers=0.1, seed=6)
def predict(frames):
    if frames[0] == 3 * 8:  # the 4th chunk: killed while predicting it
        os.kill(os.getpid(), signal.SIGKILL)
    return oracle(frames)
StreamingRun(sys.argv[1], 120, predict, StreamingConfig(chunk=16, overlap=8,
             align_points=1024)).run()
"""


def test_resume_after_kill(loop120, tmp_path):
    _, depth, w2c, k = loop120
    cfg = StreamingConfig(chunk=16, overlap=8, align_points=1024)
    proc = subprocess.run([sys.executable, "-c", _KILL_SCRIPT, str(tmp_path / "run")],
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert sorted(os.listdir(tmp_path / "run")) == [
        "chunk_00000.npz", "chunk_00001.npz", "chunk_00002.npz", "state.json"]
    oracle = OracleChunks(depth, w2c, k, outliers=0.1, seed=6)
    resumed = StreamingRun(tmp_path / "run", 120, oracle, cfg).run()
    assert [c[0] for c in oracle.calls] == [24, 32, 40, 48, 56, 64, 72, 80, 88, 96, 104]
    reference = StreamingRun(tmp_path / "ref", 120, OracleChunks(depth, w2c, k, outliers=0.1,
                                                                 seed=6), cfg).run()
    np.testing.assert_array_equal(resumed.w2c, reference.w2c)
    np.testing.assert_array_equal(resumed.depth(50), reference.depth(50))
    other = StreamingRun(tmp_path / "run", 120, oracle, StreamingConfig(chunk=16, overlap=4))
    with pytest.raises(ValueError, match="another input or configuration"):
        other.run()


def test_view_descriptor_is_pooled_backbone_feature(predictor, soh_paths):
    """`Prediction.descriptor`: the last out-layer patch tokens of the backbone stage (the
    features the heads decode), mean-pooled over patches and L2-normalised (float64 ref)."""
    from da3_jax.model.preprocess import preprocess_images
    from tests.infer.conftest import PROCESS_RES

    pred = predictor.predict(soh_paths, process_res=PROCESS_RES, with_descriptor=True)
    norm = preprocess_images(soh_paths, PROCESS_RES)[0][None]
    backbone = predictor.forward._backbone_fn(None, "saddle_balanced", False)  # cached jit
    tokens = np.asarray(backbone(predictor.params, norm, None, None)[-1][0], np.float64)[0]
    ref = tokens.mean(1)
    ref /= np.linalg.norm(ref, axis=-1, keepdims=True)
    assert pred.descriptor.shape == (2, tokens.shape[-1])
    np.testing.assert_allclose(pred.descriptor, ref, atol=1e-5)


def test_posed_chunks_keep_the_input_gauge(loop120, tmp_path):
    """With input poses the predictor returns chunks already in the input world: no
    alignment is applied (every node is the identity) and the poses come out unchanged."""
    _, depth, w2c, k = loop120
    predict = lambda f: dict(depth=depth[f], conf=np.ones_like(depth[f]), extrinsics=w2c[f],
                             intrinsics=k[f])
    res = StreamingRun(tmp_path, len(depth), predict, StreamingConfig(chunk=16, overlap=8),
                       posed=True).run()
    np.testing.assert_array_equal(res.world_from_chunk, np.tile(np.eye(4), (len(res.ranges),
                                                                            1, 1)))
    np.testing.assert_allclose(res.w2c, w2c, atol=1e-6)
    np.testing.assert_allclose(res.depth(37), depth[37], rtol=1e-6)
