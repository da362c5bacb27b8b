"""Convert real scenes into record files for the TFDS builder (`data_pipelines.tfds.real_builder`).

    python -m data_pipelines.readers.convert --format hololens \
        --root shared/data/hololens_dvmvs_office --out MANUAL_DIR/train
    python -m data_pipelines.readers.convert --format eth3d --root benchmark_dataset/eth3d \
        --scene courtyard --max-frames 100 --out MANUAL_DIR/test

``--format`` is one of ``FORMATS`` (per-scene readers; ``--root`` is the scene folder, except
``co3d``, where ``--root`` is the dataset root and ``--scene`` is ``category/sequence``, and
``hypersim``, where ``--scene`` is the camera, default ``cam_00``) or a
benchmark of ``BENCHMARKS`` (``--root`` is the benchmark folder; ``--scene`` may repeat; default:
every scene of ``list_scenes``). Each scene is written with ``real_builder.save_record``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

from data_pipelines.readers import (
    BENCHMARKS,
    arkitscenes,
    co3d,
    colmap,
    hypersim,
    middlebury,
    rgbd,
    tartanair,
)
from data_pipelines.record import SceneRecord


def _colmap(root: str, scene: str | None) -> SceneRecord:
    model = os.path.join(root, "sparse", "0")
    model = model if os.path.isdir(model) else os.path.join(root, "sparse")
    return colmap.read_colmap(model, os.path.join(root, "images"))


def _co3d(root: str, scene: str | None) -> SceneRecord:
    if not scene or "/" not in scene:
        raise ValueError(f"--scene must be 'category/sequence' for co3d, got {scene!r}")
    category, sequence = scene.split("/", 1)
    return co3d.read_co3d(root, category, sequence)


FORMATS: dict[str, Callable[[str, str | None], SceneRecord]] = {
    "colmap": _colmap,
    "7scenes_seq": lambda root, scene: rgbd.read_7scenes_sequence(root),
    "tum": lambda root, scene: rgbd.read_tum_sequence(root),
    "hololens": lambda root, scene: rgbd.read_hololens_clip(root),
    "middlebury2014": lambda root, scene: middlebury.read_stereo2014(root),
    "middlebury_mview": lambda root, scene: middlebury.read_multiview(root),
    "hypersim": lambda root, scene: hypersim.read_hypersim(root, cam=scene or "cam_00"),
    "tartanair": lambda root, scene: tartanair.read_tartanair(root),
    "arkitscenes": lambda root, scene: arkitscenes.read_arkitscenes(root),
    "co3d": _co3d,
}


def convert(fmt: str, root: str, out: str, scenes: list[str] | None = None,
            max_frames: int | None = None, seed: int = 42) -> list[str]:
    """Reads the scene(s) and writes one record file each into ``out``; returns the paths."""
    from data_pipelines.tfds.real_builder import save_record

    if fmt in BENCHMARKS:
        bench = BENCHMARKS[fmt]
        names = scenes or bench.list_scenes(root)
        recs = (bench.load_scene(root, s, max_frames=max_frames, seed=seed) for s in names)
    elif fmt in FORMATS:
        recs = (FORMATS[fmt](root, s) for s in (scenes or [None]))
    else:
        known = sorted(FORMATS) + sorted(BENCHMARKS)
        raise ValueError(f"--format: unknown {fmt!r}; known: {known}")
    return [save_record(rec, out) for rec in recs]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", required=True, choices=sorted(FORMATS) + sorted(BENCHMARKS))
    parser.add_argument("--root", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--scene", action="append", default=None)
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    for path in convert(args.format, args.root, args.out, args.scene, args.max_frames, args.seed):
        print(path)


if __name__ == "__main__":
    main()
