"""The tests' one compile-time shortcut: XLA's HLO passes run as always (fusion, SPMD
partitioning, the HLO text that tests inspect), LLVM without its optimisation passes.

Most of the CPU time of the heavy tests is XLA:CPU compiling, and most of that is LLVM (e.g.
a tiny student's train step, init and gradients: 1.5-3x less compile CPU). The programs are
the same, so a test comparing two of them compiled this way (sharded vs one device, scanned vs
unrolled, 2 processes vs 1) checks what it did; measured differences did not grow (2x4 vs 1x8
processes: 6.1e-7 vs 3.6e-6 with LLVM's optimisations). Nothing compiled this way is timed.
"""

import jax

OPTIONS = {"xla_backend_optimization_level": 0}  # per program: ``compile(compiler_options=)``
XLA_FLAG = "--xla_backend_optimization_level=0"  # for subprocesses: in their XLA_FLAGS


def compile_fast(fn, *args):
    """``fn`` (a function or a ``jax.jit`` of one) compiled for ``args`` with ``OPTIONS``."""
    jitted = fn if hasattr(fn, "lower") else jax.jit(fn)
    return jitted.lower(*args).compile(compiler_options=OPTIONS)


def run_fast(fn, *args):
    """``fn(*args)``, compiled with ``compile_fast``."""
    return compile_fast(fn, *args)(*args)
