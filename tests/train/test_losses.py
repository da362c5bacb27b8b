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
