"""A toy task for trainer tests: a 2-layer flax model regressing mean depth from tiny records.

Exercises the real loop, optimizer, checkpointing and the real Grain pipeline
(``data_pipelines.pipeline`` over ``ArrayRecordSceneSource``) without DA3's compile time.
"""

from __future__ import annotations

import json
import time

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from da3_jax.train.task import Task


class ToyNet(nn.Module):
    @nn.compact
    def __call__(self, images):
        x = jnp.mean(images, axis=(2, 3))  # [B, N, 3]
        x = nn.relu(nn.Dense(8, name="backbone")(x))
        return nn.Dense(1, name="head")(x)[..., 0]  # [B, N]


def toy_config(data_path: str, total_steps: int, checkpoint_every: int = 2):
    return ml_collections.ConfigDict(dict(
        name="toy", task="toy", seed=0, batch_size=2, log_every=1, eval_every=0,
        checkpoint_every=checkpoint_every, keep_checkpoints=3, async_checkpoint=True,
        max_nonfinite=3, ema_decay=0.9, progress=False,
        data=dict(train_sources=[data_path], pipeline=dict(
            image_hw=(14, 14), min_views=1, max_views=2, zoom_range=(1.0, 1.0),
            photometric=True, num_threads=1, prefetch_buffer_size=1)),
        optim=dict(lr=1e-2, total_steps=total_steps, warmup_steps=2, backbone_lr_mult=0.1,
                   backbone_regex="^backbone/", grad_clip=1.0, weight_decay=0.05),
    ))


def toy_task(config, step_sleep: float = 0.0, nan_from_step: int | None = None) -> Task:
    from data_pipelines import pipeline
    from data_pipelines.sources import ArrayRecordSceneSource

    model = ToyNet()

    def loss_fn(params, batch, rng):
        del rng
        pred = model.apply({"params": params}, batch["images"])
        valid = batch["valid"].astype(jnp.float32)
        target = jnp.sum(batch["depth"] * valid, (2, 3)) / jnp.maximum(jnp.sum(valid, (2, 3)), 1)
        loss = jnp.mean((pred - target) ** 2)
        if nan_from_step is not None:
            loss = loss * jnp.where(batch["poison"], jnp.nan, 1.0)
        return loss, {"loss_mse": loss}

    pcfg = dict(config.data.pipeline)
    pcfg.update(batch_size=int(config.batch_size), seed=int(config.seed))

    def train_iter():
        it = pipeline.make_train_iterator(
            pcfg, [ArrayRecordSceneSource(p) for p in config.data.train_sources])
        return _Slow(it, step_sleep, nan_from_step)

    def eval_fn(params):  # a deterministic function of the params, to check the hook's wiring
        return {"head_kernel_sum": float(jnp.sum(params["head"]["kernel"]))}

    return Task(lambda rng, b: model.init(rng, b["images"])["params"], loss_fn, train_iter,
                eval_fn)


class _Slow:
    """Iterator wrapper: optional delay per batch and a ``poison`` flag after a step count.

    Forwards ``get_state`` / ``set_state`` so the Grain checkpoint handler sees the real iterator.
    """

    def __init__(self, it, sleep, nan_from):
        self.it, self.sleep, self.nan_from, self.n = it, sleep, nan_from, 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.sleep:
            time.sleep(self.sleep)
        b = next(self.it)
        self.n += 1
        if self.nan_from is not None:
            b["poison"] = jnp.asarray(self.n > self.nan_from)
        return b

    def get_state(self) -> bytes:  # non-DatasetIterator protocol of grain's handler: bytes
        return json.dumps(self.it.get_state()).encode()

    def set_state(self, state: bytes):
        self.it.set_state(json.loads(state))

    def start_prefetch(self):
        if hasattr(self.it, "start_prefetch"):
            self.it.start_prefetch()
