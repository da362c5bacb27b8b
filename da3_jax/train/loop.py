"""The training loop: one readable function, ``train(config, workdir)``.

Order of events per step: next batch -> jitted ``train_step`` (state donated) -> every
``log_every`` steps: metrics to TensorBoard/console, non-finite guard check -> every
``eval_every`` steps: the task's eval hook -> every ``checkpoint_every`` steps: async orbax save
of the state and the Grain iterator. On start, the latest readable finalised checkpoint in
``<workdir>/checkpoints`` is restored automatically (params, optimizer, step, RNG, iterator), so
killing and relaunching the same command continues the run exactly.

Parallelism (``config.mesh_shape``, axes data / fsdp / view / tensor, see
``da3_jax.parallel.mesh``): a mesh is used whenever the shape asks for more than one device or
the run spans several processes. Then

  * the state is created sharded from the first byte: ``jax.eval_shape`` of the init gives the
    abstract state, ``da3_jax.parallel.rules.tree_shardings`` its shardings, and a ``jax.jit``
    of the init with those ``out_shardings`` materialises each shard on its device only;
    pretrained weights (``task.load_pretrained``) go from host NumPy straight into shards;
  * the train step is ``jax.jit(in_shardings=(state, batch), out_shardings=(state,
    replicated metrics), donate_argnums=0)``;
  * ``config.batch_size`` is the global batch; each host loads ``batch_size / process_count``
    rows (``data_pipelines.pipeline``) and ``parallel.multihost.global_batch`` assembles the
    global arrays; views are sharded over ``view`` when N divides by its size;
  * eval and ``final_params`` gather the params to host NumPy on every process; only
    process 0 evaluates and writes (metrics, config); orbax coordinates the checkpoint writes.

Without a mesh everything runs on the default device.
"""

from __future__ import annotations

import math

import jax
import numpy as np
import tqdm
from etils import epath
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from da3_jax.parallel import xla_options
from da3_jax.train import checkpoint as ckpt_lib
from da3_jax.train import optim
from da3_jax.train.metrics_writer import MetricWriter
from da3_jax.train.state import TrainState, create_state
from da3_jax.train.step import make_train_step


class NonFiniteError(RuntimeError):
    """Raised after ``config.max_nonfinite`` consecutive non-finite (skipped) updates."""


def make_mesh(config, devices=None):
    """The run's mesh, or None for a single-device run (see the module docstring)."""
    shape = dict(config.get("mesh_shape", None) or {})
    if not shape:
        if jax.process_count() > 1:
            raise ValueError("a multi-process run needs config.mesh_shape over all devices, "
                             "e.g. --config.mesh_shape.data=-1")
        return None
    if math.prod(int(v) for v in shape.values()) == 1 and jax.process_count() == 1:
        return None
    from da3_jax.parallel import mesh as mesh_lib

    return mesh_lib.make_mesh(shape, axis_types=config.get("mesh_axis_types", "auto"),
                              devices=devices)


def global_batch_spec(local_batch, process_count: int | None = None):
    """ShapeDtypeStructs of the global batch from one host's batch (leading axis x processes)."""
    pc = jax.process_count() if process_count is None else process_count

    def one(x):
        x = np.asarray(x) if not hasattr(x, "shape") else x
        return jax.ShapeDtypeStruct((x.shape[0] * pc, *x.shape[1:]) if x.ndim else (), x.dtype)

    return jax.tree.map(one, local_batch)


def batch_shardings(spec, mesh):
    """Batch leaves [B, N, ...] over (data, fsdp) and, when N divides by the view axis, views
    over ``view``; scalars replicated."""
    from da3_jax.parallel import rules
    from da3_jax.parallel.mesh import axis_size

    views = axis_size(mesh, "view")

    def one(x):
        if not x.shape:
            return NamedSharding(mesh, P())
        shard_views = len(x.shape) > 1 and views > 1 and x.shape[1] % views == 0
        return rules.batch_sharding(mesh, len(x.shape), shard_views=shard_views)

    return jax.tree.map(one, spec)


def _zeros_like_spec(spec):
    return jax.tree.map(lambda s: jax.numpy.zeros(s.shape, s.dtype), spec)


def _make_state_fn(task, tx, batch_spec, use_ema: bool):
    """``make(init_rng, state_rng) -> TrainState``: random init + optimizer state (+ EMA)."""
    def make(init_rng, state_rng):
        params = task.init_params(init_rng, _zeros_like_spec(batch_spec))
        return create_state(params, tx, state_rng, use_ema=use_ema)

    return make


def abstract_state(task, tx, batch_spec, mesh, use_ema: bool):
    """(the train state as ``jax.ShapeDtypeStruct`` leaves carrying their shardings, state
    shardings or None): what ``init_state`` builds, from shapes only (nothing compiled or run;
    the restore target of a resumed run). Without a mesh every leaf is on the first device."""
    key = jax.random.PRNGKey(0)
    shapes = jax.eval_shape(_make_state_fn(task, tx, batch_spec, use_ema), key, key)
    if mesh is None:
        one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=one),
                            shapes), None
    from da3_jax.parallel import rules

    shardings = rules.tree_shardings(shapes, mesh)
    return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                        shapes, shardings), shardings


def init_state(task, tx, rng, batch_spec, mesh, use_ema: bool, shardings=None):
    """(state, state shardings or None): random init + optimizer state + EMA, sharded on
    ``mesh`` from the first byte (jitted with ``out_shardings``: ``shardings`` when given, as
    ``abstract_state`` returns them, else derived); then pretrained weights."""
    init_rng, state_rng = jax.random.split(rng)
    make = _make_state_fn(task, tx, batch_spec, use_ema)
    if mesh is None:
        shardings = None
    else:
        if shardings is None:
            from da3_jax.parallel import rules

            shardings = rules.tree_shardings(jax.eval_shape(make, init_rng, state_rng), mesh)
        # the keys as global replicated arrays: the same program input on every process
        init_rng, state_rng = (_replicated(k, mesh) for k in (init_rng, state_rng))
    state = _compiled(jax.jit(make, out_shardings=shardings), "init", init_rng, state_rng)(
        init_rng, state_rng)
    load = getattr(task, "load_pretrained", None)
    loaded = load(state.params) if load is not None else None
    if loaded is not None:
        target = shardings.params if shardings is not None else None
        state = state.replace(params=_place(loaded, state.params, target))
        if state.ema_params is not None:
            state = state.replace(ema_params=_place(loaded, state.ema_params, target))
    if mesh is None:  # all leaves committed to the device, as the step's outputs will be: a mix
        state = jax.device_put(state, jax.devices()[0])  # of both compiles the step twice
    return state, shardings


def _replicated(x, mesh):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, NamedSharding(mesh, P()), lambda idx: x[idx])


def _compiled(jitted, name, *args):
    """``jitted`` compiled for ``args``; with several processes, all of them finish compiling
    before any runs it (``multihost.barrier``: gloo gives a new communicator only 30 s)."""
    if jax.process_count() == 1:
        return jitted
    from da3_jax.parallel import multihost

    compiled = jitted.lower(*args).compile()
    multihost.barrier(f"da3_jax_compiled_{name}")
    return compiled


def _place(tree, like, shardings):
    """Host NumPy leaves of ``tree`` -> arrays laid out like ``like`` (each device gets only its
    shard, read from the host copy); jax.Array leaves are copied as they are."""
    def one(x, ref, sharding):
        if isinstance(x, jax.Array):
            return jax.numpy.array(x)  # a fresh buffer: params and EMA are donated separately
        x = np.asarray(x, dtype=ref.dtype)
        if x.shape != ref.shape:
            raise ValueError(f"pretrained leaf of shape {x.shape}, model expects {ref.shape}")
        sharding = sharding if sharding is not None else ref.sharding
        return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

    if shardings is None:
        shardings = jax.tree.map(lambda _: None, like)
    return jax.tree.map(one, tree, like, shardings)


def jit_train_step(task, tx, schedule, ema_decay, mesh, state_shardings, batch_sharding_tree):
    """The train step, jitted with explicit shardings on ``mesh`` (or plainly without)."""
    step = make_train_step(task.loss_fn, tx, schedule, ema_decay, jit=False)
    if mesh is None:  # CPU: XLA's own convolutions, -12-17 % step CPU (RESULTS §10.8)
        return jax.jit(step, donate_argnums=(0,),
                       compiler_options=xla_options.compiler_options("train"))
    # On a mesh, XLA's default option set: with the 'train' set a 2-process x 4-device run ends
    # 1.2e-5 away from the same run on 1 process x 8 devices (3.6e-6 with the defaults;
    # tests/train/test_multiprocess.py asks for 1e-5), and CPU meshes only simulate pods.
    return jax.jit(step, in_shardings=(state_shardings, batch_sharding_tree),
                   out_shardings=(state_shardings, NamedSharding(mesh, P())),
                   donate_argnums=(0,))


def host_tree(tree):
    """Host NumPy copy of a (possibly multi-host sharded) tree; every process must call it."""
    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    return jax.tree.map(one, tree)


def _close(it):
    close = getattr(it, "close", None)
    if close is not None:
        close()


def lower_train_step(config, devices=None, num_views: int | None = None):
    """``(lowered, abstract_state)``: the ``jax.stages.Lowered`` train step of the run on its
    mesh and the state's ShapeDtypeStructs (with their shardings), from abstract shapes only
    (``jax.eval_shape`` state, ``pipeline.batch_spec`` batch with ``num_views`` views, default
    the config's ``max_views``): a dry run of a launch command that reads no data, allocates
    no parameters and needs only as many (simulated) devices as its mesh. ``devices``: the
    devices to build the mesh on (default: all)."""
    from da3_jax.train import tasks
    from data_pipelines import pipeline

    task = tasks.get_task(config)
    mesh = make_mesh(config, devices=devices)
    pcfg = dict(config.data.pipeline)
    pcfg.update(batch_size=int(config.batch_size), seed=int(config.seed))
    spec = {k: jax.ShapeDtypeStruct(shape, dtype)
            for k, (shape, dtype) in pipeline.batch_spec(pcfg, num_views).items()}
    _check_batch_divides(config, mesh)
    use_ema = float(config.get("ema_decay", 0.0)) > 0
    abstract_params = jax.eval_shape(task.init_params, jax.random.PRNGKey(0), spec)
    tx, schedule = optim.make_optimizer(config.optim, abstract_params)
    # The state from the abstract params: the model is traced for init once, not twice.
    abstract = jax.eval_shape(lambda p, rng: create_state(p, tx, rng, use_ema=use_ema),
                              abstract_params, jax.random.PRNGKey(0))
    shardings = bsh = None
    if mesh is not None:
        from da3_jax.parallel import rules

        shardings = rules.tree_shardings(abstract, mesh)
        bsh = batch_shardings(spec, mesh)
        abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                                abstract, shardings)
        spec = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                            spec, bsh)
    step = jit_train_step(task, tx, schedule, float(config.get("ema_decay", 0.0)), mesh,
                          shardings, bsh)
    if mesh is None:
        return step.lower(abstract, spec), abstract
    with jax.set_mesh(mesh):
        return step.lower(abstract, spec), abstract


def _check_batch_divides(config, mesh):
    if mesh is None:
        return
    from da3_jax.parallel.mesh import axis_size

    ways = axis_size(mesh, "data") * axis_size(mesh, "fsdp")
    if int(config.batch_size) % ways:
        shape = dict(zip(mesh.axis_names, mesh.axis_sizes, strict=True))
        raise ValueError(f"config.batch_size={config.batch_size} must divide by data x fsdp = "
                         f"{ways} of the mesh {shape}")
    if int(config.batch_size) % jax.process_count():
        raise ValueError(f"config.batch_size={config.batch_size} must divide by the process "
                         f"count {jax.process_count()}")


def train(config, workdir, task=None, echo=print) -> TrainState:
    """Trains ``config.task`` (see ``da3_jax.train.tasks``) in ``workdir`` (local path or any
    ``etils.epath`` URL, e.g. ``gs://``); returns the state."""
    from da3_jax.train import tasks  # the task registry imports the model; keep loop light

    task = task or tasks.get_task(config)
    workdir = epath.Path(workdir)
    is_host0 = jax.process_index() == 0
    if is_host0:
        workdir.mkdir(parents=True, exist_ok=True)
    total = int(config.optim.total_steps)
    mesh = make_mesh(config)
    _check_batch_divides(config, mesh)
    probe = task.train_iter()  # a fresh iterator: shapes for init, no training data consumed
    try:
        spec = global_batch_spec(next(iter(probe)))
    finally:
        _close(probe)
    use_ema = float(config.get("ema_decay", 0.0)) > 0
    abstract_params = jax.eval_shape(task.init_params, jax.random.PRNGKey(0), spec)
    tx, schedule = optim.make_optimizer(config.optim, abstract_params)
    target, shardings = abstract_state(task, tx, spec, mesh, use_ema)

    data_iter = task.train_iter()
    manager = ckpt_lib.make_manager(
        workdir,
        max_to_keep=int(config.get("keep_checkpoints", 3)),
        async_save=bool(config.get("async_checkpoint", True)),
    )
    try:
        # A resumed run restores into the abstract state: no random init compiled or run.
        start = ckpt_lib.restore_latest(manager, target, data_iter, warn=echo)
        if start is None:
            state = init_state(task, tx, jax.random.PRNGKey(int(config.seed)), spec, mesh,
                               use_ema, shardings)[0]
        else:
            state = start[1]
            echo(f"resumed from {manager.directory} at step {int(state.step)}")
        state = _train(config, task, workdir, manager, data_iter, state, shardings, mesh, tx,
                       schedule, total, echo)
    finally:
        _close(data_iter)
        manager.close()
    return state


def _train(config, task, workdir, manager, data_iter, state, shardings, mesh, tx, schedule,
           total, echo):
    step = int(state.step)

    ema_decay = float(config.get("ema_decay", 0.0))
    steps = {}  # compiled step per batch layout (shapes; views sharded or not)

    def run_step(state, local_batch):
        if mesh is None:
            key = None
            if key not in steps:
                steps[key] = jit_train_step(task, tx, schedule, ema_decay, None, None, None)
            return steps[key](state, local_batch)
        from da3_jax.parallel import multihost

        spec = global_batch_spec(local_batch)
        bsh = batch_shardings(spec, mesh)
        key = tuple((jax.tree_util.keystr(p), x.shape, str(x.dtype), str(s.spec))
                    for (p, x), s in zip(jax.tree_util.tree_leaves_with_path(spec),
                                         jax.tree.leaves(bsh), strict=True))
        batch = multihost.place_batch(local_batch, bsh, spec)
        with jax.set_mesh(mesh):
            if key not in steps:
                jitted = jit_train_step(task, tx, schedule, ema_decay, mesh, shardings, bsh)
                steps[key] = _compiled(jitted, f"step_{len(steps)}", state, batch)
            return steps[key](state, batch)

    writer = MetricWriter(workdir / "tb", echo=None, resume_step=step)
    log_every = max(int(config.get("log_every", 10)), 1)
    eval_every = int(config.get("eval_every", 0))
    ckpt_every = int(config.get("checkpoint_every", 0))
    max_nonfinite = int(config.get("max_nonfinite", 10))
    batch_size = int(config.batch_size)
    bar = tqdm.tqdm(total=total, initial=step, desc=config.get("name", "train"),
                    disable=jax.process_index() != 0 or not config.get("progress", True))
    writer.throughput(step, batch_size)
    try:
        while step < total:
            state, metrics = run_step(state, next(data_iter))
            step += 1
            bar.update(1)
            if step % log_every == 0 or step == total:
                scalars = writer.write(step, {**metrics, **writer.throughput(step, batch_size)})
                bar.set_postfix(loss=f"{scalars['loss']:.4g}", lr=f"{scalars['lr']:.2e}")
                worst = int(state.nonfinite_max_run)
                if worst >= max_nonfinite:
                    manager.wait_until_finished()
                    raise NonFiniteError(
                        f"{worst} consecutive non-finite losses/gradients (limit max_nonfinite="
                        f"{max_nonfinite}) by step {step}; updates were skipped, last good "
                        f"params are in {manager.directory}. Lower the learning rate or inspect "
                        "the data."
                    )
            do_eval = eval_every > 0 and (step % eval_every == 0 or step == total)
            if task.eval_fn is not None and do_eval:
                params = final_params(state)  # gathered on every process
                if jax.process_index() == 0:
                    writer.write(step, task.eval_fn(params), prefix="eval")
            if ckpt_every > 0 and (step % ckpt_every == 0 or step == total):
                ckpt_lib.save(manager, step, state, data_iter, force=True)
        manager.wait_until_finished()
    finally:
        bar.close()
        writer.close()
    jax.block_until_ready(state)
    echo(f"finished {step} steps; nonfinite skipped: {int(state.nonfinite_total)}")
    return state


def final_params(state: TrainState):
    """EMA params if EMA is on, else params, as host NumPy arrays (gathered across hosts:
    every process must call it)."""
    params = state.ema_params if state.ema_params is not None else state.params
    return host_tree(params)
