"""Camera encoder (pose conditioning) and camera decoder (pose output) of DA3.

Ports of the official `cam_enc.py` / `cam_dec.py` (DA3-official.md §3.2, §3.3). Both run in
float32 (the official code disables autocast around them). The 9-number pose encoding lives in
`da3_jax.geometry` (`encode_pose` / `decode_pose`); cameras are w2c 3x4, OpenCV axes, pixel
intrinsics of the network input size.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from da3_jax.geometry import encode_pose
from da3_jax.model.layers import Block, Mlp, dense, layer_norm


class CameraEnc(nn.Module):
    """Input cameras -> one token per view [B, S, D] (written into token 0 at `alt_start`).

    pose_branch (Mlp 9 -> D/2 -> D, GELU) -> token_norm -> `trunk_0..3` (transformer blocks
    across the S views: `num_heads` heads (16 for every official variant), LayerScale init 0.01,
    LayerNorm eps 1e-5, no q/k-norm, no RoPE) -> trunk_norm.
    """

    dim: int
    num_heads: int = 16
    depth: int = 4
    mlp_ratio: float = 4.0
    attention_impl: str = "auto"

    @nn.compact
    def __call__(
        self,
        extrinsics: jax.Array,
        intrinsics: jax.Array,
        image_hw: tuple[int, int],
        view_mask: jax.Array | None = None,
    ) -> jax.Array:
        """extrinsics [B, S, 3|4, 4] w2c, intrinsics [B, S, 3, 3] (pixels of image_hw).

        view_mask: None or bool [B, S] (False = padded view, excluded as a key from the
        attention over views; its own token is junk and must be dropped by the caller).
        """
        pose = encode_pose(extrinsics, intrinsics, image_hw).astype(jnp.float32)
        x = Mlp(self.dim // 2, self.dim, name="pose_branch")(pose)
        x = layer_norm(1e-5, "token_norm")(x)
        for i in range(self.depth):
            x = Block(
                num_heads=self.num_heads,
                mlp_ratio=self.mlp_ratio,
                norm_eps=1e-5,
                ls_init=0.01,
                attention_impl=self.attention_impl,
                name=f"trunk_{i}",
            )(x, None, view_mask)
        return layer_norm(1e-5, "trunk_norm")(x)


class CameraDec(nn.Module):
    """Camera-token feature [B, S, C] (raw concat of the last out layer) -> pose_enc [B, S, 9].

    backbone_0 (Linear C->C), ReLU, backbone_2 (Linear C->C), ReLU, then fc_t (3),
    fc_qvec (4, xyzw) and fc_fov_0 (2, followed by ReLU so fov >= 0): [t, q, fov_h, fov_w].
    """

    @nn.compact
    def __call__(self, feat: jax.Array) -> jax.Array:
        c = feat.shape[-1]
        x = feat.astype(jnp.float32)
        x = nn.relu(dense(c, "backbone_0", jnp.float32)(x))
        x = nn.relu(dense(c, "backbone_2", jnp.float32)(x))
        t = dense(3, "fc_t", jnp.float32)(x)
        q = dense(4, "fc_qvec", jnp.float32)(x)
        fov = nn.relu(dense(2, "fc_fov_0", jnp.float32)(x))
        return jnp.concatenate([t, q, fov], axis=-1)
