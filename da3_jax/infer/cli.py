"""`da3-jax` command line.

  da3-jax predict INPUT --checkpoint CKPT --out DIR [--export npz,ply,glb,colmap,depth_vis]
                  [--fps 1] [--process-res 504] [--process-res-method upper_bound_resize]
                  [--max-views-per-device N] [--max-views N] [--ref-view-strategy S]
                  [--use-ray-pose] [--model-name NAME] [--conf-thresh-percentile 40]
                  [--num-max-points 1000000] [--infer-gs]
                  [--streaming [--chunk 120] [--overlap 60] [--loop-closure]]
  da3-jax info CKPT [--model-name NAME]
  da3-jax render INPUT --checkpoint CKPT --out DIR [--trajectory smooth|interpolate|wander|
                 dolly_zoom] (novel-view video of a GS model; see da3_jax.infer.render_cmd)

INPUT is an image, a folder of images, a video (frames sampled at --fps with imageio-ffmpeg)
or a COLMAP folder (``images/`` + ``sparse/0`` or ``sparse/``; its cameras condition the model
and the outputs are aligned back to them). With --streaming the frames are read on demand and
run in overlapping chunks (`da3_jax.infer.streaming`); exports then cover the whole sequence at
a stride that keeps --num-max-points bounded. CKPT is a converted orbax folder
(``python -m da3_jax.convert``), an official ``model.safetensors`` or a training checkpoint
(with --model-name). Export formats are validated before the model is loaded. Exit status:
0 on success, 1 on bad input / a failed export (the reason goes to stderr), 2 on usage errors.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import shutil
import sys
import tempfile
import time

# `da3_jax.model.preprocess.METHODS`, spelled out so that `--help` imports no jax (a test
# checks that the two agree).
PROCESS_RES_METHODS = ("upper_bound_resize", "upper_bound_crop", "lower_bound_resize",
                       "lower_bound_crop")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    from da3_jax.infer.export import FORMATS

    p = argparse.ArgumentParser(prog="da3-jax", description="Depth Anything 3 (JAX) inference")
    sub = p.add_subparsers(dest="command", required=True)
    pr = sub.add_parser("predict", help="depth + cameras for an image/folder/video/COLMAP input")
    pr.add_argument("input", help="image, folder of images, video or COLMAP folder")
    pr.add_argument("--checkpoint", required=True, help="converted dir, model.safetensors, ...")
    pr.add_argument("--out", required=True, help="output directory")
    pr.add_argument("--export", default="npz,glb",
                    help=f"comma-separated formats from {', '.join(FORMATS)} (default npz,glb)")
    pr.add_argument("--fps", type=_positive_float, default=1.0, help="video frame sampling rate")
    pr.add_argument("--max-views", type=int, default=None, help="use at most this many views")
    pr.add_argument("--process-res", type=int, default=504)
    pr.add_argument("--process-res-method", default="upper_bound_resize",
                    choices=PROCESS_RES_METHODS)
    pr.add_argument("--max-views-per-device", type=int, default=None,
                    help="views per device per head chunk (bounds memory for many views)")
    pr.add_argument("--ref-view-strategy", default="saddle_balanced",
                    choices=("first", "middle", "saddle_balanced", "saddle_sim_range"))
    pr.add_argument("--use-ray-pose", action="store_true")
    pr.add_argument("--no-align-to-input-scale", action="store_true",
                    help="COLMAP input: keep the predicted scale, map input poses into it")
    pr.add_argument("--infer-gs", action="store_true", help="predict 3D Gaussians (GS models)")
    pr.add_argument("--model-name", default=None, help="variant, for training checkpoints")
    pr.add_argument("--conf-thresh-percentile", type=float, default=40.0)
    pr.add_argument("--num-max-points", type=int, default=1_000_000)
    st = pr.add_argument_group("streaming (long videos / many frames, bounded memory)")
    st.add_argument("--streaming", action="store_true",
                    help="overlapping chunks aligned by Sim(3); per-chunk results in "
                         "OUT/streaming/ (a killed run resumes there)")
    st.add_argument("--chunk", type=int, default=120, help="frames per chunk (default 120)")
    st.add_argument("--overlap", type=int, default=60, help="frames shared by consecutive "
                    "chunks (default 60)")
    st.add_argument("--loop-closure", action="store_true",
                    help="detect revisits and optimise the Sim(3) pose graph of the chunks")
    info = sub.add_parser("info", help="print variant, parameter count and devices")
    info.add_argument("checkpoint")
    info.add_argument("--model-name", default=None)
    from da3_jax.infer import render_cmd

    render_cmd.add_parser(sub)
    return p


@functools.lru_cache(maxsize=2)
def load_predictor(checkpoint: str, model_name: str | None = None,
                   max_views_per_device: int | None = None):
    """`Predictor.from_checkpoint`, cached per arguments so repeated in-process `main` calls
    (notebooks, tests) reuse the loaded weights and compiled functions."""
    from da3_jax.infer.api import Predictor

    return Predictor.from_checkpoint(os.path.abspath(checkpoint), config=model_name,
                                     max_views_per_device=max_views_per_device)


def _info(args) -> int:
    import jax

    pred = load_predictor(args.checkpoint, args.model_name)
    print(f"variant: {pred.config.name}")
    print(f"kind: {pred.config.kind}")
    print(f"parameters: {pred.num_params:,}")
    print(f"devices: {len(jax.devices())} x {jax.devices()[0].platform} "
          f"({', '.join(str(d) for d in jax.devices())})")
    return 0


def check_paths(args) -> None:
    """Every path argument, before any image is read or the model loaded (ValueError).

    --checkpoint must exist; --out must be a folder or not exist yet, and be writable (it is
    created here and probed with a temporary file)."""
    if not os.path.exists(args.checkpoint):
        raise ValueError(f"--checkpoint {args.checkpoint!r}: no such file or folder")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ValueError(f"--out {args.out!r}: exists and is not a folder; give a folder path")
    try:
        os.makedirs(args.out, exist_ok=True)
        with tempfile.TemporaryFile(dir=args.out):
            pass
    except OSError as e:
        raise ValueError(f"--out {args.out!r}: not writable ({e.strerror or e})") from e


def remove_stale_outputs(out_dir: str) -> list[str]:
    """Delete what an earlier run's exporters wrote into ``out_dir`` (`export.OUTPUTS`: every
    format, so a re-run leaves no files from a larger or different earlier run); other files
    are kept. Returns the removed paths."""
    from da3_jax.infer.export import OUTPUTS

    removed = []
    for rel in OUTPUTS.values():
        path = os.path.join(out_dir, rel)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)
        else:
            continue
        removed.append(path)
    return removed


def write_exports(pred, formats, out_dir: str, conf_thresh_percentile: float,
                  num_max_points: int) -> int:
    """Run the exporters (stale outputs removed first); failures go to stderr -> status 1."""
    from tqdm import tqdm

    from da3_jax.infer.export import EXPORTERS

    removed = remove_stale_outputs(out_dir)
    if removed:
        print(f"removed {len(removed)} output(s) of an earlier run in {out_dir}", file=sys.stderr)
    pts = dict(conf_thresh_percentile=conf_thresh_percentile, num_max_points=num_max_points)
    kwargs = {"ply": pts, "glb": pts, "colmap": pts}
    failed = []
    for fmt in tqdm(formats, desc="export", file=sys.stderr):
        try:
            out = EXPORTERS[fmt](pred, out_dir, **kwargs.get(fmt, {}))
            tqdm.write(f"{fmt}: {out if isinstance(out, str) else os.path.dirname(out[0])}",
                       file=sys.stderr)
        except Exception as e:  # noqa: BLE001 - reported, exit status 1
            failed.append(f"{fmt}: {type(e).__name__}: {e}")
    for f in failed:
        print(f"error: export {f}", file=sys.stderr)
    return 1 if failed else 0


def _memory_mb() -> tuple[float, float]:
    """(current, peak) resident memory of this process in MiB."""
    import resource

    with open("/proc/self/statm") as f:
        current = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return current, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _predict_streaming(args, formats) -> int:
    from tqdm import tqdm

    from da3_jax.infer import io as io_lib
    from da3_jax.infer import streaming

    if args.infer_gs or "gs_ply" in formats:
        raise ValueError("--streaming does not predict Gaussians (--infer-gs / gs_ply)")
    config = streaming.StreamingConfig(chunk=args.chunk, overlap=args.overlap,
                                       loop_closure=args.loop_closure)
    try:
        config.validate()
    except ValueError as e:
        raise ValueError(f"--chunk/--overlap: {e}") from e
    ext = k = None
    if io_lib.detect_kind(args.input) == "colmap":
        inputs = io_lib.collect_inputs(args.input)
        n = len(inputs.images) if args.max_views is None else min(args.max_views,
                                                                  len(inputs.images))
        source = io_lib.FrameSource.from_list(inputs.images[:n], inputs.names[:n], "colmap")
        ext, k = inputs.extrinsics[:n], inputs.intrinsics[:n]
    else:
        source = io_lib.open_frames(args.input, fps=args.fps, max_frames=args.max_views)
    io_lib.check_image_size(source[0].shape[:2], args.process_res, args.process_res_method,
                            name=source.names[0])
    print(f"input: {source.kind}, {len(source)} frame(s), streaming in chunks of "
          f"{min(args.chunk, len(source))} (overlap {args.overlap})", file=sys.stderr)
    predictor = load_predictor(args.checkpoint, args.model_name, args.max_views_per_device)
    chunks = streaming.NetworkChunks(
        predictor, source, ext, k, process_res=args.process_res,
        process_res_method=args.process_res_method, ref_view_strategy=args.ref_view_strategy,
        use_ray_pose=args.use_ray_pose, align_to_input_scale=not args.no_align_to_input_scale)
    fingerprint = dict(input=os.path.abspath(args.input), fps=args.fps,
                       max_views=args.max_views, checkpoint=os.path.abspath(args.checkpoint),
                       model=args.model_name, process_res=args.process_res,
                       method=args.process_res_method, ref_view_strategy=args.ref_view_strategy,
                       use_ray_pose=args.use_ray_pose)
    run = streaming.StreamingRun(os.path.join(args.out, "streaming"), len(source), chunks,
                                 config, fingerprint, posed=ext is not None)
    done = run.load_state()["done"]
    bar = tqdm(total=len(source), unit="frame", desc="streaming", file=sys.stderr)
    if done:
        bar.update(run.ranges[done - 1][1])
        bar.write(f"resuming after chunk {done} of {len(run.ranges)}", file=sys.stderr)
    t0, first = time.time(), bar.n

    def progress(frames_done: int, _chunk: int) -> None:
        bar.update(frames_done - bar.n)
        cur, peak = _memory_mb()
        rate = (frames_done - first) / max(time.time() - t0, 1e-9)
        bar.set_postfix_str(f"{rate:.2f} frames/s, rss {cur:.0f} MiB (peak {peak:.0f})")

    result = run.run(progress=progress)
    bar.close()
    used = sum(lp["used"] for lp in result.loops)
    print(f"streaming: {len(run.ranges)} chunk(s), {used} loop(s) closed, "
          f"{time.time() - t0:.1f}s", file=sys.stderr)
    pred = streaming.decimated_prediction(result, 4 * args.num_max_points, source.names)
    return write_exports(pred, formats, args.out, args.conf_thresh_percentile,
                         args.num_max_points)


def _predict(args) -> int:
    from da3_jax.infer import io as io_lib
    from da3_jax.infer.export import parse_formats

    formats = parse_formats(args.export)  # before any heavy work
    if args.max_views_per_device is not None and args.max_views_per_device < 1:
        raise ValueError("--max-views-per-device must be >= 1")
    check_paths(args)
    if args.streaming:
        return _predict_streaming(args, formats)
    inputs = io_lib.collect_inputs(args.input, fps=args.fps, max_frames=args.max_views)
    if args.max_views is not None:
        inputs.images = inputs.images[: args.max_views]
        inputs.names = inputs.names[: args.max_views]
        if inputs.extrinsics is not None:
            inputs.extrinsics = inputs.extrinsics[: args.max_views]
            inputs.intrinsics = inputs.intrinsics[: args.max_views]
    print(f"input: {inputs.kind}, {len(inputs.images)} view(s)", file=sys.stderr)
    for i, im in enumerate(inputs.images):  # size checks before loading the model
        io_lib.check_image_size(im.shape[:2], args.process_res, args.process_res_method,
                                name=f"{inputs.names[i]}")
    t0 = time.time()
    predictor = load_predictor(args.checkpoint, args.model_name, args.max_views_per_device)
    print(f"model: {predictor.config.name} ({time.time() - t0:.1f}s to load)", file=sys.stderr)
    t0 = time.time()
    pred = predictor.predict(
        inputs.images, inputs.extrinsics, inputs.intrinsics,
        process_res=args.process_res, process_res_method=args.process_res_method,
        ref_view_strategy=args.ref_view_strategy, use_ray_pose=args.use_ray_pose,
        align_to_input_scale=not args.no_align_to_input_scale, infer_gs=args.infer_gs,
    )
    pred.image_names = list(inputs.names)
    print(f"inference: {time.time() - t0:.1f}s, depth {pred.depth.shape}", file=sys.stderr)
    return write_exports(pred, formats, args.out, args.conf_thresh_percentile,
                         args.num_max_points)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `da3-jax` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "render":
            from da3_jax.infer import render_cmd

            return render_cmd.run(args)
        return _info(args) if args.command == "info" else _predict(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
