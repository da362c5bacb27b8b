"""DA3 benchmark layout of 7-Scenes -> ``SceneRecord`` (mirrors the official evaluator's loader).

Layout (``root`` = ``benchmark_dataset/7scenes``)::

    7Scenes/<scene>/seq-01/frame-XXXXXX.{color.png,depth.png,pose.txt}   (stairs: seq-02)
    7Scenes/meshes/<scene>.ply                                           GT mesh (provenance)

Only frames 0..999 (0..499 for ``stairs``) with both colour and pose are used; the pose file is
camera-to-world and is inverted to world-to-camera. Depth: uint16 mm, 0/65535 = invalid. K is
the fixed f = 585, c = (320, 240) of the official evaluator (see ``rgbd``). Then at most
``max_frames`` frames are kept with the official sampling (``_io.sample_frames``).
"""

from __future__ import annotations

import dataclasses
import os

from data_pipelines.readers import _io, rgbd
from data_pipelines.record import SceneRecord

NAME = "7scenes"
SCENES = ("chess", "fire", "heads", "office", "pumpkin", "redkitchen", "stairs")


def _seq_dir(root: _io.PathLike, scene: str) -> tuple[str, int]:
    seq, n = ("seq-02", 500) if scene == "stairs" else ("seq-01", 1000)
    return os.path.join(os.fspath(root), "7Scenes", scene, seq), n


def list_scenes(root: _io.PathLike) -> list[str]:
    """The official 7 scenes that exist under ``root``."""
    return [s for s in SCENES if os.path.isdir(_seq_dir(root, s)[0])]


def list_frames(root: _io.PathLike, scene: str) -> list[str]:
    """Ordered colour image paths of a scene (before sampling)."""
    seq_dir, limit = _seq_dir(root, scene)
    stems = rgbd.list_7scenes_frames(seq_dir, limit)
    return [os.path.join(seq_dir, s + ".color.png") for s in stems]


def load_scene(
    root: _io.PathLike, scene: str, max_frames: int | None = None, seed: int = 42
) -> SceneRecord:
    """Loads one 7-Scenes benchmark scene (sampled like the official evaluator)."""
    seq_dir, limit = _seq_dir(root, scene)
    stems = rgbd.list_7scenes_frames(seq_dir, limit)
    if not stems:
        raise ValueError(f"7scenes: {seq_dir!r} has no frame-*.color.png with a pose file")
    stems = [stems[i] for i in _io.sample_frames(len(stems), max_frames, seed)]
    rec = rgbd.read_7scenes_sequence(seq_dir, stems, dataset=NAME, scene_id=scene)
    mesh = os.path.join(os.fspath(root), "7Scenes", "meshes", f"{scene}.ply")
    return dataclasses.replace(rec, provenance={**rec.provenance, "gt_mesh": mesh})
