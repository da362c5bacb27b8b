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
from jax.sharding import PartitionSpec as P

from da3_jax.geometry import decode_pose, rays_from_points, rays_to_camera
from da3_jax.model import configs as configs_lib
from da3_jax.model import dpt
from da3_jax.model.camera import CameraDec, CameraEnc
from da3_jax.model.gs_adapter import model_gaussians
from da3_jax.model.gsdpt import GSDPT
from da3_jax.model.nested import align_nested
from da3_jax.model.ref_view import STRATEGIES
from da3_jax.model.vit import Backbone
from da3_jax.parallel.attention import split_impl
from da3_jax.parallel.view_parallel import (
    VIEW_AXIS,
    pad_views,
    padded_view_count,
    unpad_views,
    view_axis_size,
    view_token_mask,
)


class DA3(nn.Module):
    """Depth Anything 3 network (see the module docstring).

    `__call__(images, extrinsics=None, intrinsics=None, ref_view_strategy='saddle_balanced',
    use_ray_pose=False, infer_gs=False)` returns a dict of float32 arrays:

    any-view models:
      depth [B,N,H,W] (exp), depth_conf [B,N,H,W] (exp + 1), ray [B,N,h,w,6] (h, w = 8H/14,
      8W/14; [..., 0:3] world direction, [..., 3:6] camera centre), ray_conf [B,N,h,w],
      pose_enc [B,N,9] (camera decoder), extrinsics [B,N,3,4] (w2c), intrinsics [B,N,3,3].
      With use_ray_pose the cameras come from the ray map (`geometry.rays_to_camera`,
      method 'official'); otherwise from the camera decoder (principal point at the centre).
      `config.targets` (the prediction-target ablation, `configs.target_parts`) removes
      outputs: 'depth_ray' has no camera decoder (no pose_enc; cameras from the ray map),
      'depth_cam' no ray map (ray, ray_conf), and 'depth_point' has neither but points
      [B,N,H,W,3] and point_conf [B,N,H,W] (world frame), with cameras fitted to the point map
      (`geometry.rays_from_points`, then `rays_to_camera` method 'exact').
      Input cameras (extrinsics [B,N,3|4,4] w2c and intrinsics) condition the backbone through
      the camera encoder; view 0 is then the reference and no reference selection runs.
      infer_gs (giant): adds the raw GS-DPT outputs raw_gs [B,N,H,W,37] and raw_gs_conf
      [B,N,H,W] (density), and `gaussians` (`gs_adapter.model_gaussians`: the adapter with the
      config's `gs_color_residual` / `gs_z_depth`, on the predicted cameras and depth with
      opacity `map_pdf_to_opacity(raw_gs_conf)`): means, scales
      [B,N*H*W,3], rotations [B,N*H*W,4] (xyzw), harmonics [B,N*H*W,3,9], opacities [B,N*H*W].
      As upstream without input cameras; with input cameras upstream also multiplies centres
      and depths by a Umeyama scale to those cameras (`pose_scale`), which is not applied here
      (the Gaussians stay in the predicted frame, like depth and extrinsics).
    mono / metric models: depth [B,N,H,W] (sky pixels filled with the 0.99 quantile of the
      non-sky depth, as upstream) and sky [B,N,H,W].
    nested model: the any-view outputs, scaled to metres by the metric branch (§4.3), plus
      metric_depth, sky and scale_factor (scalar).

    `__call__` is `encode` (camera encoder + backbone over all views jointly) followed by
    `decode` (per-view heads and cameras) and the whole-batch post-processing (mono sky fill,
    Gaussians). Both stages are usable on their own with `model.apply(..., method='encode' |
    'decode')`; the inference forward runs the heads in chunks of views that way.

    View parallelism: when `config.attention_impl` is a view mode ('allgather_view',
    'ring_view', optionally ':kernel') and a mesh with a `view` axis of size V is set
    (`jax.set_mesh`), N is padded to a multiple of V (repeating the last view); padded views
    are masked out of every attention over views and of reference selection, and dropped from
    the outputs, so results equal the unpadded single-device forward.
    """

    config: ml_collections.ConfigDict

    def setup(self):
        cfg = self.config
        if cfg.kind == "nested":
            self.da3 = DA3(cfg.anyview)
            self.da3_metric = DA3(cfg.metric)
            return
        configs_lib.validate(cfg)
        if cfg.cam_enc:
            self.cam_enc = CameraEnc(
                cfg.embed_dim,
                num_heads=cfg.cam_enc_heads,
                depth=cfg.cam_enc_depth,
                mlp_ratio=cfg.mlp_ratio,
                attention_impl=cfg.attention_impl,
            )
        self.backbone = Backbone(cfg)
        dim_in = configs_lib.head_dim_in(cfg)
        conv_impl = cfg.get("conv_impl", "xla")  # older saved configs have no field
        second, camera = configs_lib.target_parts(cfg)
        if cfg.head == "dualdpt":
            self.head = dpt.DualDPT(
                dim_in, cfg.head_features, tuple(cfg.head_out_channels), cfg.patch_size, second,
                conv_impl=conv_impl,
            )
        else:
            self.head = dpt.DPT(
                dim_in,
                cfg.head_features,
                tuple(cfg.head_out_channels),
                output_dim=1,
                use_sky_head=cfg.head_use_sky,
                patch_size=cfg.patch_size,
                conv_impl=conv_impl,
            )
        if camera:
            self.cam_dec = CameraDec()
        if cfg.gs_head:
            self.gs_head = GSDPT(
                dim_in, cfg.head_features, tuple(cfg.head_out_channels), patch_size=cfg.patch_size,
                conv_impl=conv_impl,
            )

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
            out = self.da3(
                images, extrinsics, intrinsics, ref_view_strategy, use_ray_pose, infer_gs
            )
            out.pop("gaussians", None)  # recomputed below on the metric scale
            metric = self.da3_metric(images)
            out = align_nested(
                out,
                metric,
                focal_scale=cfg.metric_focal_scale,
                sky_depth_max=cfg.sky_depth_max,
            )
            if infer_gs:  # from the metric-scaled depth and cameras
                out["gaussians"] = gaussians(out, cfg, images)
            return out
        if infer_gs and not cfg.gs_head:
            raise ValueError(f"infer_gs=True needs a GS head; {cfg.name} has none")
        n = images.shape[1]
        feats, padded = self._encode(images, extrinsics, intrinsics, ref_view_strategy)
        out = self.decode(feats, padded, use_ray_pose, infer_gs)
        out = {k: unpad_views(v, n) for k, v in out.items()}
        if "sky" in out:
            out["depth"] = dpt.sky_postprocess(out["depth"], out["sky"])
        if infer_gs:
            out["gaussians"] = gaussians(out, cfg, images)
        return out

    def encode(
        self,
        images: jax.Array,
        extrinsics: jax.Array | None = None,
        intrinsics: jax.Array | None = None,
        ref_view_strategy: str = "saddle_balanced",
    ) -> list[tuple[jax.Array, jax.Array]]:
        """Camera encoder (when cameras are given) + backbone over all N views jointly.

        Inputs as `__call__`. Returns the 4 out-layer features, each a pair (patch tokens
        [B, N, P, C'], camera-token feature [B, N, C']), P = (H/14)(W/14), C' = 2 embed_dim
        with cat_token; the input of `decode`. Not for the nested config (call the model).
        """
        _check_inputs(images, extrinsics, intrinsics, ref_view_strategy)
        n = images.shape[1]
        feats, _ = self._encode(images, extrinsics, intrinsics, ref_view_strategy)
        return [(unpad_views(f, n), unpad_views(c, n)) for f, c in feats]

    def decode(
        self,
        feats: list[tuple[jax.Array, jax.Array]],
        images: jax.Array,
        use_ray_pose: bool = False,
        infer_gs: bool = False,
    ) -> dict[str, jax.Array]:
        """Per-view heads and cameras for the views of `feats` (any subset of views).

        feats: `encode` output for M views; images [B, M, H, W, 3] (the same views; sizes the
        outputs and feeds the GS head). Returns `__call__`'s per-view outputs before the
        whole-batch steps: mono/metric `depth` is not sky-filled, no `gaussians`.
        """
        cfg = self.config
        if cfg.kind == "nested":
            raise ValueError("decode is not defined for the nested config; call the model")
        b, m, h, w, _ = images.shape
        if any(f.shape[:2] != (b, m) or c.shape[:2] != (b, m) for f, c in feats):
            raise ValueError(
                f"feats must be encode() features for [B={b}, M={m}] views; got "
                f"{[(f.shape, c.shape) for f, c in feats]}"
            )
        tokens = [f.reshape(b * m, f.shape[2], f.shape[3]) for f, _ in feats]
        raw = self.head(tokens, (h, w))
        out = {k: v.reshape((b, m) + v.shape[1:]) for k, v in raw.items()}
        if configs_lib.target_parts(cfg)[1]:
            pose_enc = self.cam_dec(feats[-1][1])
            out["pose_enc"] = pose_enc
            out["extrinsics"], out["intrinsics"] = decode_pose(pose_enc, (h, w))
        elif "points" in out:  # 'depth_point': cameras fitted to the point map
            rays = rays_from_points(out["points"], out["depth"], out["point_conf"])
            out["extrinsics"], out["intrinsics"] = rays_to_camera(
                rays, out["point_conf"], (h, w), method="exact"
            )
        if use_ray_pose or cfg.get("targets") == "depth_ray":
            if "ray" not in out:
                raise ValueError(f"use_ray_pose=True needs a ray head; {cfg.name} has none")
            out["extrinsics"], out["intrinsics"] = ray_pose(out["ray"], out["ray_conf"], (h, w))
        if infer_gs and not cfg.gs_head:
            raise ValueError(f"infer_gs=True needs a GS head; {cfg.name} has none")
        if cfg.gs_head and (infer_gs or self.is_initializing()):
            gs = self.gs_head(tokens, (h, w), images.astype(jnp.float32).reshape(b * m, h, w, 3))
            if infer_gs:
                out.update({k: v.reshape((b, m) + v.shape[1:]) for k, v in gs.items()})
        return out

    def _encode(self, images, extrinsics, intrinsics, ref_view_strategy):
        """`encode` on the view-padded inputs: returns (padded features, padded images)."""
        cfg = self.config
        if cfg.kind == "nested":
            raise ValueError("encode is not defined for the nested config; call the model")
        if extrinsics is not None and not cfg.cam_enc:
            raise ValueError(f"extrinsics given but {cfg.name!r} has no camera encoder")
        b, n, h, w, _ = images.shape
        images = images.astype(jnp.float32)
        n_pad = n
        if split_impl(cfg.attention_impl)[0] is not None:
            n_pad = padded_view_count(n)
        if n_pad != n:
            images = _shard_views(pad_views(images, n_pad))
            if extrinsics is not None:
                extrinsics = pad_views(extrinsics, n_pad)
                intrinsics = pad_views(intrinsics, n_pad)

        cam_token = None
        if cfg.cam_enc and (extrinsics is not None or self.is_initializing()):
            if extrinsics is not None:
                view_mask = None if n_pad == n else view_token_mask(b, n, n_pad, 1)
                cam_token = self.cam_enc(extrinsics, intrinsics, (h, w), view_mask)
            else:  # init without cameras: still create the encoder's params
                k = jnp.array([[w, 0, w / 2], [0, w, h / 2], [0, 0, 1.0]])
                self.cam_enc(
                    jnp.broadcast_to(jnp.eye(4)[:3], (b, n_pad, 3, 4)),
                    jnp.broadcast_to(k, (b, n_pad, 3, 3)),
                    (h, w),
                )
        feats = self.backbone(images, cam_token, ref_view_strategy, n)
        return feats, images


def _shard_views(x: jax.Array) -> jax.Array:
    """Constrain the view axis (1) of padded inputs to the `view` mesh axis (the caller could not
    shard an indivisible N); other axes are left to the compiler."""
    if view_axis_size() == 1:
        return x
    spec = P(P.UNCONSTRAINED, VIEW_AXIS, *([P.UNCONSTRAINED] * (x.ndim - 2)))
    return jax.lax.with_sharding_constraint(x, spec)


def gaussians(out: dict[str, jax.Array], config: ml_collections.ConfigDict,
              images: jax.Array) -> dict[str, jax.Array]:
    """World-space Gaussians (`gs_adapter.model_gaussians`: the adapter with the options of the
    model `config`) from the outputs of `DA3` with infer_gs: predicted cameras and depth, opacity
    `map_pdf_to_opacity(raw_gs_conf)`; `images` the ImageNet-normalised input views."""
    return model_gaussians(config, out["extrinsics"], out["intrinsics"], out["depth"],
                           out["raw_gs"], out["raw_gs_conf"], images)


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
