"""`gs_video` export: ``<dir>/gs_video/<trajectory>.mp4``, a camera path through the predicted 3D
Gaussians (the official `gs_video`, rendered by `da3_jax.render` instead of gsplat/CUDA).

Each frame is the rendered RGB, by default beside its colour-mapped rendered depth (upstream's
`vis_depth="hcat"`); H.264 through imageio-ffmpeg at `fps` frames per second. Cameras come from
`da3_jax.render.camera_path(prediction.extrinsics, prediction.intrinsics, hw, trajectory)`
(modes smooth | interpolate | wander | dolly_zoom; `num_frames` for the last two); `hw`
defaults to the processed image size (other sizes rescale the intrinsics).
"""

from __future__ import annotations

import os

import imageio.v2 as imageio
import numpy as np

from da3_jax.infer.export.depth_vis import colorize_depth


def _even(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def export_gs_video(prediction, export_dir: str, trajectory: str = "smooth", hw=None,
                    fps: int = 24, vis_depth: bool = True, tile_capacity: int = 1024,
                    chunk: int = 8, num_frames: int | None = None) -> str:
    from da3_jax.infer.api import Predictor
    from da3_jax.render import camera_path

    if prediction.gaussians is None:
        raise ValueError("gs_video export needs Gaussians: use a model with a GS head and "
                         "infer_gs=True (CLI: --infer-gs)")
    if prediction.extrinsics is None or prediction.intrinsics is None:
        raise ValueError("gs_video export needs the predicted cameras (extrinsics/intrinsics)")
    in_hw = tuple(int(x) for x in prediction.depth.shape[1:3])
    hw = in_hw if hw is None else (int(hw[0]), int(hw[1]))
    k = np.array(prediction.intrinsics, np.float64)
    k[:, 0] *= hw[1] / in_hw[1]
    k[:, 1] *= hw[0] / in_hw[0]
    w2c, ks = camera_path(prediction.extrinsics, k, hw, trajectory, num_frames)
    out = Predictor.render(prediction, w2c, ks, hw, chunk=chunk, tile_capacity=tile_capacity)
    folder = os.path.join(export_dir, "gs_video")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{trajectory}.mp4")
    with imageio.get_writer(path, fps=fps, codec="libx264", quality=8,
                            macro_block_size=2) as writer:
        for i in range(len(w2c)):
            frame = (np.clip(out["rgb"][i], 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
            if vis_depth:
                depth = out["depth"][i] / np.maximum(out["alpha"][i], 1e-6)
                depth = np.where(out["alpha"][i] > 0.05, depth, 0.0)
                frame = np.concatenate([frame, colorize_depth(depth)], axis=1)
            writer.append_data(_even(frame))
    return path
