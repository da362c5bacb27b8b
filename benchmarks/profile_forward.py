"""Where the forward time goes: backbone vs head (and attention kernels), da3_jax vs official.

    python -m benchmarks.profile_forward [--model da3-small] [--views 4] [--size 504x504]
        [--threads 2] [--repeats 3] [--json out.json]

Each implementation runs in its own subprocess pinned to `--threads` CPUs.
  * da3_jax: the backbone (`model.vit.Backbone`) and the head (`model.dpt.DualDPT`) are jitted
    separately with the full model's params and their stage's XLA options
    (`da3_jax.parallel.xla_options`, as the inference path compiles them) and timed (median of
    `--repeats` after a warm-up); `full` is `DA3.apply` in one jit with XLA's defaults. FLOPs
    come from XLA's cost analysis of the same functions lowered with the loop-free 'dense'
    attention kernel, so each stage gets its own GFLOP/s. The
    cross-view attention of one global block ([1, N(1+P), H, Dh]) is also timed alone for the
    'dense', 'xla' and 'chunked' kernels of `da3_jax.parallel.attention` and the query-blocked
    `qblock` kernel of `da3_jax.parallel.attention` (torch's `scaled_dot_product_attention` on the
    official side).
  * official: the network is called directly (fp32, `torch.inference_mode`) and forward hooks
    time `backbone` and `head` (torch on CPU is synchronous); `torch.utils.flop_counter`
    counts its FLOPs per stage (matmuls, convs, attention).
The last line of the table (`other`) is the whole forward minus the two stages.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from benchmarks import _common

MODULE = "benchmarks.profile_forward"


def _flops(lowered) -> float:
    ca = lowered.cost_analysis()
    ca = ca[0] if isinstance(ca, (list, tuple)) else ca
    return float(ca.get("flops", float("nan")))


def worker_jax(a) -> dict:
    import jax
    import jax.numpy as jnp

    from da3_jax.model import DA3, dpt, get_config
    from da3_jax.model import configs as configs_lib
    from da3_jax.model.vit import Backbone
    from da3_jax.parallel.attention import attention_kernel
    from da3_jax.parallel.xla_options import compiler_options

    cfg = get_config(a.model)
    h, w, n = a.height, a.width, a.views
    x = jax.random.normal(jax.random.PRNGKey(0), (1, n, h, w, 3), jnp.float32)
    model = DA3(cfg)
    params = jax.jit(model.init)(jax.random.PRNGKey(1), x[:, :1])["params"]
    head = dpt.DualDPT(configs_lib.head_dim_in(cfg), cfg.head_features,
                       tuple(cfg.head_out_channels), cfg.patch_size)

    def backbone_fn(p, x_):
        feats = Backbone(cfg).apply({"params": p}, x_)
        return [f.reshape(n, f.shape[2], f.shape[3]) for f, _ in feats]

    def head_fn(p, toks):
        return head.apply({"params": p}, toks, (h, w))

    def full_fn(p, x_):
        return model.apply({"params": p}, x_)

    dense_cfg = cfg.copy_and_resolve_references()
    dense_cfg.attention_impl = "dense"  # loop-free twin for XLA's FLOP count (same maths)

    def dense_backbone_fn(p, x_):
        feats = Backbone(dense_cfg).apply({"params": p}, x_)
        return [f.reshape(n, f.shape[2], f.shape[3]) for f, _ in feats]

    def dense_full_fn(p, x_):
        return DA3(dense_cfg).apply({"params": p}, x_)

    out = {}
    # name: (fn, loop-free twin for FLOPs, params, input, compiler-options stage)
    stages = {"backbone": (backbone_fn, dense_backbone_fn, params["backbone"], x, "backbone"),
              "full": (full_fn, dense_full_fn, params, x, None)}
    toks = jax.jit(backbone_fn)(params["backbone"], x)
    stages["head"] = (head_fn, head_fn, params["head"], toks, "head")
    for name, (fn, dense_fn, p, inp, stage) in stages.items():
        f = jax.jit(fn, compiler_options=compiler_options(stage) if stage else None)
        flops = _flops(jax.jit(dense_fn).lower(p, inp))
        jax.block_until_ready(f(p, inp))
        t = _common.timed(lambda f=f, p=p, inp=inp: jax.block_until_ready(f(p, inp)),
                          a.repeats, 0)
        out[name] = {"s": _common.median(t), "flops": flops}
    # one cross-view attention call
    dh = cfg.embed_dim // cfg.num_heads
    length = n * (1 + (h // 14) * (w // 14))
    q, k, v = (jax.random.normal(jax.random.PRNGKey(i), (1, length, cfg.num_heads, dh))
               for i in range(3))
    for kern in ("dense", "xla", "chunked", "qblock"):  # 'auto' is 'qblock' on CPU
        f = jax.jit(lambda q_, k_, v_, kern=kern: attention_kernel(q_, k_, v_, kernel=kern))
        try:
            jax.block_until_ready(f(q, k, v))
            t = _common.timed(lambda f=f: jax.block_until_ready(f(q, k, v)), a.repeats, 0)
            out[f"attn_{kern}"] = {"s": _common.median(t), "flops": 4.0 * length**2 * cfg.embed_dim}
        except Exception as e:  # noqa: BLE001 - report, keep profiling
            out[f"attn_{kern}"] = {"error": str(e)[:200]}
    return out


def worker_official(a) -> dict:
    import numpy as np
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from benchmarks.inference import _official_net

    torch.set_num_threads(a.threads)
    net = _official_net(a.model)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(
        (1, a.views, 3, a.height, a.width)).astype(np.float32))
    acc: dict[str, list[float]] = {"backbone": [], "head": []}
    starts: dict[str, float] = {}

    def pre(name):
        def hook(_m, _i):
            starts[name] = time.perf_counter()
        return hook

    def post(name):
        def hook(_m, _i, _o):
            acc[name].append(time.perf_counter() - starts[name])
        return hook

    for name in acc:
        mod = getattr(net, name)
        mod.register_forward_pre_hook(pre(name))
        mod.register_forward_hook(post(name))

    def fwd():
        with torch.inference_mode():
            net(x, None, None)

    fwd()
    for v in acc.values():
        v.clear()
    full = _common.timed(fwd, a.repeats, 0)
    out = {"full": {"s": _common.median(full)}}
    for name, v in acc.items():
        out[name] = {"s": _common.median(v)}
    with FlopCounterMode(display=False) as fc:
        fwd()
    # one cross-view attention call: F.scaled_dot_product_attention [1, H, N(1+P), Dh]
    from da3_jax.model import get_config

    cfg = get_config(a.model)
    length = a.views * (1 + (a.height // 14) * (a.width // 14))
    q = torch.randn(1, cfg.num_heads, length, cfg.embed_dim // cfg.num_heads)

    def sdpa():
        with torch.inference_mode():
            torch.nn.functional.scaled_dot_product_attention(q, q, q)

    t = _common.timed(sdpa, a.repeats, 1)
    out["attn_torch_sdpa"] = {"s": _common.median(t), "flops": 4.0 * length**2 * cfg.embed_dim}
    per_mod = fc.get_flop_counts()
    out["full"]["flops"] = float(fc.get_total_flops())
    for name in ("backbone", "head"):
        key = next((k for k in per_mod if k.endswith(f".{name}") or k == name), None)
        if key is not None:
            out[name]["flops"] = float(sum(per_mod[key].values()))
    return out


def worker_main(argv) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", required=True, choices=("jax", "official"))
    ap.add_argument("--model", default="da3-small")
    ap.add_argument("--height", type=int, default=504)
    ap.add_argument("--width", type=int, default=504)
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args(argv)
    _common.pin_threads(a.threads)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    _common.emit((worker_jax if a.worker == "jax" else worker_official)(a))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="da3-small")
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--size", default="504x504", help="WxH")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--impls", default="jax,official")
    ap.add_argument("--json", default="")
    a = ap.parse_args(argv)
    w, h = (int(v) for v in a.size.lower().split("x"))
    info = _common.machine_info()
    args = ["--model", a.model, "--height", str(h), "--width", str(w), "--views",
            str(a.views), "--threads", str(a.threads), "--repeats", str(a.repeats)]
    peak = _common.run_worker("benchmarks.inference", ["--worker", "matmul", "--threads",
                                                       str(a.threads)])
    res = {}
    for impl in a.impls.split(","):
        res[impl] = _common.run_worker(MODULE, ["--worker", impl] + args)
        print(f"# {impl}: {json.dumps(res[impl])}", file=sys.stderr, flush=True)
    report = {"machine": info, "args": vars(a), "matmul_peak": peak, "result": res}
    return _common.publish(report, format_table, a.json)


def format_table(report: dict) -> str:
    peak = report["matmul_peak"]["gflops_median"]
    res = report["result"]
    nan = float("nan")
    rows = []
    for stage in ("backbone", "head", "full"):
        row = [stage]
        for impl in ("jax", "official"):
            s = res.get(impl, {}).get(stage, {})
            t, fl = s.get("s", nan), s.get("flops", nan)
            row += [t * 1e3, fl / 1e9, fl / t / 1e9, fl / t / 1e9 / peak]
        rows.append(row)
    other = ["other (full - backbone - head)"]
    for impl in ("jax", "official"):
        r = res.get(impl, {})
        try:
            other += [(r["full"]["s"] - r["backbone"]["s"] - r["head"]["s"]) * 1e3, nan, nan,
                      nan]
        except KeyError:
            other += [nan] * 4
    rows.append(other)
    headers = ["stage"] + [f"{i} {c}" for i in ("jax", "official")
                           for c in ("ms", "GFLOP", "GFLOP/s", "of peak")]
    a = report["args"]
    lines = [_common.machine_line(report["machine"]),
             f"Load average at the end: {report['machine_after']['load_avg'][0]:.2f}. "
             f"{a['model']}, N={a['views']}, {a['size']} (WxH), threads {a['threads']}, "
             f"matmul peak {peak:.1f} GFLOP/s.", "", _common.markdown_table(headers, rows)]
    attn = [[f"{impl}: {k[5:]}", v.get("s", nan) * 1e3,
             v.get("flops", nan) / v.get("s", nan) / 1e9, v.get("error", "")]
            for impl in ("jax", "official")
            for k, v in res.get(impl, {}).items() if k.startswith("attn_")]
    if attn:
        lines += ["", "One cross-view attention call, q = k = v [1, N(1+P), H, Dh]:", "",
                  _common.markdown_table(["kernel", "ms", "GFLOP/s", "error"], attn)]
    return "\n".join(lines)


if __name__ == "__main__":
    if "--worker" in sys.argv[1:]:
        worker_main(sys.argv[1:])
    else:
        main()
