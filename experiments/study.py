"""Scaling studies: a grid of ordinary training runs, their compute, curves and a report.

    python -m experiments.study --config=experiments/studies/cpu_scaling.py --workdir=runs/study
    python -m experiments.study ... --print-commands   # one launch command per run (a cluster)
    python -m experiments.study ... --aggregate-only   # table + plots from what has finished

A study config (``experiments/studies/*.py``, ``get_config()`` -> ConfigDict) declares
  ``base``, ``base_arg``   the experiment config file every run starts from and its ``:`` arg;
  ``common``               ``"dotted.field=value"`` overrides of every run;
  ``axes``                 ``{axis: {label: [override, ...]}}``: each knob value is a label
                           naming a set of overrides (model size = depth + width + heads, ...);
  ``defaults``             ``{axis: label}``: the value an axis takes in grids that don't vary it;
  ``grids``                a list of lists of axis names; each grid is the cartesian product of
                           its axes, the study is the union of the grids (runs deduplicated by
                           name, ``axis=label,...`` over all axes in ``axes`` order);
  ``eval``                 held-out procedural scenes (``num_scenes``, ``num_views``, ``res``,
                           ``seed``, ``trajectory_probs``) rendered once to
                           ``<workdir>/eval_scenes.array_record`` and given to every run as
                           ``data.eval_sources``: the task's eval hook scores them every
                           ``eval_every`` steps (the learning curves);
  ``cost_analysis``        'compiled' (default) or 'lowered' (``train_step_cost``);
  ``compilation_cache``    True (default): persistent XLA cache in ``<workdir>/jax_cache``.
Values are Python literals (``(2, 3)``, ``1e-3``, ``'x'``) or bare strings.

Each run is a normal ``experiments.main`` workdir ``<workdir>/runs/<name>`` (resumable: kill
the study and rerun the same command; finished runs are skipped, the interrupted one continues
from its last checkpoint). It also gets ``study_run.json``: overrides, parameter count, XLA
cost-analysis FLOPs per train step (``compute.flops_per_step``, at the configured batch and
views), wall and process CPU time summed over all attempts (checkpointed every few seconds,
so a kill loses at most that), and ``complete``. ``experiments.study_report`` turns the runs
into ``study.md`` (table + power-law fits) and ``plots/*.png`` (metric vs compute).
"""

from __future__ import annotations

import ast
import itertools
import json
import os
import shlex
import threading
import time

from absl import app, flags, logging
from ml_collections import config_flags

EVAL_FILE = "eval_scenes.array_record"
RUN_FILE = "study_run.json"


# ---------------------------------------------------------------------------------------------
# The grid
# ---------------------------------------------------------------------------------------------


def parse_override(text: str) -> tuple[str, object]:
    """``"a.b=v"`` -> ``("a.b", literal v)``; a value that is not a Python literal is a str."""
    path, sep, raw = text.partition("=")
    if not sep or not path or " " in path:
        raise ValueError(f"override {text!r}: expected 'dotted.field=value'")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return path, value


def expand(study) -> list[dict]:
    """The study's runs: ``[{'name', 'labels': {axis: label}, 'overrides': [str, ...]}]``.

    Overrides are applied in order: ``common``, then each axis's label in ``axes`` order.
    """
    axes = {k: dict(v) for k, v in dict(study.axes).items()}
    defaults = dict(study.get("defaults", {}))
    for axis, values in axes.items():
        if not values:
            raise ValueError(f"study.axes.{axis} has no values")
        if axis in defaults and defaults[axis] not in values:
            raise ValueError(f"study.defaults.{axis}={defaults[axis]!r} is not one of "
                             f"{list(values)}")
    runs, seen = [], set()
    for grid in study.grids:
        grid = list(grid)
        for axis in axes:
            if axis not in grid and axis not in defaults:
                raise ValueError(f"axis {axis!r} is not in grid {grid} and has no default")
        unknown = [a for a in grid if a not in axes]
        if unknown:
            raise ValueError(f"grid {grid}: unknown axes {unknown}; study.axes has {list(axes)}")
        for combo in itertools.product(*(list(axes[a]) for a in grid)):
            labels = {a: defaults.get(a) for a in axes}
            labels.update(zip(grid, combo, strict=True))
            name = ",".join(f"{a}={labels[a]}" for a in axes)
            if name in seen:
                continue
            seen.add(name)
            overrides = list(study.get("common", []))
            for a in axes:
                overrides += list(axes[a][labels[a]])
            for o in overrides:
                parse_override(o)  # fail early, naming the bad override
            runs.append({"name": name, "labels": labels, "overrides": overrides})
    return runs


def run_dir(workdir: str, run: dict) -> str:
    return os.path.join(workdir, "runs", run["name"].replace("=", "-").replace(",", "_"))


def eval_override(workdir: str) -> str:
    return f"data.eval_sources=({os.path.join(os.path.abspath(workdir), EVAL_FILE)!r},)"


def apply_overrides(config, overrides):
    """Sets each ``dotted.field=value`` on ``config`` (fields must exist, like the CLI flags)."""
    for text in overrides:
        path, value = parse_override(text)
        node, parts = config, path.split(".")
        for part in parts[:-1]:
            if part not in node:
                raise ValueError(f"override {text!r}: config has no field {part!r}")
            node = node[part]
        if parts[-1] not in node:
            raise ValueError(f"override {text!r}: config has no field {path!r}")
        if isinstance(node[parts[-1]], tuple) and isinstance(value, list):
            value = tuple(value)
        node[parts[-1]] = value
    return config


def load_base(study):
    """The base experiment config (``study.base`` + ``study.base_arg``), as the CLI builds it."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("study_base_config", study.base)
    if spec is None:
        raise ValueError(f"study.base={study.base!r}: not a Python config file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(study.get("base_arg") or None)


def run_config(study, workdir: str, run: dict):
    return apply_overrides(load_base(study), run["overrides"] + [eval_override(workdir)])


def launch_command(study, workdir: str, run: dict) -> str:
    """The ``experiments.main`` command line of one run (what a cluster scheduler launches)."""
    base = study.base + (f":{study.base_arg}" if study.get("base_arg") else "")
    args = ["python", "-m", "experiments.main", f"--config={base}",
            f"--workdir={run_dir(workdir, run)}"]
    for text in run["overrides"] + [eval_override(workdir)]:
        path, value = parse_override(text)
        args.append(f"--config.{path}={_cli_value(value)}")
    return shlex.join(args)


def _cli_value(value) -> str:
    if isinstance(value, list | tuple):
        return "(" + ", ".join(repr(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return str(value)


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------


def render_eval(study, workdir: str) -> str:
    """Renders the held-out scenes once (atomic write); returns the file path."""
    from data_pipelines.sources import write_array_record
    from data_pipelines.synthetic.render import render_scene
    from data_pipelines.synthetic.scenes import SceneConfig

    path = os.path.join(workdir, EVAL_FILE)
    if os.path.exists(path):
        return path
    e = study.eval
    os.makedirs(workdir, exist_ok=True)
    cfg = SceneConfig(trajectory_probs=tuple(e.trajectory_probs))
    records = (render_scene(i, int(e.num_views), int(e.res), int(e.res), int(e.seed), cfg)
               for i in range(int(e.num_scenes)))
    write_array_record(records, path + ".tmp")
    os.replace(path + ".tmp", path)
    return path


def train_step_cost(config, stage: str = "compiled") -> dict:
    """XLA cost analysis of one train step of ``config`` (no training, no data kept).

    ``stage='compiled'``: of the optimised executable (what runs; costs one compile);
    ``'lowered'``: of the lowered, pre-optimisation HLO (no compile; on the tiny CPU models
    ~10 % below the compiled count). Returns ``{'flops_per_step', 'bytes_accessed_per_step',
    'num_params', 'cost_stage'}``.
    """
    if stage not in ("compiled", "lowered"):
        raise ValueError(f"study.cost_analysis={stage!r}; expected 'compiled' or 'lowered'")
    import jax

    from da3_jax.train import optim, tasks
    from da3_jax.train.state import create_state
    from da3_jax.train.step import make_train_step

    task = tasks.get_task(config)
    it = task.train_iter()
    batch = next(iter(it))
    if hasattr(it, "close"):
        it.close()
    batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), batch)
    key = jax.ShapeDtypeStruct((2,), "uint32")
    params = jax.eval_shape(task.init_params, key, batch)
    tx, schedule = optim.make_optimizer(config.optim, params)
    use_ema = float(config.get("ema_decay", 0.0)) > 0
    state = jax.eval_shape(lambda p, r: create_state(p, tx, r, use_ema=use_ema), params, key)
    step = make_train_step(task.loss_fn, tx, schedule, float(config.get("ema_decay", 0.0)))
    lowered = step.lower(state, batch)
    cost = (lowered.compile() if stage == "compiled" else lowered).cost_analysis()
    if isinstance(cost, list | tuple):  # older jax: one dict per computation
        cost = cost[0]
    return {"flops_per_step": float(cost.get("flops", 0.0)),
            "bytes_accessed_per_step": float(cost.get("bytes accessed", 0.0)),
            "num_params": int(sum(x.size for x in jax.tree.leaves(params))),
            "cost_stage": stage}


def _read(path: str) -> dict:
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def _write(path: str, data: dict) -> None:
    with open(path + ".tmp", "w") as f:
        json.dump(data, f, indent=2)
    os.replace(path + ".tmp", path)


class _Clock:
    """Adds this attempt's wall / process-CPU time to ``study_run.json`` every ``every`` s."""

    def __init__(self, path: str, record: dict, every: float = 5.0):
        self.path, self.record, self.every = path, record, every
        self.wall0, self.cpu0 = record.get("wall_s", 0.0), record.get("cpu_s", 0.0)
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def flush(self) -> dict:
        self.record["wall_s"] = self.wall0 + time.perf_counter() - self.t0
        self.record["cpu_s"] = self.cpu0 + time.process_time() - self.c0
        _write(self.path, self.record)
        return self.record

    def _loop(self):
        while not self._stop.wait(self.every):
            self.flush()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.flush()


def run_one(study, workdir: str, run: dict, echo=print) -> dict:
    """Trains one run to completion (resuming it if interrupted); returns its study record."""
    import jax

    from experiments.launch import run as launch_run

    rdir = run_dir(workdir, run)
    os.makedirs(rdir, exist_ok=True)
    path = os.path.join(rdir, RUN_FILE)
    record = _read(path)
    if record.get("complete"):
        echo(f"[study] {run['name']}: complete, skipped")
        return record
    config = run_config(study, workdir, run)
    record.update(name=run["name"], labels=run["labels"], overrides=run["overrides"],
                  workdir=rdir, steps=int(config.optim.total_steps), complete=False)
    if "compute" not in record:
        echo(f"[study] {run['name']}: XLA cost analysis of the train step")
        record["compute"] = train_step_cost(config, study.get("cost_analysis", "compiled"))
        _write(path, record)
    echo(f"[study] {run['name']}: training {record['steps']} steps in {rdir}")
    with _Clock(path, record):
        launch_run(config, rdir)
    record["complete"] = True
    _write(path, record)
    jax.clear_caches()
    return record


def run_study(study, workdir: str, echo=print) -> list[dict]:
    """Renders the eval scenes, runs every run in sequence, then aggregates.

    With ``study.compilation_cache`` (default True) XLA executables are cached in
    ``<workdir>/jax_cache``, so a resumed run does not compile its steps again.
    """
    import jax

    from experiments import study_report

    if study.get("compilation_cache", True):
        jax.config.update("jax_compilation_cache_dir", os.path.join(workdir, "jax_cache"))
    render_eval(study, workdir)
    records = [run_one(study, workdir, run, echo) for run in expand(study)]
    study_report.aggregate(study, workdir)
    return records


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------

def _define_flags():
    """CLI flags, defined only when run as a program (``study_report`` imports this module)."""
    config_flags.DEFINE_config_file("config", None, "Study config file.")
    flags.DEFINE_string("workdir", None, "Study directory (runs/, study.md, plots/).")
    flags.DEFINE_bool("print-commands", False, "Print one launch command per run and exit.")
    flags.DEFINE_bool("aggregate-only", False, "Only write the table and plots.")
    flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    fv = flags.FLAGS
    study, workdir = fv.config, fv.workdir
    if fv["print-commands"].value:
        render_eval(study, workdir)
        for run in expand(study):
            print(launch_command(study, workdir, run))
        return
    if fv["aggregate-only"].value:
        from experiments import study_report

        print(study_report.aggregate(study, workdir)["table_path"])
        return
    run_study(study, workdir)
    print(os.path.join(workdir, "study.md"))


if __name__ == "__main__":
    _define_flags()
    app.run(main)
