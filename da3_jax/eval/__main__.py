"""CLI: `python -m da3_jax.eval --checkpoint CKPT --dataset NAME --data-dir DIR --out DIR`.

`--checkpoint oracle` evaluates the ground truth itself (optionally perturbed with
`--oracle-rot-noise` degrees / `--oracle-depth-scale`), a check of the benchmark plumbing.
See `da3_jax.eval.runner` for the outputs.
"""

from __future__ import annotations

import argparse
import sys

from da3_jax.eval import predictors, protocols, runner


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m da3_jax.eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="da3_jax checkpoint, or 'oracle'")
    p.add_argument("--dataset", required=True, help="benchmark reader name (e.g. hiroom, eth3d)")
    p.add_argument("--data-dir", required=True, help="root folder of that benchmark")
    p.add_argument("--out", required=True, help="output folder (per-scene JSON, reports)")
    p.add_argument("--max-frames", type=int, default=protocols.MAX_FRAMES)
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
    agg = runner.run_benchmark(
        a.dataset, a.data_dir, predict, a.out, modes=runner.check_modes(a.modes),
        max_frames=a.max_frames, seed=a.seed,
        scenes=a.scenes.split(",") if a.scenes else None, fusion=a.fusion,
        depth_align=a.depth_align, gt_cloud=a.gt_cloud, plots=not a.no_plots,
        lpips_weights=a.lpips_weights)
    for mode, table in agg.items():
        print(mode, {k: round(v, 4) for k, v in table["mean"].items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
