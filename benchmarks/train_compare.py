"""da3_jax vs the official PyTorch network: train step and forward, one subprocess per cell.

Used by `benchmarks.train_step --compare-official` (CPU, fp32) and `benchmarks.device_check`
(GPU, bf16 and fp32). Both implementations get

  * the same weights: the official network built as in DA3-official.md §12
    (`create_object(load_config(MODEL_REGISTRY[name]))` after `torch.manual_seed(0)`), saved to
    a temporary `model.safetensors` and converted for da3_jax with `da3_jax.convert.load_official`;
  * the same batch: `[B, N, H, W, 3]` images with depth, validity and cameras from the grain
    pipeline (`train_step.pipeline_batch`), written once to an `.npz` by the parent;
  * the same loss: the da3_jax student loss (`losses.da3_loss`: confidence-weighted depth L1
    - lambda_c log c, depth-gradient L1, ray L1 on known cameras, point L1 with the points built
    from depth and the bilinearly upsampled ray map, pose-encoding L1) on the targets of
    `targets.make_targets`. The official side recomputes every term in torch from the official
    network's outputs (`depth`, `depth_conf`, and the head's `ray` and the camera decoder's
    `pose_enc` caught with forward hooks: the official forward drops them), on the targets the
    parent computed with da3_jax. The da3_jax step builds its targets inside the step, as in
    training; the torch step gets them for free. The step-0 losses of the two sides are reported
    (equal weights, batch and loss: they agree to float32 rounding in fp32);
  * AdamW (weight decay 0.05, global-norm clip 1.0): da3_jax's `train.optim.make_optimizer`
    (backbone LR x 0.1), `torch.optim.AdamW` + `clip_grad_norm_` officially;
  * `ref_view_strategy='first'` (the student's), the network in train mode on the torch side.

A cell is (implementation, mode 'train' | 'forward', dtype, N). Timing: `warmup` calls, then the
median of `repeats` calls, each synchronised (`jax.block_until_ready` / `torch.cuda.synchronize`);
process CPU time per call too. Memory: CPU, the child's peak RSS (VmHWM of the timed section);
GPU, the device allocator's peak (`torch.cuda.max_memory_allocated`, jax `memory_stats()`
`peak_bytes_in_use`). bf16: da3_jax's `dtype='bfloat16'` config (backbone in bf16, params,
softmax statistics and heads fp32); torch `autocast(bfloat16)` around the forward.
"""

from __future__ import annotations

import argparse
import os
import time

from benchmarks import _common

MODULE = "benchmarks.train_compare"
OPTIM = dict(lr=1e-4, total_steps=10000, warmup_steps=100, end_lr_ratio=0.01, weight_decay=0.05,
             b1=0.9, b2=0.999, eps=1e-8, grad_clip=1.0, backbone_regex=r"^backbone/",
             backbone_lr_mult=0.1)
TARGET_KEYS = ("depth", "valid", "camera_valid", "ray", "points", "pose_enc")


# ----------------------------------------------------------------------------------------------
# inputs (parent process; jax on CPU)


def ray_hw(model: str, hw: tuple[int, int]) -> tuple[int, int]:
    """Resolution (h, w) of the ray map DA3 `model` predicts for `hw` images (eval_shape)."""
    import jax
    import jax.numpy as jnp

    from da3_jax.model import DA3, get_config

    net = DA3(get_config(model))
    x = jnp.zeros((1, 1, *hw, 3), jnp.float32)

    def f(x):
        params = net.init(jax.random.PRNGKey(0), x)["params"]
        return net.apply({"params": params}, x, ref_view_strategy="first")["ray"]

    return tuple(jax.eval_shape(f, x).shape[-3:-1])


def write_inputs(path: str, batch_np: dict, ray_shape: tuple[int, int]) -> None:
    """Save the batch and its da3_jax targets (`t_<key>`) for both workers."""
    import jax.numpy as jnp
    import numpy as np

    from da3_jax.train.targets import make_targets

    batch = {k: jnp.asarray(v) for k, v in batch_np.items()}
    tgt = make_targets(batch, ray_shape)
    arrays = {k: np.asarray(v) for k, v in batch_np.items()}
    arrays.update({f"t_{k}": np.asarray(tgt[k]) for k in TARGET_KEYS})
    np.savez(path, **arrays)


# ----------------------------------------------------------------------------------------------
# official (torch) worker


def _official_net(name: str):
    import torch
    from depth_anything_3.cfg import create_object, load_config
    from depth_anything_3.registry import MODEL_REGISTRY

    torch.manual_seed(0)
    return create_object(load_config(MODEL_REGISTRY[name]))


def torch_da3_loss(out: dict, t: dict, lambda_c: float = 1.0):
    """`da3_jax.train.losses.da3_loss` (all weights 1) in torch: same terms, masks, means.

    out: depth, depth_conf [B,N,H,W], ray [B,N,h,w,6], ray_conf [B,N,h,w], pose_enc [B,N,9];
    t: the targets.
    """
    import torch
    import torch.nn.functional as F

    def mmean(v, m):
        m = m.expand_as(v).float()
        return (torch.where(m > 0, v, 0.0) * m).sum() / m.sum().clamp(min=1.0)

    def clean(x, m, fill=0.0):
        while m.dim() < x.dim():
            m = m[..., None]
        return torch.where(m > 0, x, torch.full_like(x, fill))

    valid, cam = t["valid"].float(), t["camera_valid"].float()
    depth, conf, ray = out["depth"].float(), out["depth_conf"].float(), out["ray"].float()
    d, td, c = clean(depth, valid), clean(t["depth"], valid), clean(conf, valid, 1.0)
    l_depth = mmean(c * (d - td).abs() - lambda_c * torch.log(c), valid)
    diff = d - td
    l_grad = (mmean((diff[..., :, 1:] - diff[..., :, :-1]).abs(),
                    valid[..., :, 1:] * valid[..., :, :-1])
              + mmean((diff[..., 1:, :] - diff[..., :-1, :]).abs(),
                      valid[..., 1:, :] * valid[..., :-1, :]))
    cam_hw = cam[..., None, None].expand(*cam.shape, *ray.shape[-3:-1])
    err = (clean(ray, cam_hw) - clean(t["ray"], cam_hw)).abs()
    rc = clean(out["ray_conf"].float(), cam_hw, 1.0)  # confidence-weighted, as ray_loss
    l_ray = mmean(rc * (err[..., 0:3].sum(-1) + err[..., 3:6].sum(-1)) - lambda_c * torch.log(rc),
                  cam_hw)
    err = (clean(out["pose_enc"].float(), cam) - clean(t["pose_enc"], cam)).abs()
    l_cam = mmean(err[..., 0:3].sum(-1) + err[..., 3:7].sum(-1) + err[..., 7:9].sum(-1), cam)
    b, n, h, w = depth.shape
    full = F.interpolate(ray.reshape(b * n, *ray.shape[-3:]).permute(0, 3, 1, 2), size=(h, w),
                         mode="bilinear", align_corners=False)
    full = full.permute(0, 2, 3, 1).reshape(b, n, h, w, 6)
    points = full[..., 3:6] + depth[..., None] * full[..., 0:3]
    pm = valid * cam[..., None, None]
    l_point = mmean((clean(points, pm) - clean(t["points"], pm)).abs().sum(-1), pm)
    return l_depth + l_ray + l_point + l_cam + l_grad


def _cells(text: str, dtype: str) -> list[tuple[str, int, str]]:
    """'train:1,forward:8:bfloat16' -> [('train', 1, dtype), ('forward', 8, 'bfloat16')]."""
    cells = []
    for item in text.split(","):
        mode, n, *rest = item.split(":") + [""]
        d = rest[0] or dtype
        if mode not in ("train", "forward") or not n.isdigit() or int(n) < 1 or d not in DTYPES:
            raise ValueError(f"--cells item {item!r}: expected train:N or forward:N, "
                             f"optionally :dtype ({'|'.join(DTYPES)})")
        cells.append((mode, int(n), d))
    return cells


DTYPES = ("float32", "bfloat16")


def _random_images(n: int, hw: tuple[int, int]):
    import numpy as np

    return np.random.default_rng(n).standard_normal((1, n, *hw, 3)).astype(np.float32)


def save_official_weights_file(net, path: str) -> None:
    """The official network's state dict as the Hub's `model.safetensors` (keys `model.*`)."""
    from safetensors.torch import save_model
    from torch import nn

    wrapper = nn.Module()
    wrapper.model = net
    save_model(wrapper, path)


def worker_official(a):
    """Yields one result per cell (net built once; weights restored before each cell)."""
    import copy

    import numpy as np
    import torch

    torch.set_num_threads(a.threads)
    dev = torch.device("cuda" if a.device == "gpu" else "cpu")
    net = _official_net(a.model)
    if a.save_weights:
        save_official_weights_file(net, a.save_weights)
        yield {"saved": a.save_weights}
        return
    initial = copy.deepcopy(net.state_dict())
    net = net.to(dev)
    caught: dict = {}
    net.head.register_forward_hook(lambda _m, _i, o: caught.update(ray=o["ray"],
                                                                 ray_conf=o["ray_conf"]))
    net.cam_dec.register_forward_hook(lambda _m, _i, o: caught.update(pose_enc=o))
    peak = None
    if dev.type == "cuda":
        peak = (torch.cuda.reset_peak_memory_stats, torch.cuda.max_memory_allocated)
    state: dict = {}  # the cell's tensors, cleared after each cell
    for mode, n, dtype in _cells(a.cells, a.dtype):
        try:
            if a.inputs:
                data = np.load(a.inputs.replace("{n}", str(n)))
                images = data["images"]
                state["tgt"] = {k: torch.from_numpy(data[f"t_{k}"]).to(dev) for k in TARGET_KEYS}
            else:
                images = _random_images(n, (a.height, a.width))
            state["x"] = torch.from_numpy(
                np.ascontiguousarray(images.transpose(0, 1, 4, 2, 3))).to(dev)
            net.load_state_dict(initial)
            net.train(mode == "train")
            state["opt"] = torch.optim.AdamW(
                net.parameters(), lr=OPTIM["lr"], betas=(OPTIM["b1"], OPTIM["b2"]),
                eps=OPTIM["eps"], weight_decay=OPTIM["weight_decay"])

            def forward(dtype=dtype):
                with torch.autocast(dev.type, dtype=torch.bfloat16,
                                    enabled=dtype == "bfloat16"):
                    out = net(state["x"], None, None, use_ray_pose=False,
                              ref_view_strategy="first")
                return {**out, **caught}

            def call(mode=mode):
                if mode == "train":
                    state["opt"].zero_grad(set_to_none=True)
                    loss = torch_da3_loss(forward(), state["tgt"])
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(net.parameters(), OPTIM["grad_clip"])
                    state["opt"].step()
                    r = loss.detach()
                else:
                    with torch.inference_mode():
                        r = forward()["depth"]
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                return r

            yield _measure(a, mode, n, dtype, call, peak,
                           {"torch_threads": torch.get_num_threads()})
        except Exception as e:  # noqa: BLE001 - e.g. out of memory: report it, go on
            yield _error(a, mode, n, dtype, e)
        finally:
            state.clear()
            caught.clear()
            if dev.type == "cuda":
                torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------
# da3_jax worker

BATCH_KEYS = ("images", "depth", "valid", "extrinsics", "intrinsics", "camera_valid")


def _config(model: str, dtype: str, scan: str = "", conv_impl: str = "auto"):
    """The benchmark's student-task config (model dtype set; the experiments' optimiser).
    ``scan``: '' (unrolled blocks) or a remat policy: backbone as `nn.scan` stacks with it.
    ``conv_impl``: the heads' convolutions (`da3_jax.model.conv`; 'auto': fastest measured)."""
    import ml_collections

    c = ml_collections.ConfigDict()
    c.task = "student"
    c.seed = 0
    c.batch_size = 1
    overrides = {"dtype": dtype, "conv_impl": conv_impl}
    if scan:
        overrides.update(scan_layers=True, remat_policy=scan)
    c.model = ml_collections.ConfigDict({"name": model, "overrides": overrides})
    c.loss = ml_collections.ConfigDict(dict(lambda_c=1.0, beta=1.0, alpha=1.0, ray=1.0,
                                            point=1.0))
    c.optim = ml_collections.ConfigDict(OPTIM)
    c.data = ml_collections.ConfigDict({"eval_sources": [], "pipeline": {}, "train_sources": []})
    return c


def worker_jax(a):
    """Yields one result per cell (weights converted once; a fresh train state per cell)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from da3_jax.convert import load_official
    from da3_jax.train import da3_tasks
    from da3_jax.train.optim import make_optimizer
    from da3_jax.train.state import create_state
    from da3_jax.train.step import make_train_step

    config = _config(a.model, a.dtype, a.scan, a.conv_impl)
    params = load_official(a.load_weights, a.model)[1]
    if a.scan:
        from da3_jax.parallel import scan

        params = scan.to_scanned(params, scan.schedule_from_config(
            da3_tasks.model_config(config)), at=("backbone", "pretrained"))
    params = jax.device_put(params)
    tx, schedule = make_optimizer(config.optim, params)
    traces = [0]
    fns = {}

    def fns_for(dtype):  # (jitted train step, jitted forward) of the model in `dtype`
        if dtype not in fns:
            cfg = _config(a.model, dtype, a.scan, a.conv_impl)
            model = da3_tasks.build_model(cfg)

            def fwd(p, x):
                traces[0] += 1  # runs once per trace (= per compile)
                return model.apply({"params": p}, x, ref_view_strategy="first")["depth"]

            fns[dtype] = (make_train_step(da3_tasks.student_task(cfg).loss_fn, tx, schedule),
                          jax.jit(fwd))
        return fns[dtype]

    dev = jax.devices()[0]
    peak = None if dev.platform == "cpu" else (
        lambda: None, lambda: int((dev.memory_stats() or {}).get("peak_bytes_in_use", 0)))
    state: dict = {}  # the cell's tensors, cleared after each cell
    for mode, n, dtype in _cells(a.cells, a.dtype):
        try:
            step, fwd = fns_for(dtype)
            if a.inputs:
                data = np.load(a.inputs.replace("{n}", str(n)))
                state["batch"] = {k: jax.device_put(data[k]) for k in BATCH_KEYS if k in data}
            else:
                state["batch"] = {"images": jax.device_put(
                    _random_images(n, (a.height, a.width)))}
            if mode == "train":
                state["train"] = create_state(jax.tree.map(jnp.copy, params), tx,
                                              jax.random.PRNGKey(1))

                def call(step=step):
                    state["train"], metrics = step(state["train"], state["batch"])
                    return jax.block_until_ready(metrics["loss"])

                n_traces = step._cache_size
            else:
                def call(fwd=fwd):
                    return jax.block_until_ready(fwd(params, state["batch"]["images"]))

                def n_traces():
                    return traces[0]

            yield _measure(a, mode, n, dtype, call, peak, {"backend": jax.default_backend()},
                           n_traces=n_traces)
        except Exception as e:  # noqa: BLE001 - e.g. RESOURCE_EXHAUSTED: report it, go on
            yield _error(a, mode, n, dtype, e)
        finally:
            state.clear()


# ----------------------------------------------------------------------------------------------
# timing, worker entry point, cell runner


def _error(a, mode: str, n: int, dtype: str, e: Exception) -> dict:
    return {"impl": a.worker, "mode": mode, "dtype": dtype, "views": n,
            "error": f"{type(e).__name__}: {str(e)[:300]}"}


def _measure(a, mode: str, n: int, dtype: str, call, device_peak, extra: dict,
             n_traces=None) -> dict:
    """First call (compile / warm-up; gives the step-0 loss), `warmup - 1` more, then `repeats`
    timed calls. Returns wall and CPU times, peaks and the loss of the first call."""
    t0 = time.perf_counter()
    first = call()
    first_s = time.perf_counter() - t0
    loss0 = float(first) if mode == "train" else None
    del first
    for _ in range(a.warmup - 1):
        call()
    traces_warm = n_traces() if n_traces else None
    reset = _common.reset_peak_rss()
    if device_peak:
        device_peak[0]()
    times, cpu = [], []
    for _ in range(a.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        call()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    res = {"impl": a.worker, "mode": mode, "dtype": dtype, "views": n,
           "times_s": times, "cpu_s": cpu, "median_s": _common.median(times),
           "median_cpu_s": _common.median(cpu), "first_call_s": first_s, "loss0": loss0,
           "peak_reset": reset, "timed_peak_rss_bytes": _common.vm_hwm_bytes(),
           "device_peak_bytes": device_peak[1]() if device_peak else None, **extra}
    if n_traces:
        res["recompiles"] = n_traces() - traces_warm
    return res


def worker_main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", required=True, choices=("jax", "official", "matmul"))
    ap.add_argument("--model", default="da3-small")
    ap.add_argument("--cells", default="train:4",
                    help="mode:N[:dtype],... (mode train | forward; dtype default --dtype)")
    ap.add_argument("--dtype", default="float32", choices=DTYPES)
    ap.add_argument("--device", default="cpu", choices=("cpu", "gpu"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--inputs", default="", help="npz path, '{n}' = view count; "
                    "default: random images of --height x --width (forward cells only)")
    ap.add_argument("--height", type=int, default=280)
    ap.add_argument("--width", type=int, default=280)
    ap.add_argument("--save-weights", default="")
    ap.add_argument("--load-weights", default="")
    ap.add_argument("--scan", default="", help="jax: scanned backbone with this remat policy "
                    "(none, full, dots, dots_all); default unrolled")
    ap.add_argument("--conv-impl", default="auto", choices=("xla", "matmul", "auto"),
                    help="jax: the heads' convolutions (da3_jax.model.conv)")
    a = ap.parse_args(argv)
    if a.device == "cpu":
        _common.pin_threads(a.threads)
        os.environ["JAX_PLATFORMS"] = "cpu"
    if a.worker == "matmul":
        _common.emit(_common.matmul_peak_gflops())
        return
    for res in {"jax": worker_jax, "official": worker_official}[a.worker](a):
        _common.emit(res)


def worker_env(device: str) -> dict:
    """Child environment: jax on the CPU for CPU cells; on the GPU without preallocation (so
    that the allocator's peak is the program's)."""
    env = dict(os.environ)
    if device == "cpu":
        env["JAX_PLATFORMS"] = "cpu"
    else:
        env.pop("JAX_PLATFORMS", None)
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_common.REPO, env.get("PYTHONPATH")) if p)
    return env


def worker_args(impl: str, model: str, cells: str, dtype: str, *, inputs: str = "",
                weights: str = "", device: str = "cpu", threads: int = 2, warmup: int = 2,
                repeats: int = 3, hw: tuple[int, int] = (280, 280), scan: str = "",
                conv_impl: str = "auto") -> list[str]:
    """Command-line arguments of one worker (see `worker_main`)."""
    args = ["--worker", impl, "--model", model, "--cells", cells, "--dtype", dtype,
            "--device", device, "--threads", str(threads), "--warmup", str(warmup),
            "--repeats", str(repeats), "--height", str(hw[0]), "--width", str(hw[1])]
    if inputs:
        args += ["--inputs", inputs]
    if impl == "jax":
        args += ["--load-weights", weights, "--conv-impl", conv_impl]
        args += ["--scan", scan] if scan else []
    return args


def run_cell(impl: str, model: str, mode: str, dtype: str, views: int, **kw) -> dict:
    """One cell in its own subprocess (CPU comparison); {'error': ...} if it failed."""
    device = kw.get("device", "cpu")
    timeout = kw.pop("timeout", None)
    try:
        return _common.run_worker(MODULE, worker_args(impl, model, f"{mode}:{views}", dtype,
                                                      **kw),
                                  timeout=timeout, env=worker_env(device))
    except RuntimeError as e:
        return {"impl": impl, "mode": mode, "dtype": dtype, "views": views,
                "error": str(e).strip().splitlines()[-1][:300]}


def save_official_weights(model: str, path: str) -> None:
    """Write the official `model` (seed 0) to `path` in a CPU subprocess."""
    _common.run_worker(MODULE, ["--worker", "official", "--model", model, "--save-weights",
                                path], env=worker_env("cpu"))


if __name__ == "__main__":
    worker_main()
