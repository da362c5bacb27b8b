"""Attention kernels behind one entry point.

All implementations take and return the ``jax.nn.dot_product_attention`` layout:
q ``[B, Lq, H, Dh]``, k and v ``[B, Lk, H, Dh]`` (batch, tokens, heads, head dim), and return
``[B, Lq, H, Dh]`` in q's dtype. The scale is ``1/sqrt(Dh)``; logits, softmax and the softmax
statistics are always float32, whatever the input dtype.

Key padding: ``kv_mask`` (bool ``[B, Lk]``, True = real key) removes keys from every query's
softmax; it is how padded views are kept out of cross-view attention (see ``view_parallel``).
Each batch row must keep at least one real key. (A row with none is not NaN: masked logits get a
large finite negative value, so it returns the plain mean of v, like splash attention does.)
The 'xla' kernel on GPU with a half-precision dtype goes through cuDNN, which takes padding as
lengths: there ``kv_mask`` must be a prefix mask (real keys first), which is what view padding
produces.

``impl`` (config field ``model.attention_impl``) picks the kernel:
  * ``"auto"`` (the model default): resolved at trace time from the default backend through
    ``AUTO_KERNELS``: ``qblock`` on CPU, ``xla`` on GPU (cuDNN flash attention; ``chunked``
    for float32 inputs, where XLA's attention would hold all the logits), ``chunked`` on TPU.
  * ``"dense"``: plain XLA einsum + softmax (reference; O(Lq*Lk) memory).
  * ``"qblock"``: exact softmax mapped over query blocks; same numbers as ``dense``, memory
    linear in the sequence, the fastest kernel on XLA:CPU.
  * ``"xla"``: ``jax.nn.dot_product_attention``; cuDNN flash attention on GPU for bf16/fp16,
    the XLA path otherwise.
  * ``"chunked"``: online softmax over KV chunks with ``lax.scan`` and a flash-style custom VJP;
    forward and backward memory O(Lq*chunk). Plain XLA: CPU and fallback on every backend.
  * ``"splash"``: Pallas splash attention, TPU only (tokens padded to 128-multiples).
  * ``"allgather_view[:kernel]"`` / ``"ring_view[:kernel]"``: cross-view attention with the
    token axis sharded over the ``view`` mesh axis (``da3_jax.parallel.view_parallel``); the
    optional suffix names the per-device kernel (default ``auto``: linear memory per device;
    ``ring_view`` resolves it to ``chunked``, the kernel that returns the logsumexp its merge
    needs). With no mesh set, or a
    mesh without a ``view`` axis > 1, these run the kernel on the whole sequence.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

KERNELS = ("auto", "dense", "qblock", "xla", "chunked", "splash")
VIEW_MODES = ("allgather_view", "ring_view")
IMPLS = KERNELS + VIEW_MODES

# Masked logits: finite (a fully masked row stays finite), far below any real logit, and
# small enough in magnitude that subtracting the row max never overflows float32.
MASK_VALUE = -0.7 * float(np.finfo(np.float32).max)
DEFAULT_CHUNK = 1024
SPLASH_BLOCK = 128
QBLOCK = 256
QBLOCK_WHOLE = 1536
# 'auto' kernel per backend: the fastest exact kernel with memory linear in the sequence length.
AUTO_KERNELS = {"cpu": "qblock", "gpu": "xla", "tpu": "chunked"}


def split_impl(impl: str) -> tuple[str | None, str]:
    """``"ring_view:chunked"`` -> ``("ring_view", "chunked")``; ``"xla"`` -> ``(None, "xla")``."""
    if not isinstance(impl, str):
        raise ValueError(f"attention impl must be a string; got {impl!r}")
    mode, _, kernel = impl.partition(":")
    if mode in VIEW_MODES:
        kernel = kernel or "auto"
    elif not kernel:
        mode, kernel = None, mode
    else:
        raise ValueError(f"impl {impl!r}: only {VIEW_MODES} take a ':kernel' suffix")
    if kernel not in KERNELS:
        raise ValueError(
            f"unknown attention impl {impl!r}; expected one of {IMPLS}, "
            f"optionally view modes with a ':kernel' suffix from {KERNELS}"
        )
    return mode, kernel


def resolve_kernel(kernel: str, backend: str | None = None, dtype=None) -> str:
    """``"auto"`` -> the kernel for ``backend`` (default: ``jax.default_backend()``) from
    ``AUTO_KERNELS``; any other kernel name is returned unchanged. On GPU, 'xla' is linear in
    memory only through cuDNN, i.e. for half-precision inputs: with a ``dtype`` that is not
    bfloat16 / float16, 'auto' there is 'chunked' (XLA's own attention holds all the logits)."""
    if kernel != "auto":
        return kernel
    backend = backend or jax.default_backend()
    kernel = AUTO_KERNELS.get(backend, "chunked")
    if kernel == "xla" and dtype is not None and jnp.dtype(dtype) not in (jnp.bfloat16,
                                                                          jnp.float16):
        return "chunked"
    return kernel


def local_impl(impl: str) -> str:
    """Kernel to use for within-view (local) attention when ``impl`` may be a view mode."""
    return split_impl(impl)[1]


def _check_inputs(q, k, v, kv_mask):
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(
            "attention expects q, k, v of rank 4 [B, L, H, Dh]; "
            f"got {q.shape}, {k.shape}, {v.shape}"
        )
    if k.shape != v.shape or q.shape[0] != k.shape[0] or q.shape[2:] != k.shape[2:]:
        raise ValueError(
            f"attention expects q [B, Lq, H, Dh] and k = v [B, Lk, H, Dh]; "
            f"got q {q.shape}, k {k.shape}, v {v.shape}"
        )
    if kv_mask is not None and (kv_mask.shape != k.shape[:2] or kv_mask.dtype != jnp.bool_):
        raise ValueError(
            f"kv_mask must be bool [B, Lk] = {k.shape[:2]}; got {kv_mask.dtype} {kv_mask.shape}"
        )


def _masked_logits(q, k, kv_mask):
    """float32 logits [B, H, Lq, Lk], scaled, with masked keys set to MASK_VALUE."""
    scale = q.shape[-1] ** -0.5
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) * scale
    if kv_mask is not None:
        logits = jnp.where(kv_mask[:, None, None, :], logits, MASK_VALUE)
    return logits


def dense_attention(q, k, v, kv_mask=None):
    """Reference attention, scale 1/sqrt(Dh), fp32 softmax. Shapes as in the module doc."""
    probs = jax.nn.softmax(_masked_logits(q, k, kv_mask), axis=-1)
    out = jnp.einsum("bhqk,bkhd->bqhd", probs.astype(v.dtype), v)
    return out.astype(q.dtype)


def dense_attention_with_lse(q, k, v, kv_mask=None):
    """Dense attention returning (out float32 [B, Lq, H, Dh], logsumexp float32 [B, Lq, H])."""
    logits = _masked_logits(q, k, kv_mask)
    lse = jax.nn.logsumexp(logits, axis=-1)
    probs = jnp.exp(logits - lse[..., None])
    out = jnp.einsum("bhqk,bkhd->bqhd", probs, v.astype(jnp.float32))
    return out, jnp.transpose(lse, (0, 2, 1))


def qblock_attention(q, k, v, kv_mask=None, *, block: int | None = None):
    """Exact attention mapped over heads and query blocks (the fast CPU kernel; equals ``dense``).

    q, k, v are laid out head-major once (``[B·H, L, Dh]``) and a ``lax.map`` over heads runs an
    inner ``lax.map`` over blocks of ``block`` queries, so one block's float32 logits
    ``[block, Lk]`` stay in cache. The softmax is exact over all keys: p = exp(s - max) is left
    unnormalised and the ``[block, Dh]`` output is divided by the row sums (one pass less over
    the logits). Same numbers as ``dense`` up to summation order; memory O(block·Lk) per step
    instead of O(B·H·Lq·Lk), i.e. linear in the view count, in the backward pass too (each
    block is rematerialised). ``block=None`` takes the whole sequence for Lq <= ``QBLOCK_WHOLE``
    (within-view blocks) and ``QBLOCK`` queries otherwise (cross-view blocks), the fastest
    settings measured on XLA:CPU (benchmarks/RESULTS.md). XLA's cost analysis counts a loop
    body once, so FLOP figures for this kernel must come from an analytic count.
    """
    b, lq, h, d = q.shape
    lk = k.shape[1]
    if block is None:
        block = lq if lq <= QBLOCK_WHOLE else QBLOCK
    nb = -(-lq // block)

    def heads(x, length):  # [B, L, H, Dh] -> [B·H, L, Dh]
        return jnp.transpose(x, (0, 2, 1, 3)).reshape(b * h, length, d)

    qt = heads(q * jnp.asarray(d**-0.5, q.dtype), lq)
    qt = jnp.pad(qt, ((0, 0), (0, nb * block - lq), (0, 0))).reshape(b * h, nb, block, d)
    kt, vt = heads(k, lk), heads(v, lk)
    mt = None if kv_mask is None else jnp.repeat(kv_mask, h, axis=0)  # [B·H, Lk]

    def one_head(args):
        qh, kh, vh, mh = args  # [nb, block, Dh], [Lk, Dh], [Lk, Dh], [Lk] or None

        @jax.checkpoint
        def one_block(qb):  # [block, Dh]
            s = jnp.einsum("qd,kd->qk", qb, kh, preferred_element_type=jnp.float32)
            if mh is not None:
                s = jnp.where(mh[None, :], s, MASK_VALUE)
            p = jnp.exp(s - jax.lax.stop_gradient(s.max(axis=-1, keepdims=True)))
            o = jnp.einsum("qk,kd->qd", p.astype(vh.dtype), vh,
                           preferred_element_type=jnp.float32)
            return o / p.sum(axis=-1, keepdims=True)

        return jax.lax.map(one_block, qh)

    o = jax.lax.map(one_head, (qt, kt, vt, mt))  # [B·H, nb, block, Dh] float32
    o = o.reshape(b, h, nb * block, d)[:, :, :lq]
    return jnp.transpose(o, (0, 2, 1, 3)).astype(q.dtype)


def xla_attention(q, k, v, kv_mask=None):
    """``jax.nn.dot_product_attention``: cuDNN on GPU for bf16/fp16, XLA otherwise."""
    use_cudnn = (
        jax.default_backend() == "gpu"
        and q.dtype in (jnp.bfloat16, jnp.float16)
        and q.shape[-1] % 8 == 0
        and q.shape[-1] <= 128
    )
    if use_cudnn:
        lengths = None if kv_mask is None else kv_mask.sum(axis=-1, dtype=jnp.int32)
        return jax.nn.dot_product_attention(
            q, k, v, key_value_seq_lengths=lengths, implementation="cudnn"
        )
    mask = None if kv_mask is None else kv_mask[:, None, None, :]
    return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation=None)


# ----------------------------------------------------------------------------------------------
# chunked: online softmax over KV chunks, flash-style backward (memory O(Lq * chunk))


def _chunk_kv(k, v, kv_mask, chunk):
    """Pad Lk to a multiple of ``chunk`` and split into C chunks:
    k, v [C, B, chunk, H, Dh], mask [C, B, chunk]."""
    b, lk = k.shape[:2]
    n_chunks = -(-lk // chunk)
    pad = n_chunks * chunk - lk
    if kv_mask is None:
        kv_mask = jnp.ones((b, lk), jnp.bool_)
    if pad:
        k = jnp.pad(k, ((0, 0), (0, pad), (0, 0), (0, 0)))
        v = jnp.pad(v, ((0, 0), (0, pad), (0, 0), (0, 0)))
        kv_mask = jnp.pad(kv_mask, ((0, 0), (0, pad)))

    def split(x):
        return jnp.moveaxis(x.reshape(b, n_chunks, chunk, *x.shape[2:]), 1, 0)

    return split(k), split(v), split(kv_mask)


def _scan_chunks(first, body, xs):
    """``lax.scan(body, first(xs[0]), xs[1:])``. The initial carry comes from the first chunk
    rather than from constants so that inside ``shard_map`` it has the same varying-manual-axes
    type as the body's output (version-independent; no explicit pcast)."""
    head = jax.tree.map(lambda x: x[0], xs)
    tail = jax.tree.map(lambda x: x[1:], xs)
    carry0, y0 = first(head)
    carry, ys = jax.lax.scan(body, carry0, tail)
    if y0 is None:
        return carry, None
    return carry, jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), y0, ys)


def _chunked_forward(q, k, v, kv_mask, chunk):
    """Returns out float32 [B, Lq, H, Dh] (normalised) and lse float32 [B, H, Lq]."""

    def stats(xs):  # unnormalised partial results of one KV chunk
        k_i, v_i, m_i = xs
        s = _masked_logits(q, k_i, m_i)
        m = s.max(axis=-1)
        p = jnp.exp(s - m[..., None])
        pv = jnp.einsum("bhqk,bkhd->bhqd", p.astype(v.dtype), v_i,
                        preferred_element_type=jnp.float32)
        return (pv, m, p.sum(axis=-1)), None

    def body(carry, xs):
        acc, m, l = carry
        (pv, m_i, l_i), _ = stats(xs)
        m_new = jnp.maximum(m, m_i)
        c_old, c_new = jnp.exp(m - m_new), jnp.exp(m_i - m_new)
        acc = acc * c_old[..., None] + pv * c_new[..., None]
        return (acc, m_new, l * c_old + l_i * c_new), None

    (acc, m, l), _ = _scan_chunks(stats, body, _chunk_kv(k, v, kv_mask, chunk))
    out = jnp.transpose(acc / l[..., None], (0, 2, 1, 3))
    return out, m + jnp.log(l)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _chunked_core(q, k, v, kv_mask, chunk):
    out, lse = _chunked_forward(q, k, v, kv_mask, chunk)
    return out, jnp.transpose(lse, (0, 2, 1))


def _chunked_core_fwd(q, k, v, kv_mask, chunk):
    out, lse = _chunked_forward(q, k, v, kv_mask, chunk)
    return (out, jnp.transpose(lse, (0, 2, 1))), (q, k, v, kv_mask, out, lse)


def _chunked_core_bwd(chunk, res, cts):
    q, k, v, kv_mask, out, lse = res
    d_out, d_lse = cts  # [B, Lq, H, Dh], [B, Lq, H]
    lk = k.shape[1]
    scale = q.shape[-1] ** -0.5
    kc, vc, mc = _chunk_kv(k, v, kv_mask, chunk)
    d_out = d_out.astype(jnp.float32)
    # delta = rowsum(dO * O) - dlse: the softmax-jacobian term shared by every chunk.
    delta = jnp.einsum("bqhd,bqhd->bhq", d_out, out) - jnp.transpose(d_lse, (0, 2, 1))

    def grads(xs):  # dq contribution, (dk, dv) of one KV chunk
        k_i, v_i, m_i = xs
        p = jnp.exp(_masked_logits(q, k_i, m_i) - lse[..., None])  # [B, H, Lq, chunk]
        dv = jnp.einsum("bhqk,bqhd->bkhd", p, d_out)
        dp = jnp.einsum("bqhd,bkhd->bhqk", d_out, v_i, preferred_element_type=jnp.float32)
        ds = p * (dp - delta[..., None]) * scale
        dq = jnp.einsum("bhqk,bkhd->bqhd", ds, k_i, preferred_element_type=jnp.float32)
        dk = jnp.einsum("bhqk,bqhd->bkhd", ds, q, preferred_element_type=jnp.float32)
        return dq, (dk, dv)

    def body(dq, xs):
        dq_i, dkv = grads(xs)
        return dq + dq_i, dkv

    dq, (dk, dv) = _scan_chunks(grads, body, (kc, vc, mc))

    def merge(x):  # [C, B, chunk, H, Dh] -> [B, Lk, H, Dh]
        x = jnp.moveaxis(x, 0, 1)
        return x.reshape(x.shape[0], -1, *x.shape[3:])[:, :lk]

    return dq.astype(q.dtype), merge(dk).astype(k.dtype), merge(dv).astype(v.dtype), None


_chunked_core.defvjp(_chunked_core_fwd, _chunked_core_bwd)


def chunked_attention_with_lse(q, k, v, kv_mask=None, *, chunk_size: int = DEFAULT_CHUNK):
    """Chunked attention returning (out float32 [B, Lq, H, Dh], lse float32 [B, Lq, H]).

    Differentiable in both outputs (the lse cotangent is used by the ring view-parallel merge).
    """
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive; got {chunk_size}")
    chunk = min(int(chunk_size), k.shape[1])
    return _chunked_core(q, k, v, kv_mask, chunk)


def chunked_attention(q, k, v, kv_mask=None, *, chunk_size: int = DEFAULT_CHUNK):
    """Online-softmax attention over KV chunks of ``chunk_size`` tokens; memory O(Lq*chunk)."""
    out, _ = chunked_attention_with_lse(q, k, v, kv_mask, chunk_size=chunk_size)
    return out.astype(q.dtype)


# ----------------------------------------------------------------------------------------------
# splash (TPU Pallas)


@functools.lru_cache(maxsize=64)
def _splash_kernel(heads: int, lq: int, lk: int, block: int, interpret: bool):
    from jax.experimental.pallas.ops.tpu import splash_attention as sa

    mask = sa.MultiHeadMask([sa.FullMask((lq, lk)) for _ in range(heads)])
    blocks = sa.BlockSizes(
        block_q=block, block_kv=block, block_kv_compute=block,
        block_q_dkv=block, block_kv_dkv=block, block_kv_dkv_compute=block,
        block_q_dq=block, block_kv_dq=block,
    )
    return sa.make_splash_mha(
        mask, block_sizes=blocks, head_shards=1, q_seq_shards=1, interpret=interpret
    )


def splash_attention(q, k, v, kv_mask=None, *, block: int = SPLASH_BLOCK, interpret: bool = False):
    """Pallas splash attention (TPU). ``interpret=True`` runs the kernel in the Pallas
    interpreter on any backend (slow; for tests).

    Lq and Lk are zero-padded to multiples of ``block``. Padding is expressed with segment ids:
    every query row (padded ones included) has id 1 and keys have id 1 if real, 0 if padded or
    masked, so no row is fully masked as long as each batch row keeps one real key.
    """
    if not interpret and jax.default_backend() != "tpu":
        raise ValueError(
            f"attention impl 'splash' needs a TPU backend; this is {jax.default_backend()!r}. "
            "Use 'xla' (GPU) or 'chunked' (any backend)."
        )
    from jax.experimental.pallas.ops.tpu import splash_attention as sa

    b, lq, h, d = q.shape
    lk = k.shape[1]
    lq_pad, lk_pad = -(-lq // block) * block, -(-lk // block) * block
    kernel = _splash_kernel(h, lq_pad, lk_pad, block, interpret)
    if kv_mask is None:
        kv_mask = jnp.ones((b, lk), jnp.bool_)
    kv_seg = jnp.pad(kv_mask, ((0, 0), (0, lk_pad - lk))).astype(jnp.int32)
    q_seg = jnp.ones((b, lq_pad), jnp.int32)

    def to_kernel(x, length):  # [B, L, H, D] -> [B, H, L_pad, D]
        x = jnp.pad(x, ((0, 0), (0, length - x.shape[1]), (0, 0), (0, 0)))
        return jnp.transpose(x, (0, 2, 1, 3))

    qs = to_kernel(q * jnp.asarray(d**-0.5, q.dtype), lq_pad)  # splash does not scale
    ks, vs = to_kernel(k, lk_pad), to_kernel(v, lk_pad)

    def one(q1, k1, v1, qs1, ks1):
        return kernel(q1, k1, v1, segment_ids=sa.SegmentIds(q=qs1, kv=ks1))

    out = jax.vmap(one)(qs, ks, vs, q_seg, kv_seg)
    return jnp.transpose(out, (0, 2, 1, 3))[:, :lq].astype(q.dtype)


# ----------------------------------------------------------------------------------------------


def attention_kernel(q, k, v, kv_mask=None, *, kernel: str = "dense"):
    """Run one of ``KERNELS`` on unsharded (or auto-sharded) q/k/v."""
    kernel = resolve_kernel(kernel, dtype=q.dtype)
    if kernel == "dense":
        return dense_attention(q, k, v, kv_mask)
    if kernel == "qblock":
        return qblock_attention(q, k, v, kv_mask)
    if kernel == "xla":
        return xla_attention(q, k, v, kv_mask)
    if kernel == "chunked":
        return chunked_attention(q, k, v, kv_mask)
    if kernel == "splash":
        return splash_attention(q, k, v, kv_mask)
    raise ValueError(f"unknown attention kernel {kernel!r}; expected one of {KERNELS}")


def dot_product_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    impl: str = "auto",
    kv_mask: jax.Array | None = None,
) -> jax.Array:
    """Scaled dot-product attention with the implementation picked by ``impl``.

    q [B, Lq, H, Dh], k/v [B, Lk, H, Dh], optional kv_mask bool [B, Lk] (True = real key).
    Returns [B, Lq, H, Dh] in q's dtype.
    """
    _check_inputs(q, k, v, kv_mask)
    mode, kernel = split_impl(impl)
    if mode is None:
        return attention_kernel(q, k, v, kv_mask, kernel=kernel)
    from da3_jax.parallel import view_parallel

    return view_parallel.view_sharded_attention(q, k, v, kv_mask, mode=mode, kernel=kernel)
