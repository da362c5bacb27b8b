"""DL3DV-10K Benchmark (the 140 NVS scenes of the DA3 NVS benchmark) -> ``SceneRecord``.

Download: Hugging Face dataset ``DL3DV/DL3DV-10K-Benchmark`` (access on request; the
``DL3DV-10K/Dataset`` README, "Benchmark images, camera pose": "both Nerfstudio and 3D Gaussian
Splatting formats"). ``root`` is the folder holding the scene hashes::

    <hash>/nerfstudio/transforms.json          nerfstudio format (preferred)
    <hash>/nerfstudio/images{,_2,_4,_8}/frame_XXXXX.png
    <hash>/gaussian_splat/sparse/0/            3DGS format: undistorted COLMAP model (PINHOLE)
    <hash>/gaussian_splat/images{,_2,_4,_8}/   of the undistorted images

``<hash>/transforms.json`` + ``<hash>/images_8`` (the DL3DV-ALL-480P layout) is read as the
nerfstudio format too. ``images_8`` is 270 x 480 (3840 x 2160 / 8), the protocol's size; it is
the folder DepthSplat's ``src/scripts/convert_dl3dv_test.py`` converts (its ``images_4`` option
is 540 x 960).

``transforms.json`` (nerfstudio ``ns-process-data``, as read by DepthSplat's converter and
gsplat-DL3DV loaders):

* ``fl_x, fl_y, cx, cy`` in pixels **for the ``w`` x ``h`` full-resolution frames** (3840 x 2160),
  copied from COLMAP, so already the record's pixel-edge convention; nerfstudio allows the same
  keys per frame (they override the global ones). K is scaled to the size of the images read
  (``images_8``: x 1/8), exactly as DepthSplat normalises by ``w``, ``h``;
* ``camera_model`` ``OPENCV`` with ``k1, k2, p1, p2``: the images are *not* undistorted; the
  distortion is ignored with a ``UserWarning`` (as DepthSplat does, and ``colmap``'s policy).
  Fisheye / equirectangular models raise ValueError;
* ``frames[i].transform_matrix``: 4 x 4 camera-to-world with **OpenGL camera axes** (x right,
  y up, z backward; nerfstudio flips COLMAP's y and z columns), converted with
  ``da3_jax.geometry.opengl_to_opencv_c2w`` and inverted to the record's OpenCV w2c;
* ``applied_transform`` (present in newer files: the world rotation nerfstudio applied to
  COLMAP's world) and ``colmap_im_id`` are not needed: any fixed world frame serves the
  benchmark, and the w2c are consistent among themselves;
* ``frames[i].file_path`` (``images/frame_00001.png``): the file of the same name is read from
  the chosen images folder. Views are ordered by that name (natural sort), not by the JSON
  order; a listed frame whose image is missing raises ValueError naming it.

The nerfstudio format carries no depth: depth is all 0 (``sparse_gt`` with nothing valid). The
``gaussian_splat`` format goes through ``_nvs.colmap_scene`` (points3D sparse depth).
Resizing to ``hw`` and ``max_frames``: see ``_nvs``.
"""

from __future__ import annotations

import json
import os
import warnings

import numpy as np

from data_pipelines.readers import _io, _nvs
from data_pipelines.record import SceneRecord

NAME = "dl3dv"
LAYOUTS = ("auto", "nerfstudio", "gaussian_splat")
_PINHOLE = {"PINHOLE", "SIMPLE_PINHOLE"}
_DISTORTED = {"OPENCV", "SIMPLE_RADIAL", "RADIAL"}
_DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")


def _transforms_candidates(root: str, scene: str) -> list[str]:
    return [os.path.join(root, scene, "nerfstudio", "transforms.json"),
            os.path.join(root, scene, "transforms.json")]


def _gs_dir(root: str, scene: str) -> str:
    return os.path.join(root, scene, "gaussian_splat")


def _layout(root: str, scene: str, layout: str) -> tuple[str, str]:
    """(layout, transforms.json path or gaussian_splat folder); ValueError listing the tries."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout: expected one of {LAYOUTS}, got {layout!r}")
    if not os.path.isdir(os.path.join(root, scene)):
        raise ValueError(f"dl3dv: scene folder {os.path.join(root, scene)!r} does not exist")
    tries = []
    if layout in ("auto", "nerfstudio"):
        tries += _transforms_candidates(root, scene)
        for p in tries:
            if os.path.isfile(p):
                return "nerfstudio", p
    if layout in ("auto", "gaussian_splat"):
        model = os.path.join(_gs_dir(root, scene), "sparse", "0")
        tries.append(model)
        if os.path.isdir(model):
            return "gaussian_splat", _gs_dir(root, scene)
    raise ValueError(f"dl3dv: scene {scene!r} has no {layout} layout: none of {tries} exists")


def list_scenes(root: _io.PathLike) -> list[str]:
    """Scene hashes under ``root`` with a nerfstudio or gaussian_splat layout, sorted."""
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise ValueError(f"dl3dv: root {root!r} is not a directory")
    return sorted(s for s in os.listdir(root)
                  if any(os.path.isfile(p) for p in _transforms_candidates(root, s))
                  or os.path.isdir(os.path.join(_gs_dir(root, s), "sparse", "0")))


def _image_dir(base: str, images: str) -> str:
    path = os.path.join(base, images)
    if not os.path.isdir(path):
        have = sorted(d for d in os.listdir(base) if d.startswith("images"))
        raise ValueError(f"dl3dv: image folder {path!r} does not exist (found: {have})")
    return path


def _num(d: dict, key: str, path: str) -> float:
    try:
        v = float(d[key])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"transforms: {path!r} has no numeric {key!r}") from e
    if not np.isfinite(v):
        raise ValueError(f"transforms: {path!r} field {key!r} is not finite")
    return v


def parse_transforms(path: str, image_dir: str):
    """``transforms.json`` -> (frames sorted by name, K ``[N,3,3]`` at the calibration size,
    calibration (H, W) ``[N, 2]``, OpenGL c2w ``[N, 4, 4]``, image paths)."""
    path = _io.require_file(path, "transforms")
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"transforms: {path!r} is not valid JSON: {e}") from e
    frames = meta.get("frames") if isinstance(meta, dict) else None
    if not frames:
        raise ValueError(f"transforms: {path!r} has no 'frames' list")
    frames = sorted(frames, key=lambda fr: _nvs.natural_key(os.path.basename(
        str(fr.get("file_path", "")))))
    ks, hws, c2ws, files = [], [], [], []
    distorted = set()
    for fr in frames:
        if "file_path" not in fr or "transform_matrix" not in fr:
            raise ValueError(f"transforms: {path!r} has a frame without 'file_path' / "
                             f"'transform_matrix': {str(fr)[:120]}")
        cam = {**meta, **fr}  # per-frame intrinsics override the global ones
        model = str(cam.get("camera_model", "PINHOLE"))
        if model not in _PINHOLE | _DISTORTED:
            raise ValueError(f"transforms: {path!r} camera_model {model!r} is not supported "
                             f"(expected one of {sorted(_PINHOLE | _DISTORTED)})")
        if model in _DISTORTED and any(float(cam.get(k, 0.0)) for k in _DISTORTION_KEYS):
            distorted.add(model)
        fx, fy, cx, cy = (_num(cam, k, path) for k in ("fl_x", "fl_y", "cx", "cy"))
        ks.append([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        hws.append((_num(cam, "h", path), _num(cam, "w", path)))
        c2w = np.asarray(fr["transform_matrix"], np.float64)
        c2ws.append(_io.check_pose(c2w, path, f"transform_matrix of {fr['file_path']!r}"))
        files.append(os.path.join(image_dir, os.path.basename(str(fr["file_path"]))))
    missing = [p for p in files if not os.path.isfile(p)]
    if missing:
        raise ValueError(f"images: {len(missing)} of the {len(files)} frames listed in {path!r} "
                         f"are missing, e.g. {missing[:3]}")
    if len(set(files)) != len(files):
        raise ValueError(f"transforms: {path!r} lists the same image file twice")
    if distorted:
        warnings.warn(f"dl3dv: {path!r} camera model {sorted(distorted)} distortion is ignored "
                      "(pinhole part only, as DepthSplat's converter)", UserWarning, stacklevel=2)
    bottom = np.tile([[0.0, 0.0, 0.0, 1.0]], (len(c2ws), 1, 1))
    return (np.asarray(ks), np.asarray(hws), np.concatenate([np.stack(c2ws), bottom], 1),
            files)


def _nerfstudio_dir(transforms_path: str) -> str:
    return os.path.dirname(transforms_path)


def list_frames(root: _io.PathLike, scene: str, images: str = "images_8",
                layout: str = "auto") -> list[str]:
    """Image paths of a scene in frame order (before sampling)."""
    root = os.fspath(root)
    kind, where = _layout(root, scene, layout)
    if kind == "nerfstudio":
        return parse_transforms(where, _image_dir(_nerfstudio_dir(where), images))[3]
    return _nvs.colmap_views(os.path.join(where, "sparse", "0"), _image_dir(where, images))[2]


def load_scene(root: _io.PathLike, scene: str, max_frames: int | None = None, seed: int = 42,
               hw=_nvs.NVS_HW, images: str = "images_8", layout: str = "auto") -> SceneRecord:
    """Loads one DL3DV benchmark scene: all frames in order, resized to ``hw`` (``_nvs``).

    Args:
      images: the image folder to read (``images_8`` = 270 x 480, ``images_4``, ...).
      layout: 'auto' (nerfstudio if ``transforms.json`` exists, else gaussian_splat),
        'nerfstudio' or 'gaussian_splat'.
    """
    root = os.fspath(root)
    hw = _nvs.check_hw(hw)
    kind, where = _layout(root, scene, layout)
    if kind == "gaussian_splat":
        return _nvs.colmap_scene(os.path.join(where, "sparse", "0"), _image_dir(where, images),
                                 dataset=NAME, scene_id=scene, max_frames=max_frames,
                                 seed=seed, hw=hw)
    ks, calib_hw, c2w_gl, files = parse_transforms(where, _image_dir(_nerfstudio_dir(where),
                                                                     images))
    idx = _io.sample_frames(len(files), max_frames, seed)
    files = [files[i] for i in idx]
    imgs = [_io.read_rgb(p) for p in files]
    ks = _nvs.fit_k_to_images(ks[idx], calib_hw[idx], [im.shape[:2] for im in imgs], files)
    imgs, ks = _nvs.resize_views(imgs, ks, hw, files)
    return _io.make_record(imgs, np.zeros(imgs.shape[:3], np.float32), ks,
                           _io.opengl_c2w_to_w2c(c2w_gl[idx]), dataset=NAME, scene_id=scene,
                           is_metric=False, depth_kind="sparse_gt",
                           provenance={"image_files": files, "transforms": where})
