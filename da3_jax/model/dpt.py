"""DPT heads of Depth Anything 3: `DualDPT` (any-view models) and `DPT` (mono / metric + sky).

Flax linen ports of `depth_anything_3/model/dualdpt.py` and `dpt.py` (DA3-official.md §2.1,
§2.2, §10.7). NHWC internally; heads always compute in float32 (inputs are cast), as the
official code disables autocast around them. The official forward chunks frames by 8; that has no
numerical effect and is not reproduced.

Inputs: `feats`, a list of 4 arrays `[BN, P, dim_in]` of patch tokens (no cls/camera/register
tokens), row-major over the `(ph, pw)` patch grid with `ph, pw = H // 14, W // 14`;
`image_hw = (H, W)`, the input image size in pixels. Outputs are at `(14 ph, 14 pw)`; the
DualDPT ray map stays at `(8 ph, 8 pw)`.

Parameters are named by the project rule from the official keys below `head.`, e.g.
`scratch.refinenet1_aux.resConfUnit1.conv1.weight` → `scratch/refinenet1_aux/resConfUnit1/conv1/
kernel`, `projects.0` → `projects_0`, `scratch.output_conv2_aux.3.2` (LayerNorm) →
`scratch/output_conv2_aux_3_2/scale|bias`. The official DualDPT also builds aux levels 0–2 of
`output_conv1_aux` / `output_conv2_aux` and computes them only to discard them; they have no
params here and the converter (`da3_jax.convert`) drops their keys.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from da3_jax.model.dpt_blocks import (
    add_uv_pos_embed,
    bilinear_resize_align_corners,
    conv,
    fusion_chain,
    reassemble,
    scratch_layers_rn,
)

HEAD_FEATURES_2 = 32  # width of the last 3x3 conv of every output branch


def _expp1(x):
    return jnp.exp(x) + 1.0


class _DualScratch(nn.Module):
    """`head.scratch` of DualDPT: fusion chains, output convs (params under `scratch/`)."""

    features: int
    aux_channels: int = 7  # 7: ray (6) + conf; 4: point map (3) + conf; 0: no aux branch
    conv_impl: str = "xla"

    @nn.compact
    def __call__(self, levels, image_hw):
        f, impl = self.features, self.conv_impl
        rn = scratch_layers_rn(levels, f, impl)
        main = fusion_chain(rn, f, conv_impl=impl)
        ph8, pw8 = main.shape[1:3]

        # Main (depth) branch: conv1 at 8ph x 8pw, resize to the image size, +UV, conv2.
        main = conv(f // 2, 3, "output_conv1", impl=impl)(main)
        h_out, w_out = (ph8 // 8) * 14, (pw8 // 8) * 14
        main = bilinear_resize_align_corners(main, (h_out, w_out))
        main = add_uv_pos_embed(main, image_hw)
        main = conv(HEAD_FEATURES_2, 3, "output_conv2_0", impl=impl)(main)
        main = conv(2, 1, "output_conv2_2", impl=impl)(nn.relu(main))
        if not self.aux_channels:
            return main, None

        # Aux (ray) branch, last level only: 5 linear convs, +UV, conv, LN(32), ReLU, 1x1 -> 7.
        aux = fusion_chain(rn, f, suffix="_aux", conv_impl=impl)
        for k in range(5):
            aux = conv(f // 2 if k % 2 == 0 else f, 3, f"output_conv1_aux_3_{k}", impl=impl)(aux)
        aux = add_uv_pos_embed(aux, image_hw)
        aux = conv(HEAD_FEATURES_2, 3, "output_conv2_aux_3_0", impl=impl)(aux)
        aux = nn.LayerNorm(epsilon=1e-5, use_fast_variance=False, name="output_conv2_aux_3_2")(aux)
        aux = conv(self.aux_channels, 1, "output_conv2_aux_3_5", impl=impl)(nn.relu(aux))
        return main, aux


class DualDPT(nn.Module):
    """Dual-DPT head (depth + ray map) of the any-view DA3 models.

    Attributes:
      dim_in: token width (2 D: concat of local and global features).
      features: fusion width F (64 small, 128 base, 256 large/giant).
      out_channels: C_0..C_3 of the 4 pyramid levels.
      patch_size: 14.
      second: what the second (aux) branch predicts (`configs.target_parts`): 'ray' (official),
        'point' (a world point map, the 'depth_point' ablation; same layers, 4 output channels)
        or None (no second branch: 'depth_cam').
      conv_impl: how the convolutions run: 'xla', 'matmul' or 'auto' (`da3_jax.model.conv`).

    `__call__(feats, image_hw)` returns a dict of float32 arrays:
      `depth [BN, H, W]` = exp(c0), `depth_conf [BN, H, W]` = exp(c1) + 1;
      second='ray': `ray [BN, 8ph, 8pw, 6]` (linear; [..., 0:3] direction, [..., 3:6] origin),
      `ray_conf [BN, 8ph, 8pw]` = exp(c6) + 1;
      second='point': `points [BN, H, W, 3]` (linear, world frame = the reference view's
      camera frame; align-corners resize of the 8ph x 8pw branch output to the image size) and
      `point_conf [BN, H, W]` = exp(c3) + 1.
    """

    dim_in: int
    features: int
    out_channels: Sequence[int]
    patch_size: int = 14
    second: str | None = "ray"
    conv_impl: str = "xla"

    @nn.compact
    def __call__(self, feats, image_hw):
        image_hw = (int(image_hw[0]), int(image_hw[1]))
        levels = reassemble(
            feats, image_hw, self.out_channels, self.patch_size, use_norm=True, pos_embed=True,
            conv_impl=self.conv_impl,
        )
        channels = {"ray": 7, "point": 4, None: 0}
        if self.second not in channels:
            raise ValueError(f"DualDPT.second={self.second!r}; expected 'ray', 'point' or None")
        main, aux = _DualScratch(
            self.features, channels[self.second], self.conv_impl, name="scratch"
        )(levels, image_hw)
        out = {"depth": jnp.exp(main[..., 0]), "depth_conf": _expp1(main[..., 1])}
        if self.second == "ray":
            out.update(ray=aux[..., :6], ray_conf=_expp1(aux[..., 6]))
        elif self.second == "point":
            aux = bilinear_resize_align_corners(aux, main.shape[1:3])
            out.update(points=aux[..., :3], point_conf=_expp1(aux[..., 3]))
        return out


class DPTScratch(nn.Module):
    """`head.scratch` of DPT / GSDPT (main chain + optional sky branch).

    `__call__(levels, image_hw, injected=None)`: `injected [BN, H, W, F/2]` (GSDPT's image
    merger output) is added right after the resize to the image size, before the UV embedding.
    Returns `(main_logits [BN, H, W, output_dim], sky_logit [BN, H, W, 1] or None)`.
    """

    features: int
    output_dim: int
    use_sky_head: bool
    pos_embed: bool
    conv_impl: str = "xla"

    @nn.compact
    def __call__(self, levels, image_hw, injected=None):
        f, impl = self.features, self.conv_impl
        rn = scratch_layers_rn(levels, f, impl)
        fused = conv(f // 2, 3, "output_conv1", impl=impl)(fusion_chain(rn, f, conv_impl=impl))
        h_out, w_out = (fused.shape[1] // 8) * 14, (fused.shape[2] // 8) * 14
        fused = bilinear_resize_align_corners(fused, (h_out, w_out))
        if injected is not None:
            fused = fused + injected
        if self.pos_embed:
            fused = add_uv_pos_embed(fused, image_hw)
        main = conv(HEAD_FEATURES_2, 3, "output_conv2_0", impl=impl)(fused)
        main = conv(self.output_dim, 1, "output_conv2_2", impl=impl)(nn.relu(main))
        if not self.use_sky_head:
            return main, None
        sky = conv(HEAD_FEATURES_2, 3, "sky_output_conv2_0", impl=impl)(fused)
        sky = conv(1, 1, "sky_output_conv2_2", impl=impl)(nn.relu(sky))
        return main, sky


class DPT(nn.Module):
    """Single-branch DPT head of the mono / metric models, with the sky head.

    Official mono/metric settings: `norm=False` (identity token norm), `pos_embed=False`,
    `output_dim=1`, `use_sky_head=True`.

    `__call__(feats, image_hw)` returns:
      `depth [BN, H, W]` = exp(c0) (output_dim == 1), or `depth [BN, H, W, output_dim - 1]` and
      `depth_conf [BN, H, W]` = exp(c_last) + 1 (output_dim > 1);
      `sky [BN, H, W]` = ReLU(sky logit) when `use_sky_head` (sky mask: sky >= 0.5; non-sky for
      alignment: sky < 0.3).
    """

    dim_in: int
    features: int
    out_channels: Sequence[int]
    output_dim: int = 1
    use_sky_head: bool = True
    pos_embed: bool = False
    norm: bool = False
    patch_size: int = 14
    conv_impl: str = "xla"  # 'xla', 'matmul' or 'auto' (`da3_jax.model.conv`)

    @nn.compact
    def __call__(self, feats, image_hw):
        image_hw = (int(image_hw[0]), int(image_hw[1]))
        levels = reassemble(
            feats,
            image_hw,
            self.out_channels,
            self.patch_size,
            use_norm=self.norm,
            pos_embed=self.pos_embed,
            conv_impl=self.conv_impl,
        )
        main, sky = DPTScratch(
            self.features, self.output_dim, self.use_sky_head, self.pos_embed, self.conv_impl,
            name="scratch",
        )(levels, image_hw)
        if self.output_dim == 1:
            out = {"depth": jnp.exp(main[..., 0])}
        else:
            out = {"depth": jnp.exp(main[..., :-1]), "depth_conf": _expp1(main[..., -1])}
        if sky is not None:
            out["sky"] = nn.relu(sky[..., 0])
        return out


def sky_postprocess(
    depth: jnp.ndarray,
    sky: jnp.ndarray,
    *,
    threshold: float = 0.3,
    quantile: float = 0.99,
    min_pixels: int = 10,
    max_depth: float | None = None,
) -> jnp.ndarray:
    """Mono/metric sky fill (`_process_mono_sky_estimation`, DA3-official.md §2.2).

    Pixels with `sky >= threshold` are sky. When both the sky and the non-sky region have more
    than `min_pixels` pixels (counted over the whole array, as upstream), every sky pixel's depth
    is set to the `quantile` (linear interpolation, as `torch.quantile`) of all non-sky depths,
    optionally capped at `max_depth` (the nested model's `_handle_sky_regions` uses 200).
    Otherwise `depth` is returned unchanged.

    Deterministic variant: upstream draws a random subsample of 100,000 non-sky values when there
    are more; this uses all of them, so results match upstream exactly up to 100k non-sky pixels
    and agree only statistically above. Jit-compatible (static shapes; mask via sorting).

    Args:
      depth: `[...]` float depth (any shape; the whole array is one population).
      sky: same shape, sky score (ReLU output of the sky head).
    Returns:
      depth with sky pixels replaced, same shape/dtype.
    """
    if depth.shape != sky.shape:
        raise ValueError(f"depth {depth.shape} and sky {sky.shape} must have the same shape")
    non_sky = sky < threshold
    flat_d = depth.reshape(-1)
    flat_m = non_sky.reshape(-1)
    n = jnp.sum(flat_m)
    n_sky = flat_m.size - n
    srt = jnp.sort(jnp.where(flat_m, flat_d, jnp.inf))
    pos = quantile * (jnp.maximum(n, 1) - 1).astype(jnp.float32)
    lo = jnp.floor(pos).astype(jnp.int32)
    hi = jnp.minimum(lo + 1, jnp.maximum(n, 1) - 1)
    frac = (pos - lo).astype(depth.dtype)
    fill = srt[lo] + (srt[hi] - srt[lo]) * frac
    if max_depth is not None:
        fill = jnp.minimum(fill, max_depth)
    apply = (n > min_pixels) & (n_sky > min_pixels)
    return jnp.where(apply & ~non_sky, fill.astype(depth.dtype), depth)
