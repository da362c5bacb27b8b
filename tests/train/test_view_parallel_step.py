"""View-parallel training from the config: the student task's loss and gradients (da3_tasks
loss on a real pipeline batch, tiny DA3 with one cross-view block) on ``fsdp 2 x view 4`` and
``data 2 x view 2 x tensor 2`` meshes, for both ``model.overrides.attention_impl`` view modes
(``allgather_view``, ``ring_view``), equal the single-device ones: the loss to 1e-5 relative,
every gradient to 1e-5 of the largest gradient (measured: loss 1.2e-7 relative, gradients
2.6e-7 of the largest at most, on the DPT head's convolutions: fp32 sums in another order
across shards).

Each case also checks, in the lowered program, that the view mode's own collective is there
(``all_gather`` for ``allgather_view``, ``collective_permute`` and no ``all_gather`` for the
ring), and in the compiled one that the ``tensor`` axis really splits the computation: the
per-device qkv / fc1 matmuls run on half-width weight shards."""

import re

import jax
import numpy as np
import pytest

from da3_jax.parallel import rules
from da3_jax.train import loop, tasks
from data_pipelines.pipeline import make_train_iterator
from experiments.configs import tiny_cpu
from tests._fast_compile import OPTIONS, run_fast

# The smallest student with a DPT head (4 out layers) and a cross-view block.
CONFIG = "stage=student,batch=2,depth=4,xview=1"
# Every program here (sharded and one-device reference alike) is compiled with
# tests._fast_compile (HLO passes unchanged, so is the compiled HLO text checked below): the
# compiles are most of this file's CPU time.


def _config(impl, mesh_shape):
    c = tiny_cpu.get_config(CONFIG)
    c.model.overrides.attention_impl = impl
    c.mesh_shape.update(mesh_shape)
    return c


@pytest.fixture(scope="module")
def batch_and_params():
    """A real pipeline batch (2 scenes x 4 views, 28x28), params, and the one-device
    reference (loss, grads), compiled once for every case."""
    c = _config("auto", {})
    pcfg = dict(c.data.pipeline, batch_size=2, min_views=4, max_views=4, image_hw=(28, 28),
                synthetic_hw=(28, 28), synthetic_num_views=4, process_index=0, process_count=1)
    it = make_train_iterator(pcfg)
    batch = next(it)
    it.close()
    task = tasks.get_task(c)
    # an rbg key: XLA:CPU compiles its init ~20 s faster than a threefry one (one per leaf)
    params = run_fast(task.init_params, jax.random.key(0, impl="rbg"), batch)
    ref = run_fast(jax.value_and_grad(task.loss_fn, has_aux=True), params, batch, None)
    return batch, params, ref


def _forward_matmul_widths(hlo: str) -> dict[str, set[int]]:
    """Output widths of the per-device forward qkv / fc1 matmuls in compiled HLO text."""
    widths: dict[str, set[int]] = {"attn/qkv": set(), "mlp/fc1": set()}
    for m in re.finditer(r"= f32\[[\d,]*?(\d+)\]\{[^}]*\} dot\(.*?op_name=\"[^\"]*"
                         r"/jvp\(DA3\)/[^\"]*/(attn/qkv|mlp/fc1)/dot_general\"", hlo):
        widths[m.group(2)].add(int(m.group(1)))
    return widths


@pytest.mark.parametrize("impl", ["allgather_view", "ring_view"])
@pytest.mark.parametrize("mesh_shape", [{"fsdp": 2, "view": 4},
                                        {"data": 2, "view": 2, "tensor": 2}],
                         ids=["fsdp2-view4", "data2-view2-tensor2"])
def test_view_parallel_loss_and_grads_match_one_device(batch_and_params, impl, mesh_shape):
    batch, params, ((ref_loss, _), ref_grads) = batch_and_params
    config = _config(impl, mesh_shape)
    task = tasks.get_task(config)
    mesh = loop.make_mesh(config)
    spec = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), batch)
    bsh = loop.batch_shardings(spec, mesh)
    psh = rules.tree_shardings(params, mesh)
    fn = jax.jit(jax.value_and_grad(task.loss_fn, has_aux=True),
                 in_shardings=(psh, bsh, None), out_shardings=((None, None), psh))
    with jax.set_mesh(mesh):
        lowered = fn.lower(params, batch, None)
        compiled = lowered.compile(compiler_options=OPTIONS)
        (loss, _), grads = compiled(params, batch, None)
    # The view mode's collectives, as written by shard_map (before the compiler adds its own).
    stablehlo = lowered.as_text()
    if impl == "ring_view":
        assert "collective_permute" in stablehlo and "all_gather" not in stablehlo
    else:
        assert "all_gather" in stablehlo and "collective_permute" not in stablehlo
    if "tensor" in mesh_shape:  # each device computes half of every qkv / fc1 output
        blk = params["backbone"]["pretrained"]["blocks_0"]
        assert _forward_matmul_widths(compiled.as_text()) == {
            "attn/qkv": {blk["attn"]["qkv"]["kernel"].shape[1] // 2},
            "mlp/fc1": {blk["mlp"]["fc1"]["kernel"].shape[1] // 2}}
    assert any(len(g.sharding.device_set) == 8 for g in jax.tree.leaves(grads))
    np.testing.assert_allclose(float(loss), float(ref_loss), rtol=1e-5)
    scale = max(float(np.abs(g).max()) for g in jax.tree.leaves(ref_grads))
    errors = {jax.tree_util.keystr(path): float(np.abs(np.asarray(g) - np.asarray(r)).max())
              for (path, g), r in zip(jax.tree_util.tree_leaves_with_path(grads),
                                      jax.tree.leaves(ref_grads), strict=True)}
    worst = max(errors, key=errors.get)
    assert errors[worst] <= 1e-5 * scale, (worst, errors[worst], scale)
