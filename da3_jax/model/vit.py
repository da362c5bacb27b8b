"""DINOv2 ViT backbone with DA3's alternating within-view / cross-view attention.

Mirrors `DinoVisionTransformer._get_intermediate_layers_not_chunked` and
`get_intermediate_layers` of the official code (DA3-official.md §1.2-§1.4):

* tokens per view: token 0 (cls; overwritten by the camera token at `alt_start`) + P patches,
  P = (H/14)(W/14), row-major; activations stay [B, S, K, C] (K = 1 + P) and only the attention
  reshapes: local blocks run on [B*S, K, C], global blocks on [B, S*K, C];
* block i is global iff alt_start != -1, i >= alt_start and i is odd;
* reference-view reorder before block alt_start - 1 when S >= 3 and no camera tokens are given;
  outputs are returned in the input order;
* outputs per `out_layers` entry: patch features [B, S, P, C'] and the camera-token feature
  [B, S, C'] (taken before the final norm), C' = 2C with cat_token ([local_x raw, norm(x)]).

Parameter tree (official `backbone.pretrained.*` keys): `pretrained/{cls_token, camera_token,
pos_embed, patch_embed/proj, blocks_i/..., norm}`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from da3_jax.model import ref_view
from da3_jax.model.layers import Block, layer_norm
from da3_jax.model.pos_embed import interpolate_pos_embed
from da3_jax.model.rope import rope_tables
from da3_jax.parallel.attention import local_impl
from da3_jax.parallel.scan import PAIRS_NAME, PREFIX_NAME, maybe_remat, schedule_from_config
from da3_jax.parallel.view_parallel import view_token_mask


def is_global_block(i: int, alt_start: int) -> bool:
    """Official schedule: cross-view attention iff alt_start != -1, i >= alt_start, i odd."""
    return alt_start != -1 and i >= alt_start and i % 2 == 1


class VisionTransformer(nn.Module):
    """The `backbone.pretrained` module. See the module docstring for shapes."""

    config: ml_collections.ConfigDict

    @nn.compact
    def __call__(
        self,
        images: jax.Array,
        cam_token: jax.Array | None = None,
        ref_view_strategy: str = "saddle_balanced",
        num_views: int | None = None,
    ) -> list[tuple[jax.Array, jax.Array]]:
        """images [B, S, H, W, 3]; cam_token None or [B, S, D]; num_views: real views n <= S
        (views n.. are view-parallel padding: masked out of cross-view attention and of
        reference selection; their outputs are junk). Returns the out-layer features."""
        cfg = self.config
        dtype = jnp.dtype(cfg.dtype)
        b, s, h, w, _ = images.shape
        p = cfg.patch_size
        if h % p or w % p:
            raise ValueError(f"images H, W must be multiples of {p}; got {h}x{w}")
        gh, gw = h // p, w // p
        d = cfg.embed_dim
        init = nn.initializers.truncated_normal(0.02)
        cls_token = self.param("cls_token", nn.initializers.zeros, (1, 1, d))
        camera_token = (
            self.param("camera_token", nn.initializers.normal(1.0), (1, 2, d))
            if cfg.alt_start != -1
            else None
        )
        pos_embed = self.param("pos_embed", init, (1, cfg.pos_grid**2 + 1, d))

        patches = PatchEmbed(d, p, name="patch_embed")(images.reshape(b * s, h, w, 3))
        x = jnp.concatenate([jnp.broadcast_to(cls_token, (b * s, 1, d)), patches], axis=1)
        x = x + interpolate_pos_embed(pos_embed, (gh, gw), cfg.interpolate_offset)[None]
        k = x.shape[1]
        x = x.reshape(b, s, k, d)

        dh = d // cfg.num_heads
        local_rope = rope_tables((gh, gw), False, dh, cfg.rope_freq)
        glob = rope_tables((gh, gw), True, dh, cfg.rope_freq)
        global_rope = tuple(jnp.tile(t, (s, 1)) for t in glob)

        n = s if num_views is None else int(num_views)
        kv_mask = None
        if n < s:
            kv_mask = view_token_mask(b, n, s, k)
        select = (
            cfg.alt_start != -1 and n >= ref_view.MIN_VIEWS_FOR_SELECTION and cam_token is None
        )

        def block_kwargs(i: int) -> dict:
            glob_i = is_global_block(i, cfg.alt_start)
            return dict(
                num_heads=cfg.num_heads,
                mlp_ratio=cfg.mlp_ratio,
                ffn=cfg.ffn,
                norm_eps=1e-6,
                ls_init=1.0,
                qk_norm=cfg.qknorm_start != -1 and i >= cfg.qknorm_start,
                attention_impl=cfg.attention_impl if glob_i else local_impl(cfg.attention_impl),
                dtype=dtype,
            )

        def rope_for(i: int, glob_i: bool):
            if cfg.rope_start == -1 or i < cfg.rope_start:
                return None
            return global_rope if glob_i else local_rope

        remat = cfg.get("remat_policy", "none")
        restore = None
        local_x = x
        outs = {}

        def collect(i, lx, gx):
            out_x = jnp.concatenate([lx, gx], axis=-1) if cfg.cat_token else gx
            if restore is not None:
                out_x = ref_view.gather_views(out_x, restore)
            outs[i] = out_x

        for kind, idx in _segments(cfg):
            i = idx[0][0] if kind == "pairs" else idx[0]
            if select and i == cfg.alt_start - 1:
                b_idx = ref_view.select_reference_view(x, ref_view_strategy, n)
                order = ref_view.reorder_indices(b_idx, s)
                x = ref_view.gather_views(x, order)
                local_x = ref_view.gather_views(local_x, order)
                restore = ref_view.restore_indices(b_idx, s)
            if cfg.alt_start != -1 and i == cfg.alt_start:
                if cam_token is None:
                    cam_token = jnp.concatenate(
                        [
                            jnp.broadcast_to(camera_token[:, :1], (b, 1, d)),
                            jnp.broadcast_to(camera_token[:, 1:], (b, s - 1, d)),
                        ],
                        axis=1,
                    )
                x = x.at[:, :, 0].set(cam_token.astype(x.dtype))
            if kind == "prefix":  # local blocks without RoPE / q-k norm, scanned
                want = [j for j, blk_i in enumerate(idx) if blk_i in cfg.out_layers]
                block = maybe_remat(Block, remat, prevent_cse=False)
                body = nn.scan(
                    _prefix_step if want else _prefix_step_quiet,
                    variable_axes={"params": 0},
                    split_rngs={"params": True},
                    length=len(idx),
                )
                y, ys = body(block(**block_kwargs(i), name=PREFIX_NAME), x.reshape(b * s, k, d),
                             None)
                x = local_x = y.reshape(b, s, k, d)
                for j in want:
                    xj = ys[j].reshape(b, s, k, d)
                    collect(idx[j], xj, xj)
            elif kind == "pairs":  # (local, global) pairs with identical flags, scanned
                want = [j for j, pr in enumerate(idx) if set(pr) & set(cfg.out_layers)]
                pair = maybe_remat(_Pair, remat, prevent_cse=False)
                body = nn.scan(
                    _pair_step if want else _pair_step_quiet,
                    variable_axes={"params": 0},
                    split_rngs={"params": True},
                    in_axes=(nn.broadcast, nn.broadcast, nn.broadcast),
                    length=len(idx),
                )
                (x, local_x), ys = body(
                    pair(block_kwargs(idx[0][0]), block_kwargs(idx[0][1]), name=PAIRS_NAME),
                    (x, local_x), rope_for(idx[0][0], False), rope_for(idx[0][1], True), kv_mask,
                )
                for j in want:
                    li, gi = idx[j]
                    if li in cfg.out_layers:
                        collect(li, ys[0][j], ys[0][j])
                    if gi in cfg.out_layers:
                        collect(gi, ys[0][j], ys[1][j])
            else:
                glob_i = is_global_block(i, cfg.alt_start)
                blk = Block(**block_kwargs(i), name=f"blocks_{i}")
                if glob_i:
                    x = blk(x.reshape(b, s * k, d), rope_for(i, True), kv_mask)
                    x = x.reshape(b, s, k, d)
                else:
                    x = blk(x.reshape(b * s, k, d), rope_for(i, False))
                    x = x.reshape(b, s, k, d)
                    local_x = x
                if i in cfg.out_layers:
                    collect(i, local_x, x)
        outputs = [outs[i] for i in sorted(outs)]

        norm = layer_norm(1e-5, "norm")
        feats = []
        for out_x in outputs:
            cam_feat = out_x[:, :, 0]
            if cfg.cat_token:
                tokens = jnp.concatenate([out_x[..., :d], norm(out_x[..., d:])], axis=-1)
            else:
                tokens = norm(out_x)
            feats.append((tokens[:, :, 1:].astype(jnp.float32), cam_feat.astype(jnp.float32)))
        return feats


def _segments(cfg: ml_collections.ConfigDict) -> list[tuple[str, tuple]]:
    """Block plan in order: ('block', (i,)) unrolled, or with `config.scan_layers`
    ('prefix', (0..p-1)) and ('pairs', ((i, i+1), ...)) from `parallel.scan.schedule_from_config`
    (leftovers unrolled)."""
    if not cfg.get("scan_layers", False):
        return [("block", (i,)) for i in range(cfg.depth)]
    sched = schedule_from_config(cfg)
    items = [("block", (i,)) for i in sched.leftover]
    if sched.prefix:
        items.append(("prefix", sched.prefix))
    if sched.pairs:
        items.append(("pairs", sched.pairs))
    return sorted(items, key=lambda it: it[1][0][0] if it[0] == "pairs" else it[1][0])


class _Pair(nn.Module):
    """One scanned (local, global) pair: `local` on [B*S, K, C], then `global` on [B, S*K, C].
    Carry (x, local_x) [B, S, K, C]; returns the new carry and (local out, global out)."""

    local_kwargs: dict
    global_kwargs: dict

    @nn.compact
    def __call__(self, carry, rope_local, rope_global, kv_mask):
        x, _ = carry
        b, s, k, d = x.shape
        lx = Block(**self.local_kwargs, name="local")(x.reshape(b * s, k, d), rope_local)
        lx = lx.reshape(b, s, k, d)
        gx = Block(**self.global_kwargs, name="global")(
            lx.reshape(b, s * k, d), rope_global, kv_mask
        )
        gx = gx.reshape(b, s, k, d)
        return (gx, lx), (lx, gx)


def _prefix_step(mdl, c, _):
    y = mdl(c)
    return y, y


def _prefix_step_quiet(mdl, c, _):
    return mdl(c), None


def _pair_step(mdl, c, rl, rg, m):
    return mdl(c, rl, rg, m)


def _pair_step_quiet(mdl, c, rl, rg, m):
    return mdl(c, rl, rg, m)[0], None


class PatchEmbed(nn.Module):
    """14x14 stride-14 conv with bias (`patch_embed/proj`): [N, H, W, 3] -> [N, P, D]."""

    embed_dim: int
    patch_size: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        p = self.patch_size
        x = nn.Conv(
            self.embed_dim,
            (p, p),
            strides=(p, p),
            padding="VALID",
            kernel_init=nn.initializers.truncated_normal(0.02),
            precision=jax.lax.Precision.HIGHEST,
            name="proj",
        )(x)
        return x.reshape(x.shape[0], -1, self.embed_dim)


class Backbone(nn.Module):
    """The official `DinoV2` wrapper (`backbone`), holding `pretrained`."""

    config: ml_collections.ConfigDict

    @nn.compact
    def __call__(
        self, images, cam_token=None, ref_view_strategy="saddle_balanced", num_views=None
    ) -> Any:
        return VisionTransformer(self.config, name="pretrained")(
            images, cam_token, ref_view_strategy, num_views
        )
