"""Scaling-study tooling: grid expansion, launch commands, power-law fit, and a real 2-run study
that is SIGKILLed mid-run, resumed, and aggregated to a table and a plot."""

from __future__ import annotations

import json
import os
import pathlib
import shlex
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags

from experiments import study, study_report
from experiments.studies import cpu_scaling, smoke
from tests._fast_compile import XLA_FLAG

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_expand_grids_union_with_defaults():
    runs = study.expand(cpu_scaling.get_config())
    names = [r["name"] for r in runs]
    # size x {default target} then {default size} x targets; 'size=S,targets=depth_ray' once.
    assert sorted(names) == sorted([
        "size=XS,targets=depth_ray", "size=S,targets=depth_ray",
        "size=S,targets=depth_ray_cam", "size=S,targets=depth_cam", "size=S,targets=depth_point",
    ])
    xs = next(r for r in runs if r["name"] == "size=XS,targets=depth_ray")
    assert "model.overrides.depth=4" in xs["overrides"]
    assert xs["overrides"][-1] == "model.targets=depth_ray"


def test_expand_rejects_unknown_axis_and_default():
    s = smoke.get_config()
    s.grids = [["seed", "size"]]
    with pytest.raises(ValueError, match="unknown axes"):
        study.expand(s)
    s = smoke.get_config()
    s.defaults = {"seed": "nope"}
    with pytest.raises(ValueError, match="study.defaults.seed"):
        study.expand(s)


def test_launch_command_resolves_to_the_run_config(tmp_path):
    """The printed command, parsed by ml_collections' own flag parser, gives the same config
    as the in-process run (so a cluster launch trains exactly the study's run)."""
    s = smoke.get_config()
    for run in study.expand(s):
        args = shlex.split(study.launch_command(s, str(tmp_path), run))
        assert args[:3] == ["python", "-m", "experiments.main"]
        fv = flags.FlagValues()
        config_flags.DEFINE_config_file("config", None, "", flag_values=fv,
                                        sys_argv=["main"] + args[3:])
        flags.DEFINE_string("workdir", None, "", flag_values=fv)
        cwd = os.getcwd()
        os.chdir(ROOT)
        try:
            fv(["main"] + args[3:])
        finally:
            os.chdir(cwd)
        assert fv.workdir == study.run_dir(str(tmp_path), run)
        want = study.run_config(s, str(tmp_path), run).to_dict()
        assert fv.config.to_dict() == want


def test_fit_power_law_recovers_exponent():
    c = np.logspace(9, 13, 7)
    fit = study_report.fit_power_law(c, 3.0 * c**-0.25)
    assert fit["b"] == pytest.approx(-0.25, abs=1e-9)
    assert fit["a"] == pytest.approx(3.0, rel=1e-7)
    assert fit["r2"] == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    noisy = 3.0 * c**-0.25 * np.exp(rng.normal(0, 0.01, c.size))
    ref = np.polyfit(np.log(c), np.log(noisy), 1)[0]  # float64 NumPy reference
    assert study_report.fit_power_law(c, noisy)["b"] == pytest.approx(ref, rel=1e-12)
    assert study_report.fit_power_law(c[:2], c[:2] ** -0.5) is None  # too few points
    assert study_report.fit_power_law(c[:3], np.zeros(3)) is None  # no positive error
    assert study_report.fit_power_law(c, np.ones(c.size)) is None  # constant: nothing to fit


def _study_cmd(workdir, *extra):
    return [sys.executable, "-m", "experiments.study", "--config=experiments/studies/smoke.py",
            f"--workdir={workdir}", *extra]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    # One CPU device, like a user's run; compiled as tests._fast_compile says (the runs'
    # compiles are most of this test's CPU time).
    env["XLA_FLAGS"] = XLA_FLAG
    return env


def _finalised_steps(run_dir):
    ckpt = pathlib.Path(run_dir) / "checkpoints"
    return sorted(int(p.name) for p in ckpt.iterdir() if p.name.isdigit()) if ckpt.is_dir() else []


def test_study_runs_resumes_after_sigkill_and_aggregates(tmp_path):
    workdir = tmp_path / "study"
    s = smoke.get_config()
    runs = study.expand(s)
    first = study.run_dir(str(workdir), runs[0])
    proc = subprocess.Popen(_study_cmd(workdir), cwd=ROOT, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 1200  # only a hang guard (shared CI machines)
    while not _finalised_steps(first) or max(_finalised_steps(first)) < 2:
        assert proc.poll() is None, "the study exited before it could be killed"
        assert time.time() < deadline, "no checkpoint within 1200 s"
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = json.loads((pathlib.Path(first) / study.RUN_FILE).read_text())
    assert killed["complete"] is False and max(_finalised_steps(first)) < 4

    out = subprocess.run(_study_cmd(workdir), cwd=ROOT, env=_env(), capture_output=True,
                         text=True, timeout=1200)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "resumed from" in out.stdout  # the killed run continued from its checkpoint

    for run in runs:
        rdir = pathlib.Path(study.run_dir(str(workdir), run))
        rec = json.loads((rdir / study.RUN_FILE).read_text())
        assert rec["complete"] and rec["steps"] == 4
        assert rec["compute"]["flops_per_step"] > 0 and rec["compute"]["num_params"] > 0
        curve = study_report.read_curve(str(rdir))
        assert [p["step"] for p in curve] == [2, 4]
        for p in curve:
            assert 0.0 <= p["delta1"] <= 1.0 and 0.0 <= p["pose_auc30"] <= 1.0
    assert json.loads((pathlib.Path(first) / study.RUN_FILE).read_text())["wall_s"] > \
        killed["wall_s"]
    # the seeds train the same network: same parameter count and FLOPs, different curves.
    recs = study_report.collect(s, str(workdir))
    assert recs[0]["compute"] == recs[1]["compute"]
    assert recs[0]["curve"][-1]["delta1"] != recs[1]["curve"][-1]["delta1"]

    table = (workdir / "study.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith(("| 0 |", "| 1 |"))]
    assert len(rows) == 2 and all(" complete |" in r for r in rows)
    png = workdir / "plots" / "seed.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    printed = subprocess.run(_study_cmd(workdir, "--print-commands"), cwd=ROOT, env=_env(),
                             capture_output=True, text=True, timeout=120)
    lines = [x for x in printed.stdout.splitlines() if "experiments.main" in x]
    assert len(lines) == 2
    assert "--config.seed=0 " in lines[0] and "--config.seed=1 " in lines[1]


def test_study_base_samples_views_as_the_demo_recipe():
    """The study's base config varies resolution, view count and the data source, and keeps
    every other sampling field of the demo student (``reference_view='first'`` above all: a
    random training reference leaves pose at chance, experiments/README.md)."""
    from experiments.configs import study_cpu, tiny_cpu

    demo = tiny_cpu.get_config("stage=student").data.pipeline
    base = study_cpu.get_config("views=3,res=28").data.pipeline
    assert base.reference_view == "first"
    assert (tuple(base.image_hw), base.min_views, base.max_views) == ((28, 28), 3, 3)
    for key, value in demo.items():
        if key not in ("image_hw", "min_views", "max_views"):
            assert base[key] == value, key


def test_tick_labels_stay_distinct_on_a_narrow_axis():
    # 1 - AUC@3 of the CPU study spans 0.99-1: every tick read "1" with 2 significant digits.
    ticks = np.linspace(0.99, 1.0, 11)
    labels = [study_report.tick_label(y, 0.9895, 1.0005) for y in ticks]
    assert len(set(labels)) == len(ticks) and labels[0] == "0.99" and labels[-1] == "1"
    assert [float(x) for x in labels] == pytest.approx(ticks, abs=5e-4)
    assert study_report.tick_label(0.3, 0.2, 0.7) == "0.3"
    assert study_report.tick_label(0.123456, 0.1, 0.9) == "0.12"
