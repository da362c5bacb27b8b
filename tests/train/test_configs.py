"""Every experiment config builds, takes sweep args / overrides, and the launcher writes JSON."""

import json

import pytest
from absl import flags
from ml_collections import config_flags

from experiments.configs import common

CONFIGS = ["tiny_cpu", "teacher_vitl", "student_da3_small", "student_da3_base",
           "student_da3_large", "student_da3_giant"]


@pytest.mark.parametrize("name", CONFIGS)
def test_config_builds_with_required_fields(name):
    import importlib

    c = importlib.import_module(f"experiments.configs.{name}").get_config(None)
    for key in ("task", "seed", "batch_size", "optim", "loss", "model", "data"):
        assert key in c, key
    assert c.optim.total_steps > 0 and c.task in ("teacher", "student")
    from da3_jax.train.da3_tasks import model_config

    mc = model_config(c)
    assert mc.embed_dim > 0


def test_sweep_args_and_cli_overrides(tmp_path):
    argv = ["prog", "--config=experiments/configs/student_da3_base.py:views=4,res=252,runlocal",
            "--config.optim.lr=0.5", "--config.loss.alpha=2.0"]
    fv = flags.FlagValues()
    holder = config_flags.DEFINE_config_file("config", flag_values=fv, sys_argv=argv)
    fv(argv)
    c = holder.value
    assert c.data.pipeline.max_views == 3  # runlocal caps views
    assert c.optim.lr == 0.5 and c.loss.alpha == 2.0 and not c.multihost
    with pytest.raises(ValueError, match="unknown key"):
        common.parse_arg("bogus=1", views=2)
    from experiments.launch import write_config

    path = write_config(c, str(tmp_path))
    assert json.load(open(path))["optim"]["lr"] == 0.5


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_declares_its_mesh_and_takes_overrides(name):
    from da3_jax.parallel.mesh import AXES, resolve_mesh_shape

    argv = ["prog", f"--config=experiments/configs/{name}.py", "--config.mesh_shape.fsdp=16",
            "--config.mesh_shape.data=4"]
    fv = flags.FlagValues()
    holder = config_flags.DEFINE_config_file("config", flag_values=fv, sys_argv=argv)
    fv(argv)
    c = holder.value
    assert set(c.mesh_shape) == set(AXES)
    assert c.mesh_shape.fsdp == 16 and c.mesh_shape.data == 4
    assert resolve_mesh_shape(dict(c.mesh_shape), 64 * c.mesh_shape.view * c.mesh_shape.tensor)
    assert c.batch_size % (4 * 16) == 0 or name == "tiny_cpu"


def test_mesh_defaults_per_variant():
    import importlib

    def mesh(name, arg=None):
        c = importlib.import_module(f"experiments.configs.{name}").get_config(arg)
        return dict(c.mesh_shape), c

    assert mesh("tiny_cpu")[0] == dict(data=1, fsdp=1, view=1, tensor=1)
    assert mesh("student_da3_giant")[0] == dict(data=-1, fsdp=16, view=1, tensor=1)
    assert mesh("student_da3_large")[0]["fsdp"] == 8
    assert mesh("student_da3_small")[0] == dict(data=-1, fsdp=1, view=1, tensor=1)
    many, c = mesh("student_da3_base", "views=32")
    assert many["view"] == 4 and c.model.overrides.attention_impl == "allgather_view"
    _, c = mesh("student_da3_base", "views=32,view_attention=ring")
    assert c.model.overrides.attention_impl == "ring_view"
    assert mesh("student_da3_base", "runlocal")[0]["data"] == 1


def test_tiny_cpu_seed_moves_training_scenes_off_the_held_out_splits():
    from experiments.configs import tiny_cpu

    c = tiny_cpu.get_config("stage=student,seed=3")
    assert c.seed == 3 and c.data.synthetic.seed == 3
    with pytest.raises(ValueError, match="seed=2.*held-out"):
        tiny_cpu.get_config("stage=teacher,seed=2")
