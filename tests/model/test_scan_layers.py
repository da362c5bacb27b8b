"""`config.scan_layers`: the backbone as scanned stacks (homogeneous prefix + (local, global)
pairs, `da3_jax.parallel.scan`) gives the unrolled forward exactly, with the unrolled parameters
converted by `scan.to_scanned`; also its gradient (with remat). Official weights: see
test_convert.py::test_official_small_loads_into_scanned_layout."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from da3_jax.model import DA3, get_config
from da3_jax.parallel import scan
from tests._fast_compile import run_fast

AT = ("backbone", "pretrained")


def _tiny(kind):
    cfg = get_config("da3-tiny")
    if kind == "mono":  # every block local; out layers inside the scanned prefix
        cfg.kind, cfg.head, cfg.head_use_sky, cfg.cat_token = "mono", "dpt", True, False
        cfg.alt_start = cfg.qknorm_start = cfg.rope_start = -1
        cfg.cam_enc = cfg.cam_dec = False
    return cfg


@pytest.mark.parametrize("kind,remat,grads", [("anyview", "dots", True), ("mono", "none", False)])
def test_scanned_forward_equals_unrolled(kind, remat, grads):
    cfg = _tiny(kind)
    images = jax.random.normal(jax.random.key(1), (1, 3, 28, 28, 3))  # N=3: reference selection
    shapes = jax.eval_shape(DA3(cfg).init, jax.random.key(0), images)["params"]
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: (rng.normal(size=s.shape) * 0.05).astype(np.float32), shapes)

    scfg = _tiny(kind)
    scfg.scan_layers, scfg.remat_policy = True, remat
    sched = scan.schedule_from_config(scfg)
    assert sched.prefix and (sched.pairs or kind == "mono")
    scanned = scan.to_scanned(params, sched, at=AT)
    want = jax.eval_shape(DA3(scfg).init, jax.random.key(0), images)["params"]
    assert jax.tree.structure(want) == jax.tree.structure(scanned)
    jax.tree.map(lambda w, p: np.testing.assert_equal(w.shape, p.shape), want, scanned)

    def loss(model, p):
        def f(p, x):
            out = model.apply({"params": p}, x)
            return jnp.mean(out["depth"] ** 2), out
        fn = (lambda p, x: ((None, f(p, x)[1]), None)) if not grads else jax.value_and_grad(
            f, has_aux=True)
        return run_fast(fn, p, images)  # both sides: the compiles are most of the CPU time

    (_, ref), g_ref = loss(DA3(cfg), params)
    (_, out), g_out = loss(DA3(scfg), scanned)
    assert set(out) == set(ref)
    for key in ref:
        np.testing.assert_allclose(out[key], ref[key], rtol=1e-5, atol=1e-6, err_msg=key)
    if not grads:
        return
    g_back = scan.to_unrolled(g_out, sched, at=AT)
    scale = max(float(jnp.abs(g).max()) for g in jax.tree.leaves(g_ref))
    for (path, g), r in zip(jax.tree_util.tree_leaves_with_path(g_back), jax.tree.leaves(g_ref),
                            strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5 * scale,
                                   err_msg=jax.tree_util.keystr(path))
