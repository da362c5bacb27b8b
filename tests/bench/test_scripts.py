"""The benchmark scripts run end to end on tiny inputs (their numbers are checked, not timed).

Timings and targets live in benchmarks/RESULTS.md; here only what can be wrong regardless of
speed: da3_jax and the official network agree on the same weights, the jitted inference path
does not recompile for new image content, and XLA's FLOP count of the forward / train step
agrees with the analytic count.
"""

import pytest

pytest.importorskip("depth_anything_3")


def test_inference_side_by_side(tmp_path):
    from benchmarks import inference

    report = inference.main([
        "--models", "da3-small", "--sizes", "56x42", "--views", "2", "--repeats", "3",
        "--parity", "--timeout", "600", "--json", str(tmp_path / "r.json"),
    ])
    (row,) = report["rows"]
    jax_res, official = row["jax"], row["official"]
    assert row["depth_rel_err"] < 1e-5
    assert jax_res["recompiles"] == 0
    assert jax_res["jax_path"] == "forward"
    assert len(jax_res["times_s"]) == len(official["times_s"]) == 3
    # XLA counts element-wise ops too; the analytic count is matmuls and convs only.
    ratio = jax_res["xla_flops"] / jax_res["analytic_flops"]
    assert 0.95 <= ratio < 1.1, ratio
    assert (tmp_path / "r.json").exists()


def test_train_step_flops():
    from benchmarks import train_step

    report = train_step.main(["--models", "da3-tiny", "--size", "42x42", "--views", "2",
                              "--repeats", "3"])
    (row,) = report["rows"]
    assert 0.95 <= row["fwd_xla_flops"] / row["fwd_analytic_flops"] < 1.15
    # forward + backward + optimizer: about 3x the forward
    assert 2.5 < row["xla_step_flops"] / row["fwd_xla_flops"] < 4.0
    assert row["step_s"] > 0
