"""MegaDepth scenes with their COLMAP reconstructions -> ``SceneRecord``.

Two public layouts carry MegaDepth's COLMAP poses (``root`` = the folder holding the scene ids,
e.g. ``0015``); both are read, the undistorted one first:

* ``Undistorted_SfM/<id>/{images, sparse}``: ``MegaDepth_v1_SfM`` model 0 undistorted by
  ``colmap image_undistorter`` (PINHOLE cameras), made by D2-Net's
  ``megadepth_utils/undistort_reconstructions.py`` and used by the D2-Net / LoFTR MegaDepth
  preprocessing. The model files lie directly in ``sparse/`` (a ``sparse-txt/`` text copy is
  read if ``sparse/`` is absent).
* ``MegaDepth_v1_SfM/<id>/{images, sparse/manhattan/<k>}``: the original release
  (https://www.cs.cornell.edu/projects/megadepth/): distorted images with SIMPLE_RADIAL-type
  cameras, whose distortion is ignored with a warning (``colmap``'s policy; undistort with the
  D2-Net script for exact pinhole images). ``model_index`` (default 0, the model D2-Net
  undistorts) picks ``<k>``.

The DA3 paper's 19 MegaDepth NVS scenes are not listed in a public source we found;
`list_scenes` returns every scene of either layout. MegaDepth photos are unordered internet
photos of different sizes: "frame order" is the natural order of the file names, and the
default ``hw`` (270 x 480) is required to stack them (each view is scaled to cover 270 x 480 and
centre-cropped, so portrait photos lose their top and bottom). ``max_frames``: see ``_nvs``.
"""

from __future__ import annotations

import functools
import os

from data_pipelines.readers import _io, _nvs
from data_pipelines.record import SceneRecord

NAME = "megadepth"


def model_candidates(root: str, scene: str, model_index: int = 0) -> list[str]:
    """Model folders tried, in order (Undistorted_SfM, its text copy, MegaDepth_v1_SfM)."""
    base = os.path.join(root, scene)
    return [os.path.join(base, "sparse"), os.path.join(base, "sparse-txt"),
            os.path.join(base, "sparse", "manhattan", str(model_index))]


def _tries(model_index: int):
    return functools.partial(model_candidates, model_index=model_index)


def list_scenes(root: _io.PathLike, model_index: int = 0) -> list[str]:
    """Scene ids under ``root`` with ``images/`` and a model of either layout."""
    return _nvs.list_scene_folders(root, _tries(model_index), NAME)


def list_frames(root: _io.PathLike, scene: str, model_index: int = 0) -> list[str]:
    """Image paths of a scene in frame order (before sampling)."""
    return _nvs.colmap_views(*_nvs.scene_paths(root, scene, _tries(model_index), NAME))[2]


def load_scene(root: _io.PathLike, scene: str, max_frames: int | None = None, seed: int = 42,
               hw=_nvs.NVS_HW, model_index: int = 0) -> SceneRecord:
    """Loads one scene: all registered images in name order, resized to ``hw`` (``_nvs``)."""
    model_dir, image_dir = _nvs.scene_paths(root, scene, _tries(model_index), NAME)
    return _nvs.colmap_scene(model_dir, image_dir, dataset=NAME, scene_id=scene,
                             max_frames=max_frames, seed=seed, hw=hw)
