"""Per-stage XLA compiler options: which CPU kernel library runs the backbone and the heads.

XLA:CPU (jaxlib 0.10) hands dots, convolutions and the element-wise / reduce work around them to
YNNPACK "fusions" (``xla_cpu_experimental_ynn_fusion_type``). What is fastest differs by stage,
measured on the da3-small forward at N = 4, 504x504, fp32, 2 threads
(`benchmarks/RESULTS.md`, section "XLA:CPU kernel libraries"):

* **backbone** (ViT: large dots, LayerNorm, GELU): YNNPACK dots plus YNNPACK reductions,
  3.06 s vs 3.16 s with the default set and 3.97 s with YNNPACK off;
* **head** (DPT: 3x3 convolutions with 32-64 channels at up to full resolution): no YNNPACK at
  all (XLA's own convolution emitter), 1.22 s vs 1.70 s with the default set.
* **train** (the whole jitted train step: one program, one option set): YNNPACK dots and
  reductions, XLA's own convolutions. The default set also hands convolutions to YNNPACK, whose
  kernel gradient (backward-filter convolution) at the head's shapes is 2-2.3x slower than XLA's
  emitter; its forward and input gradient are on par. da3-small 1x4x280² step: -3 % process
  CPU time against the default set (`benchmarks/RESULTS.md` §10.8).

`compiler_options(stage)` returns the options for ``jax.jit(..., compiler_options=...)``. They
apply only where they were measured: on the CPU backend, and only if this jaxlib accepts them
(checked once by compiling a tiny function; a jaxlib that renamed or dropped the flag gets
``None``, i.e. XLA's defaults). They change which library computes a result, not the maths:
outputs agree with the default compile to float32 rounding.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

STAGES = ("backbone", "head", "train")
_YNN = "xla_cpu_experimental_ynn_fusion_type"
_T = "LIBRARY_FUSION_TYPE_"
CPU_OPTIONS: dict[str, dict[str, str]] = {
    "backbone": {_YNN: f"{_T}INDIVIDUAL_DOT,{_T}REDUCE"},
    "head": {_YNN: ""},
    "train": {_YNN: f"{_T}INDIVIDUAL_DOT,{_T}REDUCE"},
}


@functools.cache
def _accepted(stage: str) -> bool:
    """True if this jaxlib compiles a trivial function with the stage's CPU options."""
    try:
        fn = jax.jit(lambda x: x @ x, compiler_options=CPU_OPTIONS[stage])
        fn.lower(jnp.ones((2, 2), jnp.float32)).compile()
    except Exception:  # noqa: BLE001 - unknown flag or enum value: fall back to XLA defaults
        return False
    return True


def compiler_options(stage: str, backend: str | None = None) -> dict[str, str] | None:
    """Compiler options for ``stage`` ('backbone', 'head' or 'train') on ``backend`` (default: the
    default backend), or None for XLA's defaults."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}; got {stage!r}")
    backend = backend or jax.default_backend()
    if backend != "cpu" or not _accepted(stage):
        return None
    return dict(CPU_OPTIONS[stage])
