"""Scale-out: mesh, sharding rules, attention kernels, view parallelism, precision, planning.

Modules (one job each):
  mesh           mesh with axes (data, fsdp, view, tensor) from config; Auto axis types (why:
                 see its docstring).
  rules          logical axis -> mesh axis table; parameter / optimizer-state / batch shardings.
  attention      ``dot_product_attention(q, k, v, *, impl, kv_mask=None)``; kernels 'dense',
                 'xla' (cuDNN on GPU), 'chunked' (online softmax, any backend), 'splash' (TPU);
                 view modes 'allgather_view[:kernel]', 'ring_view[:kernel]'.
  view_parallel  cross-view attention with the views sharded over ``view`` (shard_map);
                 view padding helpers.
  scan           scanned-stack schedule, scanned <-> unrolled parameter converters, remat policies.
  precision      bf16 compute / fp32 params policy helpers.
  multihost      ``jax.distributed.initialize`` gate, per-host batches -> global arrays.
  plan           ``python -m da3_jax.parallel.plan``: compiled memory / FLOPs on simulated meshes.

Using view parallelism from the model
-------------------------------------
* Config: ``attention_impl = 'allgather_view'`` (or ``'ring_view'``, or with a per-device
  kernel: ``'allgather_view:chunked'``, ``'allgather_view:xla'`` on GPU). Cross-view (global)
  blocks call ``dot_product_attention(q, k, v, impl=cfg.attention_impl, kv_mask=...)`` on
  ``[B, N*K, H, Dh]`` (view-major). Within-view blocks should call it with
  ``impl=local_impl(cfg.attention_impl)`` (the kernel part); they need no communication.
  Without a mesh (or a view axis of 1) the view modes are the plain kernel, so one config
  serves single-device and sharded runs.
* Run under ``with jax.set_mesh(mesh):`` and ``jax.jit`` with the images sharded
  ``rules.batch_sharding(mesh, 5)`` (batch over data x fsdp, views over view).
* View counts not divisible by the view axis: ``n_pad = padded_view_count(N)``; pad the inputs
  with ``pad_views(images, n_pad)`` (and extrinsics/intrinsics); pass
  ``kv_mask = view_token_mask(B, N, n_pad, K)`` to every cross-view attention (and the camera
  encoder's attention over views, with K = 1); exclude padded views from reference-view
  selection (e.g. score +inf); slice every output with ``unpad_views(x, N)``.
"""
