"""The heads' 2D convolution, with a switch between XLA's convolution and explicit matmuls.

`Conv2d` is `torch.nn.Conv2d(in, features, k, stride, padding=k // 2)` in NHWC, with the same
parameters as `flax.linen.Conv` (`kernel (k, k, in, features)` with lecun-normal init, `bias
(features,)` with zero init), so checkpoints and the official-weight conversion do not depend on
the implementation. `impl` picks how it is computed:

* ``'xla'``: one `lax.conv_general_dilated` (exactly what `nn.Conv` emits; the default, used by
  the inference parity tests);
* ``'matmul'``: im2col + one dot. A 1x1 stride-1 convolution is a single
  `[P, Cin] @ [Cin, Cout]` dot; a k x k one concatenates the k² shifted (strided) windows of the
  zero-padded input along channels, `[P, k² Cin]`, and multiplies by the kernel reshaped to
  `[k² Cin, Cout]` (row index `(dy k + dx) Cin + c`). Gradients are autodiff of the dot and of
  the slices;
* ``'auto'``: per convolution, whichever was measured faster for training on the backend
  (`resolve_impl`): today 'xla' everywhere.

Measured on XLA:CPU (jaxlib 0.10, 2 threads, fp32; benchmarks/RESULTS.md §10.8). 3x3
convolutions as matmuls are 2-10x *slower* forward and 1.5-4x slower forward + backward than
XLA's convolution, both as im2col + one dot and as nine shifted dots summed: XLA:CPU's dots at
these skinny shapes (Cout 32-64, P up to 3e5) run at 18-40 GFLOP/s. A 1x1 convolution as a dot
is faster in isolation (1.3-2x forward). In the whole da3-small train step it saved about 6 %
CPU time under XLA:CPU's default fusions, but made no measurable difference (within the ±5 %
noise of the loaded sitting) under the train step's compiler options (`parallel.xla_options`,
'train': XLA's own convolution emitter), which is what training uses. So 'auto' is 'xla' on
CPU. On GPU / TPU it is 'xla' as well (cuDNN / the TPU
convolution emitter), and that choice is not measured.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

IMPLS = ("xla", "matmul", "auto")
# 'auto' choices that differ from 'xla', by (backend, kernel size). Empty: XLA's convolution
# won every measured case in the train step (RESULTS §10.8).
AUTO: dict[tuple[str, int], str] = {}


def resolve_impl(impl: str, kernel_size: int, backend: str | None = None) -> str:
    """The implementation a convolution of `kernel_size` runs with: 'xla' or 'matmul'.

    `impl` is one of `IMPLS`. 'auto' resolves per (`backend`, `kernel_size`) from the table
    `AUTO`, measured for the train step (module docstring); `backend` defaults to JAX's default
    backend, and a pair missing from the table gets 'xla'.
    """
    if impl not in IMPLS:
        raise ValueError(f"conv_impl must be one of {IMPLS}; got {impl!r}")
    if impl != "auto":
        return impl
    return AUTO.get((backend or jax.default_backend(), kernel_size), "xla")


def conv2d_matmul(x: jnp.ndarray, kernel: jnp.ndarray, stride: int = 1) -> jnp.ndarray:
    """`conv2d(x, kernel, stride, padding=k // 2)` (no bias) as im2col + one dot.

    Args:
      x: `[B, H, W, Cin]`.
      kernel: `[k, k, Cin, Cout]` (HWIO), k odd.
      stride: the same stride along H and W.
    Returns:
      `[B, Ho, Wo, Cout]` with `Ho = (H + 2 (k // 2) - k) // stride + 1` (likewise Wo).
    """
    kh, kw, cin, cout = kernel.shape
    if kh != kw or kh % 2 != 1:
        raise ValueError(f"kernel must be [k, k, Cin, Cout] with k odd; got {kernel.shape}")
    if x.ndim != 4 or x.shape[-1] != cin:
        raise ValueError(f"x must be [B, H, W, {cin}] for kernel {kernel.shape}; got {x.shape}")
    if kh == 1 and stride == 1:
        return jnp.einsum("bhwc,co->bhwo", x, kernel[0, 0])
    b, h, w, _ = x.shape
    pad = kh // 2
    ho, wo = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    cols = [
        lax.slice(
            xp,
            (0, dy, dx, 0),
            (b, dy + (ho - 1) * stride + 1, dx + (wo - 1) * stride + 1, cin),
            (1, stride, stride, 1),
        )
        for dy in range(kh)
        for dx in range(kw)
    ]
    col = jnp.concatenate(cols, axis=-1)  # [B, Ho, Wo, k*k*Cin], (dy, dx, c) order
    return jnp.einsum("bhwc,co->bhwo", col, kernel.reshape(kh * kw * cin, cout))


class Conv2d(nn.Module):
    """`nn.Conv2d(in, features, kernel_size, stride, padding=kernel_size // 2)`, NHWC.

    Params as `flax.linen.Conv`: `kernel [k, k, Cin, features]`, `bias [features]`.
    `impl`: 'xla', 'matmul' or 'auto' (module docstring). `__call__(x [B, H, W, Cin])` returns
    `[B, Ho, Wo, features]`.
    """

    features: int
    kernel_size: int
    stride: int = 1
    use_bias: bool = True
    impl: str = "xla"

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        k, s = self.kernel_size, self.stride
        kernel = self.param(
            "kernel", nn.initializers.lecun_normal(), (k, k, x.shape[-1], self.features)
        )
        bias = (
            self.param("bias", nn.initializers.zeros_init(), (self.features,))
            if self.use_bias
            else None
        )
        if resolve_impl(self.impl, k) == "matmul":
            y = conv2d_matmul(x, kernel, s)
        else:
            pad = k // 2
            y = lax.conv_general_dilated(
                x, kernel, (s, s), ((pad, pad), (pad, pad)),
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
            )
        if bias is not None:
            y = y + bias.reshape(1, 1, 1, -1)
        return y
