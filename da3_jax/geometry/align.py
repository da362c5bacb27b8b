"""Alignment: Sim(3) (Umeyama, RANSAC), depth scale/shift fits, scene-scale normalisation.

All functions are pure JAX, batched over leading dims, jit/vmap-able and float32-safe (data are
centred before second moments are formed), except :func:`align_camera_centres_sim3` (host-side:
the official camera-alignment protocol with its NumPy sampling, used by eval and infer). Random
choices come from an explicit PRNG ``key`` (default ``PRNGKey(0)``): deterministic for a key.

Conventions: a Sim(3) ``(s, R, t)`` maps points ``x -> s R x + t``; extrinsics are w2c.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from da3_jax.geometry.cameras import (
    _CAM_CHECKS,
    _check_extrinsics,
    camera_center,
    points_from_depth,
)
from da3_jax.geometry.checks import (
    check_batch_compatible,
    check_finite,
    check_trailing_shape,
    checked_jit,
)

__all__ = [
    "umeyama",
    "ransac_umeyama",
    "align_camera_centres_sim3",
    "apply_sim3",
    "transform_w2c_sim3",
    "fit_scale",
    "fit_scale_shift",
    "ransac_scale_shift",
    "normalize_scene_scale",
]

_TINY = 1e-12


def _weights(mask, shape, dtype):
    if mask is None:
        return jnp.ones(shape, dtype)
    return jnp.broadcast_to(jnp.asarray(mask).astype(dtype), shape)


@checked_jit({"src": check_finite, "dst": check_finite}, static_argnames=("with_scale",))
def umeyama(src: jnp.ndarray, dst: jnp.ndarray, with_scale: bool = True, weights=None):
    """Least-squares similarity ``dst ~ s R src + t`` (Umeyama 1991).

    Args:
      src, dst: ``[..., N, 3]`` corresponding points (N >= 3, not all collinear).
      with_scale: estimate ``s``; otherwise ``s = 1`` (rigid, SE(3)).
      weights: optional ``[..., N]`` non-negative weights (a boolean mask works); zero-weight
        points are ignored.

    Returns:
      ``s [...]``, ``R [..., 3, 3]`` (proper rotation, det +1), ``t [..., 3]``.
    """
    b_s = check_trailing_shape(src, "src", (None, 3))
    b_d = check_trailing_shape(dst, "dst", (None, 3))
    check_batch_compatible(src=src.shape[:-1], dst=dst.shape[:-1])
    batch = check_batch_compatible(src=b_s, dst=b_d)
    check_finite(src, "src")
    check_finite(dst, "dst")
    src = jnp.asarray(src, jnp.float32)
    dst = jnp.asarray(dst, jnp.float32)
    n = max(src.shape[-2], dst.shape[-2])
    w = _weights(weights, batch + (n,), jnp.float32)
    wsum = jnp.maximum(jnp.sum(w, axis=-1), _TINY)
    mu_s = jnp.einsum("...n,...ni->...i", w, src) / wsum[..., None]
    mu_d = jnp.einsum("...n,...ni->...i", w, dst) / wsum[..., None]
    xs = src - mu_s[..., None, :]
    xd = dst - mu_d[..., None, :]
    cov = jnp.einsum("...n,...ni,...nj->...ij", w, xd, xs) / wsum[..., None, None]
    u, d, vt = jnp.linalg.svd(cov)
    sign = jnp.sign(jnp.linalg.det(u) * jnp.linalg.det(vt))
    sign = jnp.where(sign == 0, 1.0, sign)
    diag = jnp.stack([jnp.ones_like(sign), jnp.ones_like(sign), sign], axis=-1)
    rot = u @ (diag[..., :, None] * vt)
    if with_scale:
        var_s = jnp.einsum("...n,...ni,...ni->...", w, xs, xs) / wsum
        s = jnp.sum(d * diag, axis=-1) / jnp.maximum(var_s, _TINY)
    else:
        s = jnp.ones(batch, jnp.float32)
    t = mu_d - s[..., None] * jnp.einsum("...ij,...j->...i", rot, mu_s)
    return s, rot, t


@checked_jit({})
def apply_sim3(points: jnp.ndarray, s, rot, t) -> jnp.ndarray:
    """``s R x + t`` for points ``[..., N, 3]`` and a Sim(3) with batch dims ``[...]``."""
    check_trailing_shape(points, "points", (None, 3))
    return s[..., None, None] * jnp.einsum("...ij,...nj->...ni", rot, points) + t[..., None, :]


@checked_jit({"extrinsics_w2c": _check_extrinsics})
def transform_w2c_sim3(extrinsics_w2c: jnp.ndarray, s, rot, t) -> jnp.ndarray:
    """Re-express w2c cameras ``[..., N, 3|4, 4]`` in a world mapped by ``x' = s R x + t``.

    The camera frame is scaled with the world (depth maps must be multiplied by ``s``):
    ``w2c' = [R_c R^T | s t_c - R_c R^T t]``; camera centres map as ``C' = s R C + t``.
    Sim(3) batch dims ``[...]`` broadcast against the cameras' leading dims (N is extra).
    """
    _check_extrinsics(extrinsics_w2c, "extrinsics_w2c")
    ext = jnp.asarray(extrinsics_w2c)
    s = jnp.asarray(s)[..., None]
    rot = jnp.asarray(rot)[..., None, :, :]
    t = jnp.asarray(t)[..., None, :]
    r_c = ext[..., :3, :3]
    r_new = r_c @ jnp.swapaxes(rot, -1, -2)
    t_new = s[..., None] * ext[..., :3, 3] - jnp.einsum("...ij,...j->...i", r_new, t)
    out = jnp.concatenate([r_new, t_new[..., None]], axis=-1)
    if ext.shape[-2] == 4:
        out = jnp.concatenate([out, jnp.broadcast_to(ext[..., 3:, :], out.shape[:-2] + (1, 4))], -2)
    return out


def _masked_median(x, mask):
    """Median (lower) of ``x [..., M]`` over ``mask``; +inf where the mask is empty."""
    xs = jnp.sort(jnp.where(mask, x, jnp.inf), axis=-1)
    k = jnp.maximum(jnp.sum(mask, axis=-1) - 1, 0) // 2
    return jnp.take_along_axis(xs, k[..., None], axis=-1)[..., 0]


def _draw_valid(key, valid, n_iter: int, k: int):
    """``[n_iter, k]`` indices of distinct valid entries of ``valid [M]`` (M >= k valid assumed)."""
    order = jnp.argsort(~valid)  # valid entries first (stable)
    n_valid = jnp.maximum(jnp.sum(valid), k)
    u = jax.random.uniform(key, (n_iter, valid.shape[0]))
    # rank of a random priority restricted to the first n_valid slots -> k distinct slots
    pos = jnp.arange(valid.shape[0])
    u = jnp.where(pos[None, :] < n_valid, u, 2.0)
    _, slots = jax.lax.top_k(-u, k)
    return order[slots]


def _ransac_umeyama_single(key, src, dst, valid, n_iter, sample_size, thr, with_scale):
    idx = _draw_valid(key, valid, n_iter, sample_size)
    s, rot, t = umeyama(src[idx], dst[idx], with_scale)  # [n_iter]
    err = jnp.linalg.norm(apply_sim3(src[None], s, rot, t) - dst[None], axis=-1)  # [n_iter, N]
    scale = jnp.sqrt(jnp.sum(valid * jnp.sum((dst - jnp.mean(dst, 0)) ** 2, -1)) / jnp.sum(valid))
    floor = 1e-5 * scale + 1e-12
    # thr is NaN -> least-median selection; else most inliers, ties by smaller mean error
    med = _masked_median(err, valid[None])
    best_med = jnp.argmin(med)
    inl = (err <= thr) & valid[None]
    cnt = jnp.sum(inl, -1)
    mean_err = jnp.sum(jnp.where(inl, err, 0.0), -1) / jnp.maximum(cnt, 1)
    best_cnt = jnp.lexsort((mean_err, -cnt))[0]
    use_med = jnp.isnan(thr)
    best = jnp.where(use_med, best_med, best_cnt)
    thr_v = jnp.where(use_med, jnp.maximum(3.0 * med[best_med], floor), thr)
    inl = (err[best] <= thr_v) & valid
    for _ in range(2):  # refit on inliers, re-select with the refined model
        s_b, r_b, t_b = umeyama(src, dst, with_scale, weights=inl)
        res = jnp.linalg.norm(apply_sim3(src[None], s_b, r_b, t_b)[0] - dst, axis=-1)
        inl = (res <= thr_v) & valid
    s_b, r_b, t_b = umeyama(src, dst, with_scale, weights=inl)
    return s_b, r_b, t_b, inl


@functools.partial(jax.jit, static_argnums=(5, 6, 7))
def _ransac_umeyama_batched(key, src, dst, valid, thr, n_iter, sample_size, with_scale):
    keys = jax.random.split(key, src.shape[0])
    fn = lambda k, a, b, v: _ransac_umeyama_single(k, a, b, v, n_iter, sample_size, thr, with_scale)
    return jax.vmap(fn)(keys, src, dst, valid)


def ransac_umeyama(
    src: jnp.ndarray,
    dst: jnp.ndarray,
    key=None,
    *,
    mask=None,
    n_iter: int = 100,
    sample_size: int = 3,
    inlier_threshold: float | None = None,
    with_scale: bool = True,
):
    """Robust Sim(3) ``dst ~ s R src + t`` for point sets such as camera centres.

    Hypotheses from ``n_iter`` random minimal samples (``sample_size`` distinct valid points).

    * ``inlier_threshold=None`` (default): least-median-of-squares selection; the hypothesis
      with the smallest median residual wins and inliers are residuals ``<= 3 x`` that median
      (floored at ``1e-5 x`` the spread of ``dst``). Tolerates up to ~50 % outliers.
    * explicit threshold (units of ``dst``): most inliers win, ties by smaller mean inlier
      error (the scoring of the official ``_ransac_align_sim3``).

    The winner is refitted on its inliers, inliers are re-selected with the refit model, twice,
    then a final Umeyama fit on the inliers is returned.

    Args:
      src, dst: ``[..., N, 3]``; mask: optional ``[..., N]`` bool of usable points;
      key: PRNG key (default ``PRNGKey(0)``).

    Returns:
      ``s [...]``, ``R [..., 3, 3]``, ``t [..., 3]``, ``inliers [..., N]`` bool.
    """
    b_s = check_trailing_shape(src, "src", (None, 3))
    b_d = check_trailing_shape(dst, "dst", (None, 3))
    batch = check_batch_compatible(src=b_s, dst=b_d)
    if src.shape[-2] != dst.shape[-2]:
        raise ValueError(
            f"src, dst: expected the same number of points, got {src.shape[-2]} and {dst.shape[-2]}"
        )
    n = src.shape[-2]
    if n < sample_size:
        raise ValueError(f"src: expected at least sample_size={sample_size} points, got {n}")
    check_finite(src, "src")
    check_finite(dst, "dst")
    key = jax.random.PRNGKey(0) if key is None else key
    src = jnp.broadcast_to(jnp.asarray(src, jnp.float32), batch + (n, 3)).reshape(-1, n, 3)
    dst = jnp.broadcast_to(jnp.asarray(dst, jnp.float32), batch + (n, 3)).reshape(-1, n, 3)
    valid = jnp.broadcast_to(_weights(mask, batch + (n,), jnp.bool_), batch + (n,)).reshape(-1, n)
    thr = jnp.float32(jnp.nan if inlier_threshold is None else inlier_threshold)
    s, rot, t, inl = _ransac_umeyama_batched(
        key, src, dst, valid, thr, int(n_iter), int(sample_size), bool(with_scale)
    )
    return (
        s.reshape(batch),
        rot.reshape(batch + (3, 3)),
        t.reshape(batch + (3,)),
        inl.reshape(batch + (n,)),
    )


def _umeyama_subsets(src: np.ndarray, dst: np.ndarray, masks: np.ndarray):
    """:func:`umeyama` per 0/1 row of ``masks [B, N]`` -> float64 ``s, R, t``; points are padded
    (weight 0) to a power of two >= 16, so calls share a few compiled shapes."""
    b, n = masks.shape
    m = max(16, 1 << (n - 1).bit_length())
    w = np.zeros((b, m))
    w[:, :n] = masks
    pts = [np.broadcast_to(np.pad(x, ((0, m - n), (0, 0))), (b, m, 3)) for x in (src, dst)]
    s, rot, t = umeyama(pts[0], pts[1], True, weights=w)
    return np.asarray(s, np.float64), np.asarray(rot, np.float64), np.asarray(t, np.float64)


def align_camera_centres_sim3(
    src_w2c, dst_w2c, *, ransac: bool = True, random_state: int | None = 42, max_iters: int = 10,
    sub_n: int | None = None, inlier_thresh: float | None = None,
) -> tuple[float, np.ndarray, np.ndarray]:
    """Sim(3) ``C_dst ~ s R C_src + t`` between the camera centres of two poses of the same views.

    The official protocol ``depth_anything_3.utils.pose_align.align_poses_umeyama(ext_ref=dst,
    ext_est=src, ransac=..., random_state=...)`` (DA3-official.md §4.3); the benchmark aligns
    prediction -> GT with RANSAC and seed 42, the API input -> prediction with RANSAC from 10 views.

    1. Umeyama fit (:func:`umeyama`) on all centres; without ``ransac`` that is the result.
    2. ``inlier_thresh`` (default): median over the src centres, mapped by that fit, of the
       distance to the *nearest* dst centre.
    3. ``max_iters`` hypotheses: fits on ``sub_n`` views (default ``max(3, ceil(N / 2))``) drawn
       without replacement by ``np.random.default_rng(random_state)``, exactly the official
       draws; non-finite fits are skipped.
    4. Inliers: same-index centre error ``<= inlier_thresh``; the best hypothesis has the most
       inliers, ties broken by the smaller mean inlier error.
    5. Final fit on the best inliers when there are >= 3, else the best hypothesis (or step 1).

    Host-side, not jit-able. Centres are :func:`camera_center` in the caller's JAX precision
    (float64 inside ``jax.enable_x64`` for float64 poses); the Umeyama solves run in float32, so
    ``s`` agrees with the official float64 (evo) solve to ~1e-6 relative.

    Args: ``src_w2c, dst_w2c``: ``[N, 3|4, 4]`` w2c poses of the same N views (N >= 2; N >= 3
    with ``ransac``); the other arguments are the official knobs (above).

    Returns: ``s`` (float), ``R [3, 3]``, ``t [3]`` (float64); :func:`transform_w2c_sim3` maps
    the src cameras into the dst frame.
    """
    src_w2c, dst_w2c = np.asarray(src_w2c), np.asarray(dst_w2c)
    for name, ext in (("src_w2c", src_w2c), ("dst_w2c", dst_w2c)):
        if len(_check_extrinsics(ext, name)) != 1:
            raise ValueError(f"{name}: expected w2c poses [N, 3|4, 4], got {np.shape(ext)}")
    n, n_dst = len(src_w2c), len(dst_w2c)
    if n_dst != n:
        raise ValueError(f"src_w2c, dst_w2c: expected the same views, got {n} and {n_dst}")
    if n < (3 if ransac else 2):
        raise ValueError(f"src_w2c: expected >= {3 if ransac else 2} views, got {n}")
    src = np.asarray(camera_center(src_w2c), np.float64)
    dst = np.asarray(camera_center(dst_w2c), np.float64)
    masks = [np.ones(n)]
    if ransac:
        rng = np.random.default_rng(random_state)
        sub_n = max(3, (n + 1) // 2) if sub_n is None else max(3, min(sub_n, n))
        for _ in range(max_iters):
            masks.append(np.isin(np.arange(n), rng.choice(np.arange(n), sub_n, replace=False)))
    s, rot, t = _umeyama_subsets(src, dst, np.stack(masks).astype(np.float64))
    best = (float(s[0]), rot[0], t[0])
    if not ransac:
        return best
    if inlier_thresh is None:
        aligned = s[0] * src @ rot[0].T + t[0]
        inlier_thresh = float(np.median(
            np.linalg.norm(aligned[:, None, :] - dst[None, :, :], axis=-1).min(axis=1)))
    best_score, best_inliers = (-1, np.inf), None
    for i in range(1, len(masks)):
        if not (np.isfinite(s[i]) and np.isfinite(rot[i]).all() and np.isfinite(t[i]).all()):
            continue
        errs = np.linalg.norm(s[i] * src @ rot[i].T + t[i] - dst, axis=1)
        inliers = errs <= inlier_thresh
        k = int(inliers.sum())
        mean_err = float(errs[inliers].mean()) if k > 0 else np.inf
        if k > best_score[0] or (k == best_score[0] and mean_err < best_score[1]):
            best_score, best_inliers = (k, mean_err), inliers
            best = (float(s[i]), rot[i], t[i])
    if best_inliers is not None and best_inliers.sum() >= 3:
        s, rot, t = _umeyama_subsets(src, dst, best_inliers[None])
        best = (float(s[0]), rot[0], t[0])
    return best


def _prep_maps(pred, target, mask, axis):
    check_batch_compatible(pred=pred.shape, target=target.shape)
    if mask is not None:
        check_batch_compatible(pred=pred.shape, target=target.shape, mask=jnp.shape(mask))
    pred = jnp.asarray(pred, jnp.float32)
    target = jnp.asarray(target, jnp.float32)
    shape = jnp.broadcast_shapes(pred.shape, target.shape)
    w = _weights(mask, shape, jnp.float32)
    finite = jnp.isfinite(pred) & jnp.isfinite(target)
    w = jnp.where(finite, w, 0.0)
    pred = jnp.where(finite, pred, 0.0)
    target = jnp.where(finite, target, 0.0)
    axis = (axis,) if isinstance(axis, int) else axis
    axis = tuple(a % len(shape) for a in axis)
    return pred, target, w, axis


@checked_jit({}, static_argnames=("axis",))
def fit_scale(pred, target, mask=None, axis=(-2, -1)):
    """Least-squares scale ``s = <pred, target>_m / <pred, pred>_m`` (no shift).

    As the official nested-model metric alignment. ``mask`` (bool or weights) broadcasts with
    ``pred``/``target``; non-finite entries are ignored. Reduces over ``axis`` (default the
    last two, i.e. per ``[H, W]`` map). Returns ``s`` (0 where the masked ``<pred, pred>`` is 0).
    """
    pred, target, w, axis = _prep_maps(pred, target, mask, axis)
    num = jnp.sum(w * pred * target, axis=axis)
    den = jnp.sum(w * pred * pred, axis=axis)
    return jnp.where(den > _TINY, num / jnp.maximum(den, _TINY), 0.0)


@checked_jit({}, static_argnames=("axis",))
def fit_scale_shift(pred, target, mask=None, axis=(-2, -1)):
    """Weighted least squares ``min_{s,b} sum m (s pred + b - target)^2``.

    Args:
      pred, target: broadcastable arrays, e.g. ``[..., H, W]``; non-finite entries ignored.
      mask: bool mask or non-negative weights broadcasting with them (None = all ones).
      axis: axes reduced (default ``(-2, -1)``: one fit per map).

    Returns:
      ``(s, b)`` with the remaining (batch) shape. Degenerate cases: constant ``pred`` over the
      mask gives ``s = 0, b = mean(target)``; an empty mask gives ``s = 0, b = 0``.
    """
    pred, target, w, axis = _prep_maps(pred, target, mask, axis)
    wsum = jnp.sum(w, axis=axis, keepdims=True)
    safe = jnp.maximum(wsum, _TINY)
    mp = jnp.sum(w * pred, axis=axis, keepdims=True) / safe
    mt = jnp.sum(w * target, axis=axis, keepdims=True) / safe
    dp = pred - mp
    num = jnp.sum(w * dp * (target - mt), axis=axis)
    den = jnp.sum(w * dp * dp, axis=axis)
    s = jnp.where(den > _TINY, num / jnp.maximum(den, _TINY), 0.0)
    b = jnp.squeeze(mt, axis) - s * jnp.squeeze(mp, axis)
    return s, b


def _ransac_ss_single(key, p, t, valid, n_iter, thr):
    idx = _draw_valid(key, valid, n_iter, 2)
    p2, t2 = p[idx], t[idx]  # [n_iter, 2]
    dp = p2[:, 1] - p2[:, 0]
    s = jnp.where(jnp.abs(dp) > _TINY, (t2[:, 1] - t2[:, 0]) / jnp.where(dp == 0, 1.0, dp), 0.0)
    b = t2[:, 0] - s * p2[:, 0]
    res = jnp.abs(s[:, None] * p[None] + b[:, None] - t[None])  # [n_iter, M]
    floor = 1e-5 * jnp.sum(valid * jnp.abs(t)) / jnp.maximum(jnp.sum(valid), 1) + 1e-12
    # thr is NaN -> least-median selection; else most inliers
    med = _masked_median(res, valid[None])
    best_med = jnp.argmin(med)
    best_cnt = jnp.argmax(jnp.sum((res <= thr) & valid[None], -1))
    use_med = jnp.isnan(thr)
    best = jnp.where(use_med, best_med, best_cnt)
    thr_v = jnp.where(use_med, jnp.maximum(3.0 * 1.4826 * med[best_med], floor), thr)
    inl = (res[best] <= thr_v) & valid
    for _ in range(2):
        s_b, b_b = fit_scale_shift(p, t, inl, axis=(-1,))
        inl = (jnp.abs(s_b * p + b_b - t) <= thr_v) & valid
    s_b, b_b = fit_scale_shift(p, t, inl, axis=(-1,))
    return s_b, b_b, inl


@functools.partial(jax.jit, static_argnums=(5,))
def _ransac_ss_batched(key, p, t, valid, thr, n_iter):
    keys = jax.random.split(key, p.shape[0])
    fn = lambda k, a, c, v: _ransac_ss_single(k, a, c, v, n_iter, thr)
    return jax.vmap(fn)(keys, p, t, valid)


def ransac_scale_shift(
    pred, target, mask=None, key=None, *, n_iter: int = 100, threshold: float | None = None
):
    """Robust scale/shift ``target ~ s pred + b`` per ``[H, W]`` map (last two axes).

    Hypotheses from ``n_iter`` random pairs of valid pixels. ``threshold=None``: least-median
    selection and inliers ``|r| <= 3 x 1.4826 x median|r|`` (floored at ``1e-5 x mean|target|``);
    otherwise most inliers with ``|r| <= threshold`` (target units). The winner is refitted on its
    inliers with :func:`fit_scale_shift` (inliers re-selected twice). Valid pixels: ``mask`` and
    finite ``pred``/``target``; at least 2 are needed.

    Args:
      pred, target: ``[..., H, W]``; mask: optional bool ``[..., H, W]``;
      key: PRNG key (default ``PRNGKey(0)``).

    Returns:
      ``s [...]``, ``b [...]``, ``inliers [..., H, W]`` bool.
    """
    b_p = check_trailing_shape(pred, "pred", (None, None))
    b_t = check_trailing_shape(target, "target", (None, None))
    if pred.shape[-2:] != target.shape[-2:]:
        raise ValueError(f"pred, target: expected equal [H, W], got {pred.shape}, {target.shape}")
    batch = check_batch_compatible(pred=b_p, target=b_t)
    hw = pred.shape[-2:]
    m = hw[0] * hw[1]
    key = jax.random.PRNGKey(0) if key is None else key
    p = jnp.broadcast_to(jnp.asarray(pred, jnp.float32), batch + hw).reshape(-1, m)
    t = jnp.broadcast_to(jnp.asarray(target, jnp.float32), batch + hw).reshape(-1, m)
    valid = _weights(mask, batch + hw, jnp.bool_).reshape(-1, m)
    valid = valid & jnp.isfinite(p) & jnp.isfinite(t)
    p = jnp.where(valid, p, 0.0)
    t = jnp.where(valid, t, 0.0)
    thr = jnp.float32(jnp.nan if threshold is None else threshold)
    s, b, inl = _ransac_ss_batched(key, p, t, valid, thr, int(n_iter))
    return s.reshape(batch), b.reshape(batch), inl.reshape(batch + hw)


@checked_jit(_CAM_CHECKS, static_argnames=("ref_index", "pixel_center"))
def normalize_scene_scale(
    depth: jnp.ndarray,
    extrinsics_w2c: jnp.ndarray,
    intrinsics: jnp.ndarray,
    mask=None,
    ref_index: int = 0,
    pixel_center: float = 0.5,
):
    """Express a scene in its reference camera's frame at unit mean point distance.

    Per scene (views on axis -3 of ``depth``):

    1. unproject every valid pixel (``mask & depth > 0 & finite``) to world points;
    2. map them into the frame of view ``ref_index`` (``X_ref = w2c_ref X_world``);
    3. ``mean_norm`` = mean L2 norm of all those points (all views, all valid pixels);
       ``scale = 1 / mean_norm`` (1 when there is no valid point).

    Args:
      depth: ``[..., N, H, W]`` z-depth; extrinsics_w2c: ``[..., N, 3|4, 4]``;
      intrinsics: ``[..., N, 3, 3]`` (pixels of the ``H x W`` maps); mask: optional bool
      ``[..., N, H, W]``; pixel_center: pixel sampling offset (see ``cameras``).

    Returns:
      ``depth_n [..., N, H, W] = scale * depth`` (every pixel, invalid ones included),
      ``w2c_n [..., N, 3, 4] = [R_i R_ref^T | scale * (t_i - R_i R_ref^T t_ref)]`` (w2c in the
      reference frame, so ``w2c_n[ref] = [I | 0]``), and ``scale [...]``.
    """
    b_d = check_trailing_shape(depth, "depth", (None, None, None))
    b_e = _check_extrinsics(extrinsics_w2c, "extrinsics_w2c")
    b_k = check_trailing_shape(intrinsics, "intrinsics", (3, 3))
    # the cameras' leading dims include the view axis N: compare them with depth's [..., N]
    check_batch_compatible(depth=b_d + depth.shape[-3:-2], extrinsics_w2c=b_e, intrinsics=b_k)
    if not b_e or b_e[-1] != depth.shape[-3] or b_e[-1] == 0:
        raise ValueError(
            f"extrinsics_w2c: expected {depth.shape[-3]} views to match depth {depth.shape}, "
            f"got {extrinsics_w2c.shape}"
        )
    n_views = depth.shape[-3]
    if not -n_views <= ref_index < n_views:
        raise ValueError(f"ref_index: expected in [-{n_views}, {n_views}), got {ref_index}")
    depth = jnp.asarray(depth, jnp.float32)
    ext = jnp.asarray(extrinsics_w2c, jnp.float32)[..., :3, :]
    valid = _weights(mask, depth.shape, jnp.bool_) & jnp.isfinite(depth) & (depth > 0)
    safe_depth = jnp.where(valid, depth, 0.0)
    pts = points_from_depth(safe_depth, ext, intrinsics, pixel_center=pixel_center)
    r_ref = ext[..., ref_index, :3, :3]  # [..., 3, 3]
    t_ref = ext[..., ref_index, :3, 3]  # [..., 3]
    pts_ref = jnp.einsum("...ij,...vhwj->...vhwi", r_ref, pts) + t_ref[..., None, None, None, :]
    sq = jnp.where(valid, jnp.sum(pts_ref * pts_ref, axis=-1), 1.0)
    norm = jnp.sqrt(sq)  # safe: no NaN gradient from invalid pixels at the origin
    cnt = jnp.sum(valid, axis=(-3, -2, -1))
    mean_norm = jnp.sum(jnp.where(valid, norm, 0.0), axis=(-3, -2, -1)) / jnp.maximum(cnt, 1)
    scale = jnp.where((cnt > 0) & (mean_norm > _TINY), 1.0 / jnp.maximum(mean_norm, _TINY), 1.0)
    rel = ext[..., :3, :3] @ jnp.swapaxes(r_ref, -1, -2)[..., None, :, :]  # R_i R_ref^T
    t_rel = ext[..., :3, 3] - jnp.einsum("...vij,...j->...vi", rel, t_ref)
    w2c_n = jnp.concatenate([rel, (scale[..., None, None] * t_rel)[..., None]], axis=-1)
    return depth * scale[..., None, None, None], w2c_n, scale
