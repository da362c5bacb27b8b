"""The demo student recipe: on-the-fly procedural data, known cameras for part of each batch
(so the camera encoder gets gradients), ray_conf in the loss, and the config's block layout."""

import jax
import numpy as np
import pytest

from da3_jax.model.vit import is_global_block
from da3_jax.train import da3_tasks
from experiments.configs import tiny_cpu
from tests._fast_compile import run_fast


def _config(pose_cond: float, batch: int):
    c = tiny_cpu.get_config(f"stage=student,depth=4,xview=1,views=2,batch={batch},"
                            f"pose_cond={pose_cond}")
    c.data.train_sources, c.data.weights = [], None
    c.data.synthetic.update(hw=(28, 28))
    c.data.pipeline.update(image_hw=(28, 28))
    return c


def test_camera_encoder_and_ray_conf_get_gradients():
    # one sample, given its cameras (the demo gives them to 1 sample in 4; one sample keeps the
    # compile small: a split batch compiles two forward passes)
    task = da3_tasks.student_task(_config(1.0, batch=1))
    batch = next(task.train_iter())
    assert batch["images"].shape == (1, 2, 28, 28, 3)
    # Jitted, with an 'rbg' key: the eager init with a threefry key took 39 s of CPU (op by op),
    # jitted 33 s (XLA:CPU compiling one threefry per parameter), this 13 s. Both programs are
    # compiled with tests._fast_compile (30 -> 22 s CPU in all).
    key = jax.random.key(0, impl="rbg")
    params = run_fast(task.init_params, key, batch)
    grads = run_fast(jax.grad(lambda p: task.loss_fn(p, batch, None)[0]), params)
    assert sum(float(np.abs(x).sum()) for x in jax.tree.leaves(grads["cam_enc"])) > 0
    # ray_conf = exp(c6) + 1: channel 6 of the ray head's last conv (DualDPT aux output)
    last = grads["head"]["scratch"]["output_conv2_aux_3_5"]
    assert abs(float(last["bias"][6])) > 0 and np.abs(last["kernel"][..., 6]).sum() > 0


@pytest.mark.parametrize("depth,xview", [(4, 1), (6, 3), (8, 3)])
def test_model_overrides_place_the_cross_view_blocks(depth, xview):
    o = tiny_cpu.model_overrides(depth, xview)
    glob = [i for i in range(depth) if is_global_block(i, o["alt_start"])]
    assert len(glob) == xview and glob[-1] == depth - 1 and o["out_layers"][-1] == depth - 1
    with pytest.raises(ValueError, match="xview"):
        tiny_cpu.model_overrides(depth, depth)
