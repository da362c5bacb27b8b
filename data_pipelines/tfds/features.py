"""TFDS features of a `SceneRecord.to_example()` dict, shared by the dataset builders.

Arrays are `tfds.features.Tensor` with zlib encoding (exact, lossless); strings are
`tfds.features.Text`; `provenance` is JSON text (see data_pipelines.record).
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds


def scene_features(
    num_views: int | None = None, height: int | None = None, width: int | None = None
) -> tfds.features.FeaturesDict:
    """Features of one scene of `num_views` views at `height x width` (None = dynamic size).

    images uint8 `[N, H, W, 3]`, depth float32 `[N, H, W]`, valid bool `[N, H, W]`,
    intrinsics float32 `[N, 3, 3]` (pixels), extrinsics float32 w2c `[N, 3, 4]`.
    """
    n, h, w = num_views, height, width

    def tensor(shape, dtype):
        return tfds.features.Tensor(shape=shape, dtype=dtype, encoding="zlib")

    return tfds.features.FeaturesDict({
        "images": tensor((n, h, w, 3), np.uint8),
        "depth": tensor((n, h, w), np.float32),
        "valid": tensor((n, h, w), np.bool_),
        "intrinsics": tensor((n, 3, 3), np.float32),
        "extrinsics": tensor((n, 3, 4), np.float32),
        "dataset": tfds.features.Text(),
        "scene_id": tfds.features.Text(),
        "is_metric": tfds.features.Scalar(dtype=np.bool_),
        "depth_kind": tfds.features.Text(),
        "provenance": tfds.features.Text(),
    })
