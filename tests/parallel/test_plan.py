"""Planning tool on da3-tiny: AOT compile on a simulated view mesh, memory/FLOPs reporting, the
max-view search, and the CLI argument parsing."""

import jax
import pytest

from da3_jax.parallel import plan


@pytest.fixture(scope="module")
def tiny_reports():
    """da3-tiny, 4 views of 28x28 on view=4 and on one device (two compiles)."""
    sharded = plan.compile_plan("da3-tiny", 4, (28, 28), {"view": 4})
    single = plan.compile_plan("da3-tiny", 4, (28, 28), {"data": 1}, devices=jax.devices()[:1])
    return sharded, single


def test_plan_reports_memory_and_flops(tiny_reports):
    sharded, single = tiny_reports
    assert sharded["attention_impl"] == "allgather_view:auto"
    assert sharded["devices"] == 4 and single["devices"] == 1
    assert sharded["tokens_per_view"] == 1 + 2 * 2
    for r in (sharded, single):
        m = r["per_device"]
        # fp32 params (replicated; the unused camera encoder is pruned from the arguments)
        assert m["peak_bytes"] >= m["argument_bytes"] > 4 * 0.5 * r["params"]
        assert r["flops_per_device"] > 0
    # views sharded 4 ways: per-device FLOPs well below the single-device program's
    assert sharded["flops_per_device"] < 0.5 * single["flops_per_device"]


def test_max_views_search():
    peaks = {}

    def fake_plan(n):  # peak grows linearly: 100 + 10 n bytes
        peaks[n] = 100 + 10 * n
        return {"per_device": {"peak_bytes": peaks[n]}}

    best, probes = plan.max_views_that_fit(100 + 10 * 203, fake_plan, step=8, start=16)
    assert best == 200 and probes == peaks
    assert plan.max_views_that_fit(50, fake_plan, step=8, start=16)[0] == 0


def test_cli_parsing():
    assert plan.parse_size("504x336") == (336, 504)
    assert plan.parse_bytes("80GB") == 80 * 10**9
    assert plan.parse_bytes("16GiB") == 16 * 2**30
    with pytest.raises(ValueError, match="multiples of 14"):
        plan.parse_size("500x336")
    with pytest.raises(ValueError, match="device-memory"):
        plan.parse_bytes("lots")
