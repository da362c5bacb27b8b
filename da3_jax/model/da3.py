"""The DA3 network: backbone + head + cameras, for every official variant.

`DA3(config)` mirrors the official `DepthAnything3Net.forward` (any-view and mono/metric models)
and `NestedDepthAnything3Net.forward` (config.kind == 'nested'). The pose normalisation done by
the official *API* before calling the network (`_normalize_extrinsics` in `api.py`) is not part
of the network; it is `normalize_input_extrinsics` below, for the inference API to call.

Conventions: images are float32 [B, N, H, W, 3], ImageNet-normalised, H and W multiples of 14;
extrinsics are w2c (OpenCV axes: x right, y down, z forward), intrinsics in pixels of the input
size; depth is z-depth. Parameter names follow the official state-dict keys (see
`da3_jax.convert`): `backbone/pretrained/...`, `head/...`, `cam_enc/...`, `cam_dec/...`
(nested: `da3/...` and `da3_metric/...`).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from da3_jax.geometry import decode_pose, rays_to_camera
from da3_jax.model import configs as configs_lib
from da3_jax.model import dpt
from da3_jax.model.camera import CameraDec, CameraEnc
from da3_jax.model.gsdpt import GSDPT
from da3_jax.model.nested import align_nested
from da3_jax.model.ref_view import STRATEGIES
from da3_jax.model.vit import Backbone


class DA3(nn.Module):
    """Depth Anything 3 network (see the module docstring).

    `__call__(images, extrinsics=None, intrinsics=None, ref_view_strategy='saddle_balanced',
    use_ray_pose=False)` returns a dict of float32 arrays:

    any-view models:
      depth [B,N,H,W] (exp), depth_conf [B,N,H,W] (exp + 1), ray [B,N,h,w,6] (h, w = 8H/14,
      8W/14; [..., 0:3] world direction, [..., 3:6] camera centre), ray_conf [B,N,h,w],
      pose_enc [B,N,9] (camera decoder), extrinsics [B,N,3,4] (w2c), intrinsics [B,N,3,3].
      With use_ray_pose the cameras come from the ray map (`geometry.rays_to_camera`,
      method 'official'); otherwise from the camera decoder (principal point at the centre).
      Input cameras (extrinsics [B,N,3|4,4] w2c and intrinsics) condition the backbone through
      the camera encoder; view 0 is then the reference and no reference selection runs.
      infer_gs (giant): adds the raw GS-DPT outputs raw_gs [B,N,H,W,37] and raw_gs_conf
      [B,N,H,W] (the Gaussian adapter is not part of the network here).
    mono / metric models: depth [B,N,H,W] (sky pixels filled with the 0.99 quantile of the
      non-sky depth, as upstream) and sky [B,N,H,W].
    nested model: the any-view outputs, scaled to metres by the metric branch (§4.3), plus
      metric_depth, sky and scale_factor (scalar).
    """

    config: ml_collections.ConfigDict

    @nn.compact
    def __call__(
        self,
        images: jax.Array,
        extrinsics: jax.Array | None = None,
        intrinsics: jax.Array | None = None,
        ref_view_strategy: str = "saddle_balanced",
        use_ray_pose: bool = False,
        infer_gs: bool = False,
    ) -> dict[str, jax.Array]:
        cfg = self.config
        _check_inputs(images, extrinsics, intrinsics, ref_view_strategy)
        if cfg.kind == "nested":
            out = DA3(cfg.anyview, name="da3")(
                images, extrinsics, intrinsics, ref_view_strategy, use_ray_pose, infer_gs
            )
            metric = DA3(cfg.metric, name="da3_metric")(images)
            return align_nested(
                out,
                metric,
                focal_scale=cfg.metric_focal_scale,
                sky_depth_max=cfg.sky_depth_max,
            )
        configs_lib.validate(cfg)
        if extrinsics is not None and not cfg.cam_enc:
            raise ValueError(f"extrinsics given but {cfg.name!r} has no camera encoder")
        b, n, h, w, _ = images.shape
        images = images.astype(jnp.float32)

        cam_token = None
        if cfg.cam_enc and (extrinsics is not None or self.is_initializing()):
            cam_enc = CameraEnc(
                cfg.embed_dim,
                num_heads=cfg.cam_enc_heads,
                depth=cfg.cam_enc_depth,
                mlp_ratio=cfg.mlp_ratio,
                attention_impl=cfg.attention_impl,
                name="cam_enc",
            )
            if extrinsics is not None:
                cam_token = cam_enc(extrinsics, intrinsics, (h, w))
            else:  # init without cameras: still create the encoder's params
                k = jnp.array([[w, 0, w / 2], [0, w, h / 2], [0, 0, 1.0]])
                cam_enc(
                    jnp.broadcast_to(jnp.eye(4)[:3], (b, n, 3, 4)),
                    jnp.broadcast_to(k, (b, n, 3, 3)),
                    (h, w),
                )

        feats = Backbone(cfg, name="backbone")(images, cam_token, ref_view_strategy)
        tokens = [f.reshape(b * n, f.shape[2], f.shape[3]) for f, _ in feats]
        dim_in = configs_lib.head_dim_in(cfg)
        if cfg.head == "dualdpt":
            head = dpt.DualDPT(
                dim_in, cfg.head_features, tuple(cfg.head_out_channels), cfg.patch_size,
                name="head",
            )
        else:
            head = dpt.DPT(
                dim_in,
                cfg.head_features,
                tuple(cfg.head_out_channels),
                output_dim=1,
                use_sky_head=cfg.head_use_sky,
                patch_size=cfg.patch_size,
                name="head",
            )
        raw = head(tokens, (h, w))
        out = {k: v.reshape((b, n) + v.shape[1:]) for k, v in raw.items()}

        if cfg.cam_dec:
            pose_enc = CameraDec(name="cam_dec")(feats[-1][1])
            out["pose_enc"] = pose_enc
            out["extrinsics"], out["intrinsics"] = decode_pose(pose_enc, (h, w))
        if use_ray_pose:
            if "ray" not in out:
                raise ValueError(f"use_ray_pose=True needs a ray head; {cfg.name} has none")
            out["extrinsics"], out["intrinsics"] = ray_pose(out["ray"], out["ray_conf"], (h, w))
        if cfg.gs_head and (infer_gs or self.is_initializing()):
            gs = GSDPT(
                dim_in, cfg.head_features, tuple(cfg.head_out_channels), patch_size=cfg.patch_size,
                name="gs_head",
            )(tokens, (h, w), images.reshape(b * n, h, w, 3))
            if infer_gs:
                out.update({k: v.reshape((b, n) + v.shape[1:]) for k, v in gs.items()})
        if "sky" in out:
            out["depth"] = dpt.sky_postprocess(out["depth"], out["sky"])
        return out


def ray_pose(
    ray: jax.Array, ray_conf: jax.Array, image_hw: tuple[int, int], **solver_kwargs
) -> tuple[jax.Array, jax.Array]:
    """Cameras from the ray map (official `_process_ray_pose_estimation`).

    ray [B,N,h,w,6], ray_conf [B,N,h,w] -> (w2c [B,N,3,4], K [B,N,3,3] in pixels of image_hw).
    `solver_kwargs` go to `geometry.rays_to_camera` (e.g. `key`, `sample_table`); the network
    uses the defaults (RANSAC table from PRNGKey(0)).
    """
    return rays_to_camera(ray, ray_conf, image_hw, method="official", **solver_kwargs)


def normalize_input_extrinsics(extrinsics: jax.Array) -> jax.Array:
    """The official API's pose normalisation before conditioning (`api.py::_normalize_extrinsics`).

    1. ext <- ext @ inverse(ext_0): view 0 becomes the world frame (identity w2c);
    2. d = median over views of the camera-centre distances to the origin (the lower middle value
       for an even count, as `torch.median`), clamped to >= 0.1;
    3. every w2c translation is divided by d.
    Upstream takes one median over the whole tensor; the API always has B = 1, here each sample
    gets its own median.

    Args:
      extrinsics: [B, N, 3|4, 4] w2c (rigid).
    Returns:
      normalised w2c of the same shape.
    """
    ext = jnp.asarray(extrinsics, jnp.float32)
    if ext.ndim != 4 or ext.shape[-1] != 4 or ext.shape[-2] not in (3, 4):
        raise ValueError(f"extrinsics must be [B, N, 3|4, 4] w2c; got {ext.shape}")
    rows = ext.shape[-2]
    hom = jnp.concatenate(
        [ext[..., :3, :], jnp.broadcast_to(jnp.array([0, 0, 0, 1.0]), ext.shape[:-2] + (1, 4))],
        axis=-2,
    )
    r0, t0 = hom[:, :1, :3, :3], hom[:, :1, :3, 3:]
    inv0 = jnp.concatenate(
        [
            jnp.concatenate([jnp.swapaxes(r0, -1, -2), -jnp.swapaxes(r0, -1, -2) @ t0], axis=-1),
            hom[:, :1, 3:],
        ],
        axis=-2,
    )
    norm = jnp.einsum("bnij,bmjk->bnik", hom, inv0, precision=jax.lax.Precision.HIGHEST)
    rot, t = norm[..., :3, :3], norm[..., :3, 3]
    centres = -jnp.einsum("bnji,bnj->bni", rot, t, precision=jax.lax.Precision.HIGHEST)
    dist = jnp.sort(jnp.linalg.norm(centres, axis=-1), axis=-1)
    median = jnp.maximum(dist[:, (dist.shape[1] - 1) // 2], 0.1)
    norm = norm.at[..., :3, 3].set(t / median[:, None, None])
    return norm[..., :rows, :]


def _check_inputs(images, extrinsics, intrinsics, ref_view_strategy) -> None:
    if images.ndim != 5 or images.shape[-1] != 3:
        raise ValueError(f"images must be [B, N, H, W, 3]; got {images.shape}")
    b, n = images.shape[:2]
    if (extrinsics is None) != (intrinsics is None):
        raise ValueError("extrinsics and intrinsics must be given together")
    if extrinsics is not None:
        if extrinsics.shape[:2] != (b, n) or extrinsics.shape[2:] not in ((3, 4), (4, 4)):
            raise ValueError(f"extrinsics must be [B={b}, N={n}, 3|4, 4]; got {extrinsics.shape}")
        if intrinsics.shape != (b, n, 3, 3):
            raise ValueError(f"intrinsics must be [B={b}, N={n}, 3, 3]; got {intrinsics.shape}")
    if ref_view_strategy not in STRATEGIES:
        raise ValueError(f"ref_view_strategy={ref_view_strategy!r}; expected one of {STRATEGIES}")
