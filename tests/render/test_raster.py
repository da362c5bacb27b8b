"""Rasterizer vs a float64 NumPy brute-force compositor, vs gsplat's PyTorch reference
projection / SH (`gsplat/cuda/_torch_impl.py`), gradients vs finite differences, edge cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from gsplat.cuda import _torch_impl as impl  # the parity reference (Makefile installs it)

from da3_jax.eval._jax import x64
from da3_jax.render import project_gaussians, quat_scale_to_covar, rasterize_gaussians, sh_to_rgb
from tests.render._reference import render_reference

HW = (37, 45)  # not a multiple of the 16-px tile
K = np.array([[38.0, 0.0, 22.0], [0.0, 36.0, 18.5], [0.0, 0.0, 1.0]])
BG = np.array([0.2, 0.5, 0.9])


def _w2c(angle=0.1, t=(0.1, -0.05, 0.3)):
    c, s = np.cos(angle), np.sin(angle)
    m = np.eye(4)
    m[:3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
    m[:3, 3] = t
    return m


def _scene(g=120, seed=0, z=(1.5, 4.0), scale=(0.03, 0.3)):
    rng = np.random.default_rng(seed)
    return {
        "means": rng.uniform([-1.2, -1.0, z[0]], [1.2, 1.0, z[1]], (g, 3)),
        "quats": rng.normal(size=(g, 4)),
        "scales": rng.uniform(scale[0], scale[1], (g, 3)),
        "opacities": rng.uniform(0.05, 0.99, g),
        "colors": rng.uniform(0.0, 1.0, (g, 3)),
    }


def _render(scene, w2c=None, dtype=np.float32, **kw):
    w2c = _w2c() if w2c is None else w2c
    args = [np.asarray(scene[k], dtype) for k in ("means", "quats", "scales", "opacities",
                                                   "colors")]
    return rasterize_gaussians(*args, np.asarray(w2c, dtype), np.asarray(K, dtype), HW,
                               np.asarray(BG, dtype), **kw)


def _assert_matches(out, ref, atol):
    assert int(out["overflow"]) == 0
    for key in ("rgb", "alpha", "depth"):
        np.testing.assert_allclose(np.asarray(out[key], np.float64), ref[key], atol=atol,
                                   err_msg=key)


def _ref(scene, w2c=None):
    w2c = _w2c() if w2c is None else w2c
    return render_reference(scene["means"], scene["quats"], scene["scales"],
                            scene["opacities"], scene["colors"], w2c, K, HW, BG)


def test_matches_float64_bruteforce():
    """float64 run matches to 1e-9; float32 to 1e-4 (tile capacity large enough: exact)."""
    scene = _scene()
    # 6 layers of opacity 0.95: compositing must stop before T <= 1e-4 (after 3)
    for key, val in (("means", [0.0, 0.0, 1.0]), ("quats", [1.0, 0, 0, 0]),
                     ("scales", [0.3, 0.3, 0.01]), ("opacities", 0.95)):
        scene[key][:6] = val
    scene["means"][:6, 2] += np.arange(6) * 0.01
    ref = _ref(scene)
    assert ref["alpha"].min() < 0.5  # background visible
    assert np.sum(1.0 - ref["alpha"] < 1e-5) == 0 and np.sum(1.0 - ref["alpha"] < 2e-3) > 4
    with x64():
        _assert_matches(_render(scene, dtype=np.float64, tile_capacity=128), ref, 1e-9)
    _assert_matches(_render(scene, tile_capacity=128), ref, 1e-4)


def test_tile_capacity_overflow_is_reported():
    scene = _scene(g=200, seed=1)
    assert int(_render(scene, tile_capacity=4)["overflow"]) > 0
    assert int(_render(scene, tile_capacity=200, max_intersections=64)["overflow"]) > 0


def test_vmap_over_scenes_and_cameras():
    scenes = [_scene(g=60, seed=s) for s in (2, 3)]
    cams = [_w2c(0.05, (0, 0, 0.2)), _w2c(-0.15, (0.3, 0.1, 0.0)), _w2c(0.2, (-0.2, 0, 0.4))]
    stack = {k: np.stack([s[k] for s in scenes]).astype(np.float32) for k in scenes[0]}
    w2cs = np.stack(cams).astype(np.float32)
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731

    def render(sc, w2c):
        return rasterize_gaussians(sc["means"], sc["quats"], sc["scales"], sc["opacities"],
                                   sc["colors"], w2c, f32(K), HW, f32(BG), tile_capacity=60)

    out = jax.jit(jax.vmap(jax.vmap(render, in_axes=(None, 0)), in_axes=(0, None)))(stack, w2cs)
    assert out["rgb"].shape == (2, 3) + HW + (3,)
    for i, sc in enumerate(scenes):
        for j, cam in enumerate(cams):
            ref = _ref(sc, cam)
            np.testing.assert_allclose(out["rgb"][i, j], ref["rgb"], atol=1e-4)
            np.testing.assert_allclose(out["depth"][i, j], ref["depth"], atol=1e-4)


def test_projection_and_sh_match_gsplat_torch_reference():
    scene = _scene(g=80, seed=4, z=(-1.0, 5.0))  # some behind the camera, some off-screen
    scene["means"][:5, :2] *= 6.0
    w2c = _w2c()
    t = lambda a: torch.tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    covars = quat_scale_to_covar(jnp.asarray(scene["quats"], jnp.float32),
                                 jnp.asarray(scene["scales"], jnp.float32))
    cov_ref, _ = impl._quat_scale_to_covar_preci(t(scene["quats"]), t(scene["scales"]))
    np.testing.assert_allclose(covars, cov_ref.numpy(), atol=1e-6)
    radii, m2d, depths, conics, _ = impl._fully_fused_projection(
        t(scene["means"]), cov_ref, t(w2c)[None], t(K)[None], HW[1], HW[0])
    ours = project_gaussians(jnp.asarray(scene["means"], jnp.float32), covars,
                             jnp.ones(80, jnp.float32), jnp.asarray(w2c, jnp.float32),
                             jnp.asarray(K, jnp.float32), HW)
    # gsplat's torch reference bounds with 3.33 sigma (no opacity-aware box), as does o = 1.
    np.testing.assert_array_equal(np.asarray(ours["valid"]), radii[0].numpy().max(-1) > 0)
    v = np.asarray(ours["valid"])
    assert 0 < v.sum() < 80
    np.testing.assert_allclose(ours["depths"], depths[0].numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(ours["means2d"])[v], m2d[0].numpy()[v], atol=1e-4)
    np.testing.assert_allclose(np.asarray(ours["conics"])[v], conics[0].numpy()[v],
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(ours["radii"])[v], radii[0].numpy()[v])

    rng = np.random.default_rng(5)
    dirs = rng.normal(size=(50, 3))
    for degree in range(4):
        coeffs = rng.normal(size=(50, 16, 3)) * 0.5
        ref = torch.clamp_min(impl._spherical_harmonics(degree, t(dirs), t(coeffs)) + 0.5, 0.0)
        got = sh_to_rgb(jnp.asarray(coeffs, jnp.float32), jnp.asarray(dirs, jnp.float32),
                        degree)
        np.testing.assert_allclose(got, ref.numpy(), atol=1e-5, err_msg=f"degree {degree}")


def test_sh_colours_end_to_end():
    """Rendering SH [G, 9, 3] == rendering the gsplat-evaluated colours (brute force)."""
    scene = _scene(g=60, seed=6)
    sh = np.random.default_rng(7).normal(size=(60, 9, 3)) * 0.3
    w2c = _w2c()
    centre = -w2c[:3, :3].T @ w2c[:3, 3]
    rgb = torch.clamp_min(impl._spherical_harmonics(
        2, torch.tensor(scene["means"] - centre), torch.tensor(sh)) + 0.5, 0.0).numpy()
    ref = _ref({**scene, "colors": rgb}, w2c)
    out = _render({**scene, "colors": sh}, w2c, tile_capacity=60)
    _assert_matches(out, ref, 1e-4)


def test_gradients_match_finite_differences():
    scene = _scene(g=25, seed=8, scale=(0.1, 0.4))
    with x64():
        w2c, k, bg = jnp.asarray(_w2c()), jnp.asarray(K), jnp.asarray(BG)
        names = ("means", "quats", "scales", "opacities", "colors")
        params = {n: jnp.asarray(scene[n]) for n in names}
        wts = jax.random.normal(jax.random.PRNGKey(0), HW + (5,), jnp.float64)

        def loss(p):
            out = rasterize_gaussians(p["means"], p["quats"], p["scales"], p["opacities"],
                                      p["colors"], w2c, k, HW, bg, tile_capacity=25,
                                      check=False)
            img = jnp.concatenate([out["rgb"], out["alpha"][..., None],
                                   out["depth"][..., None]], -1)
            return jnp.sum(img * wts)

        grads = jax.grad(loss)(params)
        rng = np.random.default_rng(9)
        eps = 1e-6
        for name in names:
            assert np.all(np.isfinite(grads[name])) and np.abs(grads[name]).max() > 0
            for _ in range(2):
                d = rng.normal(size=params[name].shape)
                plus = {**params, name: params[name] + eps * d}
                minus = {**params, name: params[name] - eps * d}
                fd = (loss(plus) - loss(minus)) / (2 * eps)
                np.testing.assert_allclose(float(jnp.sum(grads[name] * d)), float(fd),
                                           rtol=1e-5, atol=1e-7, err_msg=name)


def test_edge_cases_empty_behind_huge_degenerate():
    empty = {k: v[:0] for k, v in _scene(g=1).items()}
    out = _render(empty)
    np.testing.assert_allclose(out["rgb"], np.broadcast_to(BG, HW + (3,)), atol=1e-7)
    assert float(np.abs(out["alpha"]).max()) == 0.0

    scene = _scene(g=40, seed=10, z=(-2.0, 3.0))  # about half behind the camera
    scene["scales"][:3] = 50.0  # huge: cover the whole image
    scene["means"][:3, 2] = [5.0, 6.0, 7.0]
    scene["opacities"][:3] = 0.3
    scene["scales"][3:6, 0] = 0.0  # degenerate: flat discs and a point
    scene["scales"][6] = 0.0
    w2c = _w2c(0.0, (0.0, 0.0, 0.0))
    out = _render(scene, w2c, tile_capacity=40)
    for key in ("rgb", "alpha", "depth"):
        assert np.all(np.isfinite(out[key]))
    _assert_matches(out, _ref(scene, w2c), 1e-4)


@pytest.mark.parametrize("field,value,match", [
    ("means", np.nan, "means: expected finite"),
    ("scales", -0.1, "scales: expected non-negative"),
    ("opacities", 1.5, r"opacities: expected values in \[0, 1\]"),
    ("colors", np.inf, "colors: expected finite"),
])
def test_bad_gaussians_raise(field, value, match):
    scene = _scene(g=5)
    scene[field].flat[0] = value
    with pytest.raises(ValueError, match=match):
        _render(scene)


def test_scene_behind_camera_raises():
    scene = _scene(g=10, z=(-3.0, -1.0))
    with pytest.raises(ValueError, match="w2c: all 10 Gaussians lie behind the camera"):
        _render(scene, _w2c(0.0, (0.0, 0.0, 0.0)))
