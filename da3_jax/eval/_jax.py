"""Calling `da3_jax.geometry` (pure JAX) from host-side float64 metric code.

* `x64()`: float64 inside the context (`jax.enable_x64`), so geometry functions that keep
  their input dtype compute in float64 (some, e.g. `umeyama`, cast to float32 by design).
* `geometry_fn(name)`: `jax.jit` of `da3_jax.geometry.<name>`, cached: one compile per
  shape instead of one per primitive in eager mode.
* `bucket(n)`: padded sizes so that varying view / pair counts share a few compiled shapes.
"""

from __future__ import annotations

import contextlib
import functools

_STATIC = {"umeyama": ("with_scale",), "points_from_depth": ("pixel_center",),
           "fit_scale_shift": ("axis",)}


def x64():
    """Context enabling float64 in JAX where this jax has `jax.enable_x64`."""
    import jax

    ctx = getattr(jax, "enable_x64", None)
    return ctx(True) if ctx is not None else contextlib.nullcontext()


@functools.cache
def geometry_fn(name: str):
    """Cached `jax.jit(da3_jax.geometry.<name>)` with that function's static arguments."""
    import jax

    from da3_jax import geometry

    return jax.jit(getattr(geometry, name), static_argnames=_STATIC.get(name, ()))


def bucket(n: int, minimum: int = 16) -> int:
    """Padded length for `n` items: next power of two, at least `minimum`."""
    return max(minimum, 1 << (int(n) - 1).bit_length())
