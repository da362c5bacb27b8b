"""Scan schedule (checked against the official block schedule), exact scanned <-> unrolled
parameter round trips on the real model tree, nn.scan equivalence, remat policies."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from da3_jax.model import DA3, get_config
from da3_jax.model.layers import Block
from da3_jax.parallel import scan


@pytest.mark.parametrize("name,prefix,leftover,pairs", [
    # DA3-official.md §1.4: global blocks small {5,7,9,11}, large {9..23 odd},
    # giant {13..39 odd}; reference selection before alt_start-1; camera token at alt_start.
    ("da3-small", 3, (3,), [(i, i + 1) for i in range(4, 12, 2)]),
    ("da3-large", 7, (7,), [(i, i + 1) for i in range(8, 24, 2)]),
    ("da3-giant", 12, (12, 13), [(i, i + 1) for i in range(14, 40, 2)]),
    ("da3metric-large", 24, (), []),
])
def test_schedule(name, prefix, leftover, pairs):
    s = scan.schedule_from_config(get_config(name))
    assert s.prefix == tuple(range(prefix))
    assert s.leftover == leftover
    assert list(s.pairs) == pairs


def test_round_trip_on_model_params():
    cfg = get_config("da3-tiny")
    shapes = jax.eval_shape(
        lambda: DA3(cfg).init(jax.random.key(0), jnp.zeros((1, 2, 28, 28, 3))))["params"]
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: rng.normal(size=s.shape).astype(np.float32), shapes)
    sched = scan.schedule_from_config(cfg)
    at = ("backbone", "pretrained")
    scanned = scan.to_scanned(params, sched, at=at)
    node = scanned["backbone"]["pretrained"]
    unrolled = {k for k in node if k.startswith("blocks_") and k[7:].isdigit()}
    assert unrolled == {f"blocks_{i}" for i in sched.leftover}
    qkv = node[scan.PAIRS_NAME]["global"]["attn"]["qkv"]["kernel"]
    assert qkv.shape == (len(sched.pairs),) + shapes["backbone"]["pretrained"]["blocks_3"][
        "attn"]["qkv"]["kernel"].shape
    np.testing.assert_array_equal(qkv[1], params["backbone"]["pretrained"]["blocks_5"]["attn"][
        "qkv"]["kernel"])
    back = scan.to_unrolled(scanned, sched, at=at)
    assert jax.tree.structure(back) == jax.tree.structure(params)
    jax.tree.map(np.testing.assert_array_equal, back, params)
    bad = scan.ScanSchedule(prefix=(0, 1, 2), pairs=(), leftover=())  # blocks 1 and 2 differ
    with pytest.raises(ValueError, match="cannot stack"):
        scan.to_scanned(params, bad, at=at)


class _Unrolled(nn.Module):
    n: int

    @nn.compact
    def __call__(self, x):
        for i in range(self.n):
            x = Block(num_heads=2, name=f"blocks_{i}")(x)
        return x


class _Scanned(nn.Module):
    n: int

    @nn.compact
    def __call__(self, x):
        body = nn.scan(
            lambda mdl, c, _: (mdl(c), None), variable_axes={"params": 0},
            split_rngs={"params": True}, length=self.n)
        block = scan.maybe_remat(Block, "dots")(num_heads=2, name=scan.PREFIX_NAME)
        return body(block, x, None)[0]


def test_scanned_module_matches_unrolled():
    x = jax.random.normal(jax.random.key(1), (2, 5, 16))
    shapes = jax.eval_shape(_Unrolled(3).init, jax.random.key(0), x)["params"]
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: rng.normal(size=s.shape).astype(np.float32) * 0.3, shapes)
    sched = scan.ScanSchedule(prefix=(0, 1, 2), pairs=(), leftover=())
    scanned = scan.to_scanned(params, sched)
    ref = jax.jit(_Unrolled(3).apply)({"params": params}, x)
    out = jax.jit(_Scanned(3).apply)({"params": scanned}, x)
    np.testing.assert_allclose(out, ref, atol=1e-5, rtol=1e-5)


def test_remat_policy():
    assert scan.remat_policy("none") is None
    assert scan.remat_policy("full") is jax.checkpoint_policies.nothing_saveable
    assert scan.maybe_remat(Block, "none") is Block
    with pytest.raises(ValueError, match="remat policy"):
        scan.remat_policy("some")
