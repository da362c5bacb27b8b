"""Reference-view selection (official `reference_view_selector.py`, DA3-official.md §1.4).

The backbone picks one view per sample from the token-0 features, moves it to position 0
(order [b, 0, 1, ..., b-1, b+1, ...]) so it receives the reference camera token and defines the
world frame, and puts every returned feature back in the input order.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

STRATEGIES = ("first", "middle", "saddle_balanced", "saddle_sim_range")
# Official THRESH_FOR_REF_SELECTION: selection runs only with at least this many views.
MIN_VIEWS_FOR_SELECTION = 3


def select_reference_view(
    x: jax.Array, strategy: str = "saddle_balanced", num_views: int | None = None
) -> jax.Array:
    """Index [B] (int32) of the reference view.

    Args:
      x: [B, S, K, C] tokens; only token 0 (the cls/camera slot) is read.
      strategy: 'first' (0), 'middle' (S // 2), 'saddle_balanced' (argmin over views of
        sum_m |minmax(m) - 0.5| for m in {mean cosine similarity to the other views, L2 norm,
        unbiased variance of the unit feature}) or 'saddle_sim_range' (argmax of the range of
        the similarity row with the identity subtracted; the ~0 diagonal stays in the row).
      num_views: number of real views n <= S (views n.. are view-parallel padding, see
        `da3_jax.parallel.view_parallel`); they take no part in any statistic and are never
        selected, so the result equals selection on the first n views alone. None: n = S.
    """
    b, s = x.shape[:2]
    n = s if num_views is None else int(num_views)
    if not 1 <= n <= s:
        raise ValueError(f"num_views must be in [1, {s}]; got {num_views}")
    if strategy not in STRATEGIES:
        raise ValueError(f"ref_view_strategy={strategy!r}; expected one of {STRATEGIES}")
    if n <= 1 or strategy == "first":
        return jnp.zeros((b,), jnp.int32)
    if strategy == "middle":
        return jnp.full((b,), n // 2, jnp.int32)
    valid = jnp.arange(s) < n  # [S]
    pair = valid[:, None] & valid[None, :]
    tok = x[:, :, 0].astype(jnp.float32)
    norm = jnp.linalg.norm(tok, axis=-1)
    unit = tok / norm[..., None]
    sim = jnp.einsum("bsc,btc->bst", unit, unit, precision=jax.lax.Precision.HIGHEST)
    sim = sim - jnp.eye(s, dtype=sim.dtype)[None]
    if strategy == "saddle_sim_range":
        rng = jnp.where(pair, sim, -jnp.inf).max(-1) - jnp.where(pair, sim, jnp.inf).min(-1)
        return jnp.argmax(jnp.where(valid, rng, -jnp.inf), axis=1).astype(jnp.int32)

    def minmax(m):
        lo = jnp.where(valid, m, jnp.inf).min(axis=1, keepdims=True)
        hi = jnp.where(valid, m, -jnp.inf).max(axis=1, keepdims=True)
        return (m - lo) / (hi - lo + 1e-8)

    sim_score = jnp.where(pair, sim, 0.0).sum(-1) / (n - 1)
    var = jnp.var(unit, axis=-1, ddof=1)
    score = (
        jnp.abs(minmax(sim_score) - 0.5) + jnp.abs(minmax(norm) - 0.5) + jnp.abs(minmax(var) - 0.5)
    )
    return jnp.argmin(jnp.where(valid, score, jnp.inf), axis=1).astype(jnp.int32)


def reorder_indices(b_idx: jax.Array, s: int) -> jax.Array:
    """[B, S] gather indices putting view b first and keeping the others in order."""
    pos = jnp.arange(s)[None, :]
    bi = b_idx[:, None]
    idx = jnp.where((pos > 0) & (pos <= bi), pos - 1, pos)
    return jnp.where(pos == 0, bi, idx)


def restore_indices(b_idx: jax.Array, s: int) -> jax.Array:
    """[B, S] gather indices undoing `reorder_indices`."""
    pos = jnp.arange(s)[None, :]
    bi = b_idx[:, None]
    idx = jnp.where(pos < bi, pos + 1, pos)
    return jnp.where(pos == bi, 0, idx)


def gather_views(x: jax.Array, idx: jax.Array) -> jax.Array:
    """x [B, S, ...] gathered along views with idx [B, S]."""
    idx = idx.reshape(idx.shape + (1,) * (x.ndim - 2))
    return jnp.take_along_axis(x, idx, axis=1)
