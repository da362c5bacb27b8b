"""`colmap` export: a pycolmap `Reconstruction` in ``<dir>/colmap/`` (binary model).

As the official `export_to_colmap`: one PINHOLE camera per image at the **original** image
size (processed-pixel intrinsics scaled by ``orig_w / w`` and ``orig_h / h``; valid for the
``*_resize`` preprocessing methods only), the predicted w2c pose, and a 3D point for every pixel
with conf >= the ``conf_thresh_percentile`` percentile, observed once (a Point2D at the pixel
scaled to the original size) by the image it came from. Points are randomly subsampled to
``num_max_points`` (seed 0). Image names are `prediction.image_names`.
"""

from __future__ import annotations

import os

import numpy as np
import pycolmap

from da3_jax.infer.export.points import world_points


def export_colmap(prediction, export_dir: str, conf_thresh_percentile: float = 40.0,
                  num_max_points: int = 1_000_000) -> str:
    if prediction.extrinsics is None or prediction.intrinsics is None:
        raise ValueError("colmap export needs cameras (extrinsics and intrinsics)")
    if not prediction.process_res_method.endswith("resize"):
        raise ValueError("colmap export needs a '*_resize' process_res_method (cropping changes "
                         f"the field of view), got {prediction.process_res_method!r}")
    n, h, w = prediction.depth.shape
    sizes = prediction.original_sizes or [(h, w)] * n
    names = prediction.image_names or [f"image_{i}" for i in range(n)]
    thr = -np.inf if prediction.conf is None else np.percentile(prediction.conf,
                                                                conf_thresh_percentile)
    pts, cols, idx = world_points(prediction.depth, prediction.extrinsics, prediction.intrinsics,
                                  prediction.processed_images, prediction.conf, thr)
    if len(pts) > num_max_points:
        keep = np.sort(np.random.default_rng(0).choice(len(pts), num_max_points, replace=False))
        pts, cols, idx = pts[keep], cols[keep], idx[keep]
    rec = pycolmap.Reconstruction()
    pids = [rec.add_point3D(pts[i].astype(np.float64), pycolmap.Track(), cols[i])
            for i in range(len(pts))]
    for f in range(n):
        oh, ow = sizes[f]
        sx, sy = ow / w, oh / h
        k = prediction.intrinsics[f].astype(np.float64)
        cam = pycolmap.Camera()
        cam.camera_id = f + 1
        cam.model = pycolmap.CameraModelId.PINHOLE
        cam.width, cam.height = int(ow), int(oh)
        cam.params = np.array([k[0, 0] * sx, k[1, 1] * sy, k[0, 2] * sx, k[1, 2] * sy])
        rec.add_camera(cam)
        rig = pycolmap.Rig()
        rig.rig_id = cam.camera_id
        rig.add_ref_sensor(cam.sensor_id)
        rec.add_rig(rig)
        ext = prediction.extrinsics[f].astype(np.float64)
        image = pycolmap.Image()
        image.image_id = f + 1
        image.camera_id = cam.camera_id
        frame = pycolmap.Frame()
        frame.frame_id = image.image_id
        frame.rig_id = rig.rig_id
        frame.add_data_id(image.data_id)
        frame.rig_from_world = pycolmap.Rigid3d(pycolmap.Rotation3d(ext[:3, :3]), ext[:3, 3])
        rec.add_frame(frame)
        sel = np.flatnonzero(idx[:, 0] == f)
        p2d = []
        for j, v in enumerate(sel):
            xy = np.array([idx[v, 2] * sx, idx[v, 1] * sy], np.float64)
            p2d.append(pycolmap.Point2D(xy, pids[v]))
            rec.point3D(pids[v]).track.add_element(image.image_id, j)
        image.frame_id = image.image_id
        image.name = names[f]
        image.points2D = pycolmap.Point2DList(p2d)
        rec.add_image(image)
    out = os.path.join(export_dir, "colmap")
    os.makedirs(out, exist_ok=True)
    rec.write(out)
    return out
