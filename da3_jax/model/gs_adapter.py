"""Gaussian adapter of the giant model: raw GS-DPT channels → world-space 3D Gaussians.

Port of `depth_anything_3/model/gs_adapter.py` (`GaussianAdapter`, DA3-official.md §2.3) for the
released config (`sh_degree=2`, `pred_color=False`, `pred_offset_depth=True`,
`pred_offset_xy=True`, scale range [1e-5, 30]). It has no parameters, so it is a pure function.

Raw channels (37 = 2 + 3 + 4 + 27 + 1): xy offset (pixels), scales (pre-sigmoid), camera-space
quaternion (xyzw), SH coefficients laid out `(colour 3, coeff 9)`, depth offset.

Reproduced upstream facts (some are quirks kept for weight compatibility):

* pixel centres at `((j + 0.5) / W, (i + 0.5) / H)` in normalised image coordinates, shifted by
  `offset_xy / (W, H)`; intrinsics normalised by rows (`K[0] / W`, `K[1] / H`);
* means = camera centre + **unit** world ray direction × (depth + depth offset): the depth is
  used as a range along the ray, not as z-depth;
* scales = (min + (max - min) sigmoid(s)) × depth' × 0.1 × Σ_i (K_n[:2, :2]^-1 (1/W, 1/H))_i;
* rotation: the normalised xyzw quaternion is reordered to (w, x, y, z) and then read *as xyzw*
  by `quat_to_mat` (upstream `cam_quat_xyzw_to_world_quat_wxyz`), left-multiplied by R_c2w and
  converted back with `mat_to_quat`; the result is **xyzw with w >= 0**, although upstream calls
  it `wxyz`;
* SH: coefficient masks 1 / 0.025 / 0.00625 for degrees 0 / 1 / 2, then rotated by upstream's
  `rotate_sh`: with P the yzx permutation, R_p = P^-1 R_c2w P = R_y(a) R_x(b) R_y(c) (e3nn
  Euler angles), each degree l is multiplied by the e3nn Wigner matrix D^l(a, -b, c) (note the
  sign of b). Since R_y(a) R_x(-b) R_y(c) = R_y(a + c) R_p^T R_y(a + c), this is computed from
  a + c = atan2(R_p[0,2] - R_p[2,0], R_p[0,0] + R_p[2,2]) without Euler angles, which stays well
  conditioned near the identity (upstream's float32 `acos` loses ~3e-4 there). Upstream's SVD
  re-projection onto SO(3) is skipped (R_c2w is already a rotation);
* opacities = `map_pdf_to_opacity(density)`, the identity at upstream's default step 0.

Our deviations, both off by default (the released weights need them off). They are properties
of the model: the model config fields ``gs_color_residual`` / ``gs_z_depth``
(`da3_jax.model.configs`; e.g. set by ``tiny_cpu.py:stage=nvs`` for a GS head trained from
scratch), applied by `model_gaussians`, the one function every path that builds a model's
Gaussians calls (the network's ``infer_gs``, `Predictor` / render / ``gs_video`` / eval, the
``nvs`` training stage and its demo evaluation):

* ``colors``: the context pixel's colour is added to the SH DC term as a residual,
  ``DC += (rgb - 0.5) / C0`` (the inverse of the renderer's ``C0 · DC + 0.5``), so an untrained
  head already splats each pixel in its own colour and training learns corrections;
* ``z_depth=True``: ``depths`` are camera z (what the depth head predicts), so the means are
  ``centre + R_c2w K_n^-1 (x, y, 1) · depth`` instead of a unit ray times depth, which places an
  image-corner pixel of a 60°-80° field of view at its true position instead of 20-35 % too near.

Not reproduced: the optional rescaling by a Umeyama fit to ground-truth extrinsics
(`gt_extrinsics`); pass `pose_scale` to apply a scale computed by the caller.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from da3_jax.geometry import invert_intrinsics, quat_to_rotmat, rotmat_to_quat, w2c_to_c2w
from da3_jax.imagenet import imagenet_denormalize
from da3_jax.render.sh import SH_C0

SH_DEGREE = 2
RAW_GS_DIM = 2 + 3 + 4 + 3 * (SH_DEGREE + 1) ** 2 + 1  # 37; GS-DPT output_dim = 38

# P: upstream's "yzx -> xyz" axis switch.
_P = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)


def map_pdf_to_opacity(pdf: jnp.ndarray, exponent: float = 1.0) -> jnp.ndarray:
    """`0.5 (1 - (1 - pdf)^e + pdf^(1/e))`; upstream inference uses e = 2^0 = 1 (identity)."""
    return 0.5 * (1.0 - (1.0 - pdf) ** exponent + pdf ** (1.0 / exponent))


def _e3nn_sh2(x: np.ndarray) -> np.ndarray:
    """e3nn real SH of degree 2 ('component' normalisation) of unit vectors `[n, 3]` → `[n, 5]`."""
    a, b, c = x[:, 0], x[:, 1], x[:, 2]
    s15, s5 = np.sqrt(15.0), np.sqrt(5.0)
    return np.stack(
        [s15 * a * c, s15 * a * b, s5 * (b * b - 0.5 * (a * a + c * c)), s15 * b * c,
         0.5 * s15 * (c * c - a * a)], axis=-1)


def _sh2_fit_points() -> tuple[np.ndarray, np.ndarray]:
    """Fixed unit sample directions and the pseudo-inverse of their degree-2 SH values."""
    pts = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1],
                    [1, -1, 0], [1, 0, -1], [0, 1, -1], [1, 1, 1]], np.float64)
    pts /= np.linalg.norm(pts, axis=-1, keepdims=True)
    return pts.astype(np.float32), np.linalg.pinv(_e3nn_sh2(pts)).astype(np.float32)


_SH2_PTS, _SH2_PINV = _sh2_fit_points()


def wigner_d2(rot: jnp.ndarray) -> jnp.ndarray:
    """e3nn degree-2 Wigner matrix of rotations `[..., 3, 3]` → `[..., 5, 5]`.

    Defined by equivariance, Y2(R x) = D2(R) Y2(x), solved exactly on 10 fixed directions.
    """
    rx = jnp.einsum("...ij,nj->...ni", rot, _SH2_PTS)  # [..., n, 3]
    a, b, c = rx[..., 0], rx[..., 1], rx[..., 2]
    s15, s5 = np.float32(np.sqrt(15.0)), np.float32(np.sqrt(5.0))
    y = jnp.stack(
        [s15 * a * c, s15 * a * b, s5 * (b * b - 0.5 * (a * a + c * c)), s15 * b * c,
         0.5 * s15 * (c * c - a * a)], axis=-1)  # [..., n, 5] = Y(x) D^T
    return jnp.swapaxes(jnp.einsum("kn,...nj->...kj", _SH2_PINV, y), -1, -2)


def _rot_y(theta: jnp.ndarray) -> jnp.ndarray:
    c, s = jnp.cos(theta), jnp.sin(theta)
    z, o = jnp.zeros_like(c), jnp.ones_like(c)
    return jnp.stack([jnp.stack([c, z, s], -1), jnp.stack([z, o, z], -1),
                      jnp.stack([-s, z, c], -1)], -2)


def sh_rotation_matrix(rot_c2w: jnp.ndarray) -> jnp.ndarray:
    """Upstream's effective SH rotation `R' = R_y(a) R_x(-b) R_y(c)` for `R_c2w [..., 3, 3]`."""
    p = jnp.asarray(_P)
    rp = p.T @ rot_c2w @ p  # P^-1 = P^T
    s = jnp.arctan2(rp[..., 0, 2] - rp[..., 2, 0], rp[..., 0, 0] + rp[..., 2, 2])
    ry = _rot_y(s)
    return ry @ jnp.swapaxes(rp, -1, -2) @ ry


def rotate_sh(sh: jnp.ndarray, rot_c2w: jnp.ndarray) -> jnp.ndarray:
    """Rotate SH `[..., 3, 9]` (degrees 0-2, e3nn basis) with upstream's `rotate_sh(sh, R_c2w)`.

    `rot_c2w` broadcasts against the leading dims of `sh` (`[..., 3, 3]`).
    """
    r = sh_rotation_matrix(rot_c2w)[..., None, :, :]  # broadcast over the colour axis
    d1 = jnp.einsum("...ij,...j->...i", r, sh[..., 1:4])
    d2 = jnp.einsum("...ij,...j->...i", wigner_d2(r), sh[..., 4:9])
    return jnp.concatenate([sh[..., :1], d1, d2], axis=-1)


def gaussian_adapter(
    extrinsics_w2c: jnp.ndarray,
    intrinsics: jnp.ndarray,
    depths: jnp.ndarray,
    opacities: jnp.ndarray,
    raw_gaussians: jnp.ndarray,
    image_hw,
    *,
    scale_min: float = 1e-5,
    scale_max: float = 30.0,
    pose_scale: jnp.ndarray | None = None,
    colors: jnp.ndarray | None = None,
    z_depth: bool = False,
    eps: float = 1e-8,
) -> dict[str, jnp.ndarray]:
    """World-space Gaussians from GS-DPT outputs (upstream `GaussianAdapter.forward`).

    Args:
      extrinsics_w2c: `[B, V, 3|4, 4]` (OpenCV, w2c; the *predicted* cameras upstream).
      intrinsics: `[B, V, 3, 3]` pixel intrinsics.
      depths: `[B, V, H, W]` predicted depth.
      opacities: `[B, V, H, W]` (`map_pdf_to_opacity(raw_gs_conf)`).
      raw_gaussians: `[B, V, H, W, 37]` (`raw_gs` of `GSDPT`).
      image_hw: `(H, W)`.
      pose_scale: optional `[B]` factor applied to camera centres and depths (upstream derives
        it from a Umeyama fit to ground-truth poses, clipped to [1/3, 3]).
      colors: optional `[B, V, H, W, 3]` context RGB in [0, 1], added to the SH DC term
        (our deviation, see the module doc; None = upstream).
      z_depth: `depths` are camera z, not ranges along the unit ray (our deviation; False =
        upstream).
    Returns:
      dict with `means [B, V*H*W, 3]`, `scales [B, V*H*W, 3]`, `rotations [B, V*H*W, 4]` (xyzw,
      w >= 0), `harmonics [B, V*H*W, 3, 9]`, `opacities [B, V*H*W]`.
    """
    h, w = int(image_hw[0]), int(image_hw[1])
    b, v = raw_gaussians.shape[:2]
    if raw_gaussians.shape != (b, v, h, w, RAW_GS_DIM):
        raise ValueError(
            f"raw_gaussians must be [B, V, {h}, {w}, {RAW_GS_DIM}], got {raw_gaussians.shape}")
    if depths.shape != (b, v, h, w) or opacities.shape != (b, v, h, w):
        raise ValueError(f"depths/opacities must be [{b}, {v}, {h}, {w}], got "
                         f"{depths.shape} / {opacities.shape}")
    raw = raw_gaussians.astype(jnp.float32)
    c2w = w2c_to_c2w(jnp.asarray(extrinsics_w2c, jnp.float32))
    rot_c2w, center = c2w[..., :3, :3], c2w[..., :3, 3]
    k_n = jnp.asarray(intrinsics, jnp.float32)
    k_n = k_n * jnp.array([1.0 / w, 1.0 / h, 1.0], jnp.float32)[:, None]
    k_inv = invert_intrinsics(k_n)  # [B, V, 3, 3]

    gs_depths = depths.astype(jnp.float32) + raw[..., -1]
    if pose_scale is not None:
        center = center * pose_scale[:, None, None]
        gs_depths = gs_depths * pose_scale[:, None, None, None]

    pixel_size = jnp.array([1.0 / w, 1.0 / h], jnp.float32)
    xs = (jnp.arange(w, dtype=jnp.float32) + 0.5) / w
    ys = (jnp.arange(h, dtype=jnp.float32) + 0.5) / h
    xy = jnp.stack(jnp.meshgrid(xs, ys, indexing="xy"), axis=-1) + raw[..., 0:2] * pixel_size
    xy1 = jnp.concatenate([xy, jnp.ones_like(xy[..., :1])], axis=-1)
    dirs = jnp.einsum("bvij,bvhwj->bvhwi", k_inv, xy1)
    if not z_depth:
        dirs = dirs / jnp.linalg.norm(dirs, axis=-1, keepdims=True)
    dirs = jnp.einsum("bvij,bvhwj->bvhwi", rot_c2w, dirs)
    means = center[:, :, None, None, :] + dirs * gs_depths[..., None]

    scales = scale_min + (scale_max - scale_min) * jax.nn.sigmoid(raw[..., 2:5])
    multiplier = 0.1 * jnp.sum(
        jnp.einsum("bvij,j->bvi", k_inv[..., :2, :2], pixel_size), axis=-1)
    scales = scales * gs_depths[..., None] * multiplier[:, :, None, None, None]

    q = raw[..., 5:9]
    q = q / (jnp.linalg.norm(q, axis=-1, keepdims=True) + eps)
    q_as_read = jnp.concatenate([q[..., 3:4], q[..., 0:3]], axis=-1)  # upstream's reorder
    rot_world = rot_c2w[:, :, None, None] @ quat_to_rotmat(q_as_read)
    rotations = rotmat_to_quat(rot_world)

    sh = raw[..., 9:36].reshape(b, v, h, w, 3, 9)
    mask = np.array([1.0] + [0.025] * 3 + [0.1 * 0.25**2] * 5, np.float32)
    sh = rotate_sh(sh * mask, rot_c2w[:, :, None, None])
    if colors is not None:
        if colors.shape != (b, v, h, w, 3):
            raise ValueError(f"colors must be [{b}, {v}, {h}, {w}, 3] (RGB in [0, 1]), got "
                             f"{colors.shape}")
        dc = (colors.astype(jnp.float32) - 0.5) / SH_C0
        sh = sh.at[..., 0].add(dc)

    n = v * h * w
    return {
        "means": means.reshape(b, n, 3),
        "scales": scales.reshape(b, n, 3),
        "rotations": rotations.reshape(b, n, 4),
        "harmonics": sh.reshape(b, n, 3, 9),
        "opacities": opacities.astype(jnp.float32).reshape(b, n),
    }


def adapter_options(config) -> dict[str, bool]:
    """``{'color_residual', 'z_depth'}`` of a model config (nested: its any-view model): the
    fields ``gs_color_residual`` / ``gs_z_depth``, False (the official adapter) when absent, as
    in config.json files written before they existed."""
    if config.get("kind") == "nested":
        config = config.anyview
    return {"color_residual": bool(config.get("gs_color_residual", False)),
            "z_depth": bool(config.get("gs_z_depth", False))}


def model_gaussians(
    config,
    extrinsics_w2c: jnp.ndarray,
    intrinsics: jnp.ndarray,
    depths: jnp.ndarray,
    raw_gs: jnp.ndarray,
    raw_gs_conf: jnp.ndarray,
    images: jnp.ndarray,
) -> dict[str, jnp.ndarray]:
    """The Gaussians of the model with config `config`: `gaussian_adapter` with opacity
    `map_pdf_to_opacity(raw_gs_conf)` and the config's deviations (`adapter_options`).

    Args:
      config: the model config (`da3_jax.model.configs`; nested: the any-view part's fields).
      extrinsics_w2c, intrinsics, depths: as `gaussian_adapter` (`[B, V, ...]`; the cameras the
        Gaussians are placed with: predicted at inference, ground truth in the ``nvs`` stage).
      raw_gs: `[B, V, H, W, 37]`, raw_gs_conf: `[B, V, H, W]` (the GS-DPT outputs).
      images: `[B, V, H, W, 3]` the network's ImageNet-normalised input views (the colours of
        ``gs_color_residual``).
    Returns:
      the `gaussian_adapter` dict (`means [B, V*H*W, 3]`, ...).
    """
    opts = adapter_options(config)
    h, w = raw_gs.shape[2:4]
    colors = imagenet_denormalize(jnp.asarray(images)) if opts["color_residual"] else None
    return gaussian_adapter(extrinsics_w2c, intrinsics, depths, map_pdf_to_opacity(raw_gs_conf),
                            raw_gs, (h, w), colors=colors, z_depth=opts["z_depth"])
