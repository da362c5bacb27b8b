"""Logical axis -> mesh axis rules, and the shardings of parameters and train state.

One table maps the logical axes used in code to mesh axes (``da3_jax.parallel.mesh.AXES``):

  activations   batch -> (data, fsdp); views -> view; tokens, embed -> replicated;
                heads, mlp -> tensor
  parameters    FSDP: the largest dimension divisible by the ``fsdp`` size (leaves with at least
                ``FSDP_MIN_SIZE`` elements); tensor parallel by path regex (qkv / fc1 / w12 output
                and proj / fc2 / w3 input over ``tensor``); the leading layer axis of scanned
                stacks is never sharded.

Optimizer states (optax ``mu``/``nu`` ...) mirror the parameter tree, and their leaf paths end
with the parameter path, so the same path/shape rules give them the parameters' shardings;
scalars (step counts) are replicated. Rules are applied to abstract trees
(``jax.eval_shape``) so nothing is materialised before it can be placed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from da3_jax.parallel.mesh import axis_size

LOGICAL_AXIS_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    ("batch", ("data", "fsdp")),
    ("views", "view"),
    ("tokens", None),
    ("embed", None),
    ("heads", "tensor"),
    ("mlp", "tensor"),
    ("param_fsdp", "fsdp"),
    ("param_tensor", "tensor"),
    ("layers", None),
)

# (path regex, logical axis per dimension) for tensor-parallel parameters; flax Dense kernels are
# [in, out]. Applied only when the tensor axis has size > 1 and the dimension divides.
TENSOR_RULES: tuple[tuple[str, tuple[str | None, ...]], ...] = (
    (r"(attn/qkv|mlp/fc1|mlp/w12)/kernel$", (None, "param_tensor")),
    (r"(attn/qkv|mlp/fc1|mlp/w12)/bias$", ("param_tensor",)),
    (r"(attn/proj|mlp/fc2|mlp/w3)/kernel$", ("param_tensor", None)),
)
# Parameters with a leading stacked-layer axis (nn.scan layouts, see parallel.scan).
SCANNED_PATH = r"(^|/)[^/]*scan[^/]*/"
FSDP_MIN_SIZE = 2**14


def logical_to_mesh_axes(logical_axes: Sequence[str | None], rules=LOGICAL_AXIS_RULES, mesh=None):
    """PartitionSpec for a tuple of logical axis names (None = replicated).

    Mesh axes absent from ``mesh`` (when given) are dropped; an unknown logical name raises.
    """
    table = dict(rules)
    names = None if mesh is None else set(mesh.axis_names)
    spec = []
    for logical in logical_axes:
        if logical is None:
            spec.append(None)
            continue
        if logical not in table:
            raise ValueError(f"unknown logical axis {logical!r}; known: {sorted(table)}")
        target = table[logical]
        if target is None:
            spec.append(None)
            continue
        target = (target,) if isinstance(target, str) else tuple(target)
        if names is not None:
            target = tuple(t for t in target if t in names)
        spec.append(target[0] if len(target) == 1 else (target or None))
    return P(*spec)


def logical_sharding(mesh, *logical_axes: str | None, rules=LOGICAL_AXIS_RULES) -> NamedSharding:
    """NamedSharding for an activation, e.g. ``logical_sharding(mesh, 'batch', 'views')``."""
    return NamedSharding(mesh, logical_to_mesh_axes(logical_axes, rules, mesh))


def path_str(path) -> str:
    """Key path -> 'a/b/c' (dict keys, attributes and sequence indices)."""
    parts = []
    for key in path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(str(key))
    return "/".join(parts)


def param_spec(path: str, shape: Sequence[int], mesh, *, fsdp_min_size: int = FSDP_MIN_SIZE):
    """PartitionSpec of one parameter (or optimizer-state leaf) from its path and shape."""
    ndim = len(shape)
    spec: list[str | None] = [None] * ndim
    first = 1 if re.search(SCANNED_PATH, path) and ndim > 1 else 0
    tensor = axis_size(mesh, "tensor")
    if tensor > 1:
        for pattern, logical in TENSOR_RULES:
            if re.search(pattern, path) and len(logical) == ndim - first:
                for i, name in enumerate(logical):
                    dim = first + i
                    if name is not None and shape[dim] % tensor == 0:
                        spec[dim] = "tensor"
                break
    fsdp = axis_size(mesh, "fsdp")
    size = 1
    for s in shape:
        size *= s
    if fsdp > 1 and size >= fsdp_min_size:
        free = [d for d in range(first, ndim) if spec[d] is None and shape[d] % fsdp == 0]
        if free:
            dim = max(free, key=lambda d: (shape[d], -d))
            spec[dim] = "fsdp"
    return P(*spec)


def tree_partition_specs(tree, mesh, *, fsdp_min_size: int = FSDP_MIN_SIZE):
    """PartitionSpecs for every array leaf of ``tree`` (params, optimizer state, train state)."""
    def leaf_spec(path, leaf):
        shape = getattr(leaf, "shape", ())
        return param_spec(path_str(path), shape, mesh, fsdp_min_size=fsdp_min_size)

    return jax.tree_util.tree_map_with_path(leaf_spec, tree)


def tree_shardings(tree, mesh, *, fsdp_min_size: int = FSDP_MIN_SIZE):
    """NamedShardings for every leaf of ``tree`` (e.g. ``jax.eval_shape(create_train_state)``),
    for ``jax.jit(..., out_shardings=...)`` and for orbax restore targets."""
    specs = tree_partition_specs(tree, mesh, fsdp_min_size=fsdp_min_size)
    return jax.tree.map(lambda s: NamedSharding(mesh, s), specs,
                        is_leaf=lambda x: isinstance(x, P))


def batch_sharding(mesh, ndim: int, *, shard_views: bool = True) -> NamedSharding:
    """Sharding of a [B, N, ...] batch: B over (data, fsdp), N over view (when ``shard_views``)."""
    logical = ("batch", "views" if shard_views else None) + (None,) * (ndim - 2)
    return logical_sharding(mesh, *logical[:ndim])
