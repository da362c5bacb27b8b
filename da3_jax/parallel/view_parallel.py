"""View (sequence) parallelism: cross-view attention with views sharded over the ``view`` axis.

DA3's cross-view (global) attention is attention over the flattened token sequence
``[B, N*K, H, Dh]`` of all N views (K tokens each, view-major). With the views of one scene
sharded over the ``view`` mesh axis, every device holds ``N/V`` whole views, i.e. one contiguous
``L/V`` slice of that sequence. Within-view blocks, MLPs and heads then need no communication;
only cross-view attention does, and it runs here as a ``jax.shard_map`` that is manual over the
``view`` axis only (the other mesh axes stay automatic, so batch/FSDP/tensor shardings chosen by
the compiler pass through untouched):

  * ``allgather``: all-gather K/V (and the key mask) over ``view``, attend the local queries to
    the full sequence with the per-device kernel. Memory per device: the gathered K/V,
    O(L*H*Dh), plus the kernel's working set (O(L/V * L) for 'dense', O(L/V * block) for
    'auto' = 'qblock' on CPU / 'chunked'). One collective per global block; fastest when K/V fit.
  * ``ring``: K/V blocks travel around the ring (``ppermute``) while each device merges the
    partial results with an online softmax (log-sum-exp merge). Forward memory per device
    stays O(L/V) for K/V; V-1 neighbour exchanges instead of one all-gather. With the
    'chunked' kernel (also for 'auto', the default) the ring has its own VJP
    (``_ring_chunked``): the backward runs the ring again with dK/dV travelling beside K/V,
    keeping O(L/V) per device (measured: benchmarks/ring_memory.py, README). With 'dense',
    each step is rematerialised and the scan keeps every step's residuals: O(L).

Both are exact (same maths as dense attention) and differentiable.

View counts not divisible by the axis size: pad the views to ``padded_view_count(N)`` with
``pad_views`` *before* the backbone, build ``kv_mask = view_token_mask(...)`` and pass it to every
cross-view attention call; padded views then never influence real ones (their own outputs are
junk and are dropped with ``unpad_views``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from da3_jax.parallel import attention as attn_lib

VIEW_AXIS = "view"


def _current_mesh(mesh=None):
    """The explicit mesh, else the one set with ``jax.set_mesh`` (abstract while tracing)."""
    if mesh is not None:
        return mesh
    abstract = jax.sharding.get_abstract_mesh()
    if abstract is not None and not abstract.empty:
        return abstract
    return None


def view_axis_size(mesh=None, axis: str = VIEW_AXIS) -> int:
    """Size of the ``view`` axis of ``mesh`` (or of the current mesh); 1 if there is none."""
    mesh = _current_mesh(mesh)
    if mesh is None or axis not in mesh.axis_names:
        return 1
    return int(dict(zip(mesh.axis_names, mesh.axis_sizes, strict=True))[axis])


def padded_view_count(num_views: int, mesh=None, axis: str = VIEW_AXIS) -> int:
    """Smallest multiple of the view-axis size that is >= ``num_views``."""
    if num_views < 1:
        raise ValueError(f"num_views must be >= 1; got {num_views}")
    size = view_axis_size(mesh, axis)
    return -(-num_views // size) * size


def pad_views(x: jax.Array, num_padded: int, axis: int = 1) -> jax.Array:
    """Pad the view axis of ``x`` (e.g. images [B, N, H, W, 3]) to ``num_padded`` views by
    repeating the last real view (keeps norms/statistics of padded views finite and ordinary)."""
    n = x.shape[axis]
    if num_padded < n:
        raise ValueError(f"num_padded ({num_padded}) must be >= the view count {n}")
    if num_padded == n:
        return x
    pad = [(0, 0)] * x.ndim
    pad[axis] = (0, num_padded - n)
    return jnp.pad(x, pad, mode="edge")


def unpad_views(x: jax.Array, num_views: int, axis: int = 1) -> jax.Array:
    """Drop padded views: keep the first ``num_views`` entries of ``axis``."""
    return jax.lax.slice_in_dim(x, 0, num_views, axis=axis)


def view_token_mask(batch: int, num_views: int, num_padded: int, tokens_per_view: int):
    """Key mask bool [B, num_padded * K] for the flattened cross-view sequence (view-major):
    True for tokens of the first ``num_views`` views, False for padded views."""
    valid = jnp.arange(num_padded) < num_views
    mask = jnp.repeat(valid, tokens_per_view)
    return jnp.broadcast_to(mask, (batch, num_padded * tokens_per_view))


def _with_lse(kernel: str, chunk_size: int | None = None):
    if kernel == "auto":  # the ring merge needs the logsumexp: the linear-memory kernel
        kernel = "chunked"
    if kernel == "dense":
        return attn_lib.dense_attention_with_lse
    if kernel == "chunked":
        if chunk_size is None:
            return attn_lib.chunked_attention_with_lse
        return functools.partial(attn_lib.chunked_attention_with_lse, chunk_size=chunk_size)
    raise ValueError(f"ring_view supports kernels 'dense' and 'chunked'; got {kernel!r}")


def _allgather_local(q, k, v, kv_mask, *, kernel: str, axis: str, chunk_size=None):
    k = jax.lax.all_gather(k, axis, axis=1, tiled=True)
    v = jax.lax.all_gather(v, axis, axis=1, tiled=True)
    if kv_mask is not None:
        kv_mask = jax.lax.all_gather(kv_mask, axis, axis=1, tiled=True)
    if chunk_size is not None and attn_lib.resolve_kernel(kernel, dtype=q.dtype) == "chunked":
        return attn_lib.chunked_attention(q, k, v, kv_mask, chunk_size=chunk_size)
    return attn_lib.attention_kernel(q, k, v, kv_mask, kernel=kernel)


def _ring_merge(out, lse, out_i, lse_i):
    """Online-softmax merge of two partial results (out [B, L, H, Dh], lse [B, L, H])."""
    lse_new = jnp.logaddexp(lse, lse_i)
    out = (out * jnp.exp(lse - lse_new)[..., None] + out_i * jnp.exp(lse_i - lse_new)[..., None])
    return out, lse_new


def _ring_forward(q, k, v, kv_mask, axis, size, chunk):
    """The ring with the chunked kernel: (out float32 [B, L, H, Dh], lse float32 [B, L, H])."""
    perm = [(i, (i + 1) % size) for i in range(size)]
    attend = functools.partial(attn_lib.chunked_attention_with_lse, chunk_size=chunk)
    out, lse = attend(q, k, v, kv_mask)

    def step(carry, _):
        out, lse, k, v, m = carry
        k, v, m = (jax.lax.ppermute(x, axis, perm) for x in (k, v, m))
        out, lse = _ring_merge(out, lse, *attend(q, k, v, m))
        return (out, lse, k, v, m), None

    (out, lse, _, _, _), _ = jax.lax.scan(step, (out, lse, k, v, kv_mask), None,
                                          length=size - 1)
    return out, lse


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6))
def _ring_chunked(q, k, v, kv_mask, axis, size, chunk):
    return _ring_forward(q, k, v, kv_mask, axis, size, chunk)[0].astype(q.dtype)


def _ring_chunked_fwd(q, k, v, kv_mask, axis, size, chunk):
    out, lse = _ring_forward(q, k, v, kv_mask, axis, size, chunk)
    return out.astype(q.dtype), (q, k, v, kv_mask, out, jnp.transpose(lse, (0, 2, 1)))


def _ring_chunked_bwd(axis, size, chunk, res, d_out):
    """Flash-style ring backward: K/V blocks travel the ring again, each with its dK/dV
    accumulator; every device adds its queries' contribution with the final logsumexp (the
    chunked kernel's backward), and one last hop brings dK/dV home. Keeps only O(L/V)."""
    q, k, v, kv_mask, out, lse = res
    perm = [(i, (i + 1) % size) for i in range(size)]
    zero_dlse = jnp.zeros(q.shape[:3], jnp.float32)

    def grads(k, v, m):
        dq, dk, dv, _ = attn_lib._chunked_core_bwd(chunk, (q, k, v, m, out, lse),
                                                    (d_out, zero_dlse))
        return dq.astype(jnp.float32), dk.astype(jnp.float32), dv.astype(jnp.float32)

    dq, dk, dv = grads(k, v, kv_mask)

    def step(carry, _):
        dq, k, v, m, dk, dv = carry
        k, v, m, dk, dv = (jax.lax.ppermute(x, axis, perm) for x in (k, v, m, dk, dv))
        dq_i, dk_i, dv_i = grads(k, v, m)
        return (dq + dq_i, k, v, m, dk + dk_i, dv + dv_i), None

    (dq, _, _, _, dk, dv), _ = jax.lax.scan(step, (dq, k, v, kv_mask, dk, dv), None,
                                            length=size - 1)
    dk, dv = (jax.lax.ppermute(x, axis, perm) for x in (dk, dv))  # back to their owners
    return dq.astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype), None


_ring_chunked.defvjp(_ring_chunked_fwd, _ring_chunked_bwd)


def _ring_local(q, k, v, kv_mask, *, kernel: str, axis: str, size: int, chunk_size=None):
    if kernel in ("auto", "chunked"):
        chunk = min(int(chunk_size or attn_lib.DEFAULT_CHUNK), k.shape[1])
        return _ring_chunked(q, k, v, kv_mask, axis, size, chunk)
    attend = jax.checkpoint(_with_lse(kernel, chunk_size))
    perm = [(i, (i + 1) % size) for i in range(size)]
    out, lse = attend(q, k, v, kv_mask)

    def step(carry, _):
        out, lse, k, v, m = carry
        k, v, m = (jax.lax.ppermute(x, axis, perm) for x in (k, v, m))
        out_i, lse_i = attend(q, k, v, m)
        lse_new = jnp.logaddexp(lse, lse_i)
        out = (out * jnp.exp(lse - lse_new)[..., None]
               + out_i * jnp.exp(lse_i - lse_new)[..., None])
        return (out, lse_new, k, v, m), None

    (out, _, _, _, _), _ = jax.lax.scan(step, (out, lse, k, v, kv_mask), None, length=size - 1)
    return out.astype(q.dtype)


def view_sharded_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    kv_mask: jax.Array | None = None,
    *,
    mode: str = "allgather_view",
    kernel: str = "auto",
    mesh=None,
    axis: str = VIEW_AXIS,
    chunk_size: int | None = None,
) -> jax.Array:
    """Cross-view attention with the token axis of q/k/v sharded over mesh axis ``axis``.

    q, k, v [B, L, H, Dh] with L = N*K view-major; kv_mask bool [B, L] or None; returns
    [B, L, H, Dh]. ``mode``: 'allgather_view' or 'ring_view'. ``mesh``: defaults to the mesh set
    with ``jax.set_mesh``; without one (or with a view axis of size 1) this is plain
    ``attention_kernel``. When L is not divisible by the view-axis size (within-view attention,
    or views not padded) this also falls back to ``attention_kernel`` under automatic sharding:
    still exact, but not view-parallel, so pad views (``padded_view_count``) for cross-view
    attention and prefer ``attention.local_impl(impl)`` for within-view attention.
    ``chunk_size``: KV chunk of the 'chunked' kernel (default ``attention.DEFAULT_CHUNK``); the
    per-device working set of the backward is O(L/V * chunk) in both modes.
    """
    if mode not in attn_lib.VIEW_MODES:
        raise ValueError(f"mode must be one of {attn_lib.VIEW_MODES}; got {mode!r}")
    mesh = _current_mesh(mesh)
    size = view_axis_size(mesh, axis)
    if size == 1:
        return attn_lib.attention_kernel(q, k, v, kv_mask, kernel=kernel)
    if q.shape[1] % size or k.shape[1] % size:
        # Not a view-sharded sequence: within-view attention ([B*N, K, ...], K = 1 + P is odd
        # for every even-by-even patch grid) or unpadded views. The kernel under the compiler's
        # automatic sharding is exact here (and for local attention needs no communication).
        return attn_lib.attention_kernel(q, k, v, kv_mask, kernel=kernel)
    if mode == "allgather_view":
        def local(q, k, v, m):
            return _allgather_local(q, k, v, m, kernel=kernel, axis=axis, chunk_size=chunk_size)
    else:
        _with_lse(kernel)  # validate before tracing the shard_map body

        def local(q, k, v, m):
            return _ring_local(q, k, v, m, kernel=kernel, axis=axis, size=size,
                               chunk_size=chunk_size)

    if mode == "ring_view" and kv_mask is None:
        kv_mask = jnp.ones(k.shape[:2], jnp.bool_)  # travels the ring with its K/V block
    spec = P(None, axis)
    mask_spec = None if kv_mask is None else spec
    fn = jax.shard_map(
        local,
        mesh=mesh,
        in_specs=(spec, spec, spec, mask_spec),
        out_specs=spec,
        axis_names={axis},
    )
    return fn(q, k, v, kv_mask)
