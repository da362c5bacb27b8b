"""`benchmarks/device_check.sh --smoke`: the accelerator script end to end on the CPU (da3-small,
2 views of 28x28, fp32 and bf16). Checked against the official network, not timed: every cell
runs, da3_jax's and the official train step start from the same loss (same converted weights,
batch and loss terms), no recompiles, and the fit search reports both implementations."""

import json
import os
import subprocess
import sys

import pytest

from tests._fast_compile import XLA_FLAG

pytest.importorskip("depth_anything_3")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_device_check_smoke(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path), PYTHON=sys.executable)
    # One CPU device, as on the device machine; compiled as tests._fast_compile says (the
    # da3_jax worker's compiles are most of this test's CPU time; nothing is timed here).
    env["XLA_FLAGS"] = XLA_FLAG
    proc = subprocess.run(["bash", os.path.join(REPO, "benchmarks", "device_check.sh"),
                           "--smoke"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=1600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "device_check.json").read_text())
    assert report["device"] == "cpu" and report["peak"]["tflops"] > 0
    cells = {(r["impl"], r["mode"], r["dtype"], r["views"]): r for r in report["rows"]}
    assert set(cells) == {(i, m, d, 2) for i in ("jax", "official")
                          for m in ("forward", "train") for d in ("float32", "bfloat16")}
    for key, r in cells.items():
        assert "error" not in r, (key, r["error"])
        assert r["median_s"] > 0
    for dtype, tol in (("float32", 1e-4), ("bfloat16", 5e-2)):
        j, o = cells[("jax", "train", dtype, 2)]["loss0"], cells[("official", "train", dtype, 2)][
            "loss0"]
        assert abs(j - o) <= tol * abs(o), (dtype, j, o)
        assert cells[("jax", "train", dtype, 2)]["recompiles"] == 0
    assert report["fit"]["jax"]["fits"] == report["fit"]["official"]["fits"] == 1
    assert "| float32 | 2 |" in (tmp_path / "device_check.md").read_text()
