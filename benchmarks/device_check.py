"""Accelerator check: da3-large forward and train step, da3_jax vs the official PyTorch package.

    bash benchmarks/device_check.sh            # on the GPU machine (about 7 minutes, H200)
    bash benchmarks/device_check.sh --smoke    # CPU, da3-small, 2 views of 28x28 (the CI test)
    python -m benchmarks.device_check [--model da3-large] [--views 1,8,32] [--size 280x280]
        [--dtypes bfloat16,float32] [--budget-s 420] [--out DIR]

Measures, on one device, for both implementations (`benchmarks.train_compare`: same converted
weights, same batch and loss, AdamW; bf16 = da3_jax's bfloat16 compute dtype / torch autocast):

  1. the device's matrix peak: a bf16 8192^3 matmul through torch on GPU (mean of 10 after 3
     warm-ups, random data); on CPU the f32 jnp.dot peak;
  2. forward and train step at each N of `--views`, each dtype: median of `--repeats` after 2
     warm-ups, the allocator's peak memory, the step-0 loss of both sides (they must agree), and
     train-step MFU = 3 x analytic forward FLOPs (`benchmarks.flops`) / step time / that peak;
  3. the largest N whose forward fits (bf16, random images): N doubles from `--fit-start`
     until a forward fails (out of memory) or the budget ends; one subprocess per probe.

Each implementation runs in one subprocess over all its cells, the first dtype first (weights
converted once; compiles are the cost on a fresh machine). Cells stream their results, so a
worker stopped at its share of `--budget-s` still reports the cells it finished, and later
cells read 'not run (budget)'.
The whole script stays inside the budget (default 420 s, under the 8-minute device slot).
Writes `device_check.json` and `device_check.md` to `--out` and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from benchmarks import _common
from benchmarks import train_compare as tc

SMOKE = dict(model="da3-small", views="2", size="28x28", dtypes="float32,bfloat16",
             fit_start=1, fit_max=1, repeats=1, warmup=1, budget_s=1400.0)


def _gpu_available() -> bool:
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def stream_worker(args: list[str], env: dict, deadline: float) -> tuple[list[dict], str]:
    """Run a train_compare worker; collect its JSON lines until it exits or `deadline`
    (time.monotonic()) passes (then it is killed). Returns (results, '' or why it stopped)."""
    cmd = [sys.executable, "-m", tc.MODULE, *args]
    with tempfile.TemporaryFile("w+") as fout, tempfile.TemporaryFile("w+") as ferr:
        proc = subprocess.Popen(cmd, cwd=_common.REPO, stdout=fout, stderr=ferr, text=True,
                                env=env)
        why = ""
        while proc.poll() is None:
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                why = "budget"
                break
            time.sleep(0.2)
        fout.seek(0)
        ferr.seek(0)
        results = [json.loads(ln) for ln in fout.read().splitlines() if ln.startswith("{")]
        if not why and proc.returncode != 0:
            tail = ferr.read().strip().splitlines()
            why = f"exit {proc.returncode}: {tail[-1][:200] if tail else ''}"
    return results, why


def measure_peak(device: str, env: dict, deadline: float) -> dict:
    """bf16 matmul peak (GPU: torch, in a subprocess) or f32 jnp.dot peak (CPU)."""
    if device == "cpu":  # this process runs jax on the CPU with the workers' threads
        p = _common.matmul_peak_gflops()
        return {"what": "f32 jnp.dot 2048^3 (CPU)", "tflops": p["gflops_median"] / 1e3}
    code = (
        "import torch,json;n=8192;"
        "a=torch.randn(n,n,device='cuda',dtype=torch.bfloat16);b=torch.randn_like(a);"
        "[a@b for _ in range(3)];torch.cuda.synchronize();"
        "s=torch.cuda.Event(enable_timing=True);e=torch.cuda.Event(enable_timing=True);"
        "s.record();[a@b for _ in range(10)];e.record();torch.cuda.synchronize();"
        "t=s.elapsed_time(e)/1e3/10;"
        "print(json.dumps({'tflops':2*n**3/t/1e12,'gpu':torch.cuda.get_device_name(),"
        "'torch':torch.__version__}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=max(10.0, deadline - time.monotonic()))
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        return {"error": out.stderr.strip()[-300:]}
    return {"what": "bf16 torch matmul 8192^3 (GPU)", **json.loads(lines[-1])}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny shapes (the CI test)")
    ap.add_argument("--model", default="da3-large")
    ap.add_argument("--views", default="1,8,32")
    ap.add_argument("--size", default="280x280", help="WxH (multiples of 14)")
    ap.add_argument("--dtypes", default="bfloat16,float32")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--fit-start", type=int, default=64)
    ap.add_argument("--fit-max", type=int, default=4096)
    ap.add_argument("--budget-s", type=float, default=420.0)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--scan", default="none",
                    help="da3_jax backbone as nn.scan stacks with this remat policy (compiles "
                         "~depth/2 times less code: the 8-minute slot is mostly compiles); "
                         "'' for the unrolled blocks")
    ap.add_argument("--out", default="")
    a = ap.parse_args(argv)
    if a.smoke:
        for k, v in SMOKE.items():
            setattr(a, k, v)
    t_start = time.monotonic()
    deadline = t_start + a.budget_s
    w, h = (int(v) for v in a.size.lower().split("x"))
    if h % 14 or w % 14:
        raise ValueError(f"--size {a.size}: W and H must be multiples of 14")
    views = [int(v) for v in a.views.split(",")]
    dtypes = a.dtypes.split(",")
    device = "gpu" if not a.smoke and _gpu_available() else "cpu"
    if device == "cpu":
        _common.pin_threads(a.threads)
    os.environ["JAX_PLATFORMS"] = "cpu"  # this process only prepares inputs
    env = tc.worker_env(device)
    report = {"machine": _common.machine_info(), "device": device, "model": a.model,
              "hw": [h, w], "views": views, "dtypes": dtypes, "smoke": a.smoke,
              "budget_s": a.budget_s, "jax_scan": a.scan}
    report["peak"] = measure_peak(device, env, deadline)
    print(f"# peak {report['peak']}", flush=True)

    from benchmarks.flops import forward_flops
    from benchmarks.train_step import pipeline_batch
    from da3_jax.model import get_config

    cells = [(m, n, d) for d in dtypes for n in views for m in ("forward", "train")]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "model.safetensors")
        tc.save_official_weights(a.model, weights)
        rhw = tc.ray_hw(a.model, (h, w))
        for n in views:
            tc.write_inputs(os.path.join(tmp, f"inputs_{n}.npz"), pipeline_batch(1, n, (h, w)),
                            rhw)
        print(f"# inputs ready after {time.monotonic() - t_start:.0f} s", flush=True)
        # Sweep: 70 % of what is left, shared equally by the two implementations' workers.
        sweep_end = time.monotonic() + 0.7 * (deadline - time.monotonic())
        for i, impl in enumerate(("jax", "official")):
            share = (sweep_end - time.monotonic()) / (2 - i)
            args = tc.worker_args(impl, a.model, ",".join(f"{m}:{n}:{d}" for m, n, d in cells),
                                  dtypes[0], device=device,
                                  inputs=os.path.join(tmp, "inputs_{n}.npz"), weights=weights,
                                  threads=a.threads, warmup=a.warmup, repeats=a.repeats,
                                  hw=(h, w), scan=a.scan)
            res, why = stream_worker(args, env, time.monotonic() + share)
            done = {(r["mode"], r["views"], r["dtype"]) for r in res}
            res += [{"impl": impl, "mode": m, "dtype": d, "views": n,
                     "error": f"not run ({why or 'worker ended'})"}
                    for m, n, d in cells if (m, n, d) not in done]
            rows += res
            print(f"# {impl}: {len(done)} of {len(cells)} cells, {why or 'ok'}", flush=True)
        # Fit: the rest of the budget, shared by the two implementations.
        fit = {}
        for i, impl in enumerate(("jax", "official")):
            impl_end = time.monotonic() + (deadline - time.monotonic()) / (2 - i)
            fit[impl] = largest_fitting(impl, a, device, env, weights, (h, w), impl_end)
            print(f"# fit {impl}: {fit[impl]}", flush=True)
    flops = {str(n): 3.0 * forward_flops(get_config(a.model), n, (h, w))["total"] for n in views}
    report.update(rows=rows, fit=fit, model_step_flops=flops,
                  wall_s=time.monotonic() - t_start)
    report["machine_after"] = _common.machine_info()
    text = format_report(report)
    print(text)
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "device_check.json"), "w") as f:
            json.dump(report, f, indent=1)
        with open(os.path.join(a.out, "device_check.md"), "w") as f:
            f.write(text + "\n")
    return report


def largest_fitting(impl: str, a, device: str, env: dict, weights: str, hw, end: float) -> dict:
    """Double N from --fit-start while a bf16 forward on random images succeeds (one subprocess
    per probe). Returns {'fits': largest N that ran, 'fails': first N that failed or None,
    'stopped': why the search ended}."""
    fits, n = 0, a.fit_start
    while n <= a.fit_max:
        if time.monotonic() > end - 5:
            return {"fits": fits, "fails": None, "stopped": "budget"}
        args = tc.worker_args(impl, a.model, f"forward:{n}", "bfloat16", device=device,
                              weights=weights, threads=a.threads, warmup=1, repeats=1, hw=hw,
                              scan=a.scan)
        res, why = stream_worker(args, env, end)
        if why == "budget":
            return {"fits": fits, "fails": None, "stopped": f"budget during N={n}"}
        if not res or "error" in res[-1] or why:
            err = res[-1].get("error", why) if res else why
            return {"fits": fits, "fails": n, "stopped": str(err)[:160]}
        fits, n = n, 2 * n
    return {"fits": fits, "fails": None, "stopped": f"--fit-max {a.fit_max}"}


def _row(r: dict, by: dict, dtype: str, n: int, peak: float) -> list:
    """One table row: forward and train step of both implementations at (dtype, N)."""
    cell = {(i, m): by.get((i, m, dtype, n), {}) for i in ("jax", "official")
            for m in ("forward", "train")}
    t = {k: c.get("median_s") for k, c in cell.items()}

    def ms(k):
        return t[k] * 1e3 if t[k] else (cell[k].get("error", "")[:60] or None)

    def ratio(m):
        jt, ot = t[("jax", m)], t[("official", m)]
        return ot / jt if jt and ot else None

    def mem(i):
        c = cell[(i, "train")]
        b = c.get("device_peak_bytes") or c.get("timed_peak_rss_bytes")
        return b / 2**30 if b else None

    def mfu(i):
        step = t[(i, "train")]
        return r["model_step_flops"][str(n)] / step / peak if step else None

    l0 = [cell[(i, "train")].get("loss0") for i in ("jax", "official")]
    return [dtype, n, ms(("jax", "forward")), ms(("official", "forward")), ratio("forward"),
            ms(("jax", "train")), ms(("official", "train")), ratio("train"), mfu("jax"),
            mfu("official"), " / ".join("n/a" if v is None else f"{v:.5g}" for v in l0),
            mem("jax"), mem("official"), cell[("jax", "train")].get("recompiles")]


def format_report(r: dict) -> str:
    """The markdown tables: per (dtype, N) forward and train step of both implementations."""
    peak = r["peak"].get("tflops", float("nan")) * 1e12
    by = {(x["impl"], x["mode"], x["dtype"], x["views"]): x for x in r["rows"]}
    headers = ["dtype", "N", "jax fwd ms", "official fwd ms", "fwd speed-up", "jax step ms",
               "official step ms", "step speed-up", "jax MFU", "official MFU",
               "step-0 loss jax / official", "jax step peak GiB", "official step peak GiB",
               "jax recompiles"]
    rows = [_row(r, by, dtype, n, peak) for dtype in r["dtypes"] for n in r["views"]]
    info = r["machine"]
    fit = r.get("fit", {})
    lines = [
        _common.machine_line(info),
        f"Device: {r['device']} ({r['peak'].get('gpu', info.get('cpu'))}); model {r['model']}, "
        f"B=1, {r['hw'][1]}x{r['hw'][0]} (WxH); peak {r['peak'].get('what')}: "
        f"{r['peak'].get('tflops', float('nan')):.3g} TFLOP/s (MFU uses it); da3_jax backbone "
        f"{'scanned, remat ' + r['jax_scan'] if r['jax_scan'] else 'unrolled'}; script wall "
        f"{r['wall_s']:.0f} s of a {r['budget_s']:.0f} s budget.",
        "",
        _common.markdown_table(headers, rows),
        "",
        "Largest N whose bf16 forward fits: "
        + "; ".join(f"{i}: {v.get('fits')} (next {v.get('fails') or 'not tried'}: "
                    f"{v.get('stopped')})" for i, v in fit.items()),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
