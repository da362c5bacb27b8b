"""Input validation for the geometry functions.

Two kinds of checks:

* **Static checks** (shape, rank, batch compatibility, static ints such as ``image_hw``) look only
  at shapes, so they run at trace time inside ``jax.jit`` and raise ``ValueError`` before anything
  is compiled.
* **Value checks** (finite values, non-singular intrinsics) need concrete numbers. They run when
  the argument is a concrete array (eager calls, NumPy inputs) and are skipped silently when the
  argument is a tracer (inside ``jit``/``vmap``). Call them yourself outside ``jit`` (e.g. on a
  loaded dataset record) where a traced caller needs the guarantee.

Every error names the argument and what was expected.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence

import jax
import numpy as np

__all__ = [
    "check_trailing_shape",
    "check_batch_compatible",
    "check_image_hw",
    "check_finite",
    "check_intrinsics",
    "is_concrete",
    "checked_jit",
]


def is_concrete(x) -> bool:
    """True when ``x`` holds concrete values (not a tracer under ``jit``/``vmap``/``grad``)."""
    return not isinstance(x, jax.core.Tracer)


def _shape(x, name: str) -> tuple[int, ...]:
    shape = getattr(x, "shape", None)
    if shape is None:
        raise ValueError(f"{name}: expected an array, got {type(x).__name__}")
    return tuple(shape)


def check_trailing_shape(x, name: str, trailing: Sequence[int | None]) -> tuple[int, ...]:
    """Check that ``x`` has at least ``len(trailing)`` dims ending with ``trailing``.

    ``None`` in ``trailing`` matches any size. Returns the leading (batch) shape.
    Static: works on tracers.
    """
    shape = _shape(x, name)
    k = len(trailing)
    want = "[..., " + ", ".join("*" if t is None else str(t) for t in trailing) + "]"
    if len(shape) < k:
        raise ValueError(f"{name}: expected shape {want} (rank >= {k}), got shape {shape}")
    for got, exp in zip(shape[len(shape) - k :], trailing, strict=True):
        if exp is not None and got != exp:
            raise ValueError(f"{name}: expected shape {want}, got shape {shape}")
    return shape[: len(shape) - k]


def check_batch_compatible(**batches: tuple[int, ...]) -> tuple[int, ...]:
    """Check that the leading (batch) shapes broadcast together; return the broadcast shape.

    Usage: ``check_batch_compatible(extrinsics_w2c=(2, 3), intrinsics=(2, 3))``.
    """
    try:
        return tuple(np.broadcast_shapes(*batches.values()))
    except ValueError:
        desc = ", ".join(f"{k} {v}" for k, v in batches.items())
        raise ValueError(
            f"mismatched batch dims: leading dims must be equal or broadcastable, got {desc}"
        ) from None


def check_image_hw(image_hw, name: str = "image_hw") -> tuple[int, int]:
    """Check a static ``(height, width)`` pair of positive ints; return it as a tuple of ints."""
    try:
        h, w = image_hw
        h_i, w_i = int(h), int(w)
    except (TypeError, ValueError, jax.errors.ConcretizationTypeError):
        raise ValueError(
            f"{name}: expected a static (height, width) pair of ints, got {image_hw!r}"
        ) from None
    if h_i != h or w_i != w or h_i <= 0 or w_i <= 0:
        raise ValueError(f"{name}: expected positive integer (height, width), got {image_hw!r}")
    return h_i, w_i


def check_finite(x, name: str):
    """Raise ``ValueError`` if concrete ``x`` has NaN/Inf entries. No-op on tracers. Returns x."""
    if is_concrete(x):
        arr = np.asarray(x)
        if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
            bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
            raise ValueError(f"{name}: expected finite values, found {bad} NaN/Inf entries")
    return x


def check_intrinsics(intrinsics, name: str = "intrinsics"):
    """Validate pinhole intrinsics ``[..., 3, 3]``.

    Static: the shape. Concrete values only: finite, ``K[2] == [0, 0, 1]`` up to 1e-6, and
    non-singular (``|fx|, |fy| > 1e-12``, i.e. ``det K = fx * fy != 0``). Returns the input.
    """
    check_trailing_shape(intrinsics, name, (3, 3))
    if is_concrete(intrinsics):
        k = np.asarray(intrinsics, dtype=np.float64)
        check_finite(k, name)
        if not np.allclose(k[..., 2, :], np.array([0.0, 0.0, 1.0]), atol=1e-6):
            raise ValueError(f"{name}: expected last row [0, 0, 1] (pinhole intrinsics)")
        if np.any(np.abs(k[..., 0, 0]) <= 1e-12) or np.any(np.abs(k[..., 1, 1]) <= 1e-12):
            raise ValueError(f"{name}: singular intrinsics (fx or fy is zero)")
        if np.any(np.abs(np.linalg.det(k)) <= 1e-12):
            raise ValueError(f"{name}: singular intrinsics (det K == 0)")
    return intrinsics


def _hashable_static(value, name: str):
    if not is_concrete(value):
        raise ValueError(f"{name}: expected a static (Python) value, got a traced array")
    if isinstance(value, (list, np.ndarray, jax.Array)):
        out = np.asarray(value).tolist()
        return tuple(out) if isinstance(out, list) else out
    return value


def checked_jit(
    value_checks: dict[str, Callable] | None = None, static_argnames: Sequence[str] = ()
):
    """Decorator: run value checks on concrete arguments, then call the function under ``jit``.

    ``value_checks`` maps argument names to ``checker(value, name)`` (e.g. :func:`check_finite`);
    they run eagerly before tracing (so they see concrete values in eager calls and are no-ops
    on tracers). Shape checks inside the function still raise at trace time. Static arguments
    given as lists/arrays are converted to tuples. Eager calls thus compile once per shape
    instead of op by op; calls from inside ``jit``/``vmap`` simply inline.
    """
    value_checks = value_checks or {}
    static_argnames = tuple(static_argnames)

    def deco(fn):
        sig = inspect.signature(fn)
        jitted = jax.jit(fn, static_argnames=static_argnames)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            bound = sig.bind(*args, **kwargs)
            for name, checker in value_checks.items():
                value = bound.arguments.get(name)
                if value is not None:
                    checker(value, name)
            for name in static_argnames:
                if name in bound.arguments:
                    bound.arguments[name] = _hashable_static(bound.arguments[name], name)
            return jitted(*bound.args, **bound.kwargs)

        return wrapper

    return deco
