"""TFDS builder of the procedural multi-view dataset (file_format array_record).

    import tensorflow_datasets as tfds
    from data_pipelines.tfds.synthetic_builder import SyntheticScenes, SyntheticScenesConfig

    builder = SyntheticScenes(config="tiny", data_dir=DIR, file_format="array_record")
    builder.download_and_prepare()
    ds = builder.as_data_source(split="train")        # random access, no TensorFlow import
    rec = SceneRecord.from_example(ds[0])              # or data_pipelines.sources.TfdsSceneSource

Examples are `SceneRecord.to_example()` dicts (data_pipelines.record); arrays are stored as
`tfds.features.Tensor` with zlib encoding (exact, lossless). Custom sizes: pass a
`SyntheticScenesConfig(name=..., num_scenes=..., num_views=..., height=..., width=...)` as
`config=`. The `test` split holds scenes disjoint from `train` (indices after the train ones).
Building and reading both work without TensorFlow installed (checked in
tests/data/test_tfds_synthetic.py, which fails if `tensorflow` gets imported).
"""

from __future__ import annotations

import dataclasses

import tensorflow_datasets as tfds

from data_pipelines.synthetic.render import render_scene
from data_pipelines.tfds.features import scene_features


@dataclasses.dataclass
class SyntheticScenesConfig(tfds.core.BuilderConfig):
    """num_scenes train + num_test_scenes test scenes of num_views views at height x width."""

    num_scenes: int = 64
    num_test_scenes: int = 8
    num_views: int = 8
    height: int = 224
    width: int = 224
    seed: int = 0


class SyntheticScenes(tfds.core.GeneratorBasedBuilder):
    """Procedural indoor/object scenes with exact z-depth, K and w2c (see data_pipelines.record)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [
        SyntheticScenesConfig(name="tiny", description="8+2 scenes, 4 views, 56x56",
                              num_scenes=8, num_test_scenes=2, num_views=4, height=56, width=56),
        SyntheticScenesConfig(name="demo", description="96+16 scenes, 8 views, 112x112",
                              num_scenes=96, num_test_scenes=16, num_views=8, height=112,
                              width=112),
        SyntheticScenesConfig(name="base_224", description="2048+128 scenes, 8 views, 224^2",
                              num_scenes=2048, num_test_scenes=128, num_views=8, height=224,
                              width=224),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        c = self.builder_config
        return self.dataset_info_from_configs(
            features=scene_features(c.num_views, c.height, c.width),
            supervised_keys=None,
            homepage="https://github.com/da3_jax (embedded procedural dataset)",
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        c = self.builder_config
        return {
            "train": self._generate_examples(range(c.num_scenes)),
            "test": self._generate_examples(range(c.num_scenes, c.num_scenes + c.num_test_scenes)),
        }

    def _generate_examples(self, indices):
        c = self.builder_config
        for i in indices:
            rec = render_scene(i, c.num_views, c.height, c.width, c.seed)
            yield rec.scene_id, rec.to_example()
