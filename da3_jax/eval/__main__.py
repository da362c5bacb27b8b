"""CLI: `python -m da3_jax.eval --checkpoint CKPT --dataset NAME --data-dir DIR --out DIR`.

`--checkpoint oracle` evaluates the ground truth itself (optionally perturbed with
`--oracle-rot-noise` degrees / `--oracle-depth-scale`), a check of the benchmark plumbing.
See `da3_jax.eval.runner` for the outputs.
"""

from __future__ import annotations

import argparse
import sys

from da3_jax.eval import predictors, protocols, runner


def _reader_options(dataset: str, nvs_hw: str | None) -> dict:
    """`--nvs-hw` -> {'hw': (H, W) | None} for the NVS readers; ValueError otherwise."""
    from data_pipelines.readers import NVS_BENCHMARKS

    if nvs_hw is None:
        return {}
    if dataset not in NVS_BENCHMARKS:
        raise ValueError(f"--nvs-hw: only for the NVS readers {NVS_BENCHMARKS}, not {dataset!r}")
    if nvs_hw.strip().lower() == "native":
        return {"hw": None}
    try:
        h, w = (int(x) for x in nvs_hw.replace("x", ",").split(","))
    except ValueError as e:
        raise ValueError(f"--nvs-hw: expected 'H,W' or 'native', got {nvs_hw!r}") from e
    return {"hw": (h, w)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m da3_jax.eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="da3_jax checkpoint, or 'oracle'")
    p.add_argument("--dataset", required=True, help="benchmark reader name (e.g. hiroom, eth3d)")
    p.add_argument("--data-dir", required=True, help="root folder of that benchmark")
    p.add_argument("--out", required=True, help="output folder (per-scene JSON, reports)")
    p.add_argument("--max-frames", type=int, default=None,
                   help=f"views per scene (official sampling); default {protocols.MAX_FRAMES}, "
                   "or all frames (0) when --modes has nvs")
    p.add_argument("--nvs-hw", default=None,
                   help="H,W image size of the NVS benchmark readers (dl3dv, tanks_temples, "
                   "megadepth): default 270,480 (the paper's protocol); 'native' = stored size")
    p.add_argument("--process-res", type=int, default=504, help="model input resolution")
    p.add_argument("--seed", type=int, default=protocols.SAMPLE_SEED)
    p.add_argument("--modes", default="pose,recon_unposed,recon_posed",
                   help=f"comma list of {','.join(runner.MODES)}")
    p.add_argument("--scenes", default=None, help="comma list of scenes (default: all)")
    p.add_argument("--fusion", choices=("points", "tsdf"), default="points",
                   help="'tsdf' = official Open3D TSDF fusion (needs open3d)")
    p.add_argument("--depth-align", choices=("none", "median", "scale_shift"), default="median",
                   help="alignment for the mono depth metrics")
    p.add_argument("--gt-cloud", choices=("auto", "depth"), default="auto",
                   help="reconstruction reference: benchmark GT cloud/mesh if present, or GT depth")
    p.add_argument("--lpips-weights", default=None,
                   help="converted LPIPS .safetensors (python -m da3_jax.convert.lpips): adds "
                        "lpips to the nvs mode")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--oracle-rot-noise", type=float, default=0.0)
    p.add_argument("--oracle-depth-scale", type=float, default=1.0)
    a = p.parse_args(argv)

    if a.checkpoint == "oracle":
        predict = predictors.OraclePredictor(rot_noise_deg=a.oracle_rot_noise,
                                             depth_scale=a.oracle_depth_scale)
    else:
        predict = predictors.CheckpointPredictor(a.checkpoint, process_res=a.process_res)
    modes = runner.check_modes(a.modes)
    if a.max_frames is None:
        a.max_frames = 0 if "nvs" in modes else protocols.MAX_FRAMES
    agg = runner.run_benchmark(
        a.dataset, a.data_dir, predict, a.out, modes=modes,
        max_frames=a.max_frames, seed=a.seed, reader_options=_reader_options(a.dataset, a.nvs_hw),
        scenes=a.scenes.split(",") if a.scenes else None, fusion=a.fusion,
        depth_align=a.depth_align, gt_cloud=a.gt_cloud, plots=not a.no_plots,
        lpips_weights=a.lpips_weights)
    for mode, table in agg.items():
        print(mode, {k: round(v, 4) for k, v in table["mean"].items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
