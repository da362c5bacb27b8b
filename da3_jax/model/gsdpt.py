"""GS-DPT head of the giant model: per-pixel raw 3D-Gaussian parameters (DA3-official.md §2.3).

Flax port of `depth_anything_3/model/gsdpt.py`. It is the DPT structure with `norm_type="idt"`
(no token LayerNorm), the UV embedding on, no sky head, `output_dim=38`, plus `images_merger`:
three 3x3 convs (3 → F/8 → F/4 → F/2), each followed by exact (erf) GELU, applied to the
ImageNet-normalised input images and added to the upsampled `output_conv1` feature before the
second UV embedding.

Params (official key under `gs_head.` → flax path): `projects.0` → `projects_0`,
`resize_layers.0` → `resize_layers_0` (ConvTranspose, flax layout `(kh, kw, in, out)`),
`scratch.refinenet1.out_conv` → `scratch/refinenet1/out_conv`,
`scratch.output_conv2.2` → `scratch/output_conv2_2`, `images_merger.4` → `images_merger_4`.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from da3_jax.model.dpt import DPTScratch
from da3_jax.model.dpt_blocks import conv, reassemble


class GSDPT(nn.Module):
    """Gaussian-parameter DPT head.

    `__call__(feats, image_hw, images)`:
      feats: 4 arrays `[BN, ph*pw, dim_in]` (patch tokens, row-major over `(ph, pw)`);
      image_hw: `(H, W)`;
      images: `[BN, H, W, 3]` ImageNet-normalised input images (the backbone's input).
    Returns:
      `raw_gs [BN, H, W, output_dim - 1]` (linear; for the adapter: 2 xy offsets, 3 scales,
      4 quaternion xyzw, 3*(sh_degree+1)^2 SH, 1 depth offset) and
      `raw_gs_conf [BN, H, W]` = sigmoid(last channel) (the density).
    """

    dim_in: int
    features: int
    out_channels: Sequence[int]
    output_dim: int = 38
    patch_size: int = 14
    conv_impl: str = "xla"  # 'xla', 'matmul' or 'auto' (`da3_jax.model.conv`)

    @nn.compact
    def __call__(self, feats, image_hw, images):
        image_hw = (int(image_hw[0]), int(image_hw[1]))
        h_out = (image_hw[0] // self.patch_size) * self.patch_size
        w_out = (image_hw[1] // self.patch_size) * self.patch_size
        if images.ndim != 4 or images.shape[1:] != (h_out, w_out, 3):
            raise ValueError(
                f"images must be [BN, {h_out}, {w_out}, 3] (NHWC, ImageNet-normalised), "
                f"got {images.shape}"
            )
        levels = reassemble(
            feats, image_hw, self.out_channels, self.patch_size, use_norm=False, pos_embed=True,
            conv_impl=self.conv_impl,
        )
        merged = images.astype(jnp.float32)
        widths = (self.features // 8, self.features // 4, self.features // 2)
        for i, width in enumerate(widths):
            merged = conv(width, 3, f"images_merger_{2 * i}", impl=self.conv_impl)(merged)
            merged = jax.nn.gelu(merged, approximate=False)
        main, _ = DPTScratch(
            self.features, self.output_dim, use_sky_head=False, pos_embed=True,
            conv_impl=self.conv_impl, name="scratch",
        )(levels, image_hw, injected=merged)
        return {"raw_gs": main[..., :-1], "raw_gs_conf": jax.nn.sigmoid(main[..., -1])}
