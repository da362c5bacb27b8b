"""Tanks and Temples as the NVS community ships it -> ``SceneRecord``.

Layout (``root`` = the folder holding the scenes), the 3D Gaussian Splatting ``tandt_db.zip``
release (https://repo-sam.inria.fr/fungraph/3d-gaussian-splatting/datasets/input/tandt_db.zip,
``tandt/train`` 301 images ``00001.jpg``..., ``tandt/truck`` 251 images ``000001.jpg``...;
unpack it and pass ``tandt_db/tandt``) and any scene of the full Tanks and Temples set
reconstructed the same way::

    <scene>/images/<name>.jpg        undistorted images
    <scene>/sparse/0/                COLMAP model (cameras/images/points3D .bin or .txt),
                                     PINHOLE cameras (``colmap image_undistorter`` output)

``<scene>/sparse/`` holding the model files directly is accepted too. The DA3 paper's six
Tanks and Temples NVS scenes are not named in a public source we found (``tandt_db`` has two:
``train``, ``truck``), so every folder of this layout is a scene (`list_scenes`).

Views: all registered images in natural name order; K (COLMAP, pixel-edge), w2c and
points3D sparse depth through ``_nvs.colmap_scene`` (distortion policy of ``colmap``), resized
to ``hw`` (default 270 x 480). ``max_frames``: see ``_nvs``.
"""

from __future__ import annotations

import os

from data_pipelines.readers import _io, _nvs
from data_pipelines.record import SceneRecord

NAME = "tanks_temples"
GS_SCENES = ("train", "truck")  # the 3DGS tandt_db release


def model_candidates(root: str, scene: str) -> list[str]:
    """Model folders tried, in order."""
    return [os.path.join(root, scene, "sparse", "0"), os.path.join(root, scene, "sparse")]


def list_scenes(root: _io.PathLike) -> list[str]:
    """Folders under ``root`` with ``images/`` and a COLMAP model in ``sparse[/0]``."""
    return _nvs.list_scene_folders(root, model_candidates, NAME)


def list_frames(root: _io.PathLike, scene: str) -> list[str]:
    """Image paths of a scene in frame order (before sampling)."""
    return _nvs.colmap_views(*_nvs.scene_paths(root, scene, model_candidates, NAME))[2]


def load_scene(root: _io.PathLike, scene: str, max_frames: int | None = None, seed: int = 42,
               hw=_nvs.NVS_HW) -> SceneRecord:
    """Loads one scene: all frames in order, resized to ``hw`` (see ``_nvs``)."""
    model_dir, image_dir = _nvs.scene_paths(root, scene, model_candidates, NAME)
    return _nvs.colmap_scene(model_dir, image_dir, dataset=NAME, scene_id=scene,
                             max_frames=max_frames, seed=seed, hw=hw)
