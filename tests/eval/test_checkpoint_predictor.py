"""The runner with a real (tiny, randomly initialised) da3_jax checkpoint behind the predictor
protocol: kinds map to the right `Predictor.predict` calls and outputs are resized back."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from da3_jax.eval import metrics, predictors, runner


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from da3_jax.convert import save_converted
    from da3_jax.model import DA3, get_config

    cfg = get_config("da3-tiny")
    cfg.depth = 4
    cfg.out_layers = (0, 1, 2, 3)
    shapes = jax.eval_shape(DA3(cfg).init, jax.random.key(0),
                            jax.ShapeDtypeStruct((1, 1, 28, 28, 3), np.float32))["params"]
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: (rng.normal(size=s.shape) * 0.02).astype(np.float32), shapes)
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    save_converted(path, cfg, params)
    return str(path)


def test_checkpoint_predictor_in_runner(tiny_checkpoint):
    from data_pipelines.record import SceneRecord

    rng = np.random.default_rng(0)
    n, h, w = 3, 40, 60
    ext = np.tile(np.eye(4)[:3], (n, 1, 1))
    ext[:, :, :3] = Rotation.from_rotvec(rng.normal(size=(n, 3)) * 0.1).as_matrix()
    ext[:, :, 3] = rng.normal(size=(n, 3))
    k = np.array([[50.0, 0, 30], [0, 50.0, 20], [0, 0, 1]])
    rec = SceneRecord(images=rng.integers(0, 255, (n, h, w, 3), dtype=np.uint8),
                      depth=rng.uniform(1, 3, (n, h, w)).astype(np.float32),
                      valid=np.ones((n, h, w), bool),
                      intrinsics=np.tile(k, (n, 1, 1)).astype(np.float32),
                      extrinsics=ext.astype(np.float32), dataset="synthetic", scene_id="s",
                      is_metric=True, depth_kind="dense_gt").validate()
    pred = predictors.CheckpointPredictor(tiny_checkpoint, process_res=28)
    unposed = pred(rec, "unposed")
    assert unposed["depth"].shape[0] == n and unposed["depth"].shape[1:] != (h, w)
    res = runner.evaluate_scene(rec, pred, ("pose", "recon_posed"))
    ref = metrics.pose_auc(unposed["extrinsics"], rec.extrinsics)
    assert res["pose"]["auc30"] == ref["auc30"]
    # 'posed' conditions on the GT cameras and returns them (official default alignment), so
    # the Sim(3) between predicted and GT cameras is the identity.
    assert res["recon_posed"]["scale"] == pytest.approx(1.0, abs=1e-4)
    assert 0.0 <= res["recon_posed"]["fscore"] <= 1.0
