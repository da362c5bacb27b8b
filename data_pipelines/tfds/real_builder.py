"""TFDS builder of converted real scenes (file_format array_record).

Real datasets cannot be downloaded by TFDS here, so conversion is two steps:

1. read each scene with a reader of ``data_pipelines.readers`` and save it with
   ``save_record(rec, MANUAL_DIR / split)`` (one ``.npz`` = ``SceneRecord.to_bytes()`` per scene;
   split folders ``train/``, ``validation/``, ``test/``; files directly in ``MANUAL_DIR`` go to
   ``train``);
2. build::

       builder = RealScenes(config="max504", data_dir=DIR, file_format="array_record")
       builder.download_and_prepare(
           download_config=tfds.download.DownloadConfig(manual_dir=MANUAL_DIR))
       ds = builder.as_data_source(split="train")   # or tfds.data_source("real_scenes/max504")
       rec = SceneRecord.from_example(ds[0])        # data_pipelines.sources.TfdsSceneSource

Scenes differ in view count and image size, so every array feature has dynamic shape
(``tfds.features.Tensor`` with zlib encoding: exact, lossless). Configs: ``full`` keeps scenes as
converted; ``max504`` shrinks views whose longer side exceeds 504 px (images area-averaged,
depth/valid nearest, K rescaled through ``data_pipelines.transforms``), which keeps
ETH3D-size (6048x4032) scenes small. Records are validated before they are written; the example
key is ``"<dataset>/<scene_id>"``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import zipfile

import numpy as np
import tensorflow_datasets as tfds

from data_pipelines import transforms
from data_pipelines.record import SceneRecord
from data_pipelines.tfds.features import scene_features

SPLITS = ("train", "validation", "test")


def save_record(rec: SceneRecord, directory: str | os.PathLike) -> str:
    """Writes ``rec`` (validated) as ``<dataset>__<scene_id>.npz`` in ``directory``; returns the
    path. Characters other than ``[A-Za-z0-9._-]`` in the name become ``_``."""
    os.makedirs(directory, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9._-]", "_", f"{rec.dataset}__{rec.scene_id}") + ".npz"
    path = os.path.join(os.fspath(directory), name)
    with open(path, "wb") as f:
        f.write(rec.validate().to_bytes())
    return path


def load_record(path: str | os.PathLike) -> SceneRecord:
    """Reads a file written by ``save_record``; ValueError naming the file if it is corrupt."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        return SceneRecord.from_bytes(data).validate()
    except (ValueError, KeyError, zipfile.BadZipFile) as e:  # from_bytes lets BadZipFile through
        raise ValueError(f"record: {os.fspath(path)!r}: {e}") from e


def shrink(rec: SceneRecord, max_side: int | None) -> SceneRecord:
    """Downscales all views so that max(H, W) <= max_side (aspect kept); K updated exactly."""
    h, w = rec.image_hw
    if max_side is None or max(h, w) <= max_side:
        return rec
    s = max_side / max(h, w)
    rh, rw = max(1, round(h * s)), max(1, round(w * s))
    plan = transforms.ResizeCropPlan(rh, rw, 0, 0, rh, rw)
    views = [transforms.apply_plan(plan, *v) for v in zip(rec.images, rec.depth, rec.valid,
                                                          strict=True)]
    k = transforms.plan_intrinsics(rec.intrinsics, np.tile([[h, w]], (rec.num_views, 1)),
                                   [plan] * rec.num_views)
    return dataclasses.replace(
        rec,
        images=np.stack([v[0] for v in views]),
        depth=np.stack([v[1] for v in views]).astype(np.float32),
        valid=np.stack([v[2] for v in views]),
        intrinsics=k,
    )


@dataclasses.dataclass
class RealScenesConfig(tfds.core.BuilderConfig):
    """``max_side``: shrink views with a longer side above it (None = keep size)."""

    max_side: int | None = None


class RealScenes(tfds.core.GeneratorBasedBuilder):
    """Converted real scenes (records of data_pipelines.readers), see the module docstring."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Convert scenes with data_pipelines.readers and write each with "
        "data_pipelines.tfds.real_builder.save_record(rec, manual_dir / split)."
    )
    BUILDER_CONFIGS = [
        RealScenesConfig(name="full", description="scenes at their converted resolution"),
        RealScenesConfig(name="max504", description="longer image side at most 504 px",
                         max_side=504),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=scene_features(),
            supervised_keys=None,
            homepage="https://github.com/da3_jax (converted real scenes)",
        )

    def _split_generators(self, dl_manager):
        root = os.fspath(dl_manager.manual_dir)
        splits = {}
        for split in SPLITS:
            d = os.path.join(root, split)
            if os.path.isdir(d):
                files = sorted(f for f in os.listdir(d) if f.endswith(".npz"))
                splits[split] = [os.path.join(d, f) for f in files]
        top = sorted(f for f in os.listdir(root) if f.endswith(".npz"))
        if top:
            splits["train"] = splits.get("train", []) + [os.path.join(root, f) for f in top]
        splits = {k: v for k, v in splits.items() if v}
        if not splits:
            raise ValueError(f"real_scenes: manual_dir {root!r} holds no .npz records "
                             f"(directly or under {SPLITS})")
        return {k: self._generate_examples(v) for k, v in splits.items()}

    def _generate_examples(self, files):
        for path in files:
            rec = shrink(load_record(path), self.builder_config.max_side).validate()
            yield f"{rec.dataset}/{rec.scene_id}", rec.to_example()
