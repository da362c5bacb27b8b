"""Remote work dirs go through etils.epath everywhere: a training run and the launcher's
config write against a mocked remote filesystem (``etils.epath.testing``; the ``s3://`` bucket
mapped onto a local folder), offline. (``s3://`` rather than ``gs://``: orbax asks the real
GCS API about ``gs://`` buckets; the code path is the same for both.)"""

import contextlib
import json
import os
import pathlib

import pytest
from etils.epath import testing as epath_testing

from da3_jax.train import loop
from data_pipelines.sources import write_array_record
from data_pipelines.synthetic.render import render_scene
from tests.train.toy import toy_config, toy_task


@contextlib.contextmanager
def mock_bucket(root: pathlib.Path):
    """``s3://b/x`` -> ``root/b/x`` for every epath operation; records the remote paths seen."""
    seen = []

    def local(p):
        s = os.fspath(p)
        if s.startswith("s3://"):
            seen.append(s)
            return str(root / s[len("s3://"):])
        return s

    def one(orig, path, *a, **k):
        return orig(local(path), *a, **k)

    def two(orig, path, dst, *a, **k):
        return orig(local(path), local(dst), *a, **k)

    names = ("exists", "glob", "isdir", "listdir", "makedirs", "mkdir", "open", "remove",
             "rmtree", "stat", "walk")
    with epath_testing.mock_epath(**{n: one for n in names}, rename=two, replace=two,
                                  copy=two):
        yield seen


@pytest.fixture(scope="module")
def data_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "toy.array_record"
    write_array_record([render_scene(i, 3, 14, 14, seed=3) for i in range(4)], path)
    return str(path)


def test_training_run_writes_only_through_the_remote_path(tmp_path, data_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a s3:// URL taken for a local path would land here
    bucket = tmp_path / "bucket_root"
    config = toy_config(data_path, total_steps=3, checkpoint_every=0)
    from experiments.launch import write_config

    with mock_bucket(bucket) as seen:
        write_config(config, "s3://b/run")
        loop.train(config, "s3://b/run", task=toy_task(config), echo=lambda s: None)
        # a rerun in the same work dir rewrites the log through the same path library
        loop.train(config, "s3://b/run", task=toy_task(config), echo=lambda s: None)
    run = bucket / "b" / "run"
    assert json.loads((run / "config.json").read_text())["optim"]["total_steps"] == 3
    rows = [json.loads(x) for x in (run / "tb" / "train_metrics.jsonl").read_text().splitlines()]
    # no checkpoint: the second run restarts at 0 and replaces the first run's rows
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert list((run / "tb").glob("events.out.tfevents.*"))
    assert (run / "checkpoints").is_dir()
    assert any(s.startswith("s3://b/run/checkpoints") for s in seen)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bucket_root"]  # nothing local
