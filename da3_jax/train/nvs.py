"""The novel-view-synthesis stage (``task = 'nvs'``): train the GS-DPT head on rendered views.

Per scene of N views (``config.nvs.context_views`` = C first views are contexts, the other
N - C are held-out targets):

1. the backbone encodes the C context views (``ref_view_strategy='first'``) under
   ``stop_gradient``: it is frozen (configs also set ``backbone_lr_mult = 0``);
2. the heads decode them (DualDPT depth + GS-DPT raw Gaussians); the Gaussian adapter
   (`da3_jax.model.gs_adapter`, no parameters) places pixel-aligned Gaussians along each
   context pixel's ray at the *predicted* depth (+ the predicted offset), as the paper does, with
   the **ground-truth** cameras normalised like the student targets (view 0 frame, unit mean
   point norm: `train.targets.normalize_scene`). The adapter is the model's own
   (`gs_adapter.model_gaussians`): the model config's ``gs_color_residual`` / ``gs_z_depth``
   deviations (set in ``config.model.overrides``) apply here and, through the checkpoint's
   config, at inference, rendering and evaluation alike;
3. `da3_jax.render.rasterize_gaussians` renders the target views with their normalised
   ground-truth cameras (vmapped over scenes and targets; the adapter's rotations go to the
   rasterizer as the official renderer passes them, see `da3_jax.render.views`);
4. loss = ``mse`` × MSE(render, target RGB in [0, 1]) + ``ssim`` × (1 - SSIM) + ``lpips`` ×
   LPIPS v0.1 (`da3_jax.eval.lpips`; pixelSplat / MVSplat / DepthSplat: MSE 1.0 + LPIPS 0.05)
   on the targets + ``depth`` × scale-and-shift-invariant depth loss
   (`losses.ssi_exp_depth_loss`) on the contexts. LPIPS needs pretrained weights that cannot be
   downloaded here: ``lpips_weights`` is a file the user converts (``python -m
   da3_jax.convert.lpips``); without it, MSE + SSIM is the configured substitute. The LPIPS
   weights are frozen constants of the loss (not parameters: not trained, not in the
   optimizer, not in checkpoints).

Config block ``config.nvs``: ``context_views``, ``mse``, ``ssim``, ``depth``, ``lpips``
(weights; ``lpips`` default 0), ``lpips_weights`` (path or ``etils.epath`` URL),
``tile_capacity`` (rasterizer tile slots; the step reports ``render_overflow``), optional
``init_from``: a converted checkpoint (``convert.save_converted`` folder) of a model without a GS
head, e.g. a trained student; its parameters (backbone, heads, camera modules) replace the random
ones and the GS head stays freshly initialised (`partial_init`). Without it,
``config.model.init_from`` applies as in the other stages.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from da3_jax.eval.lpips import load_weights, lpips
from da3_jax.imagenet import imagenet_denormalize
from da3_jax.model.gs_adapter import model_gaussians
from da3_jax.render import rasterize_gaussians, render_args
from da3_jax.train import losses, targets
from da3_jax.train.da3_tasks import _init_fn, _iter_fn, _pretrained_fn, build_model
from da3_jax.train.task import Task


def _window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    w = np.exp(-(x**2) / (2.0 * sigma**2))
    return (w / w.sum()).astype(np.float32)


def ssim(x: jax.Array, y: jax.Array, k1: float = 0.01, k2: float = 0.03) -> jax.Array:
    """Differentiable SSIM of images `[..., H, W, C]` in [0, 1]: mean over images, positions and
    channels; 11-tap Gaussian window (σ 1.5), 'valid' filtering (`eval.metrics.ssim`'s protocol).
    """
    w = jnp.asarray(_window())
    k = w.shape[0]

    def filt(a):  # separable valid correlation on H then W
        h, wd = a.shape[-3], a.shape[-2]
        a = sum(w[i] * a[..., i:h - k + 1 + i, :, :] for i in range(k))
        return sum(w[i] * a[..., :, i:wd - k + 1 + i, :] for i in range(k))

    c1, c2 = k1**2, k2**2
    mx, my = filt(x), filt(y)
    sxx, syy, sxy = filt(x * x) - mx**2, filt(y * y) - my**2, filt(x * y) - mx * my
    smap = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return jnp.mean(smap)


def render_scenes(gaussians: dict, w2c: jax.Array, intrinsics: jax.Array, hw, tile_capacity,
                  tile_size: int = 16):
    """Render `[B]` scenes of Gaussians (`[B, G, ...]` adapter dicts) into `[B, T]` cameras
    (`w2c [B, T, 3, 4]`, `intrinsics [B, T, 3, 3]`) -> rasterizer dict with `[B, T]` leading."""
    means, quats, scales, opacities, sh = render_args(gaussians)

    def one(m, q, s, o, c, w, k):
        return rasterize_gaussians(m, q, s, o, c, w, k, hw, tile_capacity=tile_capacity,
                                   tile_size=tile_size, check=False)

    per_view = jax.vmap(one, in_axes=(None,) * 5 + (0, 0))
    return jax.vmap(per_view)(means, quats, scales, opacities, sh, w2c, intrinsics)


def predict_gaussians(model, params, images, w2c, intrinsics, cfg=None) -> tuple[dict, dict]:
    """Context views -> (decoder outputs, pixel-aligned Gaussians), as the stage trains them.

    `images [B, C, H, W, 3]` ImageNet-normalised; `w2c [B, C, 3, 4]`, `intrinsics [B, C, 3, 3]`
    the cameras the Gaussians are placed with (the stage: normalised ground truth). The backbone
    runs under `stop_gradient` (`ref_view_strategy='first'`). The adapter is the model's
    (`gs_adapter.model_gaussians`: ``model.config``'s ``gs_color_residual`` / ``gs_z_depth``,
    as at inference). `cfg` (`config.nvs`, optional): ``train_depth_head=False`` stops the
    gradient at the predicted depth (only the GS head trains). Returns the decoder dict (`depth
    [B, C, H, W]`, ...) and the adapter dict (`means [B, C*H*W, 3]`, ...).
    """
    feats = jax.lax.stop_gradient(model.apply(
        {"params": params}, images, ref_view_strategy="first", method="encode"))
    out = model.apply({"params": params}, feats, images, infer_gs=True, method="decode")
    depth = out["depth"]
    if cfg is not None and not cfg.get("train_depth_head", True):
        depth = jax.lax.stop_gradient(depth)
    gs = model_gaussians(model.config, w2c, intrinsics, depth, out["raw_gs"], out["raw_gs_conf"],
                         images)
    return out, gs


# GS-DPT output channels (`raw_gs` + the density; see `gs_adapter`): xy offset, scales,
# quaternion (xyzw), SH, depth offset, density logit.
_OFFSET_XY, _SCALES, _QUAT = slice(0, 2), slice(2, 5), slice(5, 9)
_DEPTH_OFFSET, _DENSITY = 36, 37


def init_gs_head(gs_head: dict, opacity: float, scale_px: float, kernel_scale: float) -> dict:
    """A freshly initialised GS-DPT head whose Gaussians start as opaque pixel-sized discs.

    The last 1x1 conv (`scratch/output_conv2_2`) gets biases for density `opacity` (sigmoid
    logit) and isotropic scales of `scale_px` pixel footprints (the adapter's scale is
    `30 sigmoid(s) × depth × 0.1 × (1/f_x + 1/f_y)`, i.e. `6 sigmoid(s)` footprints), an identity
    quaternion, zero offsets (kernel and bias), and its other kernel columns multiplied by
    `kernel_scale`, so the first renders are the context pixels splatted at the predicted depth
    (with the model's `gs_color_residual`, in their own colours). Pure (works on abstract /
    sharded trees).
    """
    if not 0.0 < opacity < 1.0 or not 0.0 < scale_px < 6.0:
        raise ValueError(f"init_gs_head: need 0 < opacity < 1 and 0 < scale_px < 6 (pixel "
                         f"footprints), got {opacity}, {scale_px}")
    last = dict(gs_head["scratch"]["output_conv2_2"])
    logit = lambda p: float(np.log(p / (1.0 - p)))  # noqa: E731
    bias = jnp.zeros_like(last["bias"])
    bias = bias.at[_SCALES].set(logit(scale_px / 6.0)).at[_QUAT.stop - 1].set(1.0)
    bias = bias.at[_DENSITY].set(logit(opacity))
    cols = jnp.full(last["kernel"].shape[-1:], kernel_scale, last["kernel"].dtype)
    cols = cols.at[_OFFSET_XY].set(0.0).at[_DEPTH_OFFSET].set(0.0)
    last["bias"], last["kernel"] = bias, last["kernel"] * cols
    scratch = dict(gs_head["scratch"], output_conv2_2=last)
    return dict(gs_head, scratch=scratch)


def render_targets(model, params, batch: dict, cfg) -> dict:
    """Steps 1-3 of the module doc on one batch -> {'decoder': decoder outputs of the C
    contexts, 'render': rasterizer dict of the T targets, 'pred': rendered RGB `[B, T, H, W, 3]`,
    'target': target RGB in [0, 1] (same shape), 'depth': normalised GT depth `[B, N, H, W]`}."""
    c = int(cfg.context_views)
    images = batch["images"]
    b, n, h, w, _ = images.shape
    if not 1 <= c < n:
        raise ValueError(f"nvs.context_views must be in [1, {n - 1}] for {n}-view batches, "
                         f"got {c}")
    depth_n, w2c, _ = targets.normalize_scene(batch["depth"], batch["valid"],
                                              batch["extrinsics"], batch["intrinsics"])
    k = batch["intrinsics"]
    out, gs = predict_gaussians(model, params, images[:, :c], w2c[:, :c], k[:, :c], cfg)
    rendered = render_scenes(gs, w2c[:, c:], k[:, c:], (h, w), int(cfg.tile_capacity),
                             int(cfg.get("tile_size", 16)))
    return {"decoder": out, "render": rendered, "pred": rendered["rgb"],
            "target": imagenet_denormalize(images[:, c:]), "depth": depth_n}


def lpips_loss_fn(cfg):
    """`(pred, target) -> [N]` LPIPS of `[N, H, W, 3]` images in [0, 1] with the weights of
    ``cfg.lpips_weights`` as constants, or None when ``cfg.lpips`` is 0. ValueError naming the
    config key when the weight is positive and the file is missing or unreadable."""
    weight = float(cfg.get("lpips", 0.0))
    if weight < 0:
        raise ValueError(f"config.nvs.lpips must be >= 0, got {weight}")
    if weight == 0:
        return None
    path = cfg.get("lpips_weights", "")
    if not path:
        raise ValueError(f"config.nvs.lpips={weight} needs config.nvs.lpips_weights: a LPIPS "
                         "file converted with python -m da3_jax.convert.lpips (or set "
                         "config.nvs.lpips=0 for MSE + SSIM)")
    try:
        net, weights = load_weights(path)
    except ValueError as e:
        raise ValueError(f"config.nvs.lpips_weights={path!r}: {e}") from e
    return functools.partial(lpips, weights, net=net, normalize=True)


def photometric_loss(pred: jax.Array, target: jax.Array, cfg, lpips_fn=None):
    """Target-view terms of the loss: renders `pred` vs `target`, `[..., H, W, 3]` in [0, 1]
    -> (``mse`` × MSE + ``ssim`` × (1 - SSIM) [+ ``lpips`` × mean LPIPS], {term: scalar}).
    `lpips_fn`: `lpips_loss_fn(cfg)` (required when ``cfg.lpips`` > 0)."""
    h, w = pred.shape[-3:-1]
    pred, target = pred.reshape((-1, h, w, 3)), target.reshape((-1, h, w, 3))
    terms = {"loss_mse": jnp.mean((pred - target) ** 2), "loss_ssim": 1.0 - ssim(pred, target)}
    total = float(cfg.mse) * terms["loss_mse"] + float(cfg.ssim) * terms["loss_ssim"]
    if float(cfg.get("lpips", 0.0)) > 0:
        if lpips_fn is None:
            raise ValueError("config.nvs.lpips > 0 needs an lpips_fn "
                             "(nvs.lpips_loss_fn(config.nvs))")
        terms["loss_lpips"] = jnp.mean(lpips_fn(pred, target))
        total = total + float(cfg.lpips) * terms["loss_lpips"]
    return total, terms


def nvs_loss(model, params, batch: dict, cfg, lpips_fn=None) -> tuple[jax.Array, dict]:
    """The stage's loss on one batch (see module doc); returns (total, {term: scalar}).
    `lpips_fn`: `lpips_loss_fn(cfg)` (required when ``cfg.lpips`` > 0)."""
    r = render_targets(model, params, batch, cfg)
    c = int(cfg.context_views)
    total, terms = photometric_loss(r["pred"], r["target"], cfg, lpips_fn)
    terms["loss_depth"] = losses.ssi_exp_depth_loss(r["decoder"]["depth"], r["depth"][:, :c],
                                                    batch["valid"][:, :c])
    total = total + float(cfg.depth) * terms["loss_depth"]
    terms["render_overflow"] = jnp.sum(r["render"]["overflow"]).astype(jnp.float32)
    return total, terms


def partial_init(fresh: dict, loaded: dict, source: str = "init_from") -> dict:
    """`fresh` params with every top-level subtree that `loaded` has replaced by `loaded`'s.

    Subtrees only `fresh` has (the GS head of a student checkpoint) keep their random init.
    Raises ValueError, naming `source`, when `loaded` has subtrees the model lacks or when a
    shared subtree's structure or shapes differ. Loaded leaves come back as host NumPy arrays.
    """
    extra = sorted(set(loaded) - set(fresh))
    if extra:
        raise ValueError(f"{source}: parameter groups {extra} are not in the model "
                         f"(model groups: {sorted(fresh)})")
    out = dict(fresh)
    for key, tree in loaded.items():
        want = jax.tree.map(lambda a: tuple(a.shape), fresh[key])
        got = jax.tree.map(lambda a: tuple(np.shape(a)), tree)
        if want != got:
            raise ValueError(f"{source}: parameter group {key!r} does not match the model "
                             "(different structure or shapes; was it trained with the same "
                             "config.model?)")
        out[key] = jax.tree.map(np.asarray, tree)
    return out


def _nvs_pretrained_fn(model, config):
    path = config.nvs.get("init_from", "")
    if not path:
        return _pretrained_fn(model, config)

    def load_pretrained(params):
        from da3_jax.convert import load_converted

        return partial_init(params, load_converted(path)[1], f"config.nvs.init_from={path!r}")

    return load_pretrained


def _gs_head_only_init(model, full_init, rng, batch) -> dict:
    """Params with a random GS head and zeros elsewhere (``init_from`` replaces them): compiles
    the GS head's init only, not the whole model's (tens of CPU seconds at demo shapes)."""
    shapes = jax.eval_shape(full_init, rng, batch)
    params = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)
    images = batch["images"][:1, :1]
    feats = jax.eval_shape(lambda p, x: model.apply({"params": p}, x, method="encode"),
                           shapes, images)
    tokens = [jnp.zeros((1,) + f.shape[2:], f.dtype) for f, _ in feats]
    # XLA's RngBitGenerator ('rbg') instead of threefry: its init compiles 3x faster on CPU.
    bits = jax.random.key_data(rng) if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key) else rng
    rng = jax.random.wrap_key_data(jnp.concatenate([bits, bits]).astype(jnp.uint32), impl="rbg")
    gs = model.init(rng, tokens, images.shape[2:4], images[0].astype(jnp.float32),
                    method=lambda m, *a: m.gs_head(*a))["params"]["gs_head"]
    return dict(params, gs_head=gs)


def nvs_task(config) -> Task:
    model = build_model(config)
    if not model.config.gs_head:
        raise ValueError("task 'nvs' needs a model with a GS head (config.model.overrides "
                         "gs_head=True, or da3-giant)")
    moved = [k for k in ("color_residual", "z_depth") if k in config.nvs]
    if moved:
        raise ValueError(f"config.nvs.{moved[0]} is a model option now (it travels with the "
                         f"checkpoint): set config.model.overrides gs_{moved[0]}=True instead")

    lpips_fn = lpips_loss_fn(config.nvs)

    def loss_fn(params, batch, rng):
        del rng
        return nvs_loss(model, params, batch, config.nvs, lpips_fn)

    full_init = _init_fn(model)
    gs_init = config.nvs.get("gs_init", None)

    def init_params(rng, batch):
        if config.nvs.get("init_from", ""):
            params = _gs_head_only_init(model, full_init, rng, batch)
        else:
            params = full_init(rng, batch)
        if gs_init:
            params = dict(params, gs_head=init_gs_head(params["gs_head"], **gs_init))
        return params

    return Task(init_params, loss_fn, _iter_fn(config),
                load_pretrained=_nvs_pretrained_fn(model, config))
