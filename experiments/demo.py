"""``make demo``: the whole teacher -> pseudo-label -> student schedule on CPU in minutes.

``python -m experiments.demo --workdir=runs/demo`` runs, in order:
  1. render two held-out splits of the embedded procedural dataset (``data_pipelines.synthetic``)
     at 56x56 into array_record files: ``reallike_sparse`` (GT made sensor-like: 95 % of pixels
     dropped, 2 % noise, 10 % outliers) and ``eval`` (48 scenes x 4 views, dense GT). Training
     scenes are rendered on the fly (``tiny_cpu.synthetic_data``: unlimited, never repeated);
  2. train the tiny monocular teacher on on-the-fly scenes (SSI loss, exp depth);
  3. pseudo-label ``reallike_sparse`` (teacher + RANSAC scale/shift to the sparse GT; valid on
     the sensor's surface support only);
  4. train the tiny multi-view student on on-the-fly scenes + ``pseudo`` (recipe:
     ``experiments/configs/tiny_cpu.py``), scoring ``eval`` every ``EVAL_EVERY`` steps;
  5. evaluate the student (camera decoder and ray-map pose), the trivial baseline (constant
     depth, identity poses) and the chance baseline (true rotations, random translation
     directions) on ``eval``: delta1 / abs_rel after per-image median scale alignment, pose
     AUC@3/@30;
  6. write ``metrics.json``, ``report.md`` (with ``learning_curves.png``), depth PNGs and a point
     cloud (``.ply``);
  7. the NVS stage (``experiments.demo_nvs``, ``--nvs_steps``, 0 skips it): a fresh GS-DPT
     head trained on top of the frozen student, scored on the held-out scenes' last views
     against the reprojection baseline: ``metrics.json["nvs"]``, ``nvs_views.png``.
Stages resume from their checkpoints when the command is re-run on the same workdir.
"""

from __future__ import annotations

import json
import os
import time

from absl import app, flags, logging

from experiments.demo_nvs import NVS_STEPS

_WORKDIR = flags.DEFINE_string("workdir", "runs/demo", "Output directory.")
_STEPS = flags.DEFINE_string("steps", "", "Override 'teacher,student' step counts (smoke runs).")
_SEED = flags.DEFINE_integer("seed", 0, "Training seed of teacher and student (init, data order, "
                             "on-the-fly scene seed); the held-out splits stay fixed.")
_NVS_STEPS = flags.DEFINE_integer("nvs_steps", NVS_STEPS, "Steps of the NVS stage (0: skip "
                                  "it).")

NUM_REALLIKE, NUM_EVAL, VIEWS, EVAL_VIEWS = 32, 48, 6, 4
EVAL_EVERY = 200


def render_data(data_dir: str) -> dict:
    """Renders the held-out splits (seeds 1 and 2; training scenes use seed 0) into files."""
    import numpy as np

    from da3_jax.train.pseudo_label import sparsify_depth
    from data_pipelines.record import write_array_record
    from data_pipelines.synthetic.render import render_scene
    from data_pipelines.synthetic.scenes import SceneConfig
    from experiments.configs.tiny_cpu import HW, TRAJECTORY_PROBS

    os.makedirs(data_dir, exist_ok=True)
    rng = np.random.default_rng(0)
    cfg = SceneConfig(trajectory_probs=TRAJECTORY_PROBS)
    splits = {
        "reallike_sparse": lambda: [
            sparsify_depth(render_scene(i, VIEWS, HW, HW, 1, cfg), rng)
            for i in range(NUM_REALLIKE)
        ],
        "eval": lambda: [render_scene(i, EVAL_VIEWS, HW, HW, 2, cfg) for i in range(NUM_EVAL)],
    }
    paths = {}
    for name, recs in splits.items():
        paths[name] = os.path.join(data_dir, f"{name}.array_record")
        if not os.path.exists(paths[name]):
            write_array_record(recs(), paths[name])
    return paths


def stage_config(stage: str, workdir: str, steps: int = 0, seed: int = 0):
    from experiments.configs import tiny_cpu

    arg = f"stage={stage},data={os.path.join(workdir, 'data')},steps={steps},seed={seed}," \
          f"teacher_workdir={os.path.join(workdir, 'teacher')}"
    if stage == "student":
        arg += f",eval_every={min(EVAL_EVERY, steps or tiny_cpu.STUDENT_STEPS)}"
    return tiny_cpu.get_config(arg)


def plot_curves(student_dir: str, path: str) -> str:
    """Learning curves of the student (``<student_dir>/tb/train_metrics.jsonl``) as a PNG:
    training loss terms, and held-out delta1 / pose AUC@30 (camera decoder, ray map)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train, ev = [], []
    with open(os.path.join(student_dir, "tb", "train_metrics.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            (ev if row["prefix"] == "eval" else train).append(row)
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.6))
    for key in ("loss", "loss_depth", "loss_camera", "loss_ray"):
        ax0.plot([r["step"] for r in train], [r[key] for r in train], label=key)
    ax0.set(xlabel="step", ylabel="training loss (batch)", title="student training losses")
    ax0.legend(fontsize=8)
    for key, label in (("delta1", "delta1"), ("pose_auc30", "pose AUC@30 (camera decoder)"),
                       ("ray_pose_auc30", "pose AUC@30 (ray map)"), ("pose_auc3", "pose AUC@3")):
        ax1.plot([r["step"] for r in ev], [r[key] for r in ev], "o-", label=label)
    ax1.set(xlabel="step", ylabel="held-out metric", title=f"held-out ({NUM_EVAL} scenes)",
            ylim=(0, 1))
    ax1.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


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
    chance = evaluate.evaluate_chance(records, draws=64)
    metrics = {"student": student["mean"], "baseline": baseline["mean"],
               "chance": dict(chance["mean"], draws=chance["draws"],
                              pose_auc30_p05=chance["p05"], pose_auc30_p95=chance["p95"]),
               "depth_alignment": "per-image median scale (pred * median(gt) / median(pred))",
               "pose_sources": {"pose_*": "camera decoder (pose_enc)",
                                "ray_pose_*": "ray map + ray_conf (use_ray_pose solver)"},
               "student_p05_p95": {k: evaluate.bootstrap_interval(student["per_scene"], k)
                                   for k in ("delta1", "pose_auc30", "ray_pose_auc30")},
               "num_eval_scenes": len(records), "views_per_scene": records[0].num_views,
               "timings_s": timings}
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
    # The camera decoder's fov passes a ReLU (official architecture): check it did not die.
    fov = np.concatenate([np.asarray(predict(imagenet_normalize(
        x.images.astype(np.float32) / 255.0)[None])["pose_enc"][0, :, 7:9]) for x in records[:8]])
    metrics["fov_relu_alive_frac"] = float((fov > 0).mean())
    pts = np.asarray(geometry.points_from_depth(depth, w2c, k, pixel_center=0.5)).reshape(-1, 3)
    ply = os.path.join(workdir, "pointcloud_scene0.ply")
    trimesh.PointCloud(pts, colors=r.images.reshape(-1, 3)).export(ply)

    with open(os.path.join(workdir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    curves = plot_curves(os.path.join(workdir, "student"), os.path.join(workdir,
                                                                         "learning_curves.png"))
    s, b, c = metrics["student"], metrics["baseline"], metrics["chance"]
    ci = {k: f"{s[k]:.3f} ({lo:.3f}-{hi:.3f})" for k, (lo, hi) in
          metrics["student_p05_p95"].items()}
    rows = "\n".join([
        f"| student, camera decoder | {ci['delta1']} | {s['abs_rel']:.3f} | "
        f"{s['pose_auc3']:.3f} | {ci['pose_auc30']} |",
        f"| student, ray map (`use_ray_pose`) | same | same | {s['ray_pose_auc3']:.3f} | "
        f"{ci['ray_pose_auc30']} |",
        f"| baseline (constant depth, identity poses) | {b['delta1']:.3f} | {b['abs_rel']:.3f} | "
        f"{b['pose_auc3']:.3f} | {b['pose_auc30']:.3f} |",
        f"| chance (true rotations, random translation directions; {c['draws']} draws) | - | - | "
        f"{c['pose_auc3']:.3f} | {c['pose_auc30']:.3f} (5-95 %: {c['pose_auc30_p05']:.3f}-"
        f"{c['pose_auc30_p95']:.3f}) |",
    ])
    report = f"""# da3_jax CPU demo

Schedule: tiny monocular teacher (on-the-fly synthetic scenes, SSI loss on exp depth) ->
pseudo-labels on a held-out 'real-like' split whose GT keeps 5 % of the pixels with 2 % noise and
10 % outliers (RANSAC scale/shift alignment; valid on the sensor's surface support only) -> tiny
multi-view DA3 student on unlimited on-the-fly synthetic scenes + pseudo-labels, known cameras
for a quarter of the samples (recipe: `experiments/configs/tiny_cpu.py`).

Evaluation: {len(records)} held-out synthetic scenes x {records[0].num_views} views, 56x56
('walk' camera paths, like the training scenes). Depth metrics after per-image **median scale
alignment**; pose AUC over all view pairs (official protocol: max of rotation and
translation-direction error) on the poses of the camera decoder (`pose_enc`) and of the ray-map
solver (`use_ray_pose`). Student values in brackets: 5-95 % bootstrap interval over the held-out
scenes.

| predictor | delta1 | abs_rel | pose AUC@3 | pose AUC@30 |
|---|---|---|---|---|
{rows}

![learning curves]({os.path.basename(curves)})

Timings (s): {json.dumps(timings)}

Files: `metrics.json`, `{os.path.basename(curves)}`, `depth_png/` (RGB | GT | prediction, same
colour scale), `{os.path.basename(ply)}` (predicted depth + predicted cameras, scene 0).
"""
    with open(os.path.join(workdir, "report.md"), "w") as f:
        f.write(report)
    return {"metrics": os.path.join(workdir, "metrics.json"),
            "report": os.path.join(workdir, "report.md"), "pngs": pngs, "ply": ply,
            "curves": curves}


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
    run(stage_config("teacher", workdir, steps[0], _SEED.value), os.path.join(workdir, "teacher"))
    timings["teacher"] = time.perf_counter() - t
    t = time.perf_counter()
    summary = run(stage_config("pseudo_label", workdir, seed=_SEED.value),
                  os.path.join(workdir, "pseudo_label"))
    print("pseudo-labels:", json.dumps(summary))
    timings["pseudo_label"] = time.perf_counter() - t
    t = time.perf_counter()
    config = stage_config("student", workdir, steps[1], _SEED.value)
    state = run(config, os.path.join(workdir, "student"))
    timings["student"] = time.perf_counter() - t
    t = time.perf_counter()
    from da3_jax.train.loop import final_params

    timings["evaluate"] = 0.0
    out = write_outputs(workdir, config, final_params(state), paths["eval"], timings)
    timings["evaluate"] = time.perf_counter() - t
    nvs = None
    if _NVS_STEPS.value > 0:
        from experiments import demo_nvs

        t = time.perf_counter()
        nvs, figure = demo_nvs.run_stage(workdir, config, final_params(state), paths["eval"],
                                         _NVS_STEPS.value)
        timings["nvs"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    timings["process_cpu_total"] = time.process_time()  # all threads of this process
    with open(out["metrics"]) as f:
        m = json.load(f)
    m["timings_s"] = timings
    if nvs is not None:
        m["nvs"] = nvs
    with open(out["metrics"], "w") as f:
        json.dump(m, f, indent=2)
    with open(out["report"]) as f:
        lines = [f"Timings (s): {json.dumps({k: round(v, 1) for k, v in timings.items()})}"
                 if x.startswith("Timings (s):") else x for x in f.read().split("\n")]
    if nvs is not None:
        lines.append(demo_nvs.report_section(nvs, figure))
    with open(out["report"], "w") as f:
        f.write("\n".join(lines))
    print(json.dumps({k: m[k] for k in ("student", "baseline", "chance")}, indent=2))
    print(f"demo finished in {timings['total']:.0f} s")
    for name in ("metrics", "report", "curves", "ply"):
        print(f"{name}: {out[name]}")
    print(f"depth PNGs: {os.path.dirname(out['pngs'][0])} ({len(out['pngs'])} files)")
    if nvs is not None:
        print("nvs:", json.dumps({k: nvs[k] for k in ("psnr", "ssim", "baseline_psnr")}))
        print(f"nvs figure: {figure}")


if __name__ == "__main__":
    app.run(main)
