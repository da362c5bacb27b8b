"""Shared parts of the NVS benchmark readers (``dl3dv``, ``tanks_temples``, ``megadepth``).

The DA3 paper's NVS benchmark (DL3DV 140 / Tanks and Temples 6 / MegaDepth 19 scenes, ~300
frames each, COLMAP poses, 270 x 480; `da3_jax.eval.nvs`) needs every frame of a scene **in
frame order**: every 8th frame is a target. So these readers

* order the views by file name with a natural sort (``frame_2`` before ``frame_10``);
* load all of them by default (``max_frames=None`` or ``<= 0``). A positive ``max_frames``
  smaller than the scene keeps the official evaluator's random subset (`_io.sample_frames`,
  seed 42), still in frame order; the NVS protocol then runs on that subset (its "every 8th
  frame" counts the kept frames), which is not the paper's protocol;
* resize every view to ``hw`` (default `NVS_HW` = 270 x 480, the protocol) by scaling it to
  cover ``hw`` with its aspect ratio kept, then cropping the centre
  (`data_pipelines.transforms`: area averaging when shrinking, bilinear when enlarging). With
  the aspect ratio of ``hw`` (DL3DV's 16:9 frames) this is a pure resize. K follows in the
  record's pixel-edge convention (``diag(sx, sy, 1) K``, then ``cx -= x0``, ``cy -= y0``, through
  `da3_jax.geometry`). ``hw=None`` keeps the stored size (all views must then share it).

COLMAP layouts go through `colmap_scene`: `colmap.load_reconstruction`, `colmap.camera_to_k`
(its distortion policy: PINHOLE / SIMPLE_PINHOLE exact; SIMPLE_RADIAL / RADIAL / OPENCV keep
their pinhole part, distortion ignored with one ``UserWarning`` per scene; other models raise),
and sparse depth from points3D drawn at the final resolution (`colmap.sparse_depth_map`).
"""

from __future__ import annotations

import os
import re
import warnings

import numpy as np

from da3_jax import geometry
from data_pipelines import transforms
from data_pipelines.readers import _io, colmap
from data_pipelines.record import SceneRecord

NVS_HW = (270, 480)


def natural_key(name: str) -> list:
    """Sort key comparing digit runs as numbers (``frame_2`` < ``frame_10``)."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", os.fspath(name))]


def check_hw(hw) -> tuple[int, int] | None:
    """``None`` (keep the stored size) or a validated ``(H, W)`` of positive ints."""
    if hw is None:
        return None
    try:
        h, w = (int(x) for x in hw)
    except (TypeError, ValueError) as e:
        raise ValueError(f"hw: expected None or (H, W) positive integers, got {hw!r}") from e
    if h <= 0 or w <= 0:
        raise ValueError(f"hw: expected None or (H, W) positive integers, got {hw!r}")
    return h, w


def _rescale(ks: np.ndarray, sx: np.ndarray, sy: np.ndarray) -> np.ndarray:
    with transforms.on_cpu():
        return np.asarray(geometry.rescale_intrinsics(np.asarray(ks, np.float32),
                                                      np.asarray(sx, np.float32),
                                                      np.asarray(sy, np.float32)), np.float64)


def fit_k_to_images(ks: np.ndarray, calib_hw, image_hw, paths) -> np.ndarray:
    """K ``[N, 3, 3]`` calibrated at ``calib_hw [N, 2]`` -> K of the stored images
    (``image_hw [N, 2]``), e.g. full-resolution calibration and an ``images_8`` folder.

    The stored image must be the calibrated one shrunk by an integer factor ``f`` (the
    ``images_f`` folders of nerfstudio and 3DGS), each side within one pixel of ``size / f``;
    K is then scaled by the exact size ratios (the resizers map the whole image rectangle).
    ValueError naming the image otherwise (e.g. distorted ``images_4`` beside an undistorted
    model of another size).
    """
    calib_hw = np.asarray(calib_hw, np.float64).reshape(-1, 2)
    image_hw = np.asarray(image_hw, np.float64).reshape(-1, 2)
    factor = np.maximum(np.round(calib_hw[:, 1] / image_hw[:, 1]), 1.0)[:, None]
    bad = (np.abs(calib_hw / factor - image_hw) > 1.0).any(-1)
    if bad.any():
        i = int(np.argmax(bad))
        got, want = (tuple(a[i].astype(int).tolist()) for a in (image_hw, calib_hw))
        raise ValueError(f"image: {paths[i]!r} has size {got}, its calibration is for {want}: "
                         "not that size divided by an integer factor")
    sy, sx = (image_hw / calib_hw).T
    if np.all(sx == 1.0) and np.all(sy == 1.0):
        return np.asarray(ks, np.float64)
    return _rescale(ks, sx, sy)


def cover_crop_plan(in_hw, out_hw) -> transforms.ResizeCropPlan:
    """Resize ``in_hw`` to cover ``out_hw`` (aspect kept), centre crop (see module doc)."""
    (h, w), (oh, ow) = in_hw, out_hw
    scale = max(oh / h, ow / w)
    rh, rw = max(oh, int(round(h * scale))), max(ow, int(round(w * scale)))
    return transforms.ResizeCropPlan(rh, rw, (rw - ow) // 2, (rh - oh) // 2, oh, ow)


def resize_views(images, ks: np.ndarray, hw, paths) -> tuple[np.ndarray, np.ndarray]:
    """Views ``[H_i, W_i, 3]`` and K ``[N, 3, 3]`` -> images ``[N, *hw, 3]`` uint8 and K.

    ``hw=None``: unchanged (views of different sizes raise ValueError naming one).
    """
    hw = check_hw(hw)
    if hw is None:
        return _io.stack_images(images, paths), np.asarray(ks, np.float64)
    in_hw = np.array([img.shape[:2] for img in images])
    plans = [cover_crop_plan(s, hw) for s in in_hw]
    out = []
    for img, plan in zip(images, plans, strict=True):
        if img.shape[:2] == hw:
            out.append(img)
            continue
        zeros = np.zeros(img.shape[:2], np.float32)
        out.append(transforms.apply_plan(plan, img, zeros, zeros > 0)[0])
    return np.stack(out), np.asarray(transforms.plan_intrinsics(ks, in_hw, plans), np.float64)


def colmap_views(model_dir: str, image_dir: str):
    """(reconstruction, registered images in natural name order, their paths).

    ValueError when the model is missing / unreadable / empty or an image file is missing.
    """
    rec = colmap.load_reconstruction(model_dir)
    ims = sorted(rec.images.values(), key=lambda im: natural_key(im.name))
    if not ims:
        raise ValueError(f"colmap model: {model_dir!r} has no registered images")
    paths = [os.path.join(image_dir, im.name) for im in ims]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise ValueError(f"images: {len(missing)} of the {len(paths)} images registered in "
                         f"{model_dir!r} are missing, e.g. {missing[:3]}")
    return rec, ims, paths


def pinhole_ks(cameras, what: str) -> np.ndarray:
    """``colmap.camera_to_k`` of each camera; the distortion warnings become one warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ks = np.stack([colmap.camera_to_k(c) for c in cameras])
    msgs = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    if msgs:
        warnings.warn(f"{what}: {len(msgs)} view(s) have distorted cameras, distortion ignored "
                      f"(pinhole part only), e.g. {msgs[0]}", UserWarning, stacklevel=3)
    return ks


def colmap_scene(model_dir: str, image_dir: str, *, dataset: str, scene_id: str,
                 max_frames: int | None, seed: int, hw) -> SceneRecord:
    """A COLMAP scene (model + image folder) as an NVS record (see module doc).

    The images may be a uniformly downscaled copy of the calibrated ones (``images_8``): K is
    scaled to them first. Depth: points3D projected at the final resolution (``sparse_gt``).
    """
    hw = check_hw(hw)
    rec, ims, paths = colmap_views(model_dir, image_dir)
    idx = _io.sample_frames(len(ims), max_frames, seed)
    ims, paths = [ims[i] for i in idx], [paths[i] for i in idx]
    images = [_io.read_rgb(p) for p in paths]
    ks = pinhole_ks([im.camera for im in ims], f"{dataset} scene {scene_id!r}")
    ks = fit_k_to_images(ks, [(im.camera.height, im.camera.width) for im in ims],
                         [img.shape[:2] for img in images], paths)
    images, ks = resize_views(images, ks, hw, paths)
    w2cs = np.stack([colmap.cam_from_world(im) for im in ims])
    depth = np.stack([colmap.sparse_depth_map(rec, im, w2c, k, images.shape[1:3])
                      for im, w2c, k in zip(ims, w2cs, ks, strict=True)])
    return _io.make_record(images, depth, ks, w2cs, dataset=dataset, scene_id=scene_id,
                           is_metric=False, depth_kind="sparse_gt",
                           provenance={"image_files": paths, "model_dir": model_dir})


# ----------------------------------------------------------------- COLMAP scene-folder layouts
def find_model(tries, what: str) -> str:
    """The first folder of ``tries`` holding ``cameras.bin`` / ``cameras.txt``; ValueError
    listing every folder tried otherwise."""
    for d in tries:
        if any(os.path.isfile(os.path.join(d, "cameras" + e)) for e in (".bin", ".txt")):
            return d
    raise ValueError(f"{what}: no COLMAP model (cameras.bin/.txt) in any of "
                     f"{[os.fspath(d) for d in tries]}")


def scene_paths(root, scene: str, model_tries, dataset: str) -> tuple[str, str]:
    """(model folder, ``<root>/<scene>/images``) of a scene-folder layout; ValueError naming
    the missing scene folder, image folder or model."""
    scene_dir = os.path.join(os.fspath(root), scene)
    if not os.path.isdir(scene_dir):
        raise ValueError(f"{dataset}: scene folder {scene_dir!r} does not exist")
    image_dir = os.path.join(scene_dir, "images")
    if not os.path.isdir(image_dir):
        raise ValueError(f"{dataset}: image folder {image_dir!r} does not exist")
    return find_model(model_tries(os.fspath(root), scene), f"{dataset} scene {scene!r}"), image_dir


def list_scene_folders(root, model_tries, dataset: str) -> list[str]:
    """Folders under ``root`` with ``images/`` and a model in ``model_tries(root, scene)``."""
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise ValueError(f"{dataset}: root {root!r} is not a directory")
    out = []
    for s in sorted(os.listdir(root), key=natural_key):
        try:
            scene_paths(root, s, model_tries, dataset)
        except ValueError:
            continue
        out.append(s)
    return out
