"""Weight conversion: key coverage for every official variant, strict rejection of bad files,
the orbax CLI round trip, and DINOv2 initialisation (torch-hub and Hugging Face layouts)."""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from da3_jax.convert import (
    load_converted,
    load_dinov2,
    load_official,
    naming,
    plan_conversion,
)
from da3_jax.convert.__main__ import main as convert_main
from da3_jax.convert.official import expected_params
from da3_jax.model import DA3, get_config
from tests.model._official_ref import build_official, official_config, save_checkpoint

ALIASES = ("1", "2", "3")  # aux LayerNorm levels that safetensors stores only as level 0


def _meta_state_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """Official state-dict key -> shape, from a network built on the meta device (no memory)."""
    from depth_anything_3.cfg import create_object

    linspace = torch.linspace
    # The constructor calls .item() on a linspace (drop-path rates): keep that one on the CPU.
    torch.linspace = lambda *a, **k: linspace(*a, **{**k, "device": "cpu"})
    try:
        with torch.device("meta"):
            net = create_object(official_config(name))
    finally:
        torch.linspace = linspace
    return {f"model.{k}": tuple(v.shape) for k, v in net.state_dict().items()}


def _drop_aliases(shapes):
    """What `safetensors.torch.save_model` keeps: the shared aux LayerNorm only at level 0."""
    return {
        k: v for k, v in shapes.items()
        if not any(f"output_conv2_aux.{i}.2." in k for i in ALIASES)
    }


@pytest.mark.parametrize(
    "name", ["da3-large", "da3-giant", "da3metric-large", "da3mono-large", "da3nested-giant-large"]
)
def test_key_coverage_from_official_constructors(name):
    shapes = _meta_state_shapes(name)
    config = get_config(name)
    for variant in (shapes, _drop_aliases(shapes)):
        plan = plan_conversion(variant, config)
        used = {path for _, path in plan.values()}
        assert used == set(expected_params(config))
    n_params = sum(int(np.prod(s.shape)) for s in expected_params(config).values())
    n_aux_unused = sum(
        int(np.prod(v)) for k, v in shapes.items()
        if "_aux." in k and any(f"_aux.{i}." in k for i in "012")
        and not any(f"output_conv2_aux.{i}.2." in k for i in "0123")
    )
    unique = sum(int(np.prod(v)) for v in _drop_aliases(shapes).values())
    # DA3-official.md §1.1: unique official parameters = ours + the discarded aux levels 0-2.
    assert n_params + n_aux_unused == unique
    if name == "da3nested-giant-large":
        assert unique == 1_689_845_519


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    net = build_official("da3-small")
    directory = str(tmp_path_factory.mktemp("small"))
    path = save_checkpoint(net, directory, "da3-small")
    return net, path


def test_saved_file_has_only_level0_aux_layernorm(small):
    from safetensors import safe_open

    with safe_open(small[1], framework="numpy") as f:
        keys = set(f.keys())
    assert all(k.startswith("model.") for k in keys)
    assert "model.head.scratch.output_conv2_aux.0.2.weight" in keys
    assert "model.head.scratch.output_conv2_aux.3.2.weight" not in keys
    _, params = load_official(small[1])
    ln = params["head"]["scratch"]["output_conv2_aux_3_2"]["scale"]
    np.testing.assert_array_equal(
        ln, small[0].head.scratch.output_conv2_aux[3][2].weight.detach().numpy()
    )


def _small_shapes():
    return _drop_aliases(_meta_state_shapes("da3-small"))


def test_missing_key_is_named():
    shapes = _small_shapes()
    del shapes["model.backbone.pretrained.blocks.7.attn.q_norm.bias"]
    with pytest.raises(ValueError) as e:
        plan_conversion(shapes, get_config("da3-small"))
    msg = str(e.value)
    assert "1 missing" in msg and "model.backbone.pretrained.blocks.7.attn.q_norm.bias" in msg
    assert "unexpected" not in msg


def test_renamed_key_is_named_twice():
    shapes = _small_shapes()
    shapes["model.cam_dec.fc_rot.weight"] = shapes.pop("model.cam_dec.fc_qvec.weight")
    with pytest.raises(ValueError) as e:
        plan_conversion(shapes, get_config("da3-small"))
    msg = str(e.value)
    assert "model.cam_dec.fc_qvec.weight" in msg and "model.cam_dec.fc_rot.weight" in msg
    assert "1 missing" in msg and "1 unexpected" in msg


def test_misshaped_key_and_wrong_variant():
    shapes = _small_shapes()
    shapes["model.head.resize_layers.0.weight"] = (48, 48, 2, 2)
    with pytest.raises(ValueError, match=r"mis-shaped[\s\S]*resize_layers.0.weight"):
        plan_conversion(shapes, get_config("da3-small"))
    with pytest.raises(ValueError, match="'da3-base' architecture"):
        plan_conversion(_small_shapes(), get_config("da3-base"))


def test_bad_file_rejected_by_load_official(small, tmp_path):
    from safetensors.numpy import load_file

    sd = load_file(small[1])
    del sd["model.head.scratch.refinenet2_aux.out_conv.bias"]
    path = str(tmp_path / "model.safetensors")
    save_file(sd, path)
    with pytest.raises(ValueError, match=r"refinenet2_aux\.out_conv\.bias"):
        load_official(path, name="da3-small")
    with pytest.raises(ValueError, match="config.json"):
        load_official(path)  # no config.json beside it and no name


def test_cli_writes_orbax_checkpoint(small, tmp_path):
    out = str(tmp_path / "converted")
    assert convert_main(["--checkpoint", small[1], "--out", out]) == 0
    config, params = load_converted(out)
    ref_config, ref_params = load_official(small[1])
    assert config.to_dict() == ref_config.to_dict()
    flat, ref_flat = naming.flatten(params), naming.flatten(ref_params)
    assert flat.keys() == ref_flat.keys()
    for k in ref_flat:
        np.testing.assert_array_equal(np.asarray(flat[k]), ref_flat[k])
    with open(os.path.join(out, "config.json")) as f:
        assert json.load(f)["name"] == "da3-small"


def _zeros_params(config):
    images = jax.ShapeDtypeStruct((1, 1, 28, 28, 3), jnp.float32)
    tree = jax.eval_shape(DA3(config).init, jax.random.PRNGKey(0), images)["params"]
    return jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), tree)


def _hub_state_dict(net):
    """torch-hub DINOv2 layout = official backbone keys minus the prefix and DA3-only params."""
    sd = {}
    for k, v in net.backbone.pretrained.state_dict().items():
        if k == "camera_token" or ".q_norm." in k or ".k_norm." in k:
            continue
        sd[k] = v.detach().clone()
    sd["mask_token"] = torch.zeros(1, sd["cls_token"].shape[-1])
    return sd


def _hf_state_dict(hub):
    top = {
        "cls_token": "embeddings.cls_token",
        "mask_token": "embeddings.mask_token",
        "pos_embed": "embeddings.position_embeddings",
        "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
        "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
        "norm.weight": "layernorm.weight",
        "norm.bias": "layernorm.bias",
    }
    block = {
        "norm1.": "norm1.", "norm2.": "norm2.", "attn.proj.": "attention.output.dense.",
        "ls1.gamma": "layer_scale1.lambda1", "ls2.gamma": "layer_scale2.lambda1",
        "mlp.fc1.": "mlp.fc1.", "mlp.fc2.": "mlp.fc2.",
    }
    out = {}
    for k, v in hub.items():
        v = v.numpy()
        if k in top:
            out[top[k]] = v
            continue
        _, i, rest = k.split(".", 2)
        if rest.startswith("attn.qkv."):
            leaf = rest.rsplit(".", 1)[1]
            for name, part in zip(("query", "key", "value"), np.split(v, 3, axis=0), strict=True):
                out[f"encoder.layer.{i}.attention.attention.{name}.{leaf}"] = part
            continue
        src = next(s for s in block if rest.startswith(s))
        out[f"encoder.layer.{i}.{block[src]}{rest[len(src):]}"] = v
    return out


def test_dinov2_torch_hub_and_hf_layouts(small, tmp_path):
    net, path = small
    config = get_config("da3-small")
    _, ref = load_official(path)
    ref_bb = naming.flatten(ref["backbone"])
    hub = _hub_state_dict(net)
    hub_path = str(tmp_path / "dinov2_vits14_pretrain.pth")
    torch.save(hub, hub_path)
    hf_path = str(tmp_path / "model.safetensors")
    save_file({"dinov2." + k if i % 2 else k: v
               for i, (k, v) in enumerate(_hf_state_dict(hub).items())}, hf_path)
    init = _zeros_params(config)
    for p in (hub_path, hf_path):
        loaded = naming.flatten(load_dinov2(p, config, init)["backbone"])
        assert loaded.keys() == ref_bb.keys()
        for k, v in ref_bb.items():
            da3_only = k[1] == "camera_token" or "q_norm" in k or "k_norm" in k
            want = np.zeros_like(v) if da3_only else v
            np.testing.assert_array_equal(np.asarray(loaded[k]), want, err_msg=str(k))
    del hub["blocks.3.mlp.fc2.bias"]
    hub["blocks.3.mlp.fc3.bias"] = torch.zeros(384)
    torch.save(hub, hub_path)
    with pytest.raises(ValueError, match=r"blocks\.3\.mlp\.fc2\.bias[\s\S]*blocks\.3\.mlp\.fc3"):
        load_dinov2(hub_path, config, init)


def test_official_small_loads_into_scanned_layout(small):
    """Converted official da3-small weights fit both the unrolled and the scanned model
    (`scan_layers`), and the scanned <-> unrolled conversion is exact."""
    from da3_jax.parallel import scan

    config, params = load_official(small[1])
    x = jax.ShapeDtypeStruct((1, 1, 28, 28, 3), np.float32)
    unrolled = jax.eval_shape(DA3(config).init, jax.random.key(0), x)["params"]
    config.scan_layers = True
    scanned_shapes = jax.eval_shape(DA3(config).init, jax.random.key(0), x)["params"]
    sched = scan.schedule_from_config(config)
    scanned = scan.to_scanned(params, sched, at=("backbone", "pretrained"))
    for want, got in ((unrolled, params), (scanned_shapes, scanned)):
        assert jax.tree.structure(want) == jax.tree.structure(got)
        jax.tree.map(lambda w, p: np.testing.assert_equal(w.shape, np.shape(p)), want, got)
    back = scan.to_unrolled(scanned, sched, at=("backbone", "pretrained"))
    jax.tree.map(np.testing.assert_array_equal, back, params)
