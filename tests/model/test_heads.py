"""Parity of the DPT heads with the official PyTorch modules (random weights, fp32).

The official heads are built standalone with the kwargs of the packaged YAML configs, their
constant-initialised parameters (LayerNorms) are perturbed, the state dict is mapped with
the converter's naming rule (`da3_jax.convert.naming`, `head_params` below; the tree must equal
the flax init tree exactly), and both run
on the same random features. Tolerance: max|Δ| / max|ref| <= 1e-4.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from depth_anything_3.model import gs_adapter as torch_gs_adapter
from depth_anything_3.model.dpt import DPT as TorchDPT
from depth_anything_3.model.dualdpt import DualDPT as TorchDualDPT
from depth_anything_3.model.gsdpt import GSDPT as TorchGSDPT
from scipy.spatial.transform import Rotation

from da3_jax.convert import naming
from da3_jax.convert import official as convert_official
from da3_jax.model.dpt import DPT, DualDPT, sky_postprocess
from da3_jax.model.dpt_blocks import bilinear_resize_align_corners
from da3_jax.model.gs_adapter import gaussian_adapter
from da3_jax.model.gsdpt import GSDPT

TOL = 1e-4


def rel_err(a, ref):
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    assert a.shape == ref.shape, (a.shape, ref.shape)
    return float(np.max(np.abs(a - ref)) / np.max(np.abs(ref)))


def perturb_norms(module, seed):
    """Give every LayerNorm a random weight/bias (they are 1/0 after construction)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.copy_(1.0 + 0.5 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.5 * torch.randn(m.bias.shape, generator=g))


def state_dict_np(module):
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def assert_same_tree(params, init_params):
    got = {jax.tree_util.keystr(p): np.shape(v) for p, v in
           jax.tree_util.tree_leaves_with_path(params)}
    want = {jax.tree_util.keystr(p): np.shape(v) for p, v in
            jax.tree_util.tree_leaves_with_path(init_params)}
    assert got.keys() == want.keys(), (sorted(got.keys() - want.keys()),
                                       sorted(want.keys() - got.keys()))
    for k in want:
        assert got[k] == want[k], (k, got[k], want[k])


def head_params(state_dict, prefix="head"):
    """A standalone head's state dict (keys relative to the head) -> flax params, with the
    converter's rules: `naming.flax_path` / `naming.to_flax_layout` on the full official key
    (`head.` / `gs_head.` prefix; ConvTranspose layout), the documented unused aux keys dropped,
    and the shared aux LayerNorm read from its level-0 alias when level 3 is absent."""
    sd = {f"{prefix}.{k}": np.asarray(v) for k, v in state_dict.items()}
    for k in list(sd):
        m = convert_official._AUX_LN.match(k)
        if m and m.group(2) == "0":
            sd.setdefault(f"{m.group(1)}3{m.group(3)}", sd[k])
    flat = {naming.flax_path(k, v.ndim): np.ascontiguousarray(naming.to_flax_layout(k, v))
            for k, v in sd.items() if not convert_official._DROPPED.search(k)}
    return naming.unflatten(flat)[prefix]


def run_both(torch_head, flax_head, feats_np, image_hw, seed, drop_keys=(), images=None,
             prefix="head"):
    perturb_norms(torch_head, seed)
    torch_head.eval()
    sd = state_dict_np(torch_head)
    for k in drop_keys:
        del sd[k]
    params = head_params(sd, prefix)
    feats_j = [jnp.asarray(f.reshape(-1, *f.shape[2:])) for f in feats_np]
    extra, kw = (), {}
    if images is not None:  # [B, S, 3, H, W] as upstream; NHWC frames for the flax head
        extra = (jnp.asarray(images.reshape(-1, *images.shape[2:]).transpose(0, 2, 3, 1)),)
        kw = {"images": torch.from_numpy(images)}
    init = jax.eval_shape(
        lambda f, *e: flax_head.init(jax.random.key(0), f, image_hw, *e), feats_j, *extra)
    assert_same_tree(params, init["params"])
    out = jax.jit(lambda p, f, *e: flax_head.apply({"params": p}, f, image_hw, *e))(
        params, feats_j, *extra)
    with torch.no_grad():
        ref = torch_head([(torch.from_numpy(f),) for f in feats_np], image_hw[0], image_hw[1],
                         patch_start_idx=0, **kw)
    return out, {k: v.numpy() for k, v in ref.items()}


def random_feats(b, s, ph, pw, dim, seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((b, s, ph * pw, dim)).astype(np.float32) for _ in range(4)]


@pytest.mark.parametrize(
    "name,dim_in,features,out_channels,b,s,ph,pw",
    [
        ("da3-small", 768, 64, (48, 96, 192, 384), 1, 2, 8, 12),
        ("da3-base", 1536, 128, (96, 192, 384, 768), 2, 1, 5, 3),
    ],
)
def test_dualdpt_parity(name, dim_in, features, out_channels, b, s, ph, pw):
    torch.manual_seed(0)
    th = TorchDualDPT(dim_in, output_dim=2, features=features, out_channels=list(out_channels))
    fh = DualDPT(dim_in, features, tuple(out_channels))
    feats = random_feats(b, s, ph, pw, dim_in, seed=1)
    hw = (14 * ph, 14 * pw)
    # A safetensors file keeps the shared aux LayerNorm only at level 0 (the others alias it).
    drop = [f"scratch.output_conv2_aux.{j}.2.{leaf}" for j in (1, 2, 3)
            for leaf in ("weight", "bias")]
    out, ref = run_both(th, fh, feats, hw, seed=2, drop_keys=drop)
    bn = b * s
    assert out["depth"].shape == (bn, *hw)
    assert out["ray"].shape == (bn, 8 * ph, 8 * pw, 6)
    assert out["ray_conf"].shape == (bn, 8 * ph, 8 * pw)
    errs = {k: rel_err(out[k], ref[k].reshape(out[k].shape)) for k in ref}
    print(name, errs)
    for k, e in errs.items():
        assert e <= TOL, (k, e)
    # The aux LN parameters really matter (guards against a silently dropped LayerNorm).
    assert np.ptp(ref["ray"]) > 0


def test_dpt_metric_large_with_sky_parity():
    torch.manual_seed(0)
    oc = (256, 512, 1024, 1024)
    th = TorchDPT(1024, output_dim=1, features=256, out_channels=list(oc))
    fh = DPT(1024, 256, oc)
    ph, pw = 3, 5
    feats = random_feats(1, 2, ph, pw, 1024, seed=3)
    hw = (14 * ph, 14 * pw)
    out, ref = run_both(th, fh, feats, hw, seed=4)
    assert set(out) == {"depth", "sky"}
    errs = {k: rel_err(out[k], ref[k].reshape(out[k].shape)) for k in ref}
    print("da3metric-large", errs)
    for k, e in errs.items():
        assert e <= TOL, (k, e)


def test_dpt_layer_norm_pos_embed_variant_parity():
    """DPT with token LayerNorm, UV embedding and a confidence channel (GS-DPT-like settings)."""
    torch.manual_seed(0)
    oc = (16, 32, 64, 64)
    th = TorchDPT(96, output_dim=3, features=32, out_channels=list(oc), pos_embed=True,
                  norm_type="layer", use_sky_head=False)
    fh = DPT(96, 32, oc, output_dim=3, use_sky_head=False, pos_embed=True, norm=True)
    ph, pw = 7, 4
    feats = random_feats(1, 1, ph, pw, 96, seed=5)
    out, ref = run_both(th, fh, feats, (14 * ph, 14 * pw), seed=6)
    for k in ("depth", "depth_conf"):
        assert rel_err(out[k], ref[k].reshape(out[k].shape)) <= TOL, k


def test_gsdpt_giant_parity():
    torch.manual_seed(0)
    oc = (256, 512, 1024, 1024)
    th = TorchGSDPT(3072, output_dim=38, features=256, out_channels=list(oc))
    fh = GSDPT(3072, 256, oc, output_dim=38)
    ph, pw = 2, 3
    feats = random_feats(1, 2, ph, pw, 3072, seed=8)
    images = np.random.default_rng(9).standard_normal((1, 2, 3, 14 * ph, 14 * pw))
    out, ref = run_both(th, fh, feats, (14 * ph, 14 * pw), seed=10,
                        images=images.astype(np.float32), prefix="gs_head")
    assert out["raw_gs"].shape == (2, 14 * ph, 14 * pw, 37)
    errs = {k: rel_err(out[k], ref[k].reshape(out[k].shape)) for k in ref}
    print("da3-giant gs_head", errs)
    for k, e in errs.items():
        assert e <= TOL, (k, e)


@pytest.mark.parametrize("src,dst", [((5, 7), (9, 13)), ((4, 6), (14, 3)), ((1, 3), (6, 1))])
def test_bilinear_align_corners_matches_torch(src, dst):
    x = np.random.default_rng(0).standard_normal((2, 3, *src)).astype(np.float32)
    ref = torch.nn.functional.interpolate(torch.from_numpy(x), size=dst, mode="bilinear",
                                          align_corners=True).numpy()
    out = bilinear_resize_align_corners(jnp.asarray(x.transpose(0, 2, 3, 1)), dst)
    np.testing.assert_allclose(np.asarray(out).transpose(0, 3, 1, 2), ref, rtol=0, atol=2e-6)



@pytest.mark.parametrize("src,dst", [((5, 7), (9, 13)), ((4, 6), (14, 3)), ((1, 3), (6, 1)),
                                     ((6, 5), (12, 10)), ((8, 8), (14, 14))])
def test_bilinear_align_corners_vjp_matches_torch(src, dst):
    """The custom VJP (transposed gathers) against torch's float64 `F.interpolate` backward."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, *src))
    g = rng.standard_normal((2, 3, *dst))
    xt = torch.from_numpy(x).requires_grad_(True)
    torch.nn.functional.interpolate(xt, size=dst, mode="bilinear", align_corners=True).backward(
        torch.from_numpy(g))
    _, vjp = jax.vjp(lambda a: bilinear_resize_align_corners(a, dst),
                     jnp.asarray(x.transpose(0, 2, 3, 1), jnp.float32))
    (dx,) = jax.jit(vjp)(jnp.asarray(g.transpose(0, 2, 3, 1), jnp.float32))
    np.testing.assert_allclose(np.asarray(dx, np.float64).transpose(0, 3, 1, 2),
                               xt.grad.numpy(), rtol=0, atol=1e-5)

def test_sky_postprocess_matches_official():
    from addict import Dict
    from depth_anything_3.model.da3 import DepthAnything3Net

    rng = np.random.default_rng(7)
    depth = rng.uniform(0.5, 20.0, (2, 42, 70)).astype(np.float32)
    sky = np.zeros_like(depth)
    sky[:, :12] = rng.uniform(0.3, 1.5, (2, 12, 70))  # sky band on top (>= 0.3)
    sky[:, 12:] = rng.uniform(0.0, 0.299, (2, 30, 70))
    ref = DepthAnything3Net._process_mono_sky_estimation(
        None, Dict(depth=torch.from_numpy(depth), sky=torch.from_numpy(sky)))["depth"].numpy()
    out = np.asarray(jax.jit(sky_postprocess)(jnp.asarray(depth), jnp.asarray(sky)))
    assert not np.allclose(ref, depth)  # the fill really happened
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=0)
    # Too few sky pixels (<= 10): unchanged, as upstream.
    sky2 = np.zeros_like(sky)
    sky2[0, 0, :10] = 1.0
    ref2 = DepthAnything3Net._process_mono_sky_estimation(
        None, Dict(depth=torch.from_numpy(depth), sky=torch.from_numpy(sky2)))["depth"].numpy()
    out2 = np.asarray(sky_postprocess(jnp.asarray(depth), jnp.asarray(sky2)))
    np.testing.assert_array_equal(out2, ref2)
    np.testing.assert_array_equal(out2, depth)


@pytest.mark.parametrize("pose_scale", [None, 2.5])
def test_gaussian_adapter_matches_official(monkeypatch, pose_scale):
    """Needs e3nn (upstream's SH rotation). View 0 has the identity rotation (Euler edge case)."""
    rng = np.random.default_rng(11)
    b, v, h, w = 2, 2, 6, 8
    c2w = np.tile(np.eye(4), (b, v, 1, 1))
    c2w[..., :3, :3] = Rotation.random(b * v, random_state=12).as_matrix().reshape(b, v, 3, 3)
    c2w[0, 0, :3, :3] = np.eye(3)
    c2w[..., :3, 3] = rng.standard_normal((b, v, 3))
    w2c = np.linalg.inv(c2w).astype(np.float32)
    k = np.tile(np.array([[10.0, 0.0, 4.2], [0.0, 11.0, 2.9], [0.0, 0.0, 1.0]], np.float32),
                (b, v, 1, 1))
    depth = rng.uniform(1, 5, (b, v, h, w)).astype(np.float32)
    opac = rng.uniform(0, 1, (b, v, h, w)).astype(np.float32)
    raw = rng.standard_normal((b, v, h, w, 37)).astype(np.float32)
    gt = None
    if pose_scale is not None:  # upstream's Umeyama-to-GT scale, fixed here
        monkeypatch.setattr(torch_gs_adapter, "batch_align_poses_umeyama",
                            lambda ref, est: (None, None, torch.full((b,), pose_scale)))
        gt = torch.from_numpy(w2c) * 1.5
    adapter = torch_gs_adapter.GaussianAdapter(sh_degree=2, pred_offset_depth=True,
                                               pred_offset_xy=True)
    t = torch.from_numpy
    ref = adapter(t(w2c), t(k), t(depth), t(opac), t(raw), (h, w), gt_extrinsics=gt)
    scale = None if pose_scale is None else jnp.full((b,), pose_scale)
    out = jax.jit(lambda *a: gaussian_adapter(*a, (h, w), pose_scale=scale))(
        w2c, k, depth, opac, raw)
    for name in ("means", "scales", "rotations", "harmonics", "opacities"):
        err = rel_err(out[name], getattr(ref, name).numpy())
        assert err <= TOL, (name, err)


def test_model_infer_gs_gaussians_match_official_adapter():
    """`DA3(..., infer_gs=True)['gaussians']` = the official `_process_gs_head` adapter step
    (GaussianAdapter on the predicted cameras and depth, opacity = upstream map_pdf_to_opacity
    of raw_gs_conf, no input cameras) applied to the model's own outputs. da3-tiny with a GS
    head (reduced width; the giant GS head itself is checked in test_gsdpt_giant_parity)."""
    from depth_anything_3.utils.geometry import map_pdf_to_opacity as torch_opacity

    from da3_jax.model import DA3, get_config

    cfg = get_config("da3-tiny")
    cfg.depth, cfg.out_layers, cfg.gs_head = 4, (0, 1, 2, 3), True
    images = jax.random.normal(jax.random.key(1), (1, 2, 28, 42, 3))
    shapes = jax.eval_shape(DA3(cfg).init, jax.random.key(0), images)["params"]
    assert "gs_head" in shapes
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: (rng.normal(size=s.shape) * 0.05).astype(np.float32), shapes)
    out = jax.jit(lambda p, x: DA3(cfg).apply({"params": p}, x, infer_gs=True))(params, images)
    assert out["raw_gs"].shape == (1, 2, 28, 42, 37)
    t = lambda x: torch.from_numpy(np.array(x))  # noqa: E731
    ext = np.concatenate([np.asarray(out["extrinsics"]),
                          np.tile([[[[0, 0, 0, 1.0]]]], (1, 2, 1, 1)).astype(np.float32)], -2)
    adapter = torch_gs_adapter.GaussianAdapter(sh_degree=2, pred_offset_depth=True,
                                               pred_offset_xy=True)
    ref = adapter(t(ext), t(out["intrinsics"]), t(out["depth"]),
                  torch_opacity(t(out["raw_gs_conf"])), t(out["raw_gs"]), (28, 42))
    for name in ("means", "scales", "rotations", "harmonics", "opacities"):
        err = rel_err(out["gaussians"][name], getattr(ref, name).numpy())
        assert err <= TOL, (name, err)
    with pytest.raises(ValueError, match="GS head"):
        DA3(get_config("da3-tiny")).apply({"params": {}}, images, infer_gs=True)
