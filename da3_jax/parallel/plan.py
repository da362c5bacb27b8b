"""Planning tool: compiled per-device memory and FLOPs of DA3 on a (simulated) device mesh.

    python -m da3_jax.parallel.plan --variant da3-small --views 64 --size 504x336 \\
        --mesh view=8 [--train] [--json] [--device-memory 80GB] [--compare-single]

AOT-compiles (``jax.jit(...).lower(...).compile()``) the forward pass (or, with ``--train``, the
project's train step: ``da3_jax.train.step`` with AdamW, EMA and grad clipping, state donated,
plus the sharded jitted init of that state, as ``train.loop`` runs them) for abstract
parameters (``jax.eval_shape``; nothing is
allocated) on a mesh of simulated CPU devices, and reports

  * per-device memory from ``compiled.memory_analysis()``: arguments, outputs, temporaries and
    their sum ``peak_bytes`` (the figure used for ratios and the search), and FLOPs from
    ``compiled.cost_analysis()`` (XLA counts a loop body once: with the 'chunked' kernel or
    ring attention the attention FLOPs are undercounted; use a dense kernel for FLOPs);
  * with ``--compare-single``: the same program on one device and the per-device peak ratio;
  * with ``--device-memory``: the largest view count whose per-device peak fits (exponential
    then binary search over multiples of the view-axis size; one compile per probe).

The numbers are *compiled estimates* for the XLA CPU backend (its buffer assignment and fusion
differ from GPU/TPU, and CPU has no flash-attention kernel), so treat them as relative figures:
how memory scales with views and mesh size. Views are sharded over ``view``, the batch over
``data`` x ``fsdp``, parameters FSDP-sharded when ``fsdp`` > 1 (``da3_jax.parallel.rules``).
View counts not divisible by the view axis are padded up (``view_parallel.padded_view_count``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_bytes(text: str) -> int:
    """'80GB' -> 80e9, '16GiB' -> 16 * 2**30, '1024' -> 1024."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]*)\s*", text)
    if not m or m.group(2).upper() not in _UNITS:
        raise ValueError(f"--device-memory {text!r}: expected e.g. 80GB, 16GiB or a byte count")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def parse_size(text: str) -> tuple[int, int]:
    """'504x336' (W x H, the official process_res convention) -> (H, W) = (336, 504)."""
    m = re.fullmatch(r"(\d+)x(\d+)", text.strip())
    if not m:
        raise ValueError(f"--size {text!r}: expected WxH, e.g. 504x336")
    w, h = int(m.group(1)), int(m.group(2))
    if h % 14 or w % 14:
        raise ValueError(f"--size {text!r}: width and height must be multiples of 14")
    return h, w


def _set_simulated_devices(n: int) -> None:
    """Ask XLA for n CPU devices; effective only before the jax backend starts."""
    flags = os.environ.get("XLA_FLAGS", "")
    flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", flags)
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()
    os.environ["JAX_PLATFORMS"] = "cpu"


def _memory(compiled) -> dict:
    m = compiled.memory_analysis()
    out = {
        "argument_bytes": int(m.argument_size_in_bytes),
        "output_bytes": int(m.output_size_in_bytes),
        "temp_bytes": int(m.temp_size_in_bytes),
        "alias_bytes": int(m.alias_size_in_bytes),
    }
    # Footprint = arguments + outputs + temporaries - aliased. XLA:CPU's own
    # peak_memory_in_bytes is reported too but undercounts temporaries on this backend.
    out["xla_peak_bytes"] = int(getattr(m, "peak_memory_in_bytes", 0) or 0)
    out["peak_bytes"] = (out["argument_bytes"] + out["output_bytes"] + out["temp_bytes"]
                         - out["alias_bytes"])
    return out


def _tree_bytes(abstract, shardings) -> tuple[int, int]:
    """(total bytes, bytes per device) of an abstract tree under ``shardings``."""
    import math

    import jax

    total = per_device = 0
    for a, sh in zip(jax.tree.leaves(abstract), jax.tree.leaves(shardings), strict=True):
        total += math.prod(a.shape) * a.dtype.itemsize
        per_device += math.prod(sh.shard_shape(a.shape)) * a.dtype.itemsize
    return total, per_device


def _flops(compiled) -> float:
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    return float((cost or {}).get("flops", 0.0))


def compile_plan(
    variant: str,
    views: int,
    size_hw: tuple[int, int],
    mesh_shape: dict,
    *,
    train: bool = False,
    init_only: bool = False,
    batch: int | None = None,
    attention: str | None = None,
    dtype: str | None = None,
    scan_layers: bool = False,
    remat: str | None = None,
    devices=None,
) -> dict:
    """Compile DA3 ``variant`` for ``views`` views of ``size_hw`` on ``mesh_shape``; return the
    per-device memory/FLOPs report (dict). ``devices`` defaults to the first
    prod(mesh_shape) devices. ``attention``: config ``attention_impl`` override (default:
    'allgather_view:<the config's kernel>' on a view axis > 1, i.e. 'allgather_view:auto' for the
    default config; else the config's). ``scan_layers`` / ``remat``: the model's
    ``scan_layers`` and ``remat_policy`` (XLA then compiles one scanned block per stack instead
    of every block: giant's train step compiles in minutes instead of not finishing)."""
    import math

    import jax
    import jax.numpy as jnp

    from da3_jax.model import DA3, get_config
    from da3_jax.parallel import attention as attn_lib
    from da3_jax.parallel import mesh as mesh_lib
    from da3_jax.parallel import rules
    from da3_jax.parallel.view_parallel import padded_view_count

    if any(v < 1 for v in mesh_shape.values()):
        raise ValueError(f"mesh_shape {mesh_shape}: give explicit axis sizes >= 1")
    n_dev = math.prod(mesh_shape.values())
    shape = mesh_lib.resolve_mesh_shape(mesh_shape, n_dev)
    devices = list(devices if devices is not None else jax.devices()[:n_dev])
    if len(devices) < n_dev:
        raise ValueError(f"mesh {shape} needs {n_dev} devices; {len(devices)} available")
    mesh = mesh_lib.make_mesh(shape, devices=devices[:n_dev])
    cfg = get_config(variant)
    if attention is not None:
        cfg.attention_impl = attention
    elif shape["view"] > 1:  # the config's per-device kernel ('auto' by default), as inference
        cfg.attention_impl = "allgather_view:" + attn_lib.local_impl(cfg.attention_impl)
    if dtype is not None:
        cfg.dtype = dtype
    if scan_layers:
        cfg.scan_layers = True
    if remat is not None:
        cfg.remat_policy = remat
    model = DA3(cfg)
    data_par = shape["data"] * shape["fsdp"]
    batch = batch or data_par
    n_pad = padded_view_count(views, mesh)
    h, w = size_hw
    images_shape = (batch, n_pad, h, w, 3)

    small = jnp.zeros((1, 2, 14 * 2, 14 * 2, 3), jnp.float32)
    abstract_params = jax.eval_shape(lambda: model.init(jax.random.key(0), small)["params"])
    param_shardings = rules.tree_shardings(abstract_params, mesh)
    image_sharding = rules.batch_sharding(mesh, 5)

    report_extra = {}
    if train:
        # The project's own train state and step (da3_jax.train): AdamW (two moments, backbone
        # / head groups), EMA params, grad clipping and the non-finite guard, all donated.
        import ml_collections

        from da3_jax.train import optim
        from da3_jax.train.state import create_state
        from da3_jax.train.step import make_train_step

        ocfg = ml_collections.ConfigDict(dict(lr=1e-4, total_steps=1000, warmup_steps=10))
        tx, schedule = optim.make_optimizer(ocfg, abstract_params)

        def init(rng):
            params = model.init(rng, small)["params"]
            return create_state(params, tx, rng, use_ema=True)

        key = jax.random.PRNGKey(0)
        abstract_state = jax.eval_shape(init, key)
        state_shardings = rules.tree_shardings(abstract_state, mesh)
        with jax.set_mesh(mesh):
            init_compiled = jax.jit(init, out_shardings=state_shardings).lower(key).compile()
        report_extra["init_per_device"] = _memory(init_compiled)
        report_extra["state_bytes"], report_extra["state_bytes_per_device"] = _tree_bytes(
            abstract_state, state_shardings)

        def loss_fn(params, batch, rng):
            del rng
            out = model.apply({"params": params}, batch["images"])
            loss = jnp.mean(out["depth"].astype(jnp.float32) ** 2)
            return loss, {}

        fn = make_train_step(loss_fn, tx, schedule, ema_decay=0.999, jit=False)
        args = (jax.tree.map(lambda a, sh: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sh),
                             abstract_state, state_shardings),
                {"images": jax.ShapeDtypeStruct(images_shape, jnp.float32)})
        jitted = jax.jit(fn, in_shardings=(state_shardings, {"images": image_sharding}),
                         out_shardings=(state_shardings, jax.sharding.NamedSharding(
                             mesh, jax.sharding.PartitionSpec())), donate_argnums=(0,))
    else:
        def fn(params, images):
            return model.apply({"params": params}, images)

        args = (abstract_params, jax.ShapeDtypeStruct(images_shape, jnp.float32))
        # Outputs are all [B, N, ...]: keep them sharded like the images (else the compiler
        # may replicate them, i.e. all-gather every view's depth map onto every device).
        abstract_out = jax.eval_shape(fn, abstract_params,
                                      jax.ShapeDtypeStruct(images_shape, jnp.float32))
        out_shardings = jax.tree.map(lambda x: rules.batch_sharding(mesh, x.ndim), abstract_out)
        jitted = jax.jit(fn, in_shardings=(param_shardings, image_sharding),
                         out_shardings=out_shardings)

    t0 = time.perf_counter()
    if train and init_only:
        compiled = init_compiled
    else:
        with jax.set_mesh(mesh):
            compiled = jitted.lower(*args).compile()
    seconds = time.perf_counter() - t0
    n_params = sum(math.prod(x.shape) for x in jax.tree.leaves(abstract_params))
    return {
        "variant": variant,
        "mode": ("train init" if init_only else "train") if train else "forward",
        "views": views,
        "padded_views": n_pad,
        "batch": batch,
        "size_hw": [h, w],
        "tokens_per_view": 1 + (h // 14) * (w // 14),
        "mesh": {k: v for k, v in shape.items() if v > 1} or {"data": 1},
        "devices": n_dev,
        "attention_impl": cfg.attention_impl,
        "dtype": cfg.dtype,
        "scan_layers": bool(cfg.get("scan_layers", False)),
        "remat_policy": cfg.get("remat_policy", "none"),
        "params": n_params,
        "per_device": _memory(compiled),
        "flops_per_device": _flops(compiled),
        "compile_seconds": round(seconds, 2),
        "backend": "cpu (simulated devices; compiled estimate)",
        **report_extra,
    }


def max_views_that_fit(device_memory: int, plan_fn, *, step: int, start: int, limit: int = 1 << 16):
    """Largest multiple of ``step`` whose ``plan_fn(views)['per_device']['peak_bytes']`` is
    <= ``device_memory`` (exponential growth from ``start``, then bisection). Returns
    (views or 0 if even ``step`` views do not fit, {views: peak} of every probe)."""
    probes: dict[int, int] = {}

    def fits(n):
        probes[n] = plan_fn(n)["per_device"]["peak_bytes"]
        return probes[n] <= device_memory

    lo = 0
    hi = max(step, -(-start // step) * step)
    while fits(hi):
        lo = hi
        if hi >= limit:
            return lo, probes
        hi *= 2
    while hi - lo > step:
        mid = (lo + hi) // 2 // step * step
        if mid <= lo:
            break
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo, probes


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.2f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


def _print_report(r: dict) -> None:
    m = r["per_device"]
    print(f"{r['variant']} {r['mode']}: {r['views']} views (padded {r['padded_views']}) x "
          f"{r['size_hw'][0]}x{r['size_hw'][1]} (HxW, {r['tokens_per_view']} tokens/view), "
          f"batch {r['batch']}, mesh {r['mesh']}, attention {r['attention_impl']}, "
          f"dtype {r['dtype']}"
          + (f", scanned layers (remat {r['remat_policy']})" if r["scan_layers"] else ""))
    print(f"  per device: peak {_human(m['peak_bytes'])}  (arguments {_human(m['argument_bytes'])},"
          f" outputs {_human(m['output_bytes'])}, temporaries {_human(m['temp_bytes'])})")
    print(f"  FLOPs per device: {r['flops_per_device']:.3e}   compile {r['compile_seconds']} s")
    if "init_per_device" in r:
        i = r["init_per_device"]
        print(f"  train state: {_human(r['state_bytes'])} in total, "
              f"{_human(r['state_bytes_per_device'])} per device "
              f"({r['state_bytes_per_device'] * r['devices'] / r['state_bytes']:.3f} x total / "
              f"{r['devices']}); sharded init: peak {_human(i['peak_bytes'])} per device "
              f"(outputs {_human(i['output_bytes'])})")
    if "single_device" in r:
        s = r["single_device"]["per_device"]["peak_bytes"]
        print(f"  single device: peak {_human(s)}; per-device / single = {r['peak_ratio']:.3f}")
    if "max_views" in r:
        print(f"  largest view count fitting {_human(r['device_memory'])}: {r['max_views']}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m da3_jax.parallel.plan", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", default="da3-small")
    p.add_argument("--views", type=int, default=64)
    p.add_argument("--size", default="504x336", help="W x H in pixels (multiples of 14)")
    p.add_argument("--mesh", default="view=8", help="e.g. view=8 or data=2,fsdp=2,view=2")
    p.add_argument("--batch", type=int, default=None, help="default: data x fsdp")
    p.add_argument("--train", action="store_true", help="forward + backward + AdamW step")
    p.add_argument("--init-only", action="store_true",
                   help="with --train: compile only the sharded init of the train state")
    p.add_argument("--attention", default=None, help="attention_impl override")
    p.add_argument("--dtype", default=None, help="compute dtype override (float32, bfloat16)")
    p.add_argument("--scan-layers", action="store_true",
                   help="the backbone as scanned stacks (config scan_layers; one block compiled)")
    p.add_argument("--remat", default=None,
                   help="remat policy of the scanned blocks: none, full, dots, dots_all")
    p.add_argument("--device-memory", default=None, help="e.g. 80GB: search the max view count")
    p.add_argument("--compare-single", action="store_true",
                   help="also compile on one device and report the per-device peak ratio")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)

    from da3_jax.parallel.mesh import parse_mesh_arg  # no jax backend use at import

    mesh_shape = parse_mesh_arg(args.mesh)
    size_hw = parse_size(args.size)
    device_memory = parse_bytes(args.device_memory) if args.device_memory else None
    if any(v == -1 for v in mesh_shape.values()):
        raise ValueError("--mesh: give explicit axis sizes (no -1) for simulated devices")
    n_dev = 1
    for v in mesh_shape.values():
        n_dev *= v
    _set_simulated_devices(n_dev)

    def plan_fn(views, shape=mesh_shape, devices=None):
        return compile_plan(args.variant, views, size_hw, shape, train=args.train,
                            init_only=args.init_only,
                            batch=args.batch, attention=args.attention, dtype=args.dtype,
                            scan_layers=args.scan_layers, remat=args.remat, devices=devices)

    report = plan_fn(args.views)
    if args.compare_single:
        import jax

        single = plan_fn(args.views, {"data": 1}, jax.devices()[:1])
        report["single_device"] = single
        report["peak_ratio"] = report["per_device"]["peak_bytes"] / single["per_device"][
            "peak_bytes"]
    if device_memory is not None:
        step = mesh_shape.get("view", 1)
        best, probes = max_views_that_fit(device_memory, plan_fn, step=step, start=args.views)
        report["device_memory"] = device_memory
        report["max_views"] = best
        report["probes"] = {str(k): v for k, v in sorted(probes.items())}
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        _print_report(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
