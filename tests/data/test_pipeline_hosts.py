"""Multi-host data: every host agrees on N, and the global batch does not depend on the
process count (host p's rows of a 2-host run == the same rows of a 1-host run)."""

import numpy as np

from data_pipelines.pipeline import PipelineConfig, make_train_iterator
from data_pipelines.record import SceneRecord
from data_pipelines.sources import InMemorySource


def _scene(i, n):
    rng = np.random.default_rng(i)
    depth = rng.uniform(1.0, 3.0, (n, 14, 14)).astype(np.float32)
    k = np.array([[14.0, 0, 7], [0, 14.0, 7], [0, 0, 1]], np.float32)
    ext = np.concatenate([np.repeat(np.eye(3)[None], n, 0), rng.normal(size=(n, 3, 1))],
                         axis=2).astype(np.float32)
    return SceneRecord(rng.integers(0, 256, (n, 14, 14, 3), dtype=np.uint8), depth, depth > 0,
                       np.repeat(k[None], n, 0), ext, "t", f"t_{i}", True, "dense_gt")


def test_hosts_agree_on_shape_and_split_one_global_batch():
    # scenes with 2..5 views; N is drawn in [2, 5] so some scenes need padding
    src = InMemorySource([_scene(i, 2 + i % 4) for i in range(12)])
    kw = dict(image_hw=(14, 14), min_views=2, max_views=5, zoom_range=(1.0, 1.2))
    one = make_train_iterator(PipelineConfig(batch_size=4, process_index=0, process_count=1,
                                             **kw), [src])
    hosts = [make_train_iterator(PipelineConfig(batch_size=2, process_index=p, process_count=2,
                                                **kw), [src]) for p in range(2)]
    padded = 0
    for _ in range(8):
        ref = next(one)
        parts = [next(h) for h in hosts]
        assert parts[0]["images"].shape == parts[1]["images"].shape  # same N on both hosts
        for key in ref:
            np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), ref[key],
                                          err_msg=key)
        mask = ref["view_mask"]
        has_valid = ref["valid"].reshape(*mask.shape, -1).any(-1)
        np.testing.assert_array_equal(has_valid, mask)  # padding views carry no depth
        assert mask[:, :2].all()
        padded += int((~mask).sum())
    assert padded > 0
