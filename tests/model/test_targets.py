"""The prediction-target ablation knob (``config.targets``): heads' outputs, parameters, which
loss terms are active, the point-map loss, and cameras from a point map (float64 references)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from da3_jax import geometry
from da3_jax.model import DA3, configs, get_config
from da3_jax.train import losses, targets

HW = 28


def _tiny(targets_value: str):
    c = get_config("da3-tiny")
    c.update(depth=4, embed_dim=48, num_heads=2, out_layers=(0, 1, 2, 3), cam_enc_heads=2,
             cam_enc_depth=1, head_features=8, head_out_channels=(8, 8, 16, 16))
    c.targets = targets_value
    return c


@pytest.fixture(scope="module")
def outputs():
    """``{targets: (param shapes, output shapes)}`` of the same tiny model for every target set
    (traced with ``jax.eval_shape``: no compile)."""
    x = jax.ShapeDtypeStruct((1, 2, HW, HW, 3), jnp.float32)
    out = {}
    for t in configs.TARGETS:
        model = DA3(_tiny(t))
        params = jax.eval_shape(lambda x, m=model: m.init(jax.random.PRNGKey(1), x)["params"], x)
        o = jax.eval_shape(lambda p, x, m=model: m.apply({"params": p}, x,
                                                         ref_view_strategy="first"), params, x)
        out[t] = (params, o)
    return out


EXPECTED = {  # outputs, loss terms
    "depth_ray_cam": ({"ray", "ray_conf", "pose_enc"},
                      {"loss_depth", "loss_grad", "loss_ray", "loss_point", "loss_camera"}),
    "depth_ray": ({"ray", "ray_conf"}, {"loss_depth", "loss_grad", "loss_ray", "loss_point"}),
    "depth_cam": ({"pose_enc"}, {"loss_depth", "loss_grad", "loss_camera"}),
    "depth_point": ({"points", "point_conf"}, {"loss_depth", "loss_grad", "loss_point"}),
}
OPTIONAL = {"ray", "ray_conf", "pose_enc", "points", "point_conf"}


@pytest.mark.parametrize("name", configs.TARGETS)
def test_head_outputs_follow_targets(outputs, name):
    params, out = outputs[name]
    want, _ = EXPECTED[name]
    assert set(out) & OPTIONAL == want
    assert out["depth"].shape == (1, 2, HW, HW)
    assert out["extrinsics"].shape == (1, 2, 3, 4) and out["intrinsics"].shape == (1, 2, 3, 3)
    assert ("cam_dec" in params) == ("pose_enc" in want)
    has_aux = any("_aux" in k for k in params["head"]["scratch"])
    assert has_aux == (name != "depth_cam")
    if name == "depth_point":
        assert out["points"].shape == (1, 2, HW, HW, 3)
        assert out["point_conf"].shape == (1, 2, HW, HW)
    if name == "depth_ray":
        assert out["ray"].shape == (1, 2, 16, 16, 6)


def test_default_targets_keep_the_official_parameter_tree(outputs):
    """'depth_ray_cam' is every official model: the same parameters as a config without the
    field (so converted checkpoints still load)."""
    c = _tiny("depth_ray_cam")
    del c["targets"]
    x = jnp.zeros((1, 2, HW, HW, 3))
    shapes = jax.eval_shape(lambda: DA3(c).init(jax.random.PRNGKey(1), x)["params"])
    got = jax.tree.map(lambda a: a.shape, outputs["depth_ray_cam"][0])
    assert jax.tree.map(lambda a: a.shape, shapes) == got


def test_targets_are_validated():
    with pytest.raises(ValueError, match="config.targets"):
        configs.validate(_tiny("depth_pcd"))
    c = _tiny("depth_cam")
    c.cam_dec = False
    with pytest.raises(ValueError, match="camera decoder"):
        configs.validate(c)


def _batch(rng, b=1, n=2, h=HW, w=HW):
    depth = rng.uniform(1.0, 3.0, (b, n, h, w)).astype(np.float32)
    k = np.array([[30.0, 0, w / 2], [0, 30.0, h / 2], [0, 0, 1]], np.float32)
    ext = np.zeros((b, n, 3, 4), np.float32)
    ext[..., :3, :3] = np.eye(3)
    ext[:, 1, :, 3] = [0.3, 0.0, 0.1]
    return {"depth": jnp.asarray(depth), "valid": jnp.ones((b, n, h, w), bool),
            "extrinsics": jnp.asarray(ext), "intrinsics": jnp.asarray(np.broadcast_to(k, (b, n,
                                                                                            3, 3)))}


@pytest.mark.parametrize("name", configs.TARGETS)
def test_active_loss_terms(outputs, name):
    params, _ = outputs[name]
    batch = _batch(np.random.default_rng(0))
    model = DA3(_tiny(name))
    x = jax.ShapeDtypeStruct((1, 2, HW, HW, 3), jnp.float32)

    def loss(p, x):  # the student task's loss on this model's outputs
        o = model.apply({"params": p}, x, ref_view_strategy="first")
        ray_hw = (o["ray"] if "ray" in o else o["depth"][..., None]).shape[-3:-1]
        return losses.da3_loss(o, targets.make_targets(batch, ray_hw), losses.LossWeights())

    total, terms = jax.eval_shape(loss, params, x)
    assert set(terms) == EXPECTED[name][1]
    assert total.shape == ()


def test_da3_loss_total_is_the_weighted_sum_of_active_terms():
    rng = np.random.default_rng(5)
    tg = targets.make_targets(_batch(rng, h=8, w=8), (8, 8))
    base = {"depth": tg["depth"] * 1.1, "depth_conf": jnp.full_like(tg["depth"], 2.0)}
    w = losses.LossWeights(beta=2.0, alpha=0.5, point=3.0, ray=0.7)
    cases = {
        "depth_point": dict(base, points=tg["points"] + 0.1, point_conf=jnp.ones_like(tg["depth"])),
        "depth_cam": dict(base, pose_enc=tg["pose_enc"] + 0.1),
        "depth_ray": dict(base, ray=tg["ray"] + 0.1),
    }
    weight = {"loss_depth": 1.0, "loss_grad": w.alpha, "loss_camera": w.beta,
              "loss_point": w.point, "loss_ray": w.ray}
    for name, out in cases.items():
        total, terms = losses.da3_loss(out, tg, w)
        assert set(terms) == EXPECTED[name][1], name
        want = sum(weight[k] * float(v) for k, v in terms.items())
        np.testing.assert_allclose(float(total), want, rtol=1e-5, err_msg=name)
    # a point-map prediction off by 0.1 in every channel: L1 = 0.3 per valid pixel (conf 1)
    _, terms = losses.da3_loss(cases["depth_point"], tg, w)
    np.testing.assert_allclose(float(terms["loss_point"]), 0.3, rtol=1e-4)


def test_point_map_loss_matches_float64_reference():
    rng = np.random.default_rng(3)
    p, t = rng.normal(size=(2, 5, 6, 3)), rng.normal(size=(2, 5, 6, 3))
    c = 1.0 + rng.random((2, 5, 6))
    m = rng.random((2, 5, 6)) > 0.3
    t[~m] = np.nan  # invalid targets must not leak
    ref = (c * np.abs(p - t).sum(-1) - 0.5 * np.log(c))[m].mean()
    got = losses.point_map_loss(jnp.asarray(p, jnp.float32), jnp.asarray(c, jnp.float32),
                                jnp.asarray(t, jnp.float32), jnp.asarray(m), lambda_c=0.5)
    np.testing.assert_allclose(float(got), ref, rtol=1e-5)


def _np_camera(rng, h, w):
    """A random camera in float64: (w2c [3,4], K [3,3], centre [3])."""
    a = rng.normal(size=(3, 3))
    q, _ = np.linalg.qr(a)
    rot = q * np.sign(np.linalg.det(q))
    k = np.array([[rng.uniform(20, 40), 0, w / 2 + rng.uniform(-2, 2)],
                  [0, rng.uniform(20, 40), h / 2 + rng.uniform(-2, 2)], [0, 0, 1]])
    centre = rng.normal(size=3)
    return np.concatenate([rot, (-rot @ centre)[:, None]], 1), k, centre


def test_rays_from_points_recovers_the_camera():
    rng = np.random.default_rng(7)
    h, w = 14, 18
    cams = [_np_camera(rng, h, w) for _ in range(3)]
    uu, vv = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5, indexing="xy")
    u = np.stack([uu, vv, np.ones((h, w))], -1)
    depth = rng.uniform(1.0, 4.0, (3, h, w))
    dirs = np.stack([np.einsum("ij,hwj->hwi", e[:, :3].T @ np.linalg.inv(k), u)
                     for e, k, _ in cams])
    centres = np.stack([c for _, _, c in cams])
    points = centres[:, None, None] + depth[..., None] * dirs  # float64 reference unprojection
    ray = geometry.rays_from_points(jnp.asarray(points, jnp.float32),
                                    jnp.asarray(depth, jnp.float32))
    np.testing.assert_allclose(ray[..., 0:3], dirs, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(ray[..., 3:6], np.broadcast_to(centres[:, None, None], dirs.shape),
                               atol=1e-3)
    w2c, k = geometry.rays_to_camera(ray, None, (h, w), method="exact")
    for i, (e, k_ref, _) in enumerate(cams):
        np.testing.assert_allclose(w2c[i], e, atol=2e-3)
        np.testing.assert_allclose(k[i], k_ref, rtol=2e-3, atol=2e-2)


def test_rays_from_points_rejects_mismatched_grids():
    with pytest.raises(ValueError, match="grids differ"):
        geometry.rays_from_points(jnp.zeros((4, 5, 3)), jnp.ones((4, 6)))
