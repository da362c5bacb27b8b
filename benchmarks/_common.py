"""Shared helpers of the benchmark scripts: machine facts, subprocess workers, tables, peaks.

Every benchmark that compares implementations runs each measurement in its own Python
subprocess (`run_worker`), so peak resident memory is per implementation: the child's
`ru_maxrss` comes from `os.wait4` (kernel accounting of that one process, in bytes here) and the
child also reports its own `/proc/self/status` VmHWM before and after the timed section.
Thread count: `pin_threads(t)` restricts the process to the first `t` CPUs (XLA sizes its
thread pool from the affinity mask) and sets the OpenMP / MKL / torch thread counts; call it
before importing jax or torch.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pin_threads(threads: int) -> None:
    """Use `threads` CPUs in this process (affinity + thread-count env vars). Before imports."""
    cpus = sorted(os.sched_getaffinity(0))
    if threads < 1 or threads > len(cpus):
        raise ValueError(f"--threads must be in [1, {len(cpus)}]; got {threads}")
    os.sched_setaffinity(0, cpus[:threads])
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)


def vm_hwm_bytes() -> int:
    """Peak resident set size of this process so far (/proc/self/status VmHWM), bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmHWM not found in /proc/self/status")


def reset_peak_rss() -> bool:
    """Reset this process's VmHWM to the current RSS (/proc/self/clear_refs, value 5).

    Lets a benchmark report the peak of the timed section alone (without the compile or
    weight-loading peak). Returns False where the kernel does not allow it.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def vm_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


def run_worker(module: str, args: list[str], timeout: float | None = None,
               env: dict | None = None) -> dict:
    """Run `python -m module args...` as a child; return its last stdout JSON line as a dict,
    plus `child_maxrss_bytes` (this child's peak RSS from `os.wait4` rusage) and `worker_wall_s`.
    `env`: the child's environment (default: this process's).

    Raises RuntimeError with the child's stderr tail on failure or timeout.
    """
    import tempfile

    cmd = [sys.executable, "-m", module, *args]
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as fout, tempfile.TemporaryFile("w+") as ferr:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=fout, stderr=ferr, text=True, env=env)
        deadline = None if timeout is None else t0 + timeout
        while True:
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if deadline is not None and time.perf_counter() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                raise RuntimeError(f"worker timed out after {timeout}s: {' '.join(cmd)}")
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        fout.seek(0)
        ferr.seek(0)
        out, err = fout.read(), ferr.read()
    if proc.returncode != 0:
        raise RuntimeError(f"worker failed (rc={proc.returncode}): {' '.join(cmd)}\n"
                           f"{err[-3000:]}")
    lines = [ln for ln in out.strip().splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"worker printed no JSON: {' '.join(cmd)}\n{out[-2000:]}\n"
                           f"{err[-2000:]}")
    res = json.loads(lines[-1])
    res["worker_wall_s"] = wall
    res["child_maxrss_bytes"] = int(rusage.ru_maxrss) * 1024  # Linux: KiB
    return res


def self_maxrss_bytes() -> int:
    """getrusage(RUSAGE_SELF).ru_maxrss in bytes (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def timed(fn, repeats: int, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of `repeats` calls of fn() after `warmup` calls (fn must block)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def median(xs) -> float:
    return float(statistics.median(xs))


def machine_info() -> dict:
    """CPU model, core count, memory, kernel, load average, versions of the key packages."""
    info = {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "load_avg": list(os.getloadavg()),
            "utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            info["mem_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    from importlib import metadata

    for pkg in ("jax", "jaxlib", "flax", "torch", "depth-anything-3", "grain", "numpy"):
        try:
            info[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return info


def machine_line(info: dict) -> str:
    la = info.get("load_avg", [float("nan")] * 3)
    vers = ", ".join(f"{k} {info[k]}" for k in ("jax", "jaxlib", "flax", "torch",
                                                   "depth-anything-3") if k in info)
    return (f"Machine: {info.get('cpu')}, {info.get('cpus')} CPUs, {info.get('mem_gib')} GiB; "
            f"{vers}; {info.get('utc')} UTC; load average (1/5/15 min) "
            f"{la[0]:.2f} / {la[1]:.2f} / {la[2]:.2f}")


def markdown_table(headers: list[str], rows: list[list]) -> str:
    def fmt(v):
        if isinstance(v, float):
            if v != v:
                return "n/a"
            if abs(v) >= 100:
                return f"{v:.0f}"
            if abs(v) >= 10:
                return f"{v:.1f}"
            return f"{v:.3g}" if abs(v) < 1 else f"{v:.2f}"
        return "n/a" if v is None else str(v)

    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(out)


def matmul_peak_gflops(n: int = 2048, repeats: int = 10) -> dict:
    """Measured f32 matmul throughput of this process: jitted jnp.dot of two n x n matrices.

    Returns {'gflops_median', 'gflops_best', 'seconds'}; 2 n^3 FLOPs per product.
    """
    import jax
    import jax.numpy as jnp

    ka, kb = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.normal(ka, (n, n), jnp.float32)
    b = jax.random.normal(kb, (n, n), jnp.float32)
    f = jax.jit(lambda x, y: jnp.dot(x, y, precision=jax.lax.Precision.HIGHEST))
    f(a, b).block_until_ready()
    times = timed(lambda: f(a, b).block_until_ready(), repeats, warmup=2)
    flops = 2.0 * n**3
    return {"gflops_median": flops / median(times) / 1e9, "gflops_best": flops / min(times) / 1e9,
            "seconds": times}


def emit(result: dict) -> None:
    """Print a worker's result as one JSON line (the parent reads the last one)."""
    print(json.dumps(result), flush=True)


def publish(report: dict, format_table, json_path: str = "") -> dict:
    """Stamp ``machine_after``, print ``format_table(report)`` and optionally write JSON."""
    report["machine_after"] = machine_info()
    print(format_table(report))
    if json_path:
        with open(json_path, "w") as f:
            json.dump(report, f, indent=1)
    return report


def report_header(report: dict, details: str) -> list[str]:
    """Machine line + end-of-run load average + ``details``, as the lines above a table."""
    return [machine_line(report["machine"]),
            f"Load average at the end: {report['machine_after']['load_avg'][0]:.2f} (1 min). "
            + details, ""]
