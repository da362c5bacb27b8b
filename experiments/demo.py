"""``make demo``: the whole teacher -> pseudo-label -> student schedule on CPU in minutes.

``python -m experiments.demo --workdir=runs/demo`` runs, in order:
  1. render the embedded procedural dataset (``data_pipelines.synthetic``) at 56x56 into
     array_record files: ``synthetic_train`` (dense GT), ``reallike_sparse`` (a held-out split
     whose GT is made sensor-like: 95 % of pixels dropped, 2 % noise, 10 % outliers), ``eval``
     (held-out scenes, dense GT);
  2. train the tiny monocular teacher on ``synthetic_train`` (SSI loss, exp depth);
  3. pseudo-label ``reallike_sparse`` (teacher + RANSAC scale/shift to the sparse GT);
  4. train the tiny multi-view student on ``synthetic_train`` + ``pseudo``;
  5. evaluate student and the trivial baseline (constant depth, identity poses) on ``eval``:
     depth delta1 / abs_rel after per-image median scale alignment, pose AUC@3/@30;
  6. write ``metrics.json``, ``report.md``, depth PNGs and a point cloud (``.ply``).
Stages resume from their checkpoints when the command is re-run on the same workdir.
"""

from __future__ import annotations

import json
import os
import time

from absl import app, flags, logging

_WORKDIR = flags.DEFINE_string("workdir", "runs/demo", "Output directory.")
_STEPS = flags.DEFINE_string("steps", "", "Override 'teacher,student' step counts (smoke runs).")

NUM_TRAIN, NUM_REALLIKE, NUM_EVAL, VIEWS, HW = 96, 32, 12, 6, 56
# Camera paths of the demo scenes: 'walk' only (video-clip-like forward/lateral motion). Orbits
# and random hemisphere views (up to 180 deg apart) are beyond a from-scratch model trained for
# a few hundred CPU steps.
TRAJECTORY_PROBS = (0.0, 1.0, 0.0)


def render_data(data_dir: str) -> dict:
    """Renders the three splits (disjoint scene indices) into array_record files."""
    import numpy as np

    from da3_jax.train.pseudo_label import sparsify_depth
    from data_pipelines.sources import write_array_record
    from data_pipelines.synthetic.render import render_scene
    from data_pipelines.synthetic.scenes import SceneConfig

    os.makedirs(data_dir, exist_ok=True)
    rng = np.random.default_rng(0)
    cfg = SceneConfig(trajectory_probs=TRAJECTORY_PROBS)
    splits = {
        "synthetic_train": [render_scene(i, VIEWS, HW, HW, 0, cfg) for i in range(NUM_TRAIN)],
        "reallike_sparse": [
            sparsify_depth(render_scene(i, VIEWS, HW, HW, 1, cfg), rng)
            for i in range(NUM_REALLIKE)
        ],
        "eval": [render_scene(i, 4, HW, HW, 2, cfg) for i in range(NUM_EVAL)],
    }
    paths = {}
    for name, recs in splits.items():
        paths[name] = os.path.join(data_dir, f"{name}.array_record")
        if not os.path.exists(paths[name]):
            write_array_record(recs, paths[name])
    return paths


def stage_config(stage: str, workdir: str, steps: int = 0):
    from experiments.configs import tiny_cpu

    arg = f"stage={stage},data={os.path.join(workdir, 'data')},steps={steps}," \
          f"teacher_workdir={os.path.join(workdir, 'teacher')}"
    return tiny_cpu.get_config(arg)


def write_outputs(workdir: str, config, params, eval_path: str, timings: dict) -> dict:
    """Evaluates student + baseline, writes metrics.json, report.md, PNGs and a .ply."""
    import imageio.v3 as iio
    import jax
    import numpy as np
    import trimesh

    from da3_jax import geometry
    from da3_jax.imagenet import imagenet_normalize
    from da3_jax.train import evaluate
    from da3_jax.train.da3_tasks import build_model
    from data_pipelines.synthetic.render import colorize_depth

    records = evaluate.load_records([eval_path])
    model = build_model(config)
    predict = jax.jit(lambda x: model.apply({"params": params}, x, ref_view_strategy="first"))
    student = evaluate.evaluate_records(predict, records)
    baseline = evaluate.evaluate_baseline(records)
    metrics = {"student": student["mean"], "baseline": baseline["mean"],
               "depth_alignment": "per-image median scale (pred * median(gt) / median(pred))",
               "num_eval_scenes": len(records), "views_per_scene": records[0].num_views,
               "timings_s": timings}
    with open(os.path.join(workdir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)

    png_dir = os.path.join(workdir, "depth_png")
    os.makedirs(png_dir, exist_ok=True)
    pngs = []
    for s in range(min(3, len(records))):
        r, (depth, _) = records[s], student["predictions"][s]
        for v in range(r.num_views):
            ones = np.ones_like(r.valid)
            lo, hi = float(r.depth[r.valid].min()), float(r.depth[r.valid].max())
            scale = np.median(r.depth[v][r.valid[v]]) / np.median(depth[v])
            row = np.concatenate([r.images[v], colorize_depth(r.depth[v], r.valid[v], vmin=lo,
                                  vmax=hi), colorize_depth(depth[v] * scale, ones[v], vmin=lo,
                                  vmax=hi)], axis=1)
            path = os.path.join(png_dir, f"scene{s}_view{v}.png")
            iio.imwrite(path, row)
            pngs.append(path)

    # Point cloud of eval scene 0 from predicted depth + predicted cameras (reference frame).
    r, (depth, w2c) = records[0], student["predictions"][0]
    out = predict(imagenet_normalize(r.images.astype(np.float32) / 255.0)[None])
    k = np.asarray(out["intrinsics"][0])
    pts = np.asarray(geometry.points_from_depth(depth, w2c, k, pixel_center=0.5)).reshape(-1, 3)
    ply = os.path.join(workdir, "pointcloud_scene0.ply")
    trimesh.PointCloud(pts, colors=r.images.reshape(-1, 3)).export(ply)

    s, b = metrics["student"], metrics["baseline"]
    rows = "\n".join(
        f"| {name} | {m['delta1']:.3f} | {m['abs_rel']:.3f} | {m['pose_auc3']:.3f} | "
        f"{m['pose_auc30']:.3f} |" for name, m in (("student", s), ("baseline", b)))
    report = f"""# da3_jax CPU demo

Schedule: tiny monocular teacher (synthetic GT only, SSI loss on exp depth) -> pseudo-labels on
a held-out 'real-like' split whose GT keeps 5 % of the pixels with 2 % noise and 10 % outliers
(RANSAC scale/shift alignment) -> tiny multi-view DA3 student on synthetic GT + pseudo-labels.

Evaluation: {len(records)} held-out synthetic scenes x {records[0].num_views} views, 56x56
('walk' camera paths, like the training scenes).
Depth metrics after per-image **median scale alignment**; pose AUC over all view pairs (official
protocol) on the poses of the camera decoder (`pose_enc`; not the ray-map solver). Baseline:
constant depth and identity poses for every view.

| predictor | delta1 | abs_rel | pose AUC@3 | pose AUC@30 |
|---|---|---|---|---|
{rows}

Timings (s): {json.dumps(timings)}

Files: `metrics.json`, `depth_png/` (RGB | GT | prediction, same colour scale),
`{os.path.basename(ply)}` (predicted depth + predicted cameras, scene 0).
"""
    with open(os.path.join(workdir, "report.md"), "w") as f:
        f.write(report)
    return {"metrics": os.path.join(workdir, "metrics.json"),
            "report": os.path.join(workdir, "report.md"), "pngs": pngs, "ply": ply}


def main(argv):
    logging.set_verbosity(logging.WARNING)  # orbax logs every file it writes at INFO
    del argv
    from experiments.launch import run

    t0 = time.perf_counter()
    workdir = os.path.abspath(_WORKDIR.value)
    steps = [int(x) for x in _STEPS.value.split(",")] if _STEPS.value else [0, 0]
    timings = {}
    paths = render_data(os.path.join(workdir, "data"))
    timings["render"] = time.perf_counter() - t0
    t = time.perf_counter()
    run(stage_config("teacher", workdir, steps[0]), os.path.join(workdir, "teacher"))
    timings["teacher"] = time.perf_counter() - t
    t = time.perf_counter()
    summary = run(stage_config("pseudo_label", workdir), os.path.join(workdir, "pseudo_label"))
    print("pseudo-labels:", json.dumps(summary))
    timings["pseudo_label"] = time.perf_counter() - t
    t = time.perf_counter()
    config = stage_config("student", workdir, steps[1])
    state = run(config, os.path.join(workdir, "student"))
    timings["student"] = time.perf_counter() - t
    t = time.perf_counter()
    from da3_jax.train.loop import final_params

    timings["evaluate"] = 0.0
    out = write_outputs(workdir, config, final_params(state), paths["eval"], timings)
    timings["evaluate"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    with open(out["metrics"]) as f:
        m = json.load(f)
    m["timings_s"] = timings
    with open(out["metrics"], "w") as f:
        json.dump(m, f, indent=2)
    with open(out["report"]) as f:
        lines = [f"Timings (s): {json.dumps({k: round(v, 1) for k, v in timings.items()})}"
                 if x.startswith("Timings (s):") else x for x in f.read().split("\n")]
    with open(out["report"], "w") as f:
        f.write("\n".join(lines))
    print(json.dumps({"student": m["student"], "baseline": m["baseline"]}, indent=2))
    print(f"demo finished in {timings['total']:.0f} s")
    for name in ("metrics", "report", "ply"):
        print(f"{name}: {out[name]}")
    print(f"depth PNGs: {os.path.dirname(out['pngs'][0])} ({len(out['pngs'])} files)")


if __name__ == "__main__":
    app.run(main)
