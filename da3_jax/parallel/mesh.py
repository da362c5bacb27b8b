"""Device mesh with named axes, built from config.

Axes, outermost to innermost: ``data`` (pure data parallelism: replicas, gradient all-reduce),
``fsdp`` (data parallel + parameters/optimizer state sharded, all-gathered per layer),
``view`` (the views of one scene: cross-view attention communicates over it), ``tensor``
(heads / MLP hidden split inside a layer). ``jax.make_mesh`` assigns the innermost axes the
most tightly connected devices, so the axes that communicate most per layer (tensor, then
view) come last. Every mesh carries all four axes (size 1 when unused) so partition specs
written against the logical rules (``da3_jax.parallel.rules``) are valid on any mesh.

Axis types: **Auto** for every axis, deliberately. With Auto axes the compiler (Shardy/GSPMD)
propagates shardings from the ``jax.jit`` in/out shardings and from the view-parallel
``shard_map``, so the model stays plain linen code: its reshapes between ``[B, N, K, C]``,
``[B*N, K, C]`` and ``[B, N*K, C]`` need no annotations. With Explicit axes every such reshape of
a sharded view axis and every einsum with ambiguous output sharding would need an explicit
``out_sharding`` inside the model, coupling the model to the mesh. The one region where we want
exact control over communication, cross-view attention, is a manual ``shard_map`` over
``view`` anyway. ``axis_types='explicit'`` is accepted for experiments.

Usage::

    mesh = mesh_from_config(config)      # config.mesh_shape = {'view': 8}
    with jax.set_mesh(mesh):
        out = jax.jit(step, in_shardings=..., out_shardings=...)(...)
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import jax
from jax.sharding import AxisType, Mesh

AXES = ("data", "fsdp", "view", "tensor")


def _axis_types(kind: str, n: int):
    kinds = {"auto": AxisType.Auto, "explicit": AxisType.Explicit}
    if kind not in kinds:
        raise ValueError(f"axis_types must be one of {tuple(kinds)}; got {kind!r}")
    return (kinds[kind],) * n


def resolve_mesh_shape(mesh_shape: Mapping[str, int], num_devices: int) -> dict[str, int]:
    """Fill missing axes with 1 and one ``-1`` entry with the remaining devices.

    Returns {axis: size} over ``AXES`` in canonical order; the product equals ``num_devices``.
    """
    unknown = set(mesh_shape) - set(AXES)
    if unknown:
        raise ValueError(f"mesh_shape has unknown axes {sorted(unknown)}; allowed: {AXES}")
    shape = {a: int(mesh_shape.get(a, 1)) for a in AXES}
    free = [a for a, s in shape.items() if s == -1]
    if len(free) > 1 or any(s == 0 or s < -1 for s in shape.values()):
        raise ValueError(f"mesh_shape sizes must be >= 1 with at most one -1; got {mesh_shape}")
    fixed = math.prod(s for s in shape.values() if s != -1)
    if free:
        if num_devices % fixed:
            raise ValueError(f"mesh_shape {mesh_shape}: {num_devices} devices not divisible "
                             f"by the fixed axes' product {fixed}")
        shape[free[0]] = num_devices // fixed
    if math.prod(shape.values()) != num_devices:
        raise ValueError(f"mesh_shape {mesh_shape} needs {math.prod(shape.values())} devices; "
                         f"{num_devices} are available")
    return shape


def make_mesh(
    mesh_shape: Mapping[str, int] | None = None,
    *,
    axis_types: str = "auto",
    devices=None,
) -> Mesh:
    """Mesh over ``devices`` (default: all) with axes ``AXES``; ``mesh_shape`` as in
    ``resolve_mesh_shape`` (default: everything on ``data``)."""
    devices = jax.devices() if devices is None else list(devices)
    shape = resolve_mesh_shape(mesh_shape or {"data": -1}, len(devices))
    return jax.make_mesh(
        tuple(shape.values()), AXES, axis_types=_axis_types(axis_types, len(AXES)),
        devices=devices,
    )


def mesh_from_config(config) -> Mesh:
    """Mesh from ``config.mesh_shape`` (dict) and optional ``config.mesh_axis_types``."""
    shape = dict(config.get("mesh_shape", None) or {"data": -1})
    return make_mesh(shape, axis_types=config.get("mesh_axis_types", "auto"))


def parse_mesh_arg(text: str) -> dict[str, int]:
    """``"data=2,view=4"`` -> {'data': 2, 'view': 4} (command-line form)."""
    shape = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, sep, size = item.partition("=")
        if not sep or not size.lstrip("-").isdigit():
            raise ValueError(f"mesh argument {text!r}: expected 'axis=size,...'; bad item {item!r}")
        shape[name.strip()] = int(size)
    return shape


def axis_size(mesh, name: str) -> int:
    """Size of axis ``name`` of ``mesh`` (1 when absent)."""
    return int(dict(zip(mesh.axis_names, mesh.axis_sizes, strict=True)).get(name, 1))
