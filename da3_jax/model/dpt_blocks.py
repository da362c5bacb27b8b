"""Building blocks shared by the DPT-style heads (DualDPT, DPT, GSDPT).

Everything here is NHWC and float32. Each block reproduces one piece of the official PyTorch
code (`depth_anything_3/model/dpt.py`, `dualdpt.py`, `utils/head_utils.py`) operation for
operation, so that converted weights give the same numbers (DA3-official.md §2.1, §10.7):

* `bilinear_resize_align_corners`: `F.interpolate(mode="bilinear", align_corners=True)`,
  written as two gathers with the same float32 source indices and weights as torch's CPU kernel.
* `uv_pos_embed`: `create_uv_grid` + `position_grid_to_embed` (omega base 100), layout
  `[sin u, cos u, sin v, cos v]`, each block C/4 wide; the heads add it scaled by 0.1.
* `ConvTransposeScatter`: `nn.ConvTranspose2d` with stride == kernel (a non-overlapping pixel
  scatter), done as an einsum + reshape. Kernel stored in flax layout `(kh, kw, in, out)`; the
  torch weight `(in, out, kh, kw)` converts with `w.transpose(2, 3, 0, 1)`.
* `ResidualConvUnit` (pre-activation) and `FeatureFusionBlock` (RCU1 on the skip, RCU2,
  align-corners upsample, 1x1 `out_conv`).

Parameter names follow the project rule (official key → flax path; a numeric component joins the
previous name with '_'; conv/linear `weight` → `kernel`, LayerNorm `weight` → `scale`); its one
home is `da3_jax.convert.naming`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from da3_jax.model.conv import Conv2d

# ---------------------------------------------------------------------------------------------
# Resampling and positional embedding (pure functions, static shapes)
# ---------------------------------------------------------------------------------------------


def _align_corners_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (i0, i1) and weight of i1 for one axis, as torch's CPU bilinear kernel.

    torch: scale = float32(n_in - 1) / (n_out - 1) (0 if n_out == 1); src = scale * i;
    i0 = int(src); i1 = i0 + 1 clamped to n_in - 1; lambda1 = src - i0.
    """
    scale = np.float32(n_in - 1) / np.float32(n_out - 1) if n_out > 1 else np.float32(0.0)
    src = (np.float32(scale) * np.arange(n_out, dtype=np.float32)).astype(np.float32)
    i0 = np.minimum(src.astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam1 = (src - i0.astype(np.float32)).astype(np.float32)
    return i0, i1, lam1


def _align_corners_matrix(n_in: int, n_out: int) -> np.ndarray:
    """The same interpolation as a dense float32 `[n_out, n_in]` matrix: row o holds
    (1 - lambda1) at i0 and lambda1 at i1 (summed where i0 == i1)."""
    i0, i1, l1 = _align_corners_taps(n_in, n_out)
    m = np.zeros((n_out, n_in), np.float32)
    rows = np.arange(n_out)
    np.add.at(m, (rows, i0), np.float32(1) - l1)
    np.add.at(m, (rows, i1), l1)
    return m


def _transposed_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """The transpose of the interpolation as K gathers: `(idx, wt)`, both `[K, n_in]`.

    Column i of the `[n_out, n_in]` matrix has at most K nonzeros (K is about
    n_out / n_in + 2), at rows idx[:, i] with weights wt[:, i] (padding: row 0, weight 0).
    """
    m = _align_corners_matrix(n_in, n_out)
    k = max(int((m[:, i] != 0).sum()) for i in range(n_in))
    idx = np.zeros((k, n_in), np.int32)
    wt = np.zeros((k, n_in), np.float32)
    for i in range(n_in):
        rows = np.nonzero(m[:, i])[0]
        idx[: len(rows), i] = rows
        wt[: len(rows), i] = m[rows, i]
    return idx, wt


def _transposed_resize_axis(g: jnp.ndarray, n_in: int, axis: int) -> jnp.ndarray:
    """Applies the transposed interpolation along `axis` of `g` (length n_out -> n_in)."""
    idx, wt = _transposed_taps(n_in, g.shape[axis])
    shape = [1] * g.ndim
    shape[axis] = n_in
    out = None
    for k in range(idx.shape[0]):
        term = jnp.take(g, idx[k], axis=axis) * jnp.asarray(wt[k], g.dtype).reshape(shape)
        out = term if out is None else out + term
    return out


def _gather_resize(x: jnp.ndarray, size: tuple[int, int]) -> jnp.ndarray:
    _, h, w, _ = x.shape
    i0, i1, l1 = _align_corners_taps(h, size[0])
    l1 = jnp.asarray(l1, x.dtype)[None, :, None, None]
    x = jnp.take(x, i0, axis=1) * (1 - l1) + jnp.take(x, i1, axis=1) * l1
    j0, j1, m1 = _align_corners_taps(w, size[1])
    m1 = jnp.asarray(m1, x.dtype)[None, None, :, None]
    return jnp.take(x, j0, axis=2) * (1 - m1) + jnp.take(x, j1, axis=2) * m1


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _resize(x: jnp.ndarray, size: tuple[int, int]) -> jnp.ndarray:
    return _gather_resize(x, size)


def _resize_fwd(x, size):
    return _gather_resize(x, size), (x.shape[1], x.shape[2])


def _resize_bwd(size, in_hw, g):
    # The gathers' own gradient is a serial scatter-add (about 11x the forward on XLA:CPU,
    # benchmarks/RESULTS.md §10.2). The resize is linear, so its transpose is written as a few
    # gathers from the output grid, one per nonzero of each column of the interpolation
    # matrix. W is reduced first, so the H pass reads the smaller array.
    g = _transposed_resize_axis(g, in_hw[1], axis=2)
    return (_transposed_resize_axis(g, in_hw[0], axis=1),)


_resize.defvjp(_resize_fwd, _resize_bwd)


def bilinear_resize_align_corners(x: jnp.ndarray, size: Sequence[int]) -> jnp.ndarray:
    """Bilinear resize with `align_corners=True` (torch `F.interpolate` semantics).

    Forward: two gathers with torch's float32 taps. Gradient (a custom VJP): the transposed
    linear map, also written as gathers (no scatter-add).

    Args:
      x: `[B, h, w, C]`.
      size: output `(H, W)`.
    Returns:
      `[B, H, W, C]`, same dtype as `x`.
    """
    _, h, w, _ = x.shape
    out_h, out_w = int(size[0]), int(size[1])
    if (out_h, out_w) == (h, w):
        # torch with align_corners=True and equal sizes is the identity (scale 1, lambda 0).
        return x
    return _resize(x, (out_h, out_w))


def uv_pos_embed(h: int, w: int, channels: int, aspect_ratio: float) -> np.ndarray:
    """UV sin/cos embedding of an `h x w` feature map (official `_add_pos_embed` before ×0.1).

    With a = aspect_ratio (image W / H), diag = sqrt(a^2 + 1), s_x = a / diag, s_y = 1 / diag:
    u = linspace(-s_x (w-1)/w, s_x (w-1)/w, w), v likewise with s_y and h;
    omega_j = 100^(-j / (C/4)), j < C/4; embedding = [sin(u w), cos(u w), sin(v w), cos(v w)].

    Returns:
      float32 `[h, w, channels]` (a numpy constant: it depends on static shapes only).
    """
    if channels % 4 != 0:
        raise ValueError(f"channels must be a multiple of 4 for the UV embedding, got {channels}")
    diag = (aspect_ratio**2 + 1.0) ** 0.5
    span_x, span_y = aspect_ratio / diag, 1.0 / diag
    u = np.linspace(-span_x * (w - 1) / w, span_x * (w - 1) / w, w, dtype=np.float64)
    v = np.linspace(-span_y * (h - 1) / h, span_y * (h - 1) / h, h, dtype=np.float64)
    quarter = channels // 4
    omega = np.arange(quarter, dtype=np.float32) / np.float32(channels / 2.0 / 2.0)
    omega = (1.0 / np.float32(100.0) ** omega).astype(np.float64)
    uo = u[:, None] * omega[None, :]  # [w, C/4]
    vo = v[:, None] * omega[None, :]  # [h, C/4]
    emb_u = np.concatenate([np.sin(uo), np.cos(uo)], axis=-1)  # [w, C/2]
    emb_v = np.concatenate([np.sin(vo), np.cos(vo)], axis=-1)  # [h, C/2]
    emb = np.concatenate(
        [np.broadcast_to(emb_u[None], (h, w, channels // 2)),
         np.broadcast_to(emb_v[:, None], (h, w, channels // 2))],
        axis=-1,
    )
    return emb.astype(np.float32)


def add_uv_pos_embed(x: jnp.ndarray, image_hw: Sequence[int], ratio: float = 0.1) -> jnp.ndarray:
    """`x [B, h, w, C]` plus `ratio` × UV embedding for the image aspect `W / H`."""
    _, h, w, c = x.shape
    pe = uv_pos_embed(h, w, c, image_hw[1] / image_hw[0]) * np.float32(ratio)
    return x + jnp.asarray(pe, x.dtype)[None]


# ---------------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------------


def conv(
    features: int,
    kernel: int,
    name: str,
    *,
    stride: int = 1,
    use_bias: bool = True,
    impl: str = "xla",
) -> Conv2d:
    """`nn.Conv2d(…, kernel, stride, padding=kernel // 2)` (NHWC), computed as `impl` says
    ('xla', 'matmul' or 'auto'; `da3_jax.model.conv`)."""
    return Conv2d(features, kernel, stride, use_bias, impl, name=name)


class ConvTransposeScatter(nn.Module):
    """`nn.ConvTranspose2d(C, features, k, stride=k, padding=0)`: a non-overlapping scatter.

    out[B, k*i + a, k*j + b, o] = sum_c x[B, i, j, c] * kernel[a, b, c, o] + bias[o].
    `kernel` is `(k, k, in, out)`; from torch `(in, out, k, k)`: `w.transpose(2, 3, 0, 1)`.
    """

    features: int
    kernel_size: int

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        b, h, w, c = x.shape
        k = self.kernel_size
        bound = 1.0 / np.sqrt(self.features * k * k)
        kernel = self.param("kernel", _uniform(bound), (k, k, c, self.features))
        bias = self.param("bias", _uniform(bound), (self.features,))
        y = jnp.einsum("bhwc,pqco->bhpwqo", x, kernel)
        return y.reshape(b, h * k, w * k, self.features) + bias


def _uniform(bound: float):
    """U(-bound, bound) initialiser (torch's default conv init family)."""

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class ResidualConvUnit(nn.Module):
    """Pre-activation residual unit: `conv2(relu(conv1(relu(x)))) + x`, 3x3 convs with bias."""

    features: int
    conv_impl: str = "xla"

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        out = conv(self.features, 3, "conv1", impl=self.conv_impl)(nn.relu(x))
        out = conv(self.features, 3, "conv2", impl=self.conv_impl)(nn.relu(out))
        return out + x


class FeatureFusionBlock(nn.Module):
    """Top-down fusion: `y = x (+ RCU1(skip))`, `RCU2`, align-corners upsample, 1x1 `out_conv`.

    `size=None` upsamples ×2 (`int(h * 2)`, as the official `scale_factor=2`).
    `has_residual=False` (refinenet4) has no `resConfUnit1` parameters.
    """

    features: int
    has_residual: bool = True
    conv_impl: str = "xla"

    @nn.compact
    def __call__(self, x, skip=None, size=None):
        y = x
        impl = self.conv_impl
        if self.has_residual and skip is not None:
            y = y + ResidualConvUnit(self.features, impl, name="resConfUnit1")(skip)
        y = ResidualConvUnit(self.features, impl, name="resConfUnit2")(y)
        if size is None:
            size = (int(y.shape[1] * 2), int(y.shape[2] * 2))
        y = bilinear_resize_align_corners(y, size)
        return conv(self.features, 1, "out_conv", impl=impl)(y)


def reassemble(
    feats: Sequence[jnp.ndarray],
    image_hw: Sequence[int],
    out_channels: Sequence[int],
    patch_size: int,
    *,
    use_norm: bool,
    pos_embed: bool,
    conv_impl: str = "xla",
) -> list[jnp.ndarray]:
    """Token maps → the 4 pyramid levels (call inside the head's `nn.compact` method).

    Creates the head-level params `norm` (LayerNorm eps 1e-5, when `use_norm`), `projects_{k}`
    (1x1 conv), `resize_layers_0` (ConvT k4 s4), `resize_layers_1` (ConvT k2 s2) and
    `resize_layers_3` (conv k3 s2 p1); level 2 is the identity.

    Args:
      feats: 4 arrays `[BN, ph*pw, dim_in]` of patch tokens, row-major over `(ph, pw)`.
      image_hw: `(H, W)` of the input images; `ph, pw = H // patch_size, W // patch_size`.
    Returns:
      `[BN, 4ph, 4pw, C0]`, `[BN, 2ph, 2pw, C1]`, `[BN, ph, pw, C2]`, `[BN, ceil(ph/2),
      ceil(pw/2), C3]`.
    """
    if len(feats) != 4:
        raise ValueError(f"feats must be a list of 4 token arrays, got {len(feats)}")
    h_img, w_img = int(image_hw[0]), int(image_hw[1])
    ph, pw = h_img // patch_size, w_img // patch_size
    norm = nn.LayerNorm(epsilon=1e-5, use_fast_variance=False, name="norm") if use_norm else None
    out = []
    for k, f in enumerate(feats):
        if f.ndim != 3 or f.shape[1] != ph * pw:
            raise ValueError(
                f"feats[{k}] must be [BN, ph*pw={ph * pw}, C] for image_hw={tuple(image_hw)}, "
                f"got shape {f.shape}"
            )
        x = f.astype(jnp.float32)
        if norm is not None:
            x = norm(x)
        x = x.reshape(x.shape[0], ph, pw, x.shape[-1])
        x = conv(out_channels[k], 1, f"projects_{k}", impl=conv_impl)(x)
        if pos_embed:
            x = add_uv_pos_embed(x, (h_img, w_img))
        if k == 0:
            x = ConvTransposeScatter(out_channels[0], 4, name="resize_layers_0")(x)
        elif k == 1:
            x = ConvTransposeScatter(out_channels[1], 2, name="resize_layers_1")(x)
        elif k == 3:
            x = conv(out_channels[3], 3, "resize_layers_3", stride=2, impl=conv_impl)(x)
        out.append(x)
    return out


def fusion_chain(
    layers_rn: Sequence[jnp.ndarray], features: int, suffix: str = "", conv_impl: str = "xla"
):
    """refinenet4 → 3 → 2 → 1 (`refinenet{i}{suffix}`); returns the `[BN, 8ph, 8pw, F]` map."""
    l1, l2, l3, l4 = layers_rn

    def block(i, **kw):
        return FeatureFusionBlock(features, conv_impl=conv_impl, name=f"refinenet{i}{suffix}", **kw)

    out = block(4, has_residual=False)(l4, size=l3.shape[1:3])
    out = block(3)(out, l3, size=l2.shape[1:3])
    out = block(2)(out, l2, size=l1.shape[1:3])
    return block(1)(out, l1)


def scratch_layers_rn(
    levels: Sequence[jnp.ndarray], features: int, conv_impl: str = "xla"
) -> list[jnp.ndarray]:
    """`layer{1..4}_rn`: 3x3 convs without bias, C_k → F."""
    return [
        conv(features, 3, f"layer{i + 1}_rn", use_bias=False, impl=conv_impl)(x)
        for i, x in enumerate(levels)
    ]
