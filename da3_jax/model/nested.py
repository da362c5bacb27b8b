"""Metric alignment of the nested model (official `NestedDepthAnything3Net`, DA3-official.md §4.3).

Given the any-view outputs (depth, depth_conf, extrinsics, intrinsics) and the metric branch
outputs (depth already sky-filled by the mono post-processing, sky):

1. metric depth in metres = raw * mean(fx, fy of the any-view *predicted* K) / 300;
2. non-sky = metric sky < 0.3;
3. median_conf = 0.5-quantile of depth_conf over non-sky pixels;
4. mask = depth_conf >= median_conf & non-sky & metric > 0.01 & depth > 1e-3;
5. s = <metric, depth> / max(<depth, depth>, 1e-12) over the mask (least squares);
6. depth *= s, w2c translations *= s;
7. sky pixels: depth = min(0.99-quantile of non-sky depth, 200), depth_conf = 1.

As upstream, the statistics are taken over the whole batch (the API runs B = 1). Upstream
subsamples 100k values at random for the quantiles when there are more; here all values are
used (identical up to 100k non-sky pixels). Upstream asserts > 10 non-sky pixels; under jit
that cannot raise, so with no non-sky pixel s = 0 is returned (check `scale_factor`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

NON_SKY_THRESHOLD = 0.3


def masked_quantile(values: jax.Array, mask: jax.Array, q: float) -> jax.Array:
    """`torch.quantile(values[mask], q)` (linear interpolation) with static shapes."""
    v = values.reshape(-1).astype(jnp.float32)
    m = mask.reshape(-1)
    n = jnp.sum(m)
    srt = jnp.sort(jnp.where(m, v, jnp.inf))
    pos = q * (jnp.maximum(n, 1) - 1).astype(jnp.float32)
    lo = jnp.floor(pos).astype(jnp.int32)
    hi = jnp.minimum(lo + 1, jnp.maximum(n, 1) - 1)
    return srt[lo] + (srt[hi] - srt[lo]) * (pos - lo)


def align_nested(
    out: dict[str, jax.Array],
    metric: dict[str, jax.Array],
    focal_scale: float = 300.0,
    sky_depth_max: float = 200.0,
) -> dict[str, jax.Array]:
    """Scale the any-view outputs `out` to metres with the metric branch (see module doc)."""
    out = {key: jnp.asarray(v) for key, v in out.items()}
    metric = {key: jnp.asarray(v) for key, v in metric.items()}
    k = out["intrinsics"]
    focal = (k[..., 0, 0] + k[..., 1, 1]) / 2
    metric_depth = metric["depth"] * (focal[..., None, None] / focal_scale)
    sky = metric["sky"]
    non_sky = sky < NON_SKY_THRESHOLD
    depth, conf = out["depth"], out["depth_conf"]

    median_conf = masked_quantile(conf, non_sky, 0.5)
    mask = (conf >= median_conf) & non_sky & (metric_depth > 1e-2) & (depth > 1e-3)
    num = jnp.sum(jnp.where(mask, metric_depth * depth, 0.0))
    den = jnp.maximum(jnp.sum(jnp.where(mask, depth * depth, 0.0)), 1e-12)
    scale = num / den

    depth = depth * scale
    ext = out["extrinsics"]
    out["extrinsics"] = ext.at[..., :3, 3].multiply(scale)

    fill = jnp.minimum(masked_quantile(depth, non_sky, 0.99), sky_depth_max)
    out["depth"] = jnp.where(non_sky, depth, fill)
    out["depth_conf"] = jnp.where(non_sky, conf, 1.0)
    out["metric_depth"] = metric_depth
    out["sky"] = sky
    out["scale_factor"] = scale
    return out
