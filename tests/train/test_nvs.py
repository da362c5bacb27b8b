"""The `nvs` training stage on tiny shapes: SSIM vs the evaluator's, frozen backbone, a few
steps on one batch reduce the loss, and the loss is the same on a 2-device data mesh; the
adapter's deviations (float64 pinhole) and that, as model options, they travel with the
checkpoint to the Predictor."""

import jax
import numpy as np
import pytest

from da3_jax.eval.metrics import ssim as ssim_reference
from da3_jax.parallel.mesh import make_mesh
from da3_jax.train.nvs import ssim
from da3_jax.train.optim import make_optimizer
from da3_jax.train.state import create_state
from da3_jax.train.step import make_train_step
from da3_jax.train.tasks import get_task
from experiments.configs import tiny_cpu

HW = (28, 28)


def test_ssim_matches_evaluator():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(3, 20, 24, 3)).astype(np.float32)
    y = np.clip(x + rng.normal(scale=0.1, size=x.shape), 0, 1).astype(np.float32)
    np.testing.assert_allclose(float(ssim(x, y)), ssim_reference(x, y), rtol=1e-5)


def _batch(b=2, n=3, seed=0):
    rng = np.random.default_rng(seed)
    w2c = np.tile(np.eye(4)[:3], (b, n, 1, 1))
    w2c[:, :, 0, 3] = rng.uniform(-0.2, 0.2, (b, n))
    k = np.array([[25.0, 0, 14], [0, 25.0, 14], [0, 0, 1]])
    return {
        "images": rng.normal(size=(b, n) + HW + (3,)).astype(np.float32) * 0.5,
        "depth": rng.uniform(1.5, 3.0, (b, n) + HW).astype(np.float32),
        "valid": np.ones((b, n) + HW, bool),
        "extrinsics": w2c.astype(np.float32),
        "intrinsics": np.broadcast_to(k, (b, n, 3, 3)).astype(np.float32),
    }


def test_nvs_stage_trains_heads_with_frozen_backbone():
    config = tiny_cpu.get_config("stage=nvs,steps=20,views=3")
    config.nvs.tile_capacity = 256
    task = get_task(config)
    batch = _batch()
    params = task.init_params(jax.random.PRNGKey(0), batch)
    assert "gs_head" in params
    tx, schedule = make_optimizer(config.optim, params)
    state = create_state(params, tx, jax.random.PRNGKey(1))
    step = make_train_step(task.loss_fn, tx, schedule)
    snapshot = lambda tree: jax.tree.map(np.array, tree)  # noqa: E731 (state is donated)
    start = snapshot(params)
    losses = []
    for i in range(7):
        if i == 6:
            before_last = snapshot(state.params)
        state, metrics = step(state, batch)
        assert float(metrics["skipped"]) == 0 and np.isfinite(float(metrics["loss"]))
        losses.append(float(metrics["loss"]))
    assert losses[-1] < losses[0] and float(metrics["loss_mse"]) > 0
    jax.tree.map(np.testing.assert_array_equal, start["backbone"],
                 snapshot(state.params["backbone"]))  # frozen
    moved = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), start["gs_head"],
                         snapshot(state.params["gs_head"]))
    assert max(jax.tree.leaves(moved)) > 0

    # data-parallel: the batch sharded over a 2-device data mesh gives the same loss
    mesh = make_mesh({"data": 2}, devices=jax.devices()[:2])
    sharded = jax.device_put(batch, jax.NamedSharding(mesh, jax.P("data")))
    with jax.set_mesh(mesh):
        loss_sharded = jax.jit(lambda p, bt: task.loss_fn(p, bt, None)[0])(before_last, sharded)
    np.testing.assert_allclose(float(loss_sharded), losses[-1], rtol=1e-5)


def test_adapter_deviations_match_float64_pinhole():
    """`gaussian_adapter(colors=..., z_depth=True)` (our deviations): each Gaussian projects to
    its pixel centre + xy offset at camera z = depth + depth offset, and its DC colour renders
    the given RGB; the other outputs are the official adapter's."""
    from da3_jax.model.gs_adapter import gaussian_adapter
    from da3_jax.render.sh import SH_C0

    rng = np.random.default_rng(3)
    b, v, h, w = 1, 2, 5, 6
    batch = _batch(b=b, n=v)
    w2c = np.concatenate([batch["extrinsics"], np.tile([[[[0, 0, 0, 1.0]]]], (b, v, 1, 1))], 2)
    w2c[0, 1, :3, :3] = np.array([[0.8, -0.6, 0], [0.6, 0.8, 0], [0, 0, 1]])  # a rotated view
    k = np.array([[7.0, 0, 3.1], [0, 6.0, 2.4], [0, 0, 1]], np.float32)
    k = np.broadcast_to(k, (b, v, 3, 3))
    depth = rng.uniform(1, 4, (b, v, h, w)).astype(np.float32)
    raw = rng.normal(size=(b, v, h, w, 37)).astype(np.float32) * 0.3
    rgb = rng.uniform(size=(b, v, h, w, 3)).astype(np.float32)
    ours = gaussian_adapter(w2c, k, depth, depth * 0 + 0.5, raw, (h, w), colors=rgb, z_depth=True)
    official = gaussian_adapter(w2c, k, depth, depth * 0 + 0.5, raw, (h, w))
    for key in ("scales", "rotations", "opacities"):
        np.testing.assert_array_equal(ours[key], official[key])
    dc = np.asarray(ours["harmonics"])[..., 0] - np.asarray(official["harmonics"])[..., 0]
    np.testing.assert_allclose(SH_C0 * dc + 0.5, rgb.reshape(b, -1, 3), atol=2e-6)

    means = np.asarray(ours["means"], np.float64).reshape(b, v, h * w, 3)
    cam = np.einsum("bvij,bvnj->bvni", w2c[..., :3, :3].astype(np.float64), means)
    cam += w2c[..., None, :3, 3]
    np.testing.assert_allclose(cam[..., 2], (depth + raw[..., -1]).reshape(b, v, -1), rtol=1e-5)
    uv = np.einsum("bvij,bvnj->bvni", k.astype(np.float64), cam)
    uv = uv[..., :2] / uv[..., 2:]
    jj, ii = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5, indexing="xy")
    want = np.stack([jj, ii], -1)[None, None] + raw[..., :2]
    np.testing.assert_allclose(uv, want.reshape(b, v, -1, 2), atol=1e-4)
    with pytest.raises(ValueError, match=r"colors must be \[1, 2, 5, 6, 3\]"):
        gaussian_adapter(w2c, k, depth, depth, raw, (h, w), colors=rgb[..., :2])


def test_init_gs_head_starts_opaque_pixel_sized_discs():
    """`init_gs_head`: zero features give zero offsets, density `opacity` and isotropic scales
    of `scale_px` pixel footprints (depth / f, float64) through the adapter."""
    from da3_jax.model.gs_adapter import gaussian_adapter
    from da3_jax.train.nvs import init_gs_head

    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(1, 1, 8, 38)).astype(np.float32)
    head = {"scratch": {"output_conv2_2": {"kernel": kernel, "bias": rng.normal(size=38)},
                        "other": {"kernel": np.ones(3)}}, "x": {"y": np.zeros(2)}}
    out = init_gs_head(head, opacity=0.9, scale_px=0.7, kernel_scale=0.1)
    assert out["x"] is head["x"] and out["scratch"]["other"] is head["scratch"]["other"]
    last = out["scratch"]["output_conv2_2"]
    cols = np.full(38, 0.1)
    cols[[0, 1, 36]] = 0.0
    np.testing.assert_allclose(last["kernel"], kernel * cols, rtol=1e-6)
    bias = np.asarray(last["bias"], np.float64)
    np.testing.assert_allclose(1 / (1 + np.exp(-bias[37])), 0.9, rtol=1e-6)
    raw = np.broadcast_to(bias[:37].astype(np.float32), (1, 1, 4, 4, 37))
    depth = np.full((1, 1, 4, 4), 3.0, np.float32)
    k = np.array([[[[20.0, 0, 2], [0, 20.0, 2], [0, 0, 1]]]], np.float32)
    gs = gaussian_adapter(np.eye(4, dtype=np.float32)[None, None], k, depth, depth, raw, (4, 4),
                          z_depth=True)
    np.testing.assert_allclose(gs["scales"], 0.7 * 3.0 / 20.0, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(gs["means"])[0, :, 2], 3.0, rtol=1e-6)
    with pytest.raises(ValueError, match="scale_px"):
        init_gs_head(head, opacity=0.9, scale_px=7.0, kernel_scale=0.1)


def test_demo_nvs_partial_init_and_metrics(tmp_path):
    """The demo's NVS stage (experiments.demo_nvs): with `init_from`, the init builds only the
    GS head (zeros elsewhere, the full model's structure) with `init_gs_head` applied, and the
    student checkpoint fills everything else; a mismatched checkpoint is refused; held-out
    evaluation reports its keys."""
    from da3_jax.convert.checkpoint import save_converted
    from da3_jax.train.nvs import partial_init
    from data_pipelines.synthetic.render import render_scene
    from experiments import demo_nvs

    small = "depth=4,xview=1"
    path = str(tmp_path / "student")
    config = demo_nvs.nvs_config(path, steps=1, extra=small)
    task = get_task(config)
    batch = _batch(b=1, n=4)
    fresh = jax.jit(task.init_params)(jax.random.PRNGKey(0), batch)
    full = jax.eval_shape(get_task(demo_nvs.nvs_config("", 1, small)).init_params,
                          jax.random.PRNGKey(0), batch)
    assert jax.tree.structure(fresh) == jax.tree.structure(full)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a.shape, b.shape), fresh, full)
    assert all(not np.any(x) for k in fresh if k != "gs_head" for x in jax.tree.leaves(fresh[k]))
    density = np.asarray(fresh["gs_head"]["scratch"]["output_conv2_2"]["bias"])[37]
    np.testing.assert_allclose(1 / (1 + np.exp(-density)), config.nvs.gs_init.opacity, rtol=1e-5)
    # a "trained student": the same network without the GS head, other values
    rng = np.random.default_rng(0)
    student = {k: jax.tree.map(lambda a: (0.02 * rng.normal(size=a.shape)).astype(a.dtype), v)
               for k, v in fresh.items() if k != "gs_head"}
    save_converted(path, tiny_cpu.get_config(f"stage=student,{small}"), student)
    params = task.load_pretrained(fresh)
    assert set(params) == set(student) | {"gs_head"}
    for key in student:
        jax.tree.map(np.testing.assert_array_equal, params[key], student[key])
    jax.tree.map(np.testing.assert_array_equal, params["gs_head"], fresh["gs_head"])
    with pytest.raises(ValueError, match="'head' does not match the model"):
        partial_init(fresh, {"head": {"w": np.zeros(3)}}, "ckpt")
    with pytest.raises(ValueError, match=r"ckpt: parameter groups \['extra'\]"):
        partial_init(fresh, {"extra": {"w": np.zeros(3)}}, "ckpt")

    records = [render_scene(i, 4, 28, 28, seed=2) for i in range(2)]
    result, rows = demo_nvs.evaluate(config, params, records, batch=2)
    for key in ("psnr", "ssim", "baseline_psnr", "baseline_ssim", "baseline_coverage",
                "nearest_copy_psnr"):
        assert np.isfinite(result[key]), key
    assert 0 < result["baseline_coverage"] <= 1 and result["num_scenes"] == 2
    assert len(rows) == 2 and all(img.shape == (28, 28, 3) for img in rows[0])
    np.testing.assert_array_equal(rows[0][1], records[0].images[3])  # the target view
    figure = demo_nvs.save_figure(rows, str(tmp_path / "nvs.png"), zoom=2)
    assert (tmp_path / "nvs.png").stat().st_size > 0 and figure.endswith("nvs.png")


def test_adapter_options_travel_with_the_checkpoint(tmp_path):
    """The stage's adapter options (`gs_color_residual` / `gs_z_depth`, model config fields) are
    kept by a converted checkpoint and by a training work dir's config: the Predictor then builds
    the Gaussians that `predict_gaussians` trains (same params, inputs and cameras), and those
    differ from the official adapter's exactly by the deviations (float64: DC + (rgb - 0.5) / C0,
    camera z = the official range along the ray). Old configs without the fields and the nested
    model read as off; misplaced options are refused."""
    import ml_collections
    import orbax.checkpoint as ocp

    from da3_jax.convert.checkpoint import save_converted
    from da3_jax.imagenet import imagenet_normalize
    from da3_jax.infer.api import Predictor, load_checkpoint
    from da3_jax.model import configs, get_config
    from da3_jax.model.gs_adapter import adapter_options, gaussian_adapter, map_pdf_to_opacity
    from da3_jax.render.sh import SH_C0
    from da3_jax.train.da3_tasks import build_model
    from da3_jax.train.nvs import predict_gaussians
    from experiments.launch import write_config
    from tests.infer.conftest import random_params

    config = tiny_cpu.get_config("stage=nvs,depth=4,xview=1")
    model = build_model(config)
    params = random_params(model.config)
    on = {"color_residual": True, "z_depth": True}
    conv = str(tmp_path / "converted")
    save_converted(conv, model.config, params)
    workdir = tmp_path / "workdir"
    write_config(config, workdir)
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(workdir / "checkpoints" / "1" / "state", {"params": params})
    ckptr.wait_until_finished()
    assert adapter_options(load_checkpoint(str(workdir))[0]) == on

    images = np.random.default_rng(0).integers(0, 256, (2, 28, 28, 3), dtype=np.uint8)
    pred = Predictor(*load_checkpoint(conv)).predict(images, process_res=28, infer_gs=True,
                                                     ref_view_strategy="first")
    rgb = pred.processed_images.astype(np.float32) / 255.0
    ext, k = pred.extrinsics[None], pred.intrinsics[None]
    out, gs = jax.jit(lambda p, x, e, kk: predict_gaussians(model, p, x, e, kk))(
        params, imagenet_normalize(rgb)[None], ext, k)
    for key, val in pred.gaussians.items():
        np.testing.assert_allclose(val, np.asarray(gs[key])[0], rtol=1e-4, atol=1e-5, err_msg=key)

    official = {key: np.asarray(v, np.float64)[0] for key, v in gaussian_adapter(
        ext, k, out["depth"], map_pdf_to_opacity(out["raw_gs_conf"]), out["raw_gs"],
        (28, 28)).items()}
    ours = {key: np.asarray(v, np.float64) for key, v in pred.gaussians.items()}
    np.testing.assert_allclose(ours["opacities"], official["opacities"], atol=1e-6)
    np.testing.assert_allclose(ours["harmonics"][..., 0] - official["harmonics"][..., 0],
                               (rgb.reshape(-1, 3) - 0.5) / SH_C0, atol=1e-4)
    w2c = pred.extrinsics.astype(np.float64)  # [V, 3, 4]
    centre = -np.einsum("vji,vj->vi", w2c[:, :, :3], w2c[:, :, 3])
    cam_z = np.einsum("vj,vnj->vn", w2c[:, 2, :3], ours["means"].reshape(2, -1, 3))
    cam_z += w2c[:, 2, 3][:, None]
    ray = np.linalg.norm(official["means"].reshape(2, -1, 3) - centre[:, None], axis=-1)
    np.testing.assert_allclose(cam_z, ray, rtol=1e-4)

    off = {"color_residual": False, "z_depth": False}
    assert adapter_options(ml_collections.ConfigDict({"kind": "anyview", "gs_head": True})) == off
    assert adapter_options(get_config("da3nested-giant-large")) == off
    bad = get_config("da3-tiny")
    bad.gs_z_depth = True
    with pytest.raises(ValueError, match="gs_z_depth=True needs a GS head"):
        configs.validate(bad)
    config.nvs.color_residual = True
    with pytest.raises(ValueError, match="gs_color_residual=True instead"):
        get_task(config)



def test_nvs_loss_lpips_term(tmp_path):
    """``config.nvs.lpips`` > 0: the photometric loss adds ``lpips`` × LPIPS (`eval.lpips`,
    checked against the lpips package in tests/eval/test_lpips.py), the total is the weighted
    sum of the terms and its gradient reaches the renders; the task's loss reports
    ``loss_lpips`` (traced abstractly: the model's compile is test_nvs_stage_...'s); a missing
    weights file is a clear error naming the config key."""
    from da3_jax.eval.lpips import load_weights, lpips
    from da3_jax.train.nvs import lpips_loss_fn, photometric_loss
    from tests.eval._lpips_weights import write_random_weights

    config = tiny_cpu.get_config("stage=nvs,views=3")
    config.nvs.update(tile_capacity=256, lpips=0.05)
    with pytest.raises(ValueError, match="config.nvs.lpips=0.05 needs config.nvs.lpips_weights"):
        get_task(config)
    config.nvs.lpips_weights = str(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match=r"config.nvs.lpips_weights=.*missing.*no such file"):
        get_task(config)
    config.nvs.lpips_weights = write_random_weights(tmp_path / "lpips_alex.safetensors", "alex")

    rng = np.random.default_rng(0)
    hw = (32, 32)  # AlexNet's smallest input is 31 px
    target = rng.uniform(size=(1, 2) + hw + (3,)).astype(np.float32)
    pred = np.clip(target + rng.normal(scale=0.1, size=target.shape), 0, 1).astype(np.float32)
    loss = jax.jit(jax.value_and_grad(
        lambda p: photometric_loss(p, target, config.nvs, lpips_loss_fn(config.nvs)),
        has_aux=True))
    (total, terms), grad = loss(pred)
    net, weights = load_weights(config.nvs.lpips_weights)
    flat = lambda a: a.reshape(-1, *hw, 3)  # noqa: E731
    want = np.mean(jax.jit(lpips, static_argnums=(3, 4))(weights, flat(pred), flat(target),
                                                          net, True))
    np.testing.assert_allclose(float(terms["loss_lpips"]), want, rtol=1e-5)
    mse = np.mean((pred.astype(np.float64) - target) ** 2)
    np.testing.assert_allclose(float(terms["loss_mse"]), mse, rtol=1e-5)
    c = config.nvs
    np.testing.assert_allclose(float(total), c.mse * mse + c.ssim * float(terms["loss_ssim"])
                               + c.lpips * want, rtol=1e-5)
    assert float(terms["loss_lpips"]) > 0 and np.all(np.isfinite(grad))
    g_mse = 2 * (pred - target) / pred.size
    assert np.abs(np.asarray(grad) - c.mse * g_mse).max() > 1e-3 * np.abs(g_mse).max()

    batch = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), _batch(b=1))
    task = get_task(config)
    params = jax.eval_shape(task.init_params, jax.random.PRNGKey(0), batch)
    with pytest.raises(ValueError, match="LPIPS-alex needs H, W >= 31"):
        jax.eval_shape(task.loss_fn, params, batch, None)  # 28 x 28 renders
    config.nvs.lpips_weights = write_random_weights(tmp_path / "lpips_vgg.safetensors")
    _, metrics = jax.eval_shape(get_task(config).loss_fn, params, batch, None)
    assert {"loss_mse", "loss_ssim", "loss_lpips", "loss_depth"} <= set(metrics)
