"""The novel-view-synthesis stage (``task = 'nvs'``): train the GS-DPT head on rendered views.

Per scene of N views (``config.nvs.context_views`` = C first views are contexts, the other
N - C are held-out targets):

1. the backbone encodes the C context views (``ref_view_strategy='first'``) under
   ``stop_gradient``: it is frozen (configs also set ``backbone_lr_mult = 0``);
2. the heads decode them (DualDPT depth + GS-DPT raw Gaussians); the Gaussian adapter
   (`da3_jax.model.gs_adapter`, no parameters) places pixel-aligned Gaussians along each
   context pixel's ray at the *predicted* depth (+ the predicted offset), as the paper does, with
   the **ground-truth** cameras normalised like the student targets (view 0 frame, unit mean
   point norm: `train.targets.normalize_scene`);
3. `da3_jax.render.rasterize_gaussians` renders the target views with their normalised
   ground-truth cameras (vmapped over scenes and targets; the adapter's rotations go to the
   rasterizer as the official renderer passes them, see `da3_jax.render.views`);
4. loss = ``mse`` × MSE(render, target RGB in [0, 1]) + ``ssim`` × (1 - SSIM) on the targets
   + ``depth`` × scale-and-shift-invariant depth loss (`losses.ssi_exp_depth_loss`) on the
   contexts. LPIPS (the paper's second photometric term) needs pretrained weights that are
   not downloadable here; MSE + SSIM is the configured substitute.

Config block ``config.nvs``: ``context_views``, ``mse``, ``ssim``, ``depth`` (weights),
``tile_capacity`` (rasterizer tile slots; the step reports ``render_overflow``), optional
``init_from``: a converted checkpoint (``convert.save_converted`` folder) of a model without a GS
head, e.g. a trained student; its parameters (backbone, heads, camera modules) replace the random
ones and the GS head stays freshly initialised (`partial_init`). Without it,
``config.model.init_from`` applies as in the other stages.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from da3_jax.imagenet import IMAGENET_MEAN, IMAGENET_STD
from da3_jax.model.gs_adapter import gaussian_adapter, map_pdf_to_opacity
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


def to_rgb01(images: jax.Array) -> jax.Array:
    """ImageNet-normalised images (the pipeline's `images`) back to RGB in [0, 1]."""
    return images * jnp.asarray(IMAGENET_STD) + jnp.asarray(IMAGENET_MEAN)


def render_scenes(gaussians: dict, w2c: jax.Array, intrinsics: jax.Array, hw, tile_capacity):
    """Render `[B]` scenes of Gaussians (`[B, G, ...]` adapter dicts) into `[B, T]` cameras
    (`w2c [B, T, 3, 4]`, `intrinsics [B, T, 3, 3]`) -> rasterizer dict with `[B, T]` leading."""
    means, quats, scales, opacities, sh = render_args(gaussians)

    def one(m, q, s, o, c, w, k):
        return rasterize_gaussians(m, q, s, o, c, w, k, hw, tile_capacity=tile_capacity,
                                   check=False)

    per_view = jax.vmap(one, in_axes=(None,) * 5 + (0, 0))
    return jax.vmap(per_view)(means, quats, scales, opacities, sh, w2c, intrinsics)


def predict_gaussians(model, params, images, w2c, intrinsics) -> tuple[dict, dict]:
    """Context views -> (decoder outputs, pixel-aligned Gaussians), as the stage trains them.

    `images [B, C, H, W, 3]` ImageNet-normalised; `w2c [B, C, 3, 4]`, `intrinsics [B, C, 3, 3]`
    the cameras the Gaussians are placed with (the stage: normalised ground truth). The backbone
    runs under `stop_gradient` (`ref_view_strategy='first'`). Returns the decoder dict (`depth
    [B, C, H, W]`, ...) and the adapter dict (`means [B, C*H*W, 3]`, ...).
    """
    h, w = images.shape[-3:-1]
    feats = jax.lax.stop_gradient(model.apply(
        {"params": params}, images, ref_view_strategy="first", method="encode"))
    out = model.apply({"params": params}, feats, images, infer_gs=True, method="decode")
    gs = gaussian_adapter(w2c, intrinsics, out["depth"], map_pdf_to_opacity(out["raw_gs_conf"]),
                          out["raw_gs"], (h, w))
    return out, gs


def nvs_loss(model, params, batch: dict, cfg) -> tuple[jax.Array, dict]:
    """The stage's loss on one batch (see module doc); returns (total, {term: scalar})."""
    c = int(cfg.context_views)
    images = batch["images"]
    b, n, h, w, _ = images.shape
    if not 1 <= c < n:
        raise ValueError(f"nvs.context_views must be in [1, {n - 1}] for {n}-view batches, "
                         f"got {c}")
    depth_n, w2c, _ = targets.normalize_scene(batch["depth"], batch["valid"],
                                              batch["extrinsics"], batch["intrinsics"])
    k = batch["intrinsics"]
    out, gs = predict_gaussians(model, params, images[:, :c], w2c[:, :c], k[:, :c])
    rendered = render_scenes(gs, w2c[:, c:], k[:, c:], (h, w), int(cfg.tile_capacity))
    target = to_rgb01(images[:, c:])
    pred = rendered["rgb"]
    terms = {
        "loss_mse": jnp.mean((pred - target) ** 2),
        "loss_ssim": 1.0 - ssim(pred.reshape((-1, h, w, 3)), target.reshape((-1, h, w, 3))),
        "loss_depth": losses.ssi_exp_depth_loss(out["depth"], depth_n[:, :c],
                                                batch["valid"][:, :c]),
    }
    total = (float(cfg.mse) * terms["loss_mse"] + float(cfg.ssim) * terms["loss_ssim"]
             + float(cfg.depth) * terms["loss_depth"])
    terms["render_overflow"] = jnp.sum(rendered["overflow"]).astype(jnp.float32)
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


def nvs_task(config) -> Task:
    model = build_model(config)
    if not model.config.gs_head:
        raise ValueError("task 'nvs' needs a model with a GS head (config.model.overrides "
                         "gs_head=True, or da3-giant)")

    def loss_fn(params, batch, rng):
        del rng
        return nvs_loss(model, params, batch, config.nvs)

    return Task(_init_fn(model), loss_fn, _iter_fn(config),
                load_pretrained=_nvs_pretrained_fn(model, config))
