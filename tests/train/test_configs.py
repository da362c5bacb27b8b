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
