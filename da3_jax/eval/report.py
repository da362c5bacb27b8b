"""Benchmark reports: aggregate JSON, markdown tables laid out like the paper, matplotlib plots.

Files under `<out>/<dataset>/`:
* `metrics.json`: `{mode: {scene: {metric: value}, 'mean': {metric: mean over scenes}}}`
  (the official evaluator's `<data>_<mode>.json` content, one file for all modes);
* `results.md`: the paper-style summary row (pose AUC@3 / AUC@30; reconstruction F-score
  unposed / posed, with Acc / Comp / Overall) and per-scene tables;
* `plots/pose_error_cdf.png` (fraction of pairs below each error, per scene and pooled) and
  `plots/per_scene_<mode>.png` (per-scene bars).
`write_summary(out)` builds `<out>/summary.md` across every dataset found, in the paper's
table layout (datasets as columns, average over the official dataset lists).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence

import numpy as np

from da3_jax.eval import protocols

_HEADLINE = {
    "pose": ("auc03", "auc30"),
    "recon_unposed": ("fscore", "acc", "comp", "overall"),
    "recon_posed": ("fscore", "acc", "comp", "overall"),
    "mono": ("abs_rel", "delta1"),
    "nvs": ("psnr", "ssim"),
}
_DISPLAY = {"hiroom": "HiRoom", "eth3d": "ETH3D", "dtu64": "DTU-64", "7scenes": "7Scenes",
            "scannetpp": "ScanNet++"}


def aggregate(per_scene: Mapping[str, Mapping], modes: Sequence[str]) -> dict:
    """`{mode: {scene: metrics, 'mean': means}}` from per-scene results (`runner` JSON).

    A mean covers the metrics every scene of the mode has (e.g. no `lpips` mean when a resumed
    run mixes scenes scored with and without LPIPS weights: a mean over a subset would mislead).
    """
    out = {}
    for mode in modes:
        rows = {s: r["metrics"][mode] for s, r in per_scene.items() if mode in r.get("metrics", {})}
        if not rows:
            continue
        keys = [k for k in next(iter(rows.values())) if all(k in r for r in rows.values())]
        mean = {k: float(np.mean([r[k] for r in rows.values()])) for k in keys}
        out[mode] = {**rows, "mean": mean}
    return out


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4f}"


def markdown(dataset: str, agg: Mapping[str, Mapping]) -> str:
    """Markdown for one dataset: paper-style headline row, then per-scene tables."""
    name = _DISPLAY.get(dataset, dataset)
    lines = [f"# {name}", ""]
    head = []
    if "pose" in agg:
        head += [("AUC@3 ↑", agg["pose"]["mean"].get("auc03")),
                 ("AUC@30 ↑", agg["pose"]["mean"].get("auc30"))]
    for mode, label in (("recon_unposed", "unposed"), ("recon_posed", "posed")):
        if mode in agg:
            m = agg[mode]["mean"]
            head += [(f"F-score {label} ↑", m.get("fscore")), (f"Overall {label} ↓",
                                                              m.get("overall"))]
    if "mono" in agg:
        head += [("AbsRel ↓", agg["mono"]["mean"].get("abs_rel")),
                 ("δ1 ↑", agg["mono"]["mean"].get("delta1"))]
    if head:
        lines += ["| Method | " + " | ".join(h for h, _ in head) + " |",
                  "|---|" + "---:|" * len(head),
                  "| da3_jax | " + " | ".join(_fmt(v) for _, v in head) + " |", ""]
    for mode, table in agg.items():
        cols = list(table["mean"].keys())
        lines += [f"## {mode}", "", "| scene | " + " | ".join(cols) + " |",
                  "|---|" + "---:|" * len(cols)]
        for scene, row in table.items():
            label = f"**{scene}**" if scene == "mean" else scene
            lines.append(f"| {label} | " + " | ".join(_fmt(row.get(c)) for c in cols) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(out_dir: str, dataset: str, per_scene: Mapping[str, Mapping], agg: Mapping) -> list:
    """Pose-error CDF and per-scene bar charts; returns the written paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pdir = os.path.join(out_dir, dataset, "plots")
    os.makedirs(pdir, exist_ok=True)
    written = []
    errs = {s: np.asarray(r["errors"]["pose_errors"]["pair_err"])
            for s, r in per_scene.items() if "pose_errors" in r.get("errors", {})}
    if errs:
        t = np.linspace(0, 30, 301)
        fig, ax = plt.subplots(figsize=(6, 4))
        for s, e in errs.items():
            ax.plot(t, [(e < x).mean() for x in t], lw=0.8, alpha=0.6, label=s)
        pooled = np.concatenate(list(errs.values()))
        ax.plot(t, [(pooled < x).mean() for x in t], "k", lw=2, label="all pairs")
        ax.set(xlabel="pair error max(rot, trans) [deg]", ylabel="fraction of pairs",
               title=f"{_DISPLAY.get(dataset, dataset)}: pose error CDF", ylim=(0, 1.02))
        if len(errs) <= 12:
            ax.legend(fontsize=6)
        fig.tight_layout()
        path = os.path.join(pdir, "pose_error_cdf.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    for mode, table in agg.items():
        keys = [k for k in _HEADLINE.get(mode, ()) if k in table["mean"]][:2]
        scenes = [s for s in table if s != "mean"]
        if not keys or not scenes:
            continue
        fig, ax = plt.subplots(figsize=(max(4, 0.5 * len(scenes) + 2), 3.5))
        x = np.arange(len(scenes))
        for i, k in enumerate(keys):
            ax.bar(x + (i - 0.5 * (len(keys) - 1)) * 0.4, [table[s][k] for s in scenes], 0.4,
                   label=k)
        ax.set_xticks(x, scenes, rotation=60, ha="right", fontsize=7)
        ax.set(title=f"{_DISPLAY.get(dataset, dataset)}: {mode} per scene")
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = os.path.join(pdir, f"per_scene_{mode}.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def write_reports(out_dir: str, dataset: str, per_scene: Mapping[str, Mapping],
                  modes: Sequence[str], plots: bool = True) -> dict:
    """Write metrics.json, results.md (and plots) for one dataset; refresh summary.md."""
    agg = aggregate(per_scene, modes)
    ddir = os.path.join(out_dir, dataset)
    os.makedirs(ddir, exist_ok=True)
    with open(os.path.join(ddir, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(agg, f, indent=2)
    with open(os.path.join(ddir, "results.md"), "w", encoding="utf-8") as f:
        f.write(markdown(dataset, agg))
    if plots:
        plot(out_dir, dataset, per_scene, agg)
    write_summary(out_dir)
    return agg


def write_summary(out_dir: str) -> str:
    """`<out>/summary.md`: paper layout over every `<out>/<dataset>/metrics.json` found."""
    found = {}
    for name in sorted(os.listdir(out_dir)):
        path = os.path.join(out_dir, name, "metrics.json")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                found[name] = json.load(f)
    order = [d for d in protocols.POSE_AVERAGE if d in found] + sorted(
        d for d in found if d not in protocols.POSE_AVERAGE)
    lines = ["# Visual Geometry Benchmark summary", ""]
    pose = [d for d in order if "pose" in found[d]]
    if pose:
        hdr = " | ".join(f"{_DISPLAY.get(d, d)} AUC@3 | AUC@30" for d in pose)
        lines += ["## Pose accuracy", "", f"| Method | {hdr} | Avg AUC@3 | Avg AUC@30 |",
                  "|---|" + "---:|" * (2 * len(pose) + 2)]
        vals = [(found[d]["pose"]["mean"]["auc03"], found[d]["pose"]["mean"]["auc30"])
                for d in pose]
        avg_set = [v for d, v in zip(pose, vals, strict=True) if d in protocols.POSE_AVERAGE]
        avg = (np.mean([a for a, _ in avg_set]), np.mean([b for _, b in avg_set])) \
            if len(avg_set) == len(protocols.POSE_AVERAGE) else (None, None)
        cells = " | ".join(f"{_fmt(a)} | {_fmt(b)}" for a, b in vals)
        lines.append(f"| da3_jax | {cells} | {_fmt(avg[0])} | {_fmt(avg[1])} |")
        ref = [protocols.REFERENCE_POSE_AUC.get(d) for d in pose]
        if any(r is not None for r in ref):
            cells = " | ".join("- | -" if r is None else f"{r[0]:.4f} | {r[1]:.4f}" for r in ref)
            lines.append(f"| DA3-Giant (official) | {cells} | 0.6705 | 0.9436 |")
        lines += ["", "Average only over the full official list "
                  f"({', '.join(protocols.POSE_AVERAGE)}); '-' when incomplete.", ""]
    rec = [d for d in order if "recon_unposed" in found[d] or "recon_posed" in found[d]]
    if rec:
        hdr = " | ".join(f"{_DISPLAY.get(d, d)} F1 unposed | F1 posed" for d in rec)
        lines += ["## Reconstruction F-score", "", f"| Method | {hdr} |",
                  "|---|" + "---:|" * (2 * len(rec))]
        cells = " | ".join(
            f"{_fmt(found[d].get('recon_unposed', {}).get('mean', {}).get('fscore'))} | "
            f"{_fmt(found[d].get('recon_posed', {}).get('mean', {}).get('fscore'))}"
            for d in rec)
        lines += [f"| da3_jax | {cells} |", ""]
    text = "\n".join(lines)
    with open(os.path.join(out_dir, "summary.md"), "w", encoding="utf-8") as f:
        f.write(text)
    return text
