"""Benchmark runner: scenes from a benchmark reader -> predictor -> metrics -> JSON per scene.

A **predictor** is any callable `predict(record, kind) -> {'depth' [N, h, w], 'extrinsics'
[N, 3, 4] w2c, 'intrinsics' [N, 3, 3] (for h x w)}` where `record` is a
`data_pipelines.record.SceneRecord` and `kind` is

* 'unposed': images only (used by the `pose` and `recon_unposed` modes),
* 'posed': images plus the record's GT cameras as conditioning (`recon_posed`),
* 'mono': per-view depth (`mono`; only 'depth' is required).
* 'gs': the `nvs` mode's context views only; returns `gaussians` (adapter dict) and the
  predicted context `extrinsics` (`da3_jax.eval.nvs`).

Predictions may be at another resolution than the record (e.g. 504 px processing); depth is
resized back with nearest neighbour and K rescaled, as the official benchmark does.

`evaluate_scene` computes every requested mode for one record; `run_benchmark` loops over the
scenes of a dataset with a progress bar, writes `<out>/<dataset>/scenes/<scene>.json` (skipping
scenes whose JSON already has all requested modes: resumable), then the aggregate JSON,
markdown table and plots (`da3_jax.eval.report`). Scenes are loaded by the benchmark reader
with the official sampling (<= `max_frames` views, seed 42, reference view 'first').
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from da3_jax.eval import metrics, protocols, recon

MODES = ("pose", "recon_unposed", "recon_posed", "mono", "nvs")
_KIND_OF_MODE = {"pose": "unposed", "recon_unposed": "unposed", "recon_posed": "posed",
                 "mono": "mono", "nvs": "gs"}

Predictor = Callable[[object, str], Mapping[str, np.ndarray]]


def check_modes(modes: Sequence[str] | str) -> tuple[str, ...]:
    """Parse 'pose,recon_unposed' or a sequence; ValueError naming unknown modes."""
    if isinstance(modes, str):
        modes = [m.strip() for m in modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ValueError(f"modes: expected a non-empty subset of {MODES}, got {list(modes)}")
    return tuple(dict.fromkeys(modes))


def _check_prediction(pred: Mapping, n: int, kind: str) -> dict:
    """Validated float64 prediction; for 'mono' only `depth` is required."""
    if "depth" not in pred:
        raise ValueError(f"prediction ({kind}): missing key 'depth'")
    depth = np.asarray(pred["depth"], np.float64)
    if depth.ndim != 3 or depth.shape[0] != n:
        raise ValueError(f"prediction ({kind}): depth must be [{n}, h, w], got {depth.shape}")
    out = {"depth": depth}
    for key in ("extrinsics", "intrinsics"):
        if pred.get(key) is None:
            if kind == "mono":
                continue
            raise ValueError(f"prediction ({kind}): missing key '{key}'")
        out[key] = np.asarray(pred[key], np.float64)
    if "extrinsics" in out:
        ext = out["extrinsics"]
        if ext.ndim != 3 or ext.shape[0] != n or ext.shape[-2:] not in ((3, 4), (4, 4)):
            raise ValueError(f"prediction ({kind}): extrinsics must be [{n}, 3, 4], "
                             f"got {ext.shape}")
        out["extrinsics"] = ext[:, :3, :4]
    if "intrinsics" in out and out["intrinsics"].shape != (n, 3, 3):
        raise ValueError(f"prediction ({kind}): intrinsics must be [{n}, 3, 3], "
                         f"got {out['intrinsics'].shape}")
    return out


def _float_dict(d: Mapping) -> dict:
    return {k: float(v) for k, v in d.items() if np.ndim(v) == 0}


def evaluate_predictions(pred: Mapping, gt: Mapping, depth_align: str = "median",
                         thresholds: Sequence[int] = (3, 30)) -> dict:
    """Depth and pose metrics of one multi-view prediction (used by the training demo).

    Args:
      pred: 'depth' `[N, H, W]` and 'extrinsics' `[N, 3|4, 4]` (w2c); depth at GT resolution.
      gt: 'depth' `[N, H, W]` (0 = invalid), 'extrinsics' `[N, 3|4, 4]`, optional 'valid'.
        A `SceneRecord` can be passed as `dataclasses.asdict(record)` or `record.to_example()`.
      depth_align: alignment for the depth metrics ('none' | 'median' | 'scale_shift').
      thresholds: pose AUC thresholds in degrees.

    Returns:
      flat dict of floats: `abs_rel`, `sq_rel`, `rmse`, `log_rmse`, `delta1..3`, and
      `auc03`, `auc30`, ... (`metrics.auc_key`); pose keys are absent when N < 2.
    """
    out = metrics.depth_metrics(pred["depth"], gt["depth"], gt.get("valid"), align=depth_align)
    out.pop("num_images")
    if np.shape(pred["extrinsics"])[0] >= 2:
        pose = metrics.pose_auc(pred["extrinsics"], gt["extrinsics"], thresholds=thresholds)
        out.update(_float_dict(pose))
    return out


def evaluate_scene(record, predict: Predictor, modes: Sequence[str], fusion: str = "points",
                   depth_align: str = "median", gt_cloud: str = "auto", lpips=None) -> dict:
    """All requested modes for one `SceneRecord`.

    `lpips`: optional LPIPS for the `nvs` mode (`eval.lpips.LpipsMetric`); its per-target
    values go, with PSNR and SSIM, under 'nvs_per_target'.

    `gt_cloud`: reconstruction reference. 'auto' = the benchmark's GT point cloud / mesh named
    in `record.provenance` (`recon.load_gt_points`) when the file exists, else the GT depth
    unprojected with the GT cameras; 'depth' = always the latter.

    Returns:
      {mode: {metric: float}} plus, for 'pose', `pair_err` / `rot_err` / `trans_err` lists
      (degrees) under '<mode>_errors' for the CDF plots.
    """
    modes = check_modes(modes)
    proto = protocols.protocol(record.dataset)
    n = record.num_views
    gt_depth = np.asarray(record.depth, np.float64)
    if gt_cloud not in ("auto", "depth"):
        raise ValueError(f"gt_cloud: expected 'auto' or 'depth', got {gt_cloud!r}")
    preds: dict[str, dict] = {}
    result: dict[str, dict] = {}
    gt_points = None
    for mode in modes:
        if mode == "nvs":  # its own view split and prediction (da3_jax.eval.nvs)
            from da3_jax.eval import nvs

            result[mode] = nvs.evaluate_nvs(record, predict, lpips=lpips)
            result["nvs_per_target"] = result[mode].pop("per_target")
            continue
        needs_depth = mode == "mono" or (mode.startswith("recon") and proto["recon"])
        if needs_depth and not np.any(record.valid):
            raise ValueError(f"modes: {mode!r} needs ground-truth depth, but {record.dataset} "
                             f"scene {record.scene_id!r} has no valid depth pixel (its reader "
                             "provides none); evaluate it with 'pose' / 'nvs'")
        kind = _KIND_OF_MODE[mode]
        if kind not in preds:
            preds[kind] = _check_prediction(predict(record, kind), n, kind)
        pred = preds[kind]
        if mode == "pose":
            pose = metrics.pose_auc(pred["extrinsics"], record.extrinsics)
            result[mode] = _float_dict(pose)
            result["pose_errors"] = {k: pose[k].tolist() for k in ("pair_err", "rot_err",
                                                                    "trans_err")}
        elif mode == "mono":
            depth = recon.resize_depth_nearest(pred["depth"], None, record.image_hw)[0]
            result[mode] = metrics.depth_metrics(depth, gt_depth, record.valid,
                                                 align=depth_align)
        else:
            if not proto["recon"]:
                continue
            if gt_points is None and gt_cloud == "auto":
                gt_points = recon.load_gt_points(record.provenance)
            if fusion == "tsdf":
                result[mode] = _tsdf_metrics(record, pred, mode, proto, gt_points)
            else:
                result[mode] = recon.reconstruction_metrics(
                    pred["depth"], pred["extrinsics"], pred["intrinsics"], gt_depth,
                    record.extrinsics, record.intrinsics, record.valid, mode=mode,
                    threshold=proto["tau"], down_sample=proto["down_sample"],
                    gt_points=gt_points)
    return result


def _tsdf_metrics(record, pred: dict, mode: str, proto: dict, gt_points=None) -> dict:
    """Official TSDF-fused variant (needs open3d); GT cloud = `gt_points` or fused GT depth."""
    fused = recon.prepare_fusion_inputs(pred["depth"], pred["extrinsics"], pred["intrinsics"],
                                        record.extrinsics, record.intrinsics, record.valid,
                                        mode=mode)
    kw = dict(voxel_length=proto["voxel_length"], sdf_trunc=proto["sdf_trunc"],
              max_depth=proto["max_depth"])
    pred_pts = recon.tsdf_points(fused["depth"], record.images, fused["w2c"],
                                 fused["intrinsics"], **kw)
    gt_pts = gt_points if gt_points is not None else recon.tsdf_points(
        np.where(record.valid, record.depth, 0.0), record.images, record.extrinsics,
        record.intrinsics, **kw)
    out = recon.point_cloud_metrics(pred_pts, gt_pts, threshold=proto["tau"],
                                    down_sample=proto["down_sample"])
    out["scale"] = float(fused["scale"])
    return out


def _get_reader(dataset: str):
    from data_pipelines.readers import BENCHMARKS

    if dataset not in BENCHMARKS:
        raise ValueError(f"dataset: unknown benchmark {dataset!r}; known: {sorted(BENCHMARKS)}")
    return BENCHMARKS[dataset]


def _reader_call(reader, name: str):
    fn = reader.get(name) if isinstance(reader, Mapping) else getattr(reader, name)
    if fn is None:
        raise ValueError(f"benchmark reader has no '{name}'")
    return fn


def scene_json_path(out_dir: str, dataset: str, scene: str) -> str:
    """`<out>/<dataset>/scenes/<scene with '/' -> '__'>.json`."""
    return os.path.join(out_dir, dataset, "scenes", scene.replace("/", "__") + ".json")


def run_benchmark(dataset: str, data_dir: str, predict: Predictor, out_dir: str,
                  modes: Sequence[str] = ("pose",), max_frames: int = protocols.MAX_FRAMES,
                  seed: int = protocols.SAMPLE_SEED, scenes: Sequence[str] | None = None,
                  fusion: str = "points", depth_align: str = "median", gt_cloud: str = "auto",
                  plots: bool = True, progress: bool = True,
                  reader_options: Mapping | None = None,
                  lpips_weights: str | None = None) -> dict:
    """Evaluate every scene of `dataset` under `data_dir`; returns the aggregate dict.

    `reader_options`: extra keyword arguments of the reader's `load_scene` (e.g. `hw` of the
    NVS readers). `lpips_weights`: a converted LPIPS file (`eval.lpips`) adding `lpips` to the
    `nvs` mode. Resumable: a scene whose JSON already holds all requested modes is not
    recomputed (with `lpips_weights`, an `nvs` result without LPIPS is).
    Writes `<out>/<dataset>/{scenes/*.json (per-target NVS values under 'per_target'),
    metrics.json, results.md, plots/*.png}`.
    """
    from tqdm import tqdm

    from da3_jax.eval import report

    modes = check_modes(modes)
    if fusion not in ("points", "tsdf"):
        raise ValueError(f"fusion: expected 'points' or 'tsdf', got {fusion!r}")
    lpips = None
    if lpips_weights:
        if "nvs" not in modes:
            raise ValueError(f"lpips_weights: only the nvs mode uses LPIPS, modes are {modes}")
        from da3_jax.eval.lpips import LpipsMetric

        lpips = LpipsMetric(lpips_weights)
    reader = _get_reader(dataset)
    all_scenes = list(_reader_call(reader, "list_scenes")(data_dir))
    if scenes:
        missing = [s for s in scenes if s not in all_scenes]
        if missing:
            raise ValueError(f"scenes: {missing} not found under {data_dir}")
        all_scenes = [s for s in all_scenes if s in scenes]
    if not all_scenes:
        raise ValueError(f"data_dir: no {dataset} scenes found under {data_dir!r}")
    load = _reader_call(reader, "load_scene")
    per_scene = {}
    for scene in tqdm(all_scenes, desc=f"{dataset}", disable=not progress):
        path = scene_json_path(out_dir, dataset, scene)
        done = {}
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                done = json.load(f)
        have = done.get("metrics", {})
        todo = [m for m in modes if m not in have
                or (m == "nvs" and lpips is not None and "lpips" not in have[m])]
        if todo:
            record = load(data_dir, scene, max_frames, seed, **(reader_options or {}))
            res = evaluate_scene(record, predict, todo, fusion=fusion, depth_align=depth_align,
                                 gt_cloud=gt_cloud, lpips=lpips)
            errors = {k: v for k, v in res.items() if k.endswith("_errors")}
            per_target = res.get("nvs_per_target", done.get("per_target"))
            done = {"dataset": dataset, "scene": scene, "num_views": record.num_views,
                    "metrics": {**done.get("metrics", {}),
                                **{k: v for k, v in res.items() if k in MODES}},
                    "errors": {**done.get("errors", {}), **errors}}
            if per_target is not None:
                done["per_target"] = per_target
            if lpips is not None and "nvs" in todo:
                done["lpips_net"] = lpips.net  # 'alex' | 'vgg': papers report either
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                json.dump(done, f, indent=2)
        per_scene[scene] = done
    return report.write_reports(out_dir, dataset, per_scene, modes, plots=plots)
