"""Ray map -> camera (``use_ray_pose=True`` path of DA3).

A DA3 ray map ``ray [..., h, w, 6]`` holds, per cell of the ``h x w`` ray grid, the world-frame
ray direction (``ray[..., 0:3]``, only its direction matters) and the camera centre
(``ray[..., 3:6]``). This module recovers ``(extrinsics_w2c, intrinsics)`` from it.

Algorithm (official ``camray_to_caminfo`` in ``depth_anything_3/utils/ray_utils.py``):

1. Canonical rays: a camera with image width = height = 2 and ``K = [[1, 0, 1], [0, 1, 1],
   [0, 0, 1]]``; cell ``j`` has centre ``x_j = -1 + (2j + 1) / w`` (same for y); canonical ray
   ``(x_j, y_i, 1)``.
2. Both the canonical rays (src) and the predicted directions (dst) are divided by their z;
   cells with ``|z| <= 1e-4`` get weight 0 (and keep their raw x, y). Weights = ``ray_conf``.
3. Weighted DLT homography ``dst ~ A src`` (rows scaled by ``sqrt(weight)``, SVD,
   ``A[2, 2] = 1``) inside a RANSAC: 100 iterations of 8-point samples drawn from the top
   ``max(8, int(0.3 N))`` cells by weight with **one index table shared by all views**; inlier
   if the plane reprojection error < 0.2; score = sum of inlier weights; final fit on the
   inliers of the best sample (more than 8000 inliers: a random 8000 of the top 95 % by weight).
4. ``det(A) < 0`` -> ``A = -A``. The true structure is ``A ~ R_c2w K_n^{-1} T`` with ``K_n`` the
   intrinsics normalised to a 2 x 2 image and ``T`` the shift by +1 (upper triangular).

   * ``method='official'``: QL decomposition ``A = Q L`` (L lower-triangular, positive
     diagonal), ``L /= L[2, 2]``, ``R = Q``, ``f_n = 1 / diag(L)[:2]``, ``c_n = L[2, :2] + 1``.
     Exact only for a centred principal point; biased otherwise (kept for parity).
   * ``method='exact'``: QR decomposition ``A = Q U`` (U upper-triangular, positive diagonal),
     ``R = Q`` and ``K_n = T (U / U[2, 2])^{-1}``, which recovers off-centre principal points
     (and skew) exactly.

5. Camera centre = ``sum(w * origin) / sum(w)`` with the z-masked weights. ``[R | C]`` is c2w;
   it is inverted to w2c. Pixel intrinsics for the ``(H, W)`` image:
   ``fx = f_n,x W / 2``, ``fy = f_n,y H / 2``, ``cx = c_n,x W / 2``, ``cy = c_n,y H / 2``
   (pixel-edge convention, as in the official ``da3.py``).

Randomness: the official code draws the RANSAC index table with ``torch.randperm``; here it comes
from ``key`` (default ``PRNGKey(0)``), or is passed explicitly as ``sample_table`` (e.g. the
official table, for parity). Results are deterministic for a given key. Ties in ``ray_conf``
are ordered by index (stable sort); the official unstable sort may order them differently.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from da3_jax.geometry.cameras import _rigid_inverse
from da3_jax.geometry.checks import (
    check_batch_compatible,
    check_finite,
    check_image_hw,
    check_trailing_shape,
    is_concrete,
)

__all__ = [
    "rays_to_camera",
    "canonical_ray_grid",
    "ransac_sample_table",
    "weighted_homography_dlt",
    "ql_decomposition",
    "RANSAC_N_ITER",
    "RANSAC_NUM_SAMPLE",
    "RANSAC_SAMPLE_RATIO",
    "RANSAC_REPROJ_THRESHOLD",
    "RANSAC_MAX_INLIERS",
]

RANSAC_N_ITER = 100
RANSAC_NUM_SAMPLE = 8
RANSAC_SAMPLE_RATIO = 0.3
RANSAC_REPROJ_THRESHOLD = 0.2
RANSAC_MAX_INLIERS = 8000
Z_THRESHOLD = 1e-4


def canonical_ray_grid(hw, dtype=jnp.float32) -> jnp.ndarray:
    """Canonical plane points ``[h * w, 2]`` (row-major), ``x_j = -1 + (2j + 1) / w``.

    Computed like the official code (``linspace(1/w, 2 - 1/w, w) - 1``).
    """
    h, w = check_image_hw(hw, "hw")
    xs = jnp.linspace(1.0 / w, 2.0 - 1.0 / w, w, dtype=dtype) - 1.0
    ys = jnp.linspace(1.0 / h, 2.0 - 1.0 / h, h, dtype=dtype) - 1.0
    yy, xx = jnp.meshgrid(ys, xs, indexing="ij")
    return jnp.stack([xx, yy], axis=-1).reshape(h * w, 2)


def n_candidates(num_points: int) -> int:
    """Size of the RANSAC candidate pool: ``max(8, int(0.3 * N))`` (official)."""
    return max(RANSAC_NUM_SAMPLE, int(num_points * RANSAC_SAMPLE_RATIO))


def ransac_sample_table(
    key, num_points: int, n_iter: int = RANSAC_N_ITER, num_sample: int = RANSAC_NUM_SAMPLE
) -> jnp.ndarray:
    """Index table ``[n_iter, num_sample]`` into the candidate pool (each row distinct indices).

    Same distribution as the official ``randperm(n_sample)[:8]`` per iteration.
    """
    n_sample = n_candidates(num_points)
    keys = jax.random.split(key, n_iter)
    return jax.vmap(lambda k: jax.random.permutation(k, n_sample)[:num_sample])(keys)


def weighted_homography_dlt(src: jnp.ndarray, dst: jnp.ndarray, weight: jnp.ndarray):
    """Weighted DLT homography ``dst ~ H src`` with ``H[2, 2] = 1``.

    Args: ``src, dst [..., K, 2]`` plane points, ``weight [..., K]`` (>= 0; zero rows are
    ignored). Returns ``H [..., 3, 3]``. Rows are scaled by ``sqrt(weight)`` (official).
    """
    w = jnp.sqrt(weight)[..., None]
    x, y = src[..., 0:1], src[..., 1:2]
    u, v = dst[..., 0:1], dst[..., 1:2]
    z = jnp.zeros_like(x)
    a1 = jnp.concatenate([-x * w, -y * w, -w, z, z, z, x * u * w, y * u * w, u * w], axis=-1)
    a2 = jnp.concatenate([z, z, z, -x * w, -y * w, -w, x * v * w, y * v * w, v * w], axis=-1)
    a = jnp.concatenate([a1, a2], axis=-2)  # [..., 2K, 9]
    _, _, vh = jnp.linalg.svd(a, full_matrices=False)
    hmat = vh[..., -1, :].reshape(vh.shape[:-2] + (3, 3))
    return hmat / hmat[..., 2:3, 2:3]


def ql_decomposition(a: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``A = Q L``, Q orthogonal, L lower-triangular with positive diagonal (``[..., 3, 3]``).

    Official construction: QR of ``A P`` with ``P`` the anti-identity, un-permuted, sign-fixed.
    """
    p = jnp.asarray([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype=a.dtype)
    q_t, r_t = jnp.linalg.qr(a @ p)
    q = q_t @ p
    lower = p @ r_t @ p
    sgn = jnp.sign(jnp.diagonal(lower, axis1=-2, axis2=-1))
    return q * sgn[..., None, :], lower * sgn[..., :, None]


def _qr_positive(a: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``A = Q U`` with U upper-triangular with positive diagonal."""
    q, u = jnp.linalg.qr(a)
    sgn = jnp.sign(jnp.diagonal(u, axis1=-2, axis2=-1))
    return q * sgn[..., None, :], u * sgn[..., :, None]


def _final_weights(key, inlier, weight, max_inliers: int):
    """Weights of the final fit: the inliers, capped at ``max_inliers`` like the official code.

    Static shapes: returns ``(index [M], weight [M])`` with ``M = min(N, max_inliers)``; unused
    slots have weight 0 (zero rows do not change the DLT solution).
    """
    n = weight.shape[0]
    w_in = jnp.where(inlier, weight, 0.0)
    if n <= max_inliers:
        return jnp.arange(n), w_in
    n_inl = jnp.sum(inlier)
    keep_len = jnp.where(n_inl > max_inliers, jnp.maximum((n_inl * 95) // 100, max_inliers), n_inl)
    order = jnp.argsort(jnp.where(inlier, -weight, jnp.inf))  # inliers by weight, descending
    rank = jnp.zeros((n,), jnp.int32).at[order].set(jnp.arange(n, dtype=jnp.int32))
    eligible = inlier & (rank < keep_len)
    prio = jnp.where(eligible, jax.random.uniform(key, (n,)), -1.0)
    _, idx = jax.lax.top_k(prio, max_inliers)
    return idx, jnp.where(eligible[idx], weight[idx], 0.0)


def _solve_homography(src, dst3, conf, table, key, reproj_threshold, max_inliers):
    """One view: RANSAC weighted DLT. Returns ``(A [3, 3] with det > 0, zmasked weights [N])``."""
    zmask = jnp.abs(dst3[:, 2]) > Z_THRESHOLD  # canonical z is 1 everywhere
    dz = jnp.where(zmask, dst3[:, 2], 1.0)[:, None]
    dst = jnp.where(zmask[:, None], dst3[:, :2] / dz, dst3[:, :2])
    w = jnp.where(zmask, conf, 0.0)
    n_sample = n_candidates(w.shape[0])
    cand = jnp.argsort(-w)[:n_sample]
    idx = cand[table]  # [n_iter, num_sample]
    h_batch = weighted_homography_dlt(src[idx], dst[idx], w[idx])  # [n_iter, 3, 3]
    src_h = jnp.concatenate([src, jnp.ones_like(src[:, :1])], axis=-1)
    proj = jnp.einsum("kij,nj->kni", h_batch, src_h)
    err = jnp.sqrt(jnp.sum((proj[..., :2] / proj[..., 2:3] - dst) ** 2, axis=-1))
    inlier = err < reproj_threshold  # NaN errors (degenerate samples) are outliers
    score = jnp.sum(inlier * w, axis=-1)
    best = jnp.argmax(score)
    sel, w_sel = _final_weights(key, inlier[best], w, max_inliers)
    a = weighted_homography_dlt(src[sel], dst[sel], w_sel)
    a = jnp.where(jnp.linalg.det(a) < 0, -a, a)
    return a, w


def rays_to_camera(
    ray: jnp.ndarray,
    ray_conf: jnp.ndarray | None,
    image_hw,
    method: str = "official",
    key=None,
    *,
    sample_table: jnp.ndarray | None = None,
    reproj_threshold: float = RANSAC_REPROJ_THRESHOLD,
    max_inliers: int = RANSAC_MAX_INLIERS,
    views_per_step: int = 2,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Recover cameras from a DA3 ray map.

    Args:
      ray: ``[..., h, w, 6]``: world directions (0:3, unnormalised) and camera centres (3:6).
      ray_conf: ``[..., h, w]`` non-negative confidences (weights), or None for all ones.
      image_hw: static ``(H, W)`` of the image the intrinsics refer to (the network input).
      method: ``'official'`` (QL, reproduces the official solver and its off-centre principal
        point bias) or ``'exact'`` (QR, recovers off-centre principal points).
      key: PRNG key for the RANSAC sample table and the >8000-inlier subsampling; None means
        ``jax.random.PRNGKey(0)``.
      sample_table: optional int ``[n_iter, 8]`` RANSAC table (indices into the candidate pool of
        size ``max(8, int(0.3 h w))``), shared by all views; overrides the table drawn from key.
      reproj_threshold: RANSAC inlier threshold in canonical plane units (official 0.2).
      max_inliers: cap on the points of the final fit (official 8000).
      views_per_step: views solved at once (memory ~ 100 x h x w x 12 bytes per view).

    Returns:
      ``extrinsics_w2c [..., 3, 4]`` and ``intrinsics [..., 3, 3]`` (pixels, ``image_hw`` image,
      pixel-edge convention). Computed in float32.
    """
    if method not in ("official", "exact"):
        raise ValueError(f"method: expected 'official' or 'exact', got {method!r}")
    batch = check_trailing_shape(ray, "ray", (None, None, 6))
    h, w = ray.shape[-3], ray.shape[-2]
    if h * w < RANSAC_NUM_SAMPLE:
        raise ValueError(f"ray: expected at least {RANSAC_NUM_SAMPLE} cells, got {h}x{w}")
    if ray_conf is None:
        ray_conf = jnp.ones(ray.shape[:-1], jnp.float32)
    b_c = check_trailing_shape(ray_conf, "ray_conf", (h, w))
    batch = check_batch_compatible(ray=batch, ray_conf=b_c)
    height, width = check_image_hw(image_hw)
    check_finite(ray, "ray")
    check_finite(ray_conf, "ray_conf")
    if is_concrete(ray_conf) and bool(jnp.any(jnp.asarray(ray_conf) < 0)):
        raise ValueError("ray_conf: expected non-negative confidences")
    if key is None:
        key = jax.random.PRNGKey(0)
    if sample_table is not None:
        check_trailing_shape(sample_table, "sample_table", (None, RANSAC_NUM_SAMPLE))
        if sample_table.ndim != 2:
            raise ValueError(f"sample_table: expected shape [n_iter, 8], got {sample_table.shape}")
        if is_concrete(sample_table):
            tab = np.asarray(sample_table)
            n_pool = n_candidates(h * w)
            if tab.size and (tab.min() < 0 or tab.max() >= n_pool):
                raise ValueError(
                    f"sample_table: expected indices in [0, {n_pool}), got "
                    f"[{tab.min()}, {tab.max()}]"
                )
        sample_table = jnp.asarray(sample_table, jnp.int32)
    ray_f = jnp.broadcast_to(jnp.asarray(ray, jnp.float32), batch + (h, w, 6)).reshape(-1, h, w, 6)
    conf_f = jnp.broadcast_to(jnp.asarray(ray_conf, jnp.float32), batch + (h, w)).reshape(-1, h, w)
    a, centre = _solve_views(
        ray_f,
        conf_f,
        key,
        sample_table,
        reproj_threshold=float(reproj_threshold),
        max_inliers=int(max_inliers),
        views_per_step=int(views_per_step),
    )
    w2c, k_px = _decompose(a, centre, image_hw=(height, width), method=method)
    return w2c.reshape(batch + (3, 4)), k_px.reshape(batch + (3, 3))


@functools.partial(jax.jit, static_argnames=("reproj_threshold", "max_inliers", "views_per_step"))
def _solve_views(ray, conf, key, sample_table, *, reproj_threshold, max_inliers, views_per_step):
    """RANSAC homographies of flattened views ``ray [V, h, w, 6]``, ``conf [V, h, w]``.

    Returns ``A [V, 3, 3]`` (det > 0) and the confidence-weighted centres ``[V, 3]``.
    """
    n_views, h, w = ray.shape[:3]
    n = h * w
    ray_f = ray.reshape(n_views, n, 6)
    conf_f = conf.reshape(n_views, n)
    table_key, fit_key = jax.random.split(key)
    table = ransac_sample_table(table_key, n) if sample_table is None else sample_table
    view_keys = jax.random.split(fit_key, n_views)
    src = canonical_ray_grid((h, w))

    def solve_view(args):
        r, c, k = args
        a, wz = _solve_homography(src, r[:, :3], c, table, k, reproj_threshold, max_inliers)
        centre = jnp.sum(r[:, 3:] * wz[:, None], axis=0) / jnp.sum(wz)
        return a, centre

    return jax.lax.map(
        solve_view, (ray_f, conf_f, view_keys), batch_size=min(views_per_step, n_views)
    )


@functools.partial(jax.jit, static_argnames=("image_hw", "method"))
def _decompose(a, centre, *, image_hw, method):
    """Homographies ``A [V, 3, 3]`` + centres ``[V, 3]`` -> (w2c ``[V, 3, 4]``, K ``[V, 3, 3]``)."""
    height, width = image_hw
    if method == "official":
        rot, lower = ql_decomposition(a)
        lower = lower / lower[:, 2:3, 2:3]
        f_n = 1.0 / jnp.stack([lower[:, 0, 0], lower[:, 1, 1]], axis=-1)
        c_n = jnp.stack([lower[:, 2, 0], lower[:, 2, 1]], axis=-1) + 1.0
        zero = jnp.zeros_like(f_n[:, 0])
        k_n = jnp.stack(
            [
                jnp.stack([f_n[:, 0], zero, c_n[:, 0]], axis=-1),
                jnp.stack([zero, f_n[:, 1], c_n[:, 1]], axis=-1),
                jnp.stack([zero, zero, zero + 1.0], axis=-1),
            ],
            axis=-2,
        )
    else:
        shift = jnp.asarray([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [0.0, 0.0, 1.0]], jnp.float32)
        rot, upper = _qr_positive(a)
        upper = upper / upper[:, 2:3, 2:3]
        k_n = shift @ jnp.linalg.inv(upper)  # K_n = T U^-1
        k_n = k_n.at[:, 2, :].set(jnp.asarray([0.0, 0.0, 1.0]))
        k_n = k_n.at[:, 1, 0].set(0.0)
    to_px = jnp.asarray([width / 2.0, height / 2.0, 1.0], jnp.float32)
    k_px = k_n * to_px[:, None]
    c2w = jnp.concatenate([rot, centre[..., None]], axis=-1)
    return _rigid_inverse(c2w), k_px
