"""Backbone pieces against the official PyTorch code: position-table resize, 2D RoPE,
reference-view selection, the transformer block, and the variant configs."""

from __future__ import annotations

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from da3_jax.convert import naming
from da3_jax.model import configs, get_config, ref_view
from da3_jax.model.layers import Block
from da3_jax.model.pos_embed import interpolate_pos_embed
from da3_jax.model.rope import apply_rope, rope_tables
from tests.model._official_ref import official_config


def _vit_ns(**kw):
    """A stand-in `self` for unbound calls of official DinoVisionTransformer methods."""
    return types.SimpleNamespace(patch_size=14, **kw)


@pytest.mark.parametrize("hw", [(112, 112), (112, 168), (280, 504), (518, 518), (504, 518)])
def test_pos_embed_resize_matches_torch(hw):
    from depth_anything_3.model.dinov2.vision_transformer import DinoVisionTransformer

    torch.manual_seed(0)
    table = torch.randn(1, 1370, 8)
    ns = _vit_ns(pos_embed=table, interpolate_offset=0.1, interpolate_antialias=False)
    gh, gw = hw[0] // 14, hw[1] // 14
    x = torch.zeros(1, 1 + gh * gw, 8)
    ref = DinoVisionTransformer.interpolate_pos_encoding(ns, x, hw[0], hw[1])[0].numpy()
    ours = np.asarray(interpolate_pos_embed(jnp.asarray(table.numpy()), (gh, gw), 0.1))
    assert ours.shape == ref.shape
    # PyTorch's own fp32 kernel is ~5e-6 from the exact (float64) resize; so is ours.
    np.testing.assert_allclose(ours, ref, rtol=0, atol=2e-5)
    if hw != (518, 518):
        # jax.image.resize (A = -0.5, size-based) is measurably different: the custom resize
        # is needed.
        alt = jax.image.resize(table.numpy()[0, 1:].reshape(37, 37, 8), (gh, gw, 8), "bicubic")
        assert np.abs(np.asarray(alt).reshape(-1, 8) - ref[1:]).max() > 1e-3


@pytest.mark.parametrize("global_", [False, True])
def test_rope_matches_torch(global_):
    from depth_anything_3.model.dinov2.layers.rope import (
        PositionGetter,
        RotaryPositionEmbedding2D,
    )
    from depth_anything_3.model.dinov2.vision_transformer import DinoVisionTransformer

    gh, gw, s = 3, 5, 2
    rope = RotaryPositionEmbedding2D(frequency=100)
    ns = _vit_ns(rope=rope, position_getter=PositionGetter(), patch_start_idx=1)
    pos, pos_nodiff = DinoVisionTransformer._prepare_rope(ns, 1, s, gh * 14, gw * 14, "cpu")
    p = (pos_nodiff if global_ else pos).reshape(1, s * (1 + gh * gw), 2)
    torch.manual_seed(1)
    q = torch.randn(1, 4, s * (1 + gh * gw), 64)  # [B, heads, L, Dh]
    ref = rope(q, p).numpy()
    cos, sin = rope_tables((gh, gw), global_, 64, 100.0)
    cos, sin = np.tile(cos, (s, 1)), np.tile(sin, (s, 1))
    ours = apply_rope(jnp.asarray(q.numpy().transpose(0, 2, 1, 3)), cos, sin)
    np.testing.assert_allclose(np.asarray(ours).transpose(0, 2, 1, 3), ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("strategy", ref_view.STRATEGIES)
def test_reference_view_selection_matches_official(strategy):
    from depth_anything_3.model import reference_view_selector as rvs

    torch.manual_seed(2)
    x = torch.randn(6, 5, 3, 16)
    x[:, :, 0] *= torch.rand(6, 5, 1) * 3  # spread the norms so the scores differ
    ref = rvs.select_reference_view(x, strategy).numpy()
    ours = np.asarray(ref_view.select_reference_view(jnp.asarray(x.numpy()), strategy))
    np.testing.assert_array_equal(ours, ref)
    b = torch.tensor([0, 4, 2, 1, 3, 4])
    reordered = rvs.reorder_by_reference(x, b)
    idx = ref_view.reorder_indices(jnp.asarray(b.numpy()), 5)
    ours_r = ref_view.gather_views(jnp.asarray(x.numpy()), idx)
    np.testing.assert_array_equal(np.asarray(ours_r), reordered.numpy())
    back = ref_view.gather_views(ours_r, ref_view.restore_indices(jnp.asarray(b.numpy()), 5))
    np.testing.assert_array_equal(np.asarray(back), rvs.restore_original_order(reordered, b))


def test_unknown_strategy_is_rejected():
    with pytest.raises(ValueError, match="ref_view_strategy"):
        ref_view.select_reference_view(jnp.zeros((1, 3, 2, 4)), "best")


@pytest.mark.parametrize("swiglu", [False, True])
def test_block_matches_torch(swiglu):
    """One backbone block (q/k-norm, RoPE, LayerScale; MLP or giant SwiGLU) vs official."""
    from depth_anything_3.model.dinov2.layers import Block as TorchBlock
    from depth_anything_3.model.dinov2.layers import (
        Mlp,
        PositionGetter,
        RotaryPositionEmbedding2D,
        SwiGLUFFNFused,
    )
    from depth_anything_3.model.dinov2.vision_transformer import DinoVisionTransformer

    torch.manual_seed(3)
    dim, heads, gh, gw = 128, 2, 2, 3
    rope = RotaryPositionEmbedding2D(frequency=100)
    blk = TorchBlock(
        dim, heads, qkv_bias=True, ffn_layer=SwiGLUFFNFused if swiglu else Mlp,
        init_values=1.0, qk_norm=True, rope=rope,
    ).eval()
    with torch.no_grad():
        for p in blk.parameters():
            if p.ndim == 1:
                p.add_(0.1 * torch.randn(p.shape))
    ns = _vit_ns(rope=rope, position_getter=PositionGetter(), patch_start_idx=1)
    pos, _ = DinoVisionTransformer._prepare_rope(ns, 1, 1, gh * 14, gw * 14, "cpu")
    x = torch.randn(1, 1 + gh * gw, dim) * 3 + 1
    with torch.no_grad():
        ref = blk(x, pos=pos[:, 0]).numpy()
    flat = {
        naming.flax_path(k, v.ndim): naming.to_flax_layout(k, v.numpy())
        for k, v in blk.state_dict().items()
    }
    params = naming.unflatten(flat)
    ours = Block(heads, ffn="swiglu" if swiglu else "mlp", qk_norm=True).apply(
        {"params": params}, jnp.asarray(x.numpy()), rope_tables((gh, gw), False, 64, 100.0)
    )
    np.testing.assert_allclose(np.asarray(ours), ref, rtol=0, atol=2e-5 * np.abs(ref).max())


@pytest.mark.parametrize(
    "name",
    ["da3-small", "da3-base", "da3-large", "da3-giant", "da3metric-large", "da3mono-large"],
)
def test_config_matches_official_yaml(name):
    ref = official_config(name)
    c = get_config(name)
    vit = {"vits": (384, 12, 6), "vitb": (768, 12, 12), "vitl": (1024, 24, 16),
           "vitg": (1536, 40, 24)}[ref.net.name]
    assert (c.embed_dim, c.depth, c.num_heads) == vit
    assert c.ffn == ("swiglu" if ref.net.name == "vitg" else "mlp")
    assert tuple(c.out_layers) == tuple(ref.net.out_layers)
    assert (c.alt_start, c.qknorm_start, c.rope_start) == (
        ref.net.alt_start, ref.net.qknorm_start, ref.net.rope_start)
    assert c.cat_token == ref.net.cat_token
    assert configs.head_dim_in(c) == ref.head.dim_in
    assert c.head_features == ref.head.features
    assert tuple(c.head_out_channels) == tuple(ref.head.out_channels)
    assert c.head == ("dualdpt" if ref.head["__object__"].name == "DualDPT" else "dpt")
    assert c.cam_enc == ("cam_enc" in ref) and c.cam_dec == ("cam_dec" in ref)
    if "cam_enc" in ref:
        assert ref.cam_enc.dim_out == c.embed_dim and ref.cam_dec.dim_in == 2 * c.embed_dim
        assert c.cam_enc_heads == 16  # the CameraEnc default; the YAML does not override it
    assert c.gs_head == ("gs_head" in ref)


def test_nested_and_tiny_configs():
    nested = get_config("da3nested-giant-large")
    ref = official_config("da3nested-giant-large")
    assert nested.anyview.to_dict() == get_config("da3-giant").to_dict()
    assert tuple(nested.metric.out_layers) == tuple(ref.metric.net.out_layers)
    assert tuple(nested.anyview.out_layers) == tuple(ref.anyview.net.out_layers)
    tiny = get_config("da3-tiny")
    configs.validate(tiny)
    with pytest.raises(ValueError, match="unknown model config"):
        get_config("da3-huge")
    tiny.out_layers = (1, 2, 3, 99)
    with pytest.raises(ValueError, match="out_layers"):
        configs.validate(tiny)
