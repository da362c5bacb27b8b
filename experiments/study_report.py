"""Aggregation of a scaling study (``experiments.study``): table, power-law fits, plots.

For every run with a ``study_run.json`` the learning curve is read from the run's
``tb/train_metrics.jsonl`` (``prefix == 'eval'`` lines; a step logged twice because the run
was killed and resumed keeps its last value). Compute at an eval step ``k`` is
``flops_per_step * k`` (XLA cost analysis of the train step; evaluation is not counted).

Errors (lower is better, what the plots and fits use): ``1 - delta1``, ``abs_rel``,
``1 - pose_auc3``, ``1 - pose_auc30``. Power law: ``err = a * C^b`` fitted by least squares on
``log err`` vs ``log C`` (``fit_power_law``), over a run's curve points from its second eval on
(the first is mostly initialisation); only where there are >= 3 points with distinct compute
and positive error. Outputs: ``<workdir>/study.md`` and ``<workdir>/plots/<axis>.png`` (one
figure per axis with more than one value: 4 panels, metric vs compute on log-log axes, one
colour per knob value, the fitted laws dashed).
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

# (key in the eval metrics, label, error transform)
METRICS = (
    ("delta1", "1 - delta1", lambda v: 1.0 - v),
    ("abs_rel", "AbsRel", lambda v: v),
    ("pose_auc3", "1 - pose AUC@3", lambda v: 1.0 - v),
    ("pose_auc30", "1 - pose AUC@30", lambda v: 1.0 - v),
)
MIN_FIT_POINTS = 3


def fit_power_law(compute, err) -> dict | None:
    """Least-squares fit of ``log err = log a + b log C``; None without enough usable points.

    Returns ``{'a', 'b', 'n', 'r2'}`` (``r2`` of the log-log fit; 1.0 for an exact law); None
    also for a constant error.
    """
    c = np.asarray(compute, np.float64)
    e = np.asarray(err, np.float64)
    ok = np.isfinite(c) & np.isfinite(e) & (c > 0) & (e > 0)
    c, e = c[ok], e[ok]
    if len(np.unique(c)) < MIN_FIT_POINTS:
        return None
    x, y = np.log(c), np.log(e)
    ss = float(np.sum((y - y.mean()) ** 2))
    if ss == 0.0:  # a constant error (e.g. AUC stuck at 0): nothing to fit
        return None
    b, log_a = np.polyfit(x, y, 1)
    resid = y - (log_a + b * x)
    r2 = 1.0 - float(np.sum(resid**2)) / ss
    return {"a": float(math.exp(log_a)), "b": float(b), "n": int(len(c)), "r2": r2}


def read_curve(run_workdir: str) -> list[dict]:
    """Eval points ``[{'step', metrics...}]`` sorted by step, one per step (the last logged)."""
    path = os.path.join(run_workdir, "tb", "train_metrics.jsonl")
    by_step = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                row = json.loads(line)
                if row.get("prefix") == "eval":
                    by_step[int(row["step"])] = row
    return [by_step[s] for s in sorted(by_step)]


def collect(study, workdir: str) -> list[dict]:
    """The study's runs that have a record, each with ``curve`` and ``final`` added."""
    from experiments.study import RUN_FILE, expand, run_dir

    out = []
    for run in expand(study):
        path = os.path.join(run_dir(workdir, run), RUN_FILE)
        if not os.path.exists(path):
            continue
        with open(path) as f:
            rec = json.load(f)
        rec["curve"] = [p for p in read_curve(run_dir(workdir, run)) if p["step"] <= rec["steps"]]
        rec["final"] = rec["curve"][-1] if rec["curve"] else {}
        out.append(rec)
    return out


def _fits(rec: dict) -> dict:
    flops = rec.get("compute", {}).get("flops_per_step", 0.0)
    pts = rec["curve"][1:]
    out = {}
    for key, _, err in METRICS:
        c = [flops * p["step"] for p in pts if key in p]
        e = [err(p[key]) for p in pts if key in p]
        out[key] = fit_power_law(c, e)
    return out


def _fmt(v, spec=".3f"):
    return "-" if v is None else format(v, spec)


def table(records: list[dict], axes: list[str]) -> str:
    head = (axes + ["params (M)", "GFLOP/step", "steps", "train FLOP", "wall (min)",
                    "CPU (min)", "delta1", "AbsRel", "AUC@3", "AUC@30", "status"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        comp, fin = r.get("compute", {}), r["final"]
        flops = comp.get("flops_per_step")
        cells = [str(r["labels"].get(a)) for a in axes] + [
            _fmt(comp.get("num_params", 0) / 1e6, ".2f"),
            _fmt(flops / 1e9 if flops else None, ".2f"),
            str(fin.get("step", 0)),
            _fmt(flops * fin["step"] if flops and fin else None, ".2e"),
            _fmt(r.get("wall_s", 0) / 60, ".1f"),
            _fmt(r.get("cpu_s", 0) / 60, ".1f"),
        ] + [_fmt(fin.get(k)) for k, _, _ in METRICS] + [
            "complete" if r.get("complete") else "partial"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fits_table(records: list[dict]) -> str:
    lines = ["| run | " + " | ".join(f"{label}: b (r2, n)" for _, label, _ in METRICS) + " |",
             "|---|" + "---|" * len(METRICS)]
    for r in records:
        f = _fits(r)
        cells = [("-" if f[k] is None else f"{f[k]['b']:+.3f} ({f[k]['r2']:.2f}, {f[k]['n']})")
                 for k, _, _ in METRICS]
        lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tick_label(y: float, lo: float, hi: float) -> str:
    """Tick text of ``y`` on an axis spanning ``[lo, hi]``: 2 significant digits, more when the
    span is narrow (1 - AUC@3 spans 0.99-1: ``%.2g`` would print every tick as "1")."""
    top = max(abs(lo), abs(hi))
    span = abs(hi - lo)
    digits = 2 if span <= 0 or top <= 0 else max(2, math.ceil(math.log10(top / span)) + 1)
    return f"{y:.{digits}g}"


def plot_axis(records: list[dict], axis: str, path: str) -> None:
    """4 panels (error vs compute, log-log), one colour per value of ``axis``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    values = list(dict.fromkeys(r["labels"][axis] for r in records))
    colours = plt.get_cmap("tab10")
    fig, axs = plt.subplots(1, len(METRICS), figsize=(4.2 * len(METRICS), 3.6))
    for ax, (key, label, err) in zip(axs, METRICS, strict=True):
        for r in records:
            flops = r.get("compute", {}).get("flops_per_step", 0.0)
            pts = [p for p in r["curve"] if key in p and p["step"] > 0]
            if not pts or not flops:
                continue
            col = colours(values.index(r["labels"][axis]) % 10)
            c = np.array([flops * p["step"] for p in pts])
            e = np.array([max(err(p[key]), 1e-4) for p in pts])
            others = ",".join(f"{a}={v}" for a, v in r["labels"].items() if a != axis)
            ax.plot(c, e, "o-", color=col, ms=3, lw=1.2,
                    label=f"{axis}={r['labels'][axis]}" + (f" ({others})" if others else ""))
            fit = _fits(r)[key]
            if fit is not None:
                ax.plot(c, fit["a"] * c ** fit["b"], "--", color=col, lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        fmt = matplotlib.ticker.FuncFormatter(
            lambda y, _, ax=ax: tick_label(y, *ax.get_ylim()))
        ax.yaxis.set_major_formatter(fmt)
        ax.yaxis.set_minor_formatter(fmt)
        ax.tick_params(axis="y", which="minor", labelsize=6)
        ax.set_xlabel("train compute (FLOPs)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axs[0].legend(fontsize=6)
    fig.suptitle(f"held-out error vs compute, by {axis} (dashed: power-law fit)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def aggregate(study, workdir: str) -> dict:
    """Writes ``study.md`` and the plots; returns ``{'table_path', 'plots', 'records'}``."""
    records = collect(study, workdir)
    axes = list(dict(study.axes))
    plot_dir = os.path.join(workdir, "plots")
    os.makedirs(plot_dir, exist_ok=True)
    plots = []
    for axis in axes:
        if len({r["labels"][axis] for r in records}) > 1:
            plots.append(os.path.join(plot_dir, f"{axis}.png"))
            plot_axis(records, axis, plots[-1])
    text = [f"# Study `{study.get('name', 'study')}`", "",
            f"{len(records)} run(s) in `{workdir}/runs`. Held-out metrics at the last eval "
            "step; compute = XLA cost-analysis FLOPs of one train step x steps.", "",
            table(records, axes), "",
            "Power-law fits of each run's learning curve, err = a C^b (from the 2nd eval on):",
            "", fits_table(records), ""]
    text += [f"![{os.path.basename(p)}](plots/{os.path.basename(p)})" for p in plots]
    table_path = os.path.join(workdir, "study.md")
    with open(table_path, "w") as f:
        f.write("\n".join(text) + "\n")
    return {"table_path": table_path, "plots": plots, "records": records}
