"""`da3-jax render`: predict 3D Gaussians for an input and write a novel-view video.

  da3-jax render INPUT --checkpoint CKPT --out DIR
                 [--trajectory smooth|interpolate|wander|dolly_zoom] [--render-hw HxW]
                 [--fps 1] [--video-fps 24] [--max-views N] [--process-res 504]
                 [--process-res-method upper_bound_resize] [--model-name NAME]
                 [--tile-capacity 1024] [--frames N] [--no-depth]

INPUT is read as by ``da3-jax predict`` (image, folder, video or COLMAP folder; input cameras
are not used: the Gaussians live in the prediction's frame). The checkpoint needs a GS head
(da3-giant). Writes ``DIR/gs_video/<trajectory>.mp4`` (`da3_jax.infer.export.gs_video`).
"""

from __future__ import annotations

import sys
import time

# ``da3_jax.render.trajectory.MODES``, copied so that `da3-jax --help` imports no jax (a test
# checks the two agree).
TRAJECTORY_MODES = ("smooth", "interpolate", "wander", "dolly_zoom")


def add_parser(sub) -> None:
    """Register the `render` subcommand on the CLI's subparsers (light: no jax import)."""
    from da3_jax.infer.cli import PROCESS_RES_METHODS as METHODS

    r = sub.add_parser("render", help="novel-view video through the predicted 3D Gaussians")
    r.add_argument("input", help="image, folder of images, video or COLMAP folder")
    r.add_argument("--checkpoint", required=True, help="checkpoint of a model with a GS head")
    r.add_argument("--out", required=True, help="output directory")
    r.add_argument("--trajectory", default="smooth", choices=TRAJECTORY_MODES)
    r.add_argument("--render-hw", default=None, help="HxW of the video (default: processed size)")
    r.add_argument("--fps", type=float, default=1.0, help="video input frame sampling rate")
    r.add_argument("--video-fps", type=int, default=24)
    r.add_argument("--max-views", type=int, default=None)
    r.add_argument("--process-res", type=int, default=504)
    r.add_argument("--process-res-method", default="upper_bound_resize", choices=METHODS)
    r.add_argument("--model-name", default=None, help="variant, for training checkpoints")
    r.add_argument("--tile-capacity", type=int, default=1024,
                   help="Gaussians kept per 16x16 tile (overflow is reported)")
    r.add_argument("--frames", type=int, default=None,
                   help="frame count of wander / dolly_zoom (default 120)")
    r.add_argument("--no-depth", action="store_true", help="RGB only (no depth beside it)")


def _parse_hw(spec):
    if spec is None:
        return None
    try:
        h, w = (int(x) for x in spec.lower().split("x"))
    except ValueError:
        raise ValueError(f"--render-hw: expected HxW (e.g. 270x480), got {spec!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"--render-hw: expected positive sizes, got {spec!r}")
    return h, w


def run(args) -> int:
    """Handler of `da3-jax render` (ValueErrors are reported by the CLI's `main`)."""
    from da3_jax.infer import io as io_lib
    from da3_jax.infer.cli import load_predictor
    from da3_jax.infer.export.gs_video import export_gs_video

    hw = _parse_hw(args.render_hw)
    if args.tile_capacity < 1:
        raise ValueError("--tile-capacity must be >= 1")
    inputs = io_lib.collect_inputs(args.input, fps=args.fps, max_frames=args.max_views)
    images = inputs.images[: args.max_views] if args.max_views else inputs.images
    if args.trajectory in ("smooth", "interpolate") and len(images) < 2:
        raise ValueError(f"--trajectory {args.trajectory} needs at least 2 views; use wander "
                         "or dolly_zoom for a single image")
    for i, im in enumerate(images):
        io_lib.check_image_size(im.shape[:2], args.process_res, args.process_res_method,
                                name=f"{inputs.names[i]}")
    predictor = load_predictor(args.checkpoint, args.model_name)
    if not predictor.config.get("gs_head", False):
        raise ValueError(f"model {predictor.config.name} has no GS head: render needs one "
                         "(e.g. da3-giant)")
    t0 = time.time()
    pred = predictor.predict(images, process_res=args.process_res,
                             process_res_method=args.process_res_method, infer_gs=True)
    print(f"inference: {time.time() - t0:.1f}s, {len(pred.gaussians['means'])} Gaussians",
          file=sys.stderr)
    t0 = time.time()
    path = export_gs_video(pred, args.out, trajectory=args.trajectory, hw=hw,
                           fps=args.video_fps, vis_depth=not args.no_depth,
                           tile_capacity=args.tile_capacity, num_frames=args.frames)
    print(f"gs_video: {path} ({time.time() - t0:.1f}s)", file=sys.stderr)
    return 0
