"""Loss terms vs hand-computed / float64 NumPy values; masks, NaN targets, all-invalid grads."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from da3_jax.train import losses


def test_depth_conf_loss_hand_computed():
    d = jnp.array([[1.0, 2.0], [3.0, 4.0]])
    t = jnp.array([[1.5, 2.0], [jnp.nan, 1.0]])  # NaN sits under an invalid pixel
    c = jnp.array([[2.0, 1.0], [5.0, 3.0]])
    m = jnp.array([[1, 1], [0, 1]], bool)
    # valid: (2*0.5 - 0.5 log 2), (1*0 - 0.5 log 1), (3*3 - 0.5 log 3); mean over 3.
    want = ((1.0 - 0.5 * np.log(2)) + 0.0 + (9.0 - 0.5 * np.log(3))) / 3
    got = losses.depth_conf_loss(d, c, t, m, lambda_c=0.5)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_gradient_loss_hand_computed():
    d = jnp.array([[0.0, 1.0, 3.0], [0.0, 0.0, 0.0]])
    t = jnp.zeros((2, 3))
    m = jnp.array([[1, 1, 1], [1, 0, 1]], bool)
    # x pairs valid: (0,0)-(0,1): |1|, (0,1)-(0,2): |2|; row 1 has no valid pair -> mean 1.5
    # y pairs valid: col0 |0-0|=0, col2 |0-3|=3 -> mean 1.5
    np.testing.assert_allclose(losses.gradient_loss(d, t, m), 3.0, rtol=1e-6)
    # constant offsets are invisible to the gradient loss
    np.testing.assert_allclose(losses.gradient_loss(t + 7.0, t, m), 0.0, atol=1e-6)


def test_ray_point_camera_losses_hand_computed():
    rng = np.random.default_rng(0)
    ray, tgt = rng.normal(size=(2, 3, 4, 6)), rng.normal(size=(2, 3, 4, 6))
    m = rng.random((2, 3, 4)) > 0.4
    err = np.abs(ray - tgt).sum(-1)
    np.testing.assert_allclose(losses.ray_loss(ray, tgt, m), err[m].mean(), rtol=1e-5)
    pts, ptgt = ray[..., :3], tgt[..., :3]
    np.testing.assert_allclose(
        losses.point_loss(pts, ptgt, m), np.abs(pts - ptgt).sum(-1)[m].mean(), rtol=1e-5
    )
    pe, pt = rng.normal(size=(2, 3, 9)), rng.normal(size=(2, 3, 9))
    cm = np.array([[1, 0, 1], [0, 0, 0]], bool)
    np.testing.assert_allclose(
        losses.camera_loss(pe, pt, cm), np.abs(pe - pt).sum(-1)[cm].mean(), rtol=1e-5
    )


def test_masked_pixels_do_not_matter():
    rng = np.random.default_rng(1)
    d, t, c = rng.random((2, 5, 6)) + 0.5, rng.random((2, 5, 6)) + 0.5, rng.random((2, 5, 6)) + 1
    m = rng.random((2, 5, 6)) > 0.5
    d2 = np.where(m, d, 1e6)
    c2 = np.where(m, c, np.inf)
    for a, b in [
        (losses.depth_conf_loss(d, c, t, m), losses.depth_conf_loss(d2, c2, t, m)),
        (losses.gradient_loss(d, t, m), losses.gradient_loss(d2, t, m)),
    ]:
        np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.parametrize("name", ["depth", "grad", "ray", "point", "camera", "ssi"])
def test_all_invalid_mask_zero_loss_finite_grads(name):
    rng = np.random.default_rng(2)
    d = jnp.asarray(rng.random((2, 2, 6, 6)) + 0.5, jnp.float32)
    t = jnp.full((2, 2, 6, 6), jnp.nan)
    m = jnp.zeros((2, 2, 6, 6), bool)
    fns = {
        "depth": lambda x: losses.depth_conf_loss(x, x + 1.0, t, m),
        "grad": lambda x: losses.gradient_loss(x, t, m),
        "ray": lambda x: losses.ray_loss(jnp.repeat(x[..., None], 6, -1), t[..., None], m),
        "point": lambda x: losses.point_loss(jnp.repeat(x[..., None], 3, -1), t[..., None], m),
        "camera": lambda x: losses.camera_loss(x[:, :, 0, :9 - 3].repeat(2, -1)[..., :9],
                                               jnp.full((2, 2, 9), jnp.nan), m[:, :, 0, 0]),
        "ssi": lambda x: losses.ssi_exp_depth_loss(x, t, m),
    }
    val, grad = jax.value_and_grad(fns[name])(d)
    assert float(val) == 0.0
    assert np.all(np.isfinite(np.asarray(grad))) and float(jnp.abs(grad).max()) == 0.0


def test_ssi_loss_is_affine_invariant_and_hand_checked():
    rng = np.random.default_rng(3)
    t = jnp.asarray(rng.random((2, 1, 5, 5)) + 1.0, jnp.float32)
    m = jnp.asarray(rng.random((2, 1, 5, 5)) > 0.3)
    np.testing.assert_allclose(losses.ssi_exp_depth_loss(3.0 * t + 2.0, t, m), 0.0, atol=1e-5)
    # Hand case: constant pred normalises to 0, so loss = mean|n(t)| = 1 by construction of n.
    np.testing.assert_allclose(losses.ssi_exp_depth_loss(jnp.ones_like(t), t, m), 1.0, rtol=1e-5)
    # A negative scale is *not* invariant: n(-t) = -n(t), loss = 2 mean|n(t)| = 2.
    np.testing.assert_allclose(losses.ssi_exp_depth_loss(5.0 - t, t, m), 2.0, rtol=1e-5)
    # Hand case on one 1x4 map: t = [1, 2, 3, 6] (mean 3, spread 1.5), pred = [1, 1, 1, 2]
    # (mean 1.25, spread 0.375): n(t) = [-4/3, -2/3, 0, 2], n(p) = [-2/3, -2/3, -2/3, 2].
    t1 = jnp.array([[[1.0, 2.0, 3.0, 6.0]]])
    p1 = jnp.array([[[1.0, 1.0, 1.0, 2.0]]])
    want = (2 / 3 + 0 + 2 / 3 + 0) / 4
    np.testing.assert_allclose(losses.ssi_exp_depth_loss(p1, t1, jnp.ones_like(t1, bool)), want,
                               rtol=1e-5)
    g = jax.grad(lambda d: losses.ssi_exp_depth_loss(d, t, m))(t**2)
    assert np.all(np.isfinite(np.asarray(g))) and float(jnp.abs(g).max()) > 0


def _np_points(depth, w2c, k):
    """float64 reference unprojection at pixel centres: X_w = R^T (D K^-1 [u+.5, v+.5, 1] - t)."""
    h, w = depth.shape[-2:]
    v, u = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
    pix = np.stack([u, v, np.ones_like(u)], -1)
    cam = depth[..., None] * np.einsum("...ij,hwj->...hwi", np.linalg.inv(k), pix)
    r, t = w2c[..., :3, :3], w2c[..., :3, 3]
    return np.einsum("...ji,...hwj->...hwi", r, cam - t[..., None, None, :])


def _random_batch(rng, b=2, n=3, h=6, w=8):
    from scipy.spatial.transform import Rotation

    rot = Rotation.random(b * n, random_state=1).as_matrix().reshape(b, n, 3, 3)
    ext = np.concatenate([rot, rng.normal(size=(b, n, 3, 1))], -1)
    k = np.tile(np.array([[7.0, 0, 4.1], [0, 6.5, 2.9], [0, 0, 1]]), (b, n, 1, 1))
    depth = rng.random((b, n, h, w)) * 3 + 0.5
    valid = rng.random((b, n, h, w)) > 0.2
    return {"depth": depth, "valid": valid, "extrinsics": ext, "intrinsics": k}


def test_targets_match_float64_reference():
    from da3_jax.train import targets

    rng = np.random.default_rng(4)
    batch = _random_batch(rng)
    tg = targets.make_targets({k: jnp.asarray(v) for k, v in batch.items()}, (3, 4))
    # reference: view 0's frame, scale = mean |X| over valid pixels of the scene
    e = np.concatenate([batch["extrinsics"], np.tile([[[[0, 0, 0, 1.0]]]], (2, 3, 1, 1))], -2)
    e_ref = e @ np.linalg.inv(e[:, :1])
    pts = _np_points(batch["depth"], e_ref, batch["intrinsics"])
    scale = np.array([np.linalg.norm(pts[i], axis=-1)[batch["valid"][i]].mean() for i in range(2)])
    np.testing.assert_allclose(tg["scale"], scale, rtol=1e-4)
    want_depth = np.where(batch["valid"], batch["depth"], 0) / scale[:, None, None, None]
    np.testing.assert_allclose(tg["depth"], want_depth, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(tg["extrinsics"][..., :3], e_ref[..., :3, :3], atol=1e-5)
    np.testing.assert_allclose(tg["extrinsics"][..., 3], e_ref[..., :3, 3] / scale[:, None, None],
                               rtol=1e-4, atol=1e-5)
    e_n = e_ref.copy()
    e_n[..., :3, 3] /= scale[:, None, None]
    np.testing.assert_allclose(tg["points"], _np_points(want_depth, e_n, batch["intrinsics"]),
                               rtol=1e-4, atol=1e-5)
    # rays at 3x4 = the image grid downsampled by 2: K scaled by 1/2, origin = camera centre
    k_half = batch["intrinsics"].copy()
    k_half[..., :2, :] /= 2
    ones = np.ones((2, 3, 3, 4))
    d_ref = _np_points(ones, e_n, k_half) - _np_points(0 * ones, e_n, k_half)
    np.testing.assert_allclose(tg["ray"][..., :3], d_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(tg["ray"][..., 3:], _np_points(0 * ones, e_n, k_half), atol=1e-5)


def test_ray_loss_with_confidence_matches_float64_and_trains_conf():
    rng = np.random.default_rng(3)
    ray, tgt = rng.normal(size=(2, 3, 4, 6)), rng.normal(size=(2, 3, 4, 6))
    conf = 1.0 + np.exp(rng.normal(size=(2, 3, 4)))
    m = rng.random((2, 3, 4)) > 0.4
    err = np.abs(ray - tgt).sum(-1)
    want = (conf * err - 0.7 * np.log(conf))[m].mean()
    got = losses.ray_loss(ray, tgt, m, jnp.asarray(conf), lambda_c=0.7)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    g = jax.grad(lambda c: losses.ray_loss(ray, tgt, m, c, lambda_c=0.7))(jnp.asarray(conf))
    np.testing.assert_allclose(g, np.where(m, err - 0.7 / conf, 0) / m.sum(), rtol=1e-4, atol=1e-7)


def test_da3_loss_zero_at_perfect_prediction_and_positive_otherwise():
    from da3_jax.train import targets

    rng = np.random.default_rng(5)
    batch = {k: jnp.asarray(v) for k, v in _random_batch(rng, h=8, w=8).items()}
    tg = targets.make_targets(batch, (8, 8))
    outputs = {"depth": tg["depth"], "depth_conf": jnp.ones_like(tg["depth"]),
               "ray": tg["ray"], "pose_enc": tg["pose_enc"]}
    total, terms = losses.da3_loss(outputs, tg, losses.LossWeights())
    for k, v in terms.items():
        np.testing.assert_allclose(v, 0.0, atol=2e-5, err_msg=k)
    bad = dict(outputs, pose_enc=outputs["pose_enc"] + 0.1)
    total, terms = losses.da3_loss(bad, tg, losses.LossWeights(beta=2.0))
    np.testing.assert_allclose(terms["loss_camera"], 0.9, rtol=1e-4)
    np.testing.assert_allclose(total, 1.8, rtol=1e-3)
    # unknown cameras: no camera / ray / point loss at all
    tg_nocam = dict(tg, camera_valid=jnp.zeros_like(tg["camera_valid"]))
    _, terms = losses.da3_loss(dict(bad, ray=bad["ray"] + 1.0), tg_nocam, losses.LossWeights())
    assert float(terms["loss_camera"]) == 0.0 and float(terms["loss_ray"]) == 0.0
    assert float(terms["loss_point"]) == 0.0
