"""The two DA3 training tasks: the monocular teacher and the multi-view student.

Model: ``da3_jax.model.DA3(get_config(config.model.name) + config.model.overrides)``.
  * teacher: the same network run on single views (N = 1); its depth head is DA3's exponential
    parameterisation ``depth = exp(x)``; loss ``losses.ssi_exp_depth_loss`` on raw depth (relative
    depth: only the affine-invariant shape is supervised). Camera modules are disabled by the
    teacher configs (``cam_enc = cam_dec = False``).
  * student: multi-view; targets normalised per scene in view 0's frame
    (``targets.make_targets``); loss ``losses.da3_loss``; ``ref_view_strategy='first'``.
Eval hook: ``evaluate.evaluate_records`` on ``config.data.eval`` records (student only).
"""

from __future__ import annotations

import jax
import ml_collections

from da3_jax.model import DA3, get_config
from da3_jax.train import losses, targets
from da3_jax.train.tasks import Task


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


def _init_fn(model, config):
    """Random init, then optionally pretrained weights (``config.model.init_from``):

    ``{'kind': 'dinov2', 'path': ...}`` loads DINOv2 into the backbone
    (``da3_jax.convert.load_dinov2``); ``{'kind': 'official', 'path': model.safetensors}`` or
    ``{'kind': 'converted', 'path': dir}`` replaces every parameter by a converted DA3 checkpoint
    (``load_official`` / ``load_converted``; shapes must match the configured model).
    """
    init_from = config.model.get("init_from") or {}

    def init_params(rng, batch):
        params = model.init(rng, batch["images"][:1, :1])["params"]
        kind, path = init_from.get("kind"), init_from.get("path")
        if not kind:
            return params
        from da3_jax import convert

        if kind == "dinov2":
            return convert.load_dinov2(path, model.config, params)
        if kind == "official":
            loaded = convert.load_official(path)[1]
        elif kind == "converted":
            loaded = convert.load_converted(path)[1]
        else:
            raise ValueError(f"config.model.init_from.kind must be dinov2|official|converted, "
                             f"got {kind!r}")
        want = jax.tree.map(lambda a: a.shape, params)
        got = jax.tree.map(lambda a: a.shape, loaded)
        if want != got:
            raise ValueError(f"config.model.init_from.path={path!r}: parameter shapes do not "
                             f"match model {config.model.name!r}")
        return loaded

    return init_params


def _iter_fn(config):
    """Fresh checkpointable iterator over ``config.data.train_sources`` (array_record files);
    with no train sources, the on-the-fly procedural scenes of the pipeline's ``synthetic_*``
    fields (``data_pipelines.pipeline.default_sources``).

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
        sources = [ArrayRecordSceneSource(p) for p in d.get("train_sources") or []] or None
        weights = list(d.weights) if d.get("weights") and sources else None
        return pipeline.make_train_iterator(pcfg, sources, weights)

    return make


def teacher_task(config) -> Task:
    model = build_model(config)

    def loss_fn(params, batch, rng):
        del rng
        out = model.apply({"params": params}, batch["images"], ref_view_strategy="first")
        loss = losses.ssi_exp_depth_loss(out["depth"], batch["depth"], batch["valid"])
        return loss, {"loss_ssi": loss}

    return Task(_init_fn(model, config), loss_fn, _iter_fn(config))


def student_task(config) -> Task:
    model = build_model(config)
    weights = losses.LossWeights.from_config(config.loss)

    def loss_fn(params, batch, rng):
        del rng
        out = model.apply({"params": params}, batch["images"], ref_view_strategy="first")
        # Ray targets at the ray head's grid (unused when the targets have no ray map).
        ray_hw = (out["ray"] if "ray" in out else out["depth"][..., None]).shape[-3:-1]
        tgt = targets.make_targets(batch, ray_hw)
        return losses.da3_loss(out, tgt, weights)

    eval_fn = None
    if config.data.get("eval_sources"):
        from da3_jax.train import evaluate

        records = evaluate.load_records(list(config.data.eval_sources))
        predict = jax.jit(lambda p, x: model.apply({"params": p}, x, ref_view_strategy="first"))

        def eval_fn(params):
            return evaluate.evaluate_records(lambda x: predict(params, x), records)["mean"]

    return Task(_init_fn(model, config), loss_fn, _iter_fn(config), eval_fn)
