"""Model configurations: one `ml_collections.ConfigDict` per DA3 variant.

`get_config(name)` returns a fresh, mutable config. Every architectural schedule value is a
field so scaling studies can vary it (DA3-official.md §1.1 gives the official values):

  kind              'anyview' (backbone + DualDPT + cameras), 'mono' (DPT + sky, no cameras) or
                    'nested' (fields `anyview` and `metric` hold the two sub-configs).
  patch_size        14.
  pos_grid          37: side of the learned position table (518 / 14).
  interpolate_offset 0.1: the official scale-factor offset of the position-table resize.
  embed_dim, depth, num_heads, mlp_ratio
  ffn               'mlp' (fc1 -> GELU(erf) -> fc2) or 'swiglu' (giant: w12 -> silu(x1)*x2 -> w3).
  out_layers        4 block indices whose outputs feed the head.
  alt_start         first block that may be global (block i is global iff i >= alt_start and
                    i is odd); -1 disables alternation, camera token and reference selection.
  qknorm_start, rope_start  first block with q/k LayerNorm / 2D RoPE (-1: none).
  rope_freq         100.
  cat_token         features are [local_x, norm(x)] (2*embed_dim) instead of norm(x).
  head              'dualdpt' or 'dpt'; head_features, head_out_channels, head_use_sky.
  cam_enc, cam_dec  camera encoder / decoder present; cam_enc_heads (16 for every official
                    variant), cam_enc_depth (4).
  targets           the prediction targets (the paper's ablation, one of `TARGETS`); it sets the
                    DualDPT second branch and whether the camera decoder is built
                    (`target_parts`): 'depth_ray_cam' (default: every official any-view model,
                    ray map + camera decoder), 'depth_ray' (DA3's minimal set: ray map, no
                    camera decoder), 'depth_cam' (no second branch, camera decoder only),
                    'depth_point' (the second branch predicts a world point map + confidence, no
                    camera decoder). The training loss follows the outputs (`train.losses`).
  gs_head           Gaussian head present (giant; parameters only, see the heads module).
  gs_color_residual, gs_z_depth
                    our two deviations from the official Gaussian adapter, for a GS head trained
                    with them (`da3_jax.train.nvs`); False (the default) is the official adapter,
                    which converted official checkpoints need. `gs_color_residual`: the context
                    pixel's RGB is added to the SH DC term; `gs_z_depth`: the depth is camera z,
                    not the range along the unit ray (`gs_adapter.gaussian_adapter`'s `colors`
                    and `z_depth`). Every path that builds Gaussians applies them through
                    `gs_adapter.model_gaussians`, and a checkpoint's config.json carries them
                    (configs without the fields mean False).
  attention_impl    passed to `da3_jax.parallel.attention.dot_product_attention` ("auto":
                    the fastest exact linear-memory kernel of the backend).
  conv_impl         how the heads' convolutions run (`da3_jax.model.conv`): 'xla' (default:
                    XLA's convolution, as the inference parity tests use), 'matmul' (im2col +
                    one dot; slower on XLA:CPU) or 'auto' (per convolution, the implementation
                    measured faster for training on the backend: 'xla' on CPU; 'xla' on GPU/TPU,
                    unmeasured there). Same params for every value.
  dtype             compute dtype of the backbone ('float32' or 'bfloat16'); params stay fp32,
                    LayerNorm statistics, softmax, heads and cameras run in fp32.
  scan_layers       False (default; the unrolled `blocks_i` layout that conversion produces) or
                    True: the homogeneous prefix and the (local, global) pairs of the backbone
                    run as `nn.scan` stacks (`da3_jax.parallel.scan`; convert params with
                    `scan.to_scanned(params, schedule_from_config(cfg),
                    at=('backbone', 'pretrained'))`).
  remat_policy      rematerialisation of the scanned blocks: 'none', 'full', 'dots', 'dots_all'
                    (`da3_jax.parallel.scan.REMAT_POLICIES`).
"""

from __future__ import annotations

import ml_collections

from da3_jax.model.conv import IMPLS as CONV_IMPLS

TARGETS = ("depth_ray_cam", "depth_ray", "depth_cam", "depth_point")

NAMES = (
    "da3-tiny",
    "da3-small",
    "da3-base",
    "da3-large",
    "da3-giant",
    "da3metric-large",
    "da3mono-large",
    "da3nested-giant-large",
)

# (embed_dim, depth, num_heads, ffn) of the DINOv2 ViTs used by DA3.
_VITS = {
    "vits": (384, 12, 6, "mlp"),
    "vitb": (768, 12, 12, "mlp"),
    "vitl": (1024, 24, 16, "mlp"),
    "vitg": (1536, 40, 24, "swiglu"),
}


def _base(vit: str) -> ml_collections.ConfigDict:
    embed_dim, depth, num_heads, ffn = _VITS[vit]
    c = ml_collections.ConfigDict()
    c.name = ""
    c.kind = "anyview"
    c.vit = vit
    c.patch_size = 14
    c.pos_grid = 37
    c.interpolate_offset = 0.1
    c.embed_dim = embed_dim
    c.depth = depth
    c.num_heads = num_heads
    c.mlp_ratio = 4
    c.ffn = ffn
    c.out_layers = (5, 7, 9, 11)
    c.alt_start = 4
    c.qknorm_start = 4
    c.rope_start = 4
    c.rope_freq = 100.0
    c.cat_token = True
    c.head = "dualdpt"
    c.head_features = 64
    c.head_out_channels = (48, 96, 192, 384)
    c.head_use_sky = False
    c.cam_enc = True
    c.cam_dec = True
    c.cam_enc_heads = 16
    c.cam_enc_depth = 4
    c.targets = "depth_ray_cam"
    c.gs_head = False
    c.gs_color_residual = False
    c.gs_z_depth = False
    c.attention_impl = "auto"
    c.conv_impl = "xla"
    c.dtype = "float32"
    c.scan_layers = False
    c.remat_policy = "none"
    return c


def _anyview(name: str) -> ml_collections.ConfigDict:
    if name == "da3-tiny":
        # Small CPU config for tests and the demo: same schedule shape as small/base.
        c = _base("vits")
        c.vit = "tiny"
        c.embed_dim, c.depth, c.num_heads = 192, 8, 3
        c.out_layers = (2, 3, 5, 7)
        c.alt_start = c.qknorm_start = c.rope_start = 2
        c.head_features = 32
        c.head_out_channels = (24, 48, 96, 192)
    elif name == "da3-small":
        c = _base("vits")
    elif name == "da3-base":
        c = _base("vitb")
        c.head_features = 128
        c.head_out_channels = (96, 192, 384, 768)
    elif name == "da3-large":
        c = _base("vitl")
        c.out_layers = (11, 15, 19, 23)
        c.alt_start = c.qknorm_start = c.rope_start = 8
        c.head_features = 256
        c.head_out_channels = (256, 512, 1024, 1024)
    elif name == "da3-giant":
        c = _base("vitg")
        c.out_layers = (19, 27, 33, 39)
        c.alt_start = c.qknorm_start = c.rope_start = 13
        c.head_features = 256
        c.head_out_channels = (256, 512, 1024, 1024)
        c.gs_head = True
    else:
        raise ValueError(f"unknown any-view config {name!r}")
    c.name = name
    return c


def _mono(name: str) -> ml_collections.ConfigDict:
    c = _base("vitl")
    c.name = name
    c.kind = "mono"
    c.out_layers = (4, 11, 17, 23)
    c.alt_start = c.qknorm_start = c.rope_start = -1
    c.cat_token = False
    c.head = "dpt"
    c.head_features = 256
    c.head_out_channels = (256, 512, 1024, 1024)
    c.head_use_sky = True
    c.cam_enc = c.cam_dec = False
    return c


def get_config(name: str) -> ml_collections.ConfigDict:
    """Config of one DA3 variant (see the module docstring for the fields)."""
    if name in ("da3-tiny", "da3-small", "da3-base", "da3-large", "da3-giant"):
        return _anyview(name)
    if name in ("da3metric-large", "da3mono-large"):
        return _mono(name)
    if name == "da3nested-giant-large":
        c = ml_collections.ConfigDict()
        c.name = name
        c.kind = "nested"
        c.anyview = _anyview("da3-giant")
        c.metric = _mono("da3metric-large")
        c.sky_depth_max = 200.0
        c.metric_focal_scale = 300.0
        return c
    raise ValueError(f"unknown model config {name!r}; expected one of {NAMES}")


def head_dim_in(config: ml_collections.ConfigDict) -> int:
    """Channel width of the features handed to the head (2*embed_dim with cat_token)."""
    return config.embed_dim * (2 if config.cat_token else 1)


def target_parts(config: ml_collections.ConfigDict) -> tuple[str | None, bool]:
    """``(second_branch, camera_decoder)`` of an any-view config's ``targets``.

    ``second_branch`` is the DualDPT aux output: ``'ray'``, ``'point'`` or None (no branch);
    ``camera_decoder`` is True when the camera decoder is built (``cam_dec`` and a target with
    ``cam``). Configs without the field (older JSON) mean ``'depth_ray_cam'``.
    """
    targets = config.get("targets", "depth_ray_cam")
    if targets not in TARGETS:
        raise ValueError(f"config.targets={targets!r}; expected one of {TARGETS}")
    branch = {"depth_ray_cam": "ray", "depth_ray": "ray", "depth_cam": None,
              "depth_point": "point"}[targets]
    return branch, bool(config.cam_dec) and targets.endswith("cam")


def validate(config: ml_collections.ConfigDict) -> None:
    """Raise ValueError when the schedule fields are inconsistent."""
    if config.kind == "nested":
        validate(config.anyview)
        validate(config.metric)
        return
    if config.embed_dim % config.num_heads:
        raise ValueError(
            f"config.embed_dim={config.embed_dim} is not divisible by num_heads={config.num_heads}"
        )
    if len(config.out_layers) != 4 or any(not 0 <= i < config.depth for i in config.out_layers):
        raise ValueError(
            f"config.out_layers={tuple(config.out_layers)} must be 4 block indices in "
            f"[0, {config.depth})"
        )
    if config.ffn not in ("mlp", "swiglu"):
        raise ValueError(f"config.ffn={config.ffn!r}; expected 'mlp' or 'swiglu'")
    if config.get("conv_impl", "xla") not in CONV_IMPLS:
        raise ValueError(f"config.conv_impl={config.conv_impl!r}; expected one of {CONV_IMPLS}")
    if config.head not in ("dualdpt", "dpt"):
        raise ValueError(f"config.head={config.head!r}; expected 'dualdpt' or 'dpt'")
    if config.rope_start != -1 and (config.embed_dim // config.num_heads) % 4:
        raise ValueError("2D RoPE needs a head dim divisible by 4")
    _, camera = target_parts(config)
    if config.get("targets", "depth_ray_cam") == "depth_cam" and not camera:
        raise ValueError("config.targets='depth_cam' needs the camera decoder (cam_dec=True)")
    if config.get("targets", "depth_ray_cam") != "depth_ray_cam" and config.head != "dualdpt":
        raise ValueError(f"config.targets={config.targets!r} needs head='dualdpt'")
    for key in ("gs_color_residual", "gs_z_depth"):
        if config.get(key, False) and not config.get("gs_head", False):
            raise ValueError(f"config.{key}=True needs a GS head (gs_head=True)")
    if config.cam_enc and config.alt_start == -1:
        raise ValueError("config.cam_enc needs alternating attention (alt_start != -1)")
