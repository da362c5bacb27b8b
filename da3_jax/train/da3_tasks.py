"""The two DA3 training tasks: the monocular teacher and the multi-view student.

Model: ``da3_jax.model.DA3(get_config(config.model.name) + config.model.overrides)``.
  * teacher: the same network run on single views (N = 1); its depth head is DA3's exponential
    parameterisation ``depth = exp(x)``; loss ``losses.ssi_exp_depth_loss`` on raw depth (relative
    depth: only the affine-invariant shape is supervised). Camera modules are disabled by the
    teacher configs (``cam_enc = cam_dec = False``).
  * student: multi-view; targets normalised per scene in view 0's frame
    (``targets.make_targets``); loss ``losses.da3_loss`` (ray term weighted by ``ray_conf``);
    ``ref_view_strategy='first'``; known cameras for ``config.pose_cond_frac`` of each batch's
    samples (``_student_forward``), so the camera encoder is trained.
Data: ``config.data.train_sources`` (array_record) plus the optional on-the-fly procedural
source ``config.data.synthetic`` (``synthetic_source``).
Eval hook: ``evaluate.evaluate_records`` on ``config.data.eval`` records (student only).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from da3_jax.model import DA3, get_config
from da3_jax.train import losses, targets
from da3_jax.train.task import Task


def model_config(config) -> ml_collections.ConfigDict:
    """The model ConfigDict: the named DA3 config with ``config.model.overrides`` applied,
    and ``config.model.targets`` (the prediction-target ablation, when set) on top."""
    mc = get_config(config.model.name)
    for k, v in dict(config.model.get("overrides", {})).items():
        mc[k] = tuple(v) if isinstance(v, list) else v
    if config.model.get("targets"):
        mc.targets = config.model.targets
    return mc


def build_model(config) -> DA3:
    return DA3(model_config(config))


def _init_fn(model):
    """Random init (pure; the loop jits it with the state's shardings)."""
    def init_params(rng, batch):
        return model.init(rng, batch["images"][:1, :1])["params"]

    return init_params


def _pretrained_fn(model, config):
    """Pretrained weights (``config.model.init_from``), or None when there are none:

    ``{'kind': 'dinov2', 'path': ...}`` loads DINOv2 into the backbone
    (``da3_jax.convert.load_dinov2``); ``{'kind': 'official', 'path': model.safetensors}`` or
    ``{'kind': 'converted', 'path': dir}`` replaces every parameter by a converted DA3 checkpoint
    (``load_official`` / ``load_converted``; shapes must match the configured model). Returns
    host NumPy leaves for what it loads (see ``tasks.Task.load_pretrained``).
    """
    init_from = config.model.get("init_from") or {}
    kind, path = init_from.get("kind"), init_from.get("path")
    if not kind:
        return None
    if kind not in ("dinov2", "official", "converted"):
        raise ValueError(f"config.model.init_from.kind must be dinov2|official|converted, "
                         f"got {kind!r}")

    def load_pretrained(params):
        from da3_jax import convert

        if kind == "dinov2":
            return convert.load_dinov2(path, model.config, params)
        loaded = (convert.load_official(path) if kind == "official"
                  else convert.load_converted(path))[1]
        want = jax.tree.map(lambda a: a.shape, params)
        got = jax.tree.map(lambda a: a.shape, loaded)
        if want != got:
            raise ValueError(f"config.model.init_from.path={path!r}: parameter shapes do not "
                             f"match model {config.model.name!r}")
        return loaded

    return load_pretrained


def synthetic_source(cfg):
    """On-the-fly procedural scenes from a ``config.data.synthetic`` block (or None if absent).

    Fields: ``num_scenes`` (a large number = effectively unlimited data), ``num_views``,
    ``hw`` (H, W), ``seed``, ``start_index``, ``trajectory_probs`` (orbit, walk, random; see
    ``data_pipelines.synthetic.scenes.SceneConfig``). Rendering a 4-view 56x56 scene costs
    ~10 ms of CPU, so the demo's student never sees a scene twice.
    """
    if not cfg:
        return None
    from data_pipelines.sources import SyntheticSource
    from data_pipelines.synthetic.scenes import SceneConfig

    scene_cfg = SceneConfig(trajectory_probs=tuple(cfg.get("trajectory_probs", (0.4, 0.3, 0.3))))
    h, w = cfg.hw
    return SyntheticSource(int(cfg.num_scenes), int(cfg.num_views), int(h), int(w),
                           seed=int(cfg.seed), scene_config=scene_cfg,
                           start_index=int(cfg.get("start_index", 0)))


def _iter_fn(config):
    """Fresh checkpointable iterator over ``config.data.train_sources`` (array_record files)
    followed by the optional on-the-fly procedural source ``config.data.synthetic``
    (``synthetic_source``); ``config.data.weights`` (one per source, in that order) mixes them.
    With neither, the pipeline's default on-the-fly procedural scenes
    (``pipeline.default_sources``) are used.

    Batches come from ``data_pipelines.pipeline`` (``config.data.pipeline`` = its
    ``PipelineConfig`` fields; ``batch_size`` and ``seed`` come from the top-level config).
    """
    from data_pipelines import pipeline
    from data_pipelines.sources import ArrayRecordSceneSource

    d = config.data
    pcfg = dict(d.pipeline)
    per_host = int(config.batch_size) // jax.process_count()  # the pipeline loads this host's part
    pcfg.update(batch_size=per_host, seed=int(config.seed))

    def make():
        sources = [ArrayRecordSceneSource(p) for p in d.get("train_sources", [])]
        synth = synthetic_source(d.get("synthetic"))
        if synth is not None:
            sources.append(synth)
        sources = sources or None
        weights = list(d.weights) if d.get("weights") else None
        return pipeline.make_train_iterator(pcfg, sources, weights)

    return make


def teacher_task(config) -> Task:
    model = build_model(config)

    def loss_fn(params, batch, rng):
        del rng
        out = model.apply({"params": params}, batch["images"], ref_view_strategy="first")
        loss = losses.ssi_exp_depth_loss(out["depth"], batch["depth"], batch["valid"])
        return loss, {"loss_ssi": loss}

    return Task(_init_fn(model), loss_fn, _iter_fn(config),
                load_pretrained=_pretrained_fn(model, config))


def _student_forward(model, pose_cond_frac: float):
    """``forward(params, batch) -> outputs`` of the student.

    The first ``round(pose_cond_frac * B)`` samples of each batch (a random subset: batches are
    shuffled) give their known cameras to the camera encoder, as DA3 trains it; the network
    estimates the cameras of the others. Known cameras are the batch's reference-frame w2c with
    translations normalised as the inference API does (``normalize_input_extrinsics``). The two
    groups run as two forward passes over the split batch (a ``lax.cond`` over whole batches
    made the CPU step ~6x slower under ``grad``).
    """
    from da3_jax.model.da3 import normalize_input_extrinsics

    def apply(params, images, ext=None, k=None):
        return model.apply({"params": params}, images, ext, k, ref_view_strategy="first")

    def forward(params, batch):
        images = batch["images"]
        posed = int(round(pose_cond_frac * images.shape[0]))
        if posed == 0:
            return apply(params, images)
        ext = normalize_input_extrinsics(batch["extrinsics"][:posed])
        out = apply(params, images[:posed], ext, batch["intrinsics"][:posed])
        if posed == images.shape[0]:
            return out
        rest = apply(params, images[posed:])
        return jax.tree.map(lambda a, b: jnp.concatenate([a, b], axis=0), out, rest)

    return forward


def student_task(config) -> Task:
    """Multi-view student. ``config.pose_cond_frac`` (default 0): share of each batch's samples
    that give their known cameras to the camera encoder (``_student_forward``)."""
    model = build_model(config)
    weights = losses.LossWeights.from_config(config.loss)
    forward = _student_forward(model, float(config.get("pose_cond_frac", 0.0)))

    def loss_fn(params, batch, rng):
        del rng
        out = forward(params, batch)
        # Ray targets at the ray head's grid (unused when the targets have no ray map).
        ray_hw = (out["ray"] if "ray" in out else out["depth"][..., None]).shape[-3:-1]
        tgt = targets.make_targets(batch, ray_hw)
        return losses.da3_loss(out, tgt, weights)

    eval_fn = None
    if config.data.get("eval_sources"):
        from da3_jax.train import evaluate

        records = []  # read on the first eval (only the evaluating process reads them)
        predict = jax.jit(lambda p, x: model.apply({"params": p}, x, ref_view_strategy="first"))

        def eval_fn(params):
            if not records:
                records.extend(evaluate.load_records(list(config.data.eval_sources)))
            return evaluate.evaluate_records(lambda x: predict(params, x), records)["mean"]

    return Task(_init_fn(model), loss_fn, _iter_fn(config), eval_fn,
                load_pretrained=_pretrained_fn(model, config))
