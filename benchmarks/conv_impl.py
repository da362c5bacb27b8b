"""One head convolution, forward and forward + backward, by implementation (issue 14).

    python -m benchmarks.conv_impl [--threads 2] [--repeats 5]

For the DPT head's shapes at da3-small 1x4x280² (batch = 4 views): XLA's convolution
(`conv_impl='xla'`), im2col + one dot (`'matmul'`, `da3_jax.model.conv.conv2d_matmul`) and
nine shifted `[P, Cin] @ [Cin, Cout]` dots summed, each jitted, loss = sum of squares, gradient
w.r.t. input and kernel. Then the two halves of XLA's backward pass (input gradient, kernel
gradient) with XLA:CPU's default YNNPACK fusions and with YNNPACK's convolution fusion left out
(`train_compiler_options`). Median wall and process-CPU milliseconds after 2 warm-ups.
"""

from __future__ import annotations

import argparse
import functools
import os

from benchmarks import _common

SHAPES = (  # (input [B, H, W, Cin], Cout, kernel, stride): the heads' largest convolutions
    ((4, 160, 160, 64), 32, 3, 1),  # output_conv1 (8ph x 8pw)
    ((4, 280, 280, 32), 32, 3, 1),  # output_conv2_0 (image size)
    ((4, 160, 160, 64), 64, 3, 1),  # refinenet1 RCUs, output_conv1_aux_3_*
    ((4, 80, 80, 64), 64, 3, 1),  # refinenet2 RCUs
    ((4, 160, 160, 64), 64, 1, 1),  # refinenet1 out_conv
    ((4, 20, 20, 384), 384, 3, 2),  # resize_layers_3
)


def shifted_dots(x, kernel, stride=1):
    """Nine (k²) shifted-window dots summed (the alternative to im2col; not kept)."""
    import jax.numpy as jnp
    from jax import lax

    kh, kw, cin, _ = kernel.shape
    b, h, w, _ = x.shape
    pad = kh // 2
    ho, wo = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    out = 0.0
    for dy in range(kh):
        for dx in range(kw):
            win = lax.slice(xp, (0, dy, dx, 0), (b, dy + (ho - 1) * stride + 1,
                                                 dx + (wo - 1) * stride + 1, cin),
                            (1, stride, stride, 1))
            out = out + jnp.einsum("bhwc,co->bhwo", win, kernel[dy, dx])
    return out


def _sum_sq(conv, x, w):
    return (conv(x, w) ** 2).sum()


def _vjp(conv, argnum, x, w, g):
    """The gradient of `conv` w.r.t. its argument `argnum` (0: input, 1: kernel) for `g`."""
    import jax

    return jax.vjp(conv, x, w)[1](g)[argnum]


def _time(fn, args, repeats: int) -> dict:
    """Median wall and process-CPU milliseconds of `repeats` blocking calls, after 2 warm-ups."""
    import time

    import jax

    for _ in range(2):
        jax.block_until_ready(fn(*args))
    walls, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn(*args))
        walls.append(1e3 * (time.perf_counter() - t0))
        cpus.append(1e3 * (time.process_time() - c0))
    return {"wall_ms": _common.median(walls), "cpu_ms": _common.median(cpus)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default="")
    a = ap.parse_args(argv)
    _common.pin_threads(a.threads)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax import lax

    from da3_jax.model.conv import conv2d_matmul
    from da3_jax.parallel.xla_options import compiler_options

    def xla(x, k, stride=1):
        p, s = k.shape[0] // 2, stride
        return lax.conv_general_dilated(x, k, (s, s), ((p, p), (p, p)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))

    impls = {"xla": xla, "matmul": conv2d_matmul, "shifted": shifted_dots}
    train_opts = compiler_options("train")
    rng = np.random.default_rng(0)
    rows = []
    for shape, cout, k, stride in SHAPES:
        x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
        w = jnp.asarray(rng.standard_normal((k, k, shape[-1], cout)) * 0.05, jnp.float32)
        row = {"shape": list(shape), "cout": cout, "kernel": k, "stride": stride}
        for name, f in impls.items():
            conv = functools.partial(f, stride=stride)
            row[f"{name} fwd"] = _time(jax.jit(conv), (x, w), a.repeats)
            loss = functools.partial(_sum_sq, conv)
            row[f"{name} fwd+bwd"] = _time(jax.jit(jax.grad(loss, argnums=(0, 1))), (x, w),
                                           a.repeats)
        conv = functools.partial(xla, stride=stride)
        g = jnp.asarray(rng.standard_normal(conv(x, w).shape), jnp.float32)
        for label, opts in (("", None), (" train options", train_opts)):
            for i, part in enumerate(("input", "kernel")):
                grad = jax.jit(functools.partial(_vjp, conv, i), compiler_options=opts)
                row[f"xla d {part}{label}"] = _time(grad, (x, w, g), a.repeats)
        print(row, flush=True)
        rows.append(row)
    report = {"machine": _common.machine_info(), "threads": a.threads, "rows": rows}
    return _common.publish(report, format_table, a.json)


def format_table(report: dict) -> str:
    keys = [k for k in report["rows"][0] if k not in ("shape", "cout", "kernel", "stride")]
    lines = ["| conv | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for r in report["rows"]:
        name = f"{r['shape']} k{r['kernel']} s{r['stride']} -> {r['cout']}"
        cells = [f"{r[k]['wall_ms']:.1f} ({r[k]['cpu_ms']:.0f})" for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    head = _common.report_header(report, "wall ms (process CPU ms), median.")
    return "\n".join(head + lines)


if __name__ == "__main__":
    main()
