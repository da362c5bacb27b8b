"""Where the train-step time goes: jax.profiler trace of the da3_jax student step, by part.

    python -m benchmarks.profile_train [--model da3-small] [--size 280x280] [--views 4]
        [--steps 2] [--xla default,head] [--threads 2] [--json out.json]

The step is `benchmarks.train_step`'s (student loss, the project's AdamW, one pipeline batch),
AOT-compiled once per `--xla` variant (`da3_jax.parallel.xla_options` option sets: 'default' =
XLA's, 'backbone' / 'head' = that stage's CPU options applied to the whole step, 'train' = the
set `make_train_step` uses). `--steps` steps run under `jax.profiler.trace`; every XLA:CPU
thunk event (stat `hlo_op`) is mapped to its HLO instruction in the compiled module, and from
the instruction's `op_name` metadata to
  * the pass: 'backward' (`transpose(` in the name), 'optimizer' (no `jvp(`: the update, clip,
    guard), else 'forward';
  * the part: 'attention' (inside the attention kernel's maps / softmax), 'backbone', 'head',
    'cameras' (cam_dec / cam_enc), 'loss+targets' (the rest of the forward pass);
  * the kind: 'conv' (convolution instructions or fusions around one), 'dot', 'other'.
Times are summed thunk durations per step (thunks of the two threads can overlap, so the shares
are of the summed time, not of the wall time, which is printed beside).
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import re
import sys
import tempfile
import time

from benchmarks import _common

_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*\S+\s+([\w\-]+)\(")
_OPNAME = re.compile(r'op_name="([^"]*)"')


def hlo_index(text: str) -> dict[str, tuple[str, str, str]]:
    """Instruction name -> (opcode, op_name, called computations' text marker) of a compiled
    module's text; fusions are tagged 'conv' / 'dot' when their body holds one."""
    comps: dict[str, str] = {}
    current, lines = None, []
    for line in text.splitlines():
        m = re.match(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$", line)
        if m and not line.startswith(" "):
            current, lines = m.group(1), []
            continue
        if line.startswith("}") and current:
            comps[current] = "\n".join(lines)
            current = None
            continue
        if current:
            lines.append(line)
    index = {}
    for body in comps.values():
        for line in body.splitlines():
            m = _INSTR.match(line)
            if not m:
                continue
            name, opcode = m.groups()
            op = _OPNAME.search(line)
            kind = opcode
            called = re.search(r"calls=%?([\w.\-]+)", line)
            if called and called.group(1) in comps:
                inner = comps[called.group(1)]
                kind = ("convolution" if " convolution(" in inner else
                        "dot" if " dot(" in inner else opcode)
            index[name] = (kind, op.group(1) if op else "", opcode)
    return index


def classify(kind: str, op_name: str) -> tuple[str, str, str]:
    """(pass, part, kind) of one instruction (module doc)."""
    if "transpose(" in op_name:
        phase = "backward"
    elif "jvp(" in op_name:
        phase = "forward"
    else:
        phase = "optimizer"
    if phase == "optimizer":
        part = "update"
    elif "attention" in op_name or "one_block" in op_name or "one_head" in op_name:
        part = "attention"
    elif "/backbone/" in op_name or "backbone" in op_name.split("/")[:4]:
        part = "backbone"
    elif "/head/" in op_name:
        part = "head"
    elif "cam_dec" in op_name or "cam_enc" in op_name:
        part = "cameras"
    else:
        part = "loss+targets"
    k = "conv" if kind == "convolution" else "dot" if kind == "dot" else "other"
    return phase, part, k


def profile_variant(model: str, batch_np: dict, variant: str, steps: int) -> dict:
    import jax
    import jax.numpy as jnp
    from jax.profiler import ProfileData

    from benchmarks.train_step import _config
    from da3_jax.parallel import xla_options
    from da3_jax.train import da3_tasks
    from da3_jax.train.optim import make_optimizer
    from da3_jax.train.state import create_state
    from da3_jax.train.step import make_train_step

    config = _config(model)
    task = da3_tasks.student_task(config)
    batch = {k: jnp.asarray(v) for k, v in batch_np.items()}
    params = jax.jit(task.init_params)(jax.random.PRNGKey(0), batch)
    tx, schedule = make_optimizer(config.optim, params)
    state = create_state(params, tx, jax.random.PRNGKey(1))
    options = {} if variant == "default" else xla_options.compiler_options(variant) or {}
    step = make_train_step(task.loss_fn, tx, schedule)
    lowered = step.lower(state, batch)
    compiled = lowered.compile(compiler_options=options) if variant != "train" else (
        lowered.compile())
    index = hlo_index(compiled.as_text())
    if os.environ.get("DA3_PROFILE_DUMP_HLO"):
        with open(os.environ["DA3_PROFILE_DUMP_HLO"] + f".{variant}.txt", "w") as f:
            f.write(compiled.as_text())
    state, m = compiled(state, batch)
    jax.block_until_ready(m["loss"])
    tmp = tempfile.mkdtemp(prefix="da3_profile_")
    walls, cpus = [], []
    with jax.profiler.trace(tmp):
        for _ in range(steps):
            t0, c0 = time.perf_counter(), time.process_time()
            state, m = compiled(state, batch)
            jax.block_until_ready(m["loss"])
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
    (pb,) = glob.glob(os.path.join(tmp, "**", "*.xplane.pb"), recursive=True)
    sums: dict = collections.Counter()
    per_instr: dict = collections.Counter()
    unmatched = 0.0
    for plane in ProfileData.from_file(pb).planes:
        for line in plane.lines:
            for ev in line.events:
                stats = dict(ev.stats)
                op = stats.get("hlo_op")
                if not op:
                    continue
                if op not in index:
                    unmatched += ev.duration_ns
                    continue
                kind, op_name, _ = index[op]
                if kind == "while":  # its body's thunks are events of their own
                    continue
                sums["/".join(classify(kind, op_name))] += ev.duration_ns
                per_instr[(op, "/".join(classify(kind, op_name)), op_name[-90:])] += ev.duration_ns
    total = sum(sums.values()) + unmatched
    return {"variant": variant, "options": options, "wall_s": walls, "cpu_s": cpus,
            "per_step_ms": {k: v / 1e6 / steps for k, v in sorted(sums.items())},
            "unmatched_ms": unmatched / 1e6 / steps, "summed_ms": total / 1e6 / steps,
            "top": [[*k, v / 1e6 / steps] for k, v in per_instr.most_common(25)]}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="da3-small")
    ap.add_argument("--size", default="280x280", help="WxH")
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--xla", default="default", help="comma list: default, backbone, head, train")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--json", default="")
    a = ap.parse_args(argv)
    w, h = (int(v) for v in a.size.lower().split("x"))
    _common.pin_threads(a.threads)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    from benchmarks.train_step import pipeline_batch

    info = _common.machine_info()
    batch_np = pipeline_batch(1, a.views, (h, w))
    rows = []
    for variant in a.xla.split(","):
        r = profile_variant(a.model, batch_np, variant, a.steps)
        print(f"# {json.dumps(r)}", file=sys.stderr, flush=True)
        rows.append(r)
    report = {"machine": info, "model": a.model, "hw": [h, w], "views": a.views, "rows": rows}
    return _common.publish(report, format_table, a.json)


def format_table(report: dict) -> str:
    keys = sorted({k for r in report["rows"] for k in r["per_step_ms"]})
    headers = ["pass/part/kind"] + [f"{r['variant']} ms" for r in report["rows"]]
    rows = [[k] + [r["per_step_ms"].get(k, 0.0) for r in report["rows"]] for k in keys]
    rows.append(["(unmatched)"] + [r["unmatched_ms"] for r in report["rows"]])
    rows.append(["summed thunk time"] + [r["summed_ms"] for r in report["rows"]])
    rows.append(["step wall s (median)"] + [_common.median(r["wall_s"]) for r in report["rows"]])
    rows.append(["step CPU s (median)"] + [_common.median(r["cpu_s"]) for r in report["rows"]])
    return "\n".join(_common.report_header(
        report, f"{report['model']}, 1x{report['views']}x{report['hw'][0]}x{report['hw'][1]}, "
        "fp32; per-step summed XLA:CPU thunk time by pass / part / kind.")
        + [_common.markdown_table(headers, rows)])


if __name__ == "__main__":
    main()
