"""Jitted, cached DA3 forward for inference: joint backbone, heads in chunks of views.

`Forward(config, params)(images, extrinsics, intrinsics, ...)` returns the same dict as
`DA3(config).apply` (numpy arrays), computed in two stages for any-view models:

1. **backbone stage** (one jit): camera encoder (when cameras are given) + ViT over all views
   jointly (cross-view attention needs every view), returning the 4 out-layer features;
2. **head stage** (one jit per chunk size): DualDPT head, camera decoder (+ ray pose, + GS head)
   on ``chunk`` views at a time. The heads are per view, so chunking is exact; it bounds the
   full-resolution head activations to ``chunk`` views. The last chunk is padded by repeating
   its last view so every chunk has the same shape (no recompilation); padded outputs are
   dropped.

The stages are `DA3.encode` and `DA3.decode` (what `DA3.__call__` composes); the test suite
checks them against `DA3.apply`. Gaussians (``infer_gs``): this returns the raw GS-DPT outputs
(``raw_gs``, ``raw_gs_conf``), not the ``gaussians`` dict of `DA3.apply` (the adapter runs on
all views after the chunks are joined; see `da3_jax.model.da3.gaussians`). Mono/metric and
nested models run `DA3.apply` in one jit (no chunking).

View parallelism: with ``view_parallel`` and several devices, the backbone runs on a mesh whose
``view`` axis has the smallest size V <= #devices that gives the fewest views per device,
ceil(N / V); cross-view attention becomes ``allgather_view`` (`da3_jax.parallel`) and the images
are sharded over views (when V does not divide N, `DA3.encode` pads the views to a multiple of V
and masks the padding out, see `DA3`). The heads then run
with ``max_views_per_device * V`` views per chunk.

Compiler options: on CPU the two stages are compiled with different kernel libraries
(`da3_jax.parallel.xla_options`; YNNPACK dots for the backbone, XLA's convolutions for the head),
which is worth ~1.3x on the da3-small forward. The single-jit path uses XLA's defaults.

Compilation cache: jitted functions are cached per (flags, chunk) here and per input shape by
`jax.jit`; changing only image content never recompiles. ``trace_count`` counts traces (a
trace happens exactly when jax compiles a new variant), for tests and logs.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from da3_jax.model import DA3
from da3_jax.parallel import attention as attn_lib
from da3_jax.parallel import rules
from da3_jax.parallel.mesh import make_mesh
from da3_jax.parallel.xla_options import compiler_options


class Forward:
    """Cached inference forward (see module docstring).

    Args:
      config: model config (`da3_jax.model.get_config`).
      params: flax params of `DA3(config)`.
      max_views_per_device: views per head chunk and device (None: all views at once).
      view_parallel: shard views over devices; None = only when several non-CPU devices exist.
    """

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        params,
        max_views_per_device: int | None = None,
        view_parallel: bool | None = None,
    ):
        if max_views_per_device is not None and int(max_views_per_device) < 1:
            raise ValueError(f"max_views_per_device must be >= 1, got {max_views_per_device}")
        self.config = config
        self.params = params
        self.max_views_per_device = max_views_per_device
        devices = jax.devices()
        if view_parallel is None:
            view_parallel = len(devices) > 1 and devices[0].platform != "cpu"
        self.view_parallel = bool(view_parallel)
        self.trace_count = 0
        self._fns: dict = {}
        self.staged = config.kind == "anyview"

    # -- helpers -------------------------------------------------------------------------------

    def _mesh_for(self, n: int):
        if not self.view_parallel:
            return None
        # Fewest views per device, then the fewest devices (least padding) giving that count.
        load = -(-n // min(n, len(jax.devices())))
        v = min(d for d in range(1, min(n, len(jax.devices())) + 1) if -(-n // d) == load)
        if v == 1:
            return None
        return make_mesh({"view": v}, devices=jax.devices()[:v])

    def _cfg(self, mesh) -> ml_collections.ConfigDict:
        if mesh is None:
            return self.config
        cfg = ml_collections.ConfigDict(self.config.to_dict())
        cfg.attention_impl = "allgather_view:" + attn_lib.local_impl(cfg.attention_impl)
        return cfg

    def _backbone_fn(self, mesh, ref_view_strategy: str, posed: bool, divisible: bool = True):
        key = ("backbone", mesh is not None and tuple(mesh.shape.items()), ref_view_strategy, posed,
               divisible)
        if key in self._fns:
            return self._fns[key]
        model = DA3(self._cfg(mesh))

        def fn(params, images, ext, k):
            self.trace_count += 1
            return model.apply(
                {"params": params}, images, ext if posed else None, k if posed else None,
                ref_view_strategy, method="encode",
            )

        options = compiler_options("backbone")
        if mesh is None:
            jitted = jax.jit(fn, compiler_options=options)
        else:
            shard = rules.batch_sharding(mesh, 5, shard_views=divisible)
            jitted = jax.jit(fn, in_shardings=(None, shard, None, None),
                             compiler_options=options)
        self._fns[key] = jitted
        return jitted

    def _head_fn(self, use_ray_pose: bool, infer_gs: bool):
        key = ("head", use_ray_pose, infer_gs)
        if key in self._fns:
            return self._fns[key]
        model = DA3(self.config)

        def fn(params, feats, images):
            self.trace_count += 1
            return model.apply(
                {"params": params}, feats, images, use_ray_pose, infer_gs, method="decode"
            )

        jitted = jax.jit(fn, compiler_options=compiler_options("head"))
        self._fns[key] = jitted
        return jitted

    def _full_fn(self, ref_view_strategy: str, use_ray_pose: bool, infer_gs: bool, posed: bool):
        key = ("full", ref_view_strategy, use_ray_pose, infer_gs, posed)
        if key in self._fns:
            return self._fns[key]
        model = DA3(self.config)

        def fn(params, images, ext, k):
            self.trace_count += 1
            out = model.apply(
                {"params": params}, images, ext if posed else None, k if posed else None,
                ref_view_strategy=ref_view_strategy, use_ray_pose=use_ray_pose,
                infer_gs=infer_gs,
            )
            out.pop("gaussians", None)  # raw GS outputs only, as the staged path (module doc)
            return out

        jitted = jax.jit(fn)
        self._fns[key] = jitted
        return jitted

    # -- call ----------------------------------------------------------------------------------

    def __call__(
        self,
        images: np.ndarray,
        extrinsics: np.ndarray | None = None,
        intrinsics: np.ndarray | None = None,
        ref_view_strategy: str = "saddle_balanced",
        use_ray_pose: bool = False,
        infer_gs: bool = False,
        with_descriptor: bool = False,
    ) -> dict[str, np.ndarray]:
        """images float32 [B, N, H, W, 3] (ImageNet-normalised); extrinsics [B, N, 4, 4] w2c
        (already normalised) and intrinsics [B, N, 3, 3] or None. Returns numpy outputs.

        ``with_descriptor``: also ``descriptor`` [B, N, C'] float32, a per-view global
        descriptor for place recognition (`view_descriptor`; any-view models only)."""
        images = np.asarray(images, np.float32)
        b, n, h, w, _ = images.shape
        posed = extrinsics is not None
        ext = None if not posed else np.asarray(extrinsics, np.float32)
        k = None if not posed else np.asarray(intrinsics, np.float32)
        if infer_gs and not self.config.get("gs_head", False):
            raise ValueError(f"infer_gs=True needs a model with a GS head; {self.config.name} "
                             "has none")
        if with_descriptor and not self.staged:
            raise ValueError(f"with_descriptor needs an any-view model; {self.config.name} is "
                             f"{self.config.kind}")
        if not self.staged:
            fn = self._full_fn(ref_view_strategy, use_ray_pose, infer_gs, posed)
            out = fn(self.params, images, ext, k)
            return {key: np.asarray(v) for key, v in out.items()}

        mesh = self._mesh_for(n)
        v = 1 if mesh is None else int(dict(mesh.shape)["view"])
        bb = self._backbone_fn(mesh, ref_view_strategy, posed, n % v == 0)
        if mesh is None:
            feats = bb(self.params, images, ext, k)
        else:
            with jax.set_mesh(mesh):
                feats = bb(self.params, images, ext, k)
        chunk = n if self.max_views_per_device is None else min(n, self.max_views_per_device * v)
        head = self._head_fn(use_ray_pose, infer_gs)
        pieces = []
        for start in range(0, n, chunk):
            idx = np.minimum(np.arange(start, start + chunk), n - 1)
            sel = functools.partial(jnp.take, indices=jnp.asarray(idx), axis=1)
            f_chunk = [(sel(f), sel(c)) for f, c in feats]
            out = head(self.params, f_chunk, sel(jnp.asarray(images)))
            keep = min(chunk, n - start)
            pieces.append({key: np.asarray(val)[:, :keep] for key, val in out.items()})
        out = {key: np.concatenate([p[key] for p in pieces], axis=1) for key in pieces[0]}
        if with_descriptor:
            out["descriptor"] = np.asarray(view_descriptor(feats[-1][0]))
        return out


@jax.jit
def view_descriptor(tokens: jax.Array) -> jax.Array:
    """Global descriptor of each view: the last backbone out-layer's patch tokens
    ``[B, N, P, C']`` mean-pooled over patches and L2-normalised -> ``[B, N, C']``.

    Used for loop-closure retrieval in streaming inference. It is free (the backbone ran
    anyway) and needs no extra weights or libraries; DA3's backbone is a DINOv2, the backbone
    that dedicated place-recognition heads (e.g. SALAD, used by the official DA3-Streaming)
    are trained on top of."""
    d = jnp.mean(tokens.astype(jnp.float32), axis=2)
    return d / jnp.maximum(jnp.linalg.norm(d, axis=-1, keepdims=True), 1e-12)
