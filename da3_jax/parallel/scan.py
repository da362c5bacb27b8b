"""Scanned layer stacks: schedule, parameter-layout converters and remat policies.

DA3's backbone is not one homogeneous stack: reference-view selection runs before block
``alt_start - 1``, the camera token is written before ``alt_start``, q/k-norm and RoPE start at
their own indices, and from ``alt_start`` on blocks alternate local (even) / global (odd). The
scannable structure (``scan_schedule``) is therefore:

  * a homogeneous *prefix* of local blocks ``0 .. p-1`` (before any of those events),
  * a run of *(local, global) pairs* ``(i, i+1)`` with identical flags (scan over pairs),
  * *leftover* blocks, unrolled.

  da3-small/base (alt 4):  prefix 0-2, leftover 3, pairs (4,5) .. (10,11)
  da3-large (alt 8):       prefix 0-6, leftover 7, pairs (8,9) .. (22,23)
  da3-giant (alt 13):      prefix 0-11, leftover 12, 13, pairs (14,15) .. (38,39)
  mono/metric (no alt):    prefix 0-23

Layouts. Unrolled (what ``da3_jax.convert`` produces from official weights): ``blocks_i/...``.
Scanned: ``<prefix_name>/...`` with a leading axis over the prefix blocks, and
``<pairs_name>/{local,global}/...`` with a leading axis over the pairs (the layout of
``nn.scan(..., variable_axes={'params': 0})`` over a module with submodules ``local`` and
``global``). ``to_scanned`` / ``to_unrolled`` convert exactly (stack / index; no arithmetic).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import jax
import numpy as np

PREFIX_NAME = "blocks_scan"
PAIRS_NAME = "pairs_scan"
PAIR_SLOTS = ("local", "global")


@dataclasses.dataclass(frozen=True)
class ScanSchedule:
    prefix: tuple[int, ...]
    pairs: tuple[tuple[int, int], ...]
    leftover: tuple[int, ...]


def _is_global(i: int, alt_start: int) -> bool:
    return alt_start != -1 and i >= alt_start and i % 2 == 1


def scan_schedule(depth: int, alt_start: int, qknorm_start: int = -1, rope_start: int = -1):
    """Split blocks ``0..depth-1`` into a scanned prefix, scanned (local, global) pairs and
    unrolled leftovers (see the module docstring)."""
    events = [s for s in (qknorm_start, rope_start) if s != -1]
    if alt_start != -1:
        events += [alt_start - 1, alt_start]  # reference selection, camera token
    prefix_end = min([depth, *[max(e, 0) for e in events]])
    pairs = []
    if alt_start != -1:
        start = max([alt_start, prefix_end, *events])
        start += start % 2  # pairs begin on an even (local) block
        i = start
        while i + 1 < depth and not _is_global(i, alt_start) and _is_global(i + 1, alt_start):
            pairs.append((i, i + 1))
            i += 2
    in_pairs = {j for p in pairs for j in p}
    leftover = tuple(i for i in range(prefix_end, depth) if i not in in_pairs)
    return ScanSchedule(tuple(range(prefix_end)), tuple(pairs), leftover)


def schedule_from_config(config) -> ScanSchedule:
    """``scan_schedule`` for a model config (fields depth, alt_start, qknorm_start, rope_start)."""
    return scan_schedule(config.depth, config.alt_start, config.qknorm_start, config.rope_start)


def _stack(trees: Sequence, what: str):
    first = jax.tree.structure(trees[0])
    for t in trees[1:]:
        if jax.tree.structure(t) != first:
            raise ValueError(f"cannot stack {what}: parameter trees differ "
                             f"({first} vs {jax.tree.structure(t)})")
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)


def _index(tree, i: int):
    return jax.tree.map(lambda x: x[i], tree)


def _get(tree: Mapping, at: Sequence[str]):
    for key in at:
        tree = tree[key]
    return tree


def _replace(tree: Mapping, at: Sequence[str], new):
    if not at:
        return new
    out = dict(tree)
    out[at[0]] = _replace(tree[at[0]], at[1:], new)
    return out


def to_scanned(params: Mapping, schedule: ScanSchedule, *, at: Sequence[str] = (),
               prefix_name: str = PREFIX_NAME, pairs_name: str = PAIRS_NAME):
    """Unrolled ``blocks_i`` (inside ``params[at[0]][at[1]]...``) -> scanned layout.

    Returns a new tree (numpy leaves for the stacked groups); leftover blocks stay as they are.
    """
    node = dict(_get(params, at))
    names = lambda idx: [f"blocks_{i}" for i in idx]  # noqa: E731
    missing = [n for n in names(schedule.prefix) + names(j for p in schedule.pairs for j in p)
               if n not in node]
    if missing:
        raise ValueError(f"params{list(at)} lacks blocks {missing} required by {schedule}")
    if schedule.prefix:
        node[prefix_name] = _stack([node.pop(n) for n in names(schedule.prefix)], prefix_name)
    if schedule.pairs:
        node[pairs_name] = {
            slot: _stack([node.pop(f"blocks_{p[s]}") for p in schedule.pairs],
                         f"{pairs_name}/{slot}")
            for s, slot in enumerate(PAIR_SLOTS)
        }
    return _replace(params, at, node)


def to_unrolled(params: Mapping, schedule: ScanSchedule, *, at: Sequence[str] = (),
                prefix_name: str = PREFIX_NAME, pairs_name: str = PAIRS_NAME):
    """Inverse of ``to_scanned``."""
    node = dict(_get(params, at))
    if schedule.prefix:
        stacked = node.pop(prefix_name)
        for j, i in enumerate(schedule.prefix):
            node[f"blocks_{i}"] = _index(stacked, j)
    if schedule.pairs:
        stacked = node.pop(pairs_name)
        for j, pair in enumerate(schedule.pairs):
            for s, slot in enumerate(PAIR_SLOTS):
                node[f"blocks_{pair[s]}"] = _index(stacked[slot], j)
    return _replace(params, at, node)


REMAT_POLICIES = {
    "none": None,  # no rematerialisation: keep every activation
    "full": jax.checkpoint_policies.nothing_saveable,  # save only block inputs
    # Save projection/MLP matmul outputs, recompute elementwise ops and attention (batched dots).
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "dots_all": jax.checkpoint_policies.dots_saveable,  # also keep attention logits
}


def remat_policy(name: str):
    """Checkpoint policy for config field ``remat`` ('none' -> None: do not wrap)."""
    if name not in REMAT_POLICIES:
        raise ValueError(f"unknown remat policy {name!r}; expected one of {tuple(REMAT_POLICIES)}")
    return REMAT_POLICIES[name]


def maybe_remat(module_cls, name: str, **kwargs):
    """``nn.remat(module_cls, policy=...)`` for a linen module class, or the class itself for
    'none'. ``kwargs`` go to ``nn.remat`` (e.g. ``static_argnums``)."""
    import flax.linen as nn

    policy = remat_policy(name)
    if name == "none":
        return module_cls
    return nn.remat(module_cls, policy=policy, **kwargs)
