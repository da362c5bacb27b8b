"""Camera-decoder pose vs ray-map solver: time per scene (the DA3 paper reports 18.7x).

    python -m benchmarks.camera [--model da3-small] [--views 1,4,8] [--size 504x504]
        [--repeats 5] [--threads 2] [--no-official] [--end-to-end] [--json out.json]

Two ways DA3 gets cameras from one forward:
  * camera decoder: camera-token feature [1, N, 2D] -> MLP (`model.camera.CameraDec`) ->
    9-number pose encoding -> `geometry.decode_pose` (w2c, K);
  * ray-map solver: ray map [1, N, h, w, 6] (h, w = 8 H / 14, 8 W / 14) + confidence ->
    `geometry.rays_to_camera(method='official')` (weighted DLT homography in a 100-iteration
    RANSAC, QL decomposition).
Both are jitted (one compile each, excluded); the table gives the median of `--repeats` calls.
Inputs: random decoder weights and features; ray maps are exact rays of random cameras
(`geometry.camera_rays`) plus 1 % noise, with random positive confidences (the solver's cost
does not depend on the values). The official columns time the same two steps of the official
package (`cam_dec` + `pose_encoding_to_extri_intri` + `affine_inverse`, and
`utils.ray_utils.get_extrinsic_from_camray`) in torch with the same threads.
`--end-to-end` also times the whole da3_jax forward with `use_ray_pose` False / True.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from benchmarks import _common


def _rays(n: int, hw_ray: tuple[int, int], hw: tuple[int, int], seed: int):
    import jax
    import jax.numpy as jnp
    import numpy as np

    from da3_jax import geometry

    rng = np.random.default_rng(seed)
    q = rng.normal(size=(1, n, 4))
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    rot = np.asarray(geometry.quat_to_rotmat(jnp.asarray(q, jnp.float32)))
    w2c = np.concatenate([rot, rng.normal(size=(1, n, 3, 1))], axis=-1).astype(np.float32)
    h, w = hw
    k = np.array([[0.9 * w, 0, w / 2], [0, 0.9 * w, h / 2], [0, 0, 1]], np.float32)
    sx, sy = hw_ray[1] / w, hw_ray[0] / h
    k_ray = np.broadcast_to(np.diag([sx, sy, 1.0]).astype(np.float32) @ k, (1, n, 3, 3))
    o, d = geometry.camera_rays(jnp.asarray(w2c), jnp.asarray(k_ray), hw_ray, pixel_center=0.5)
    ray = np.concatenate([np.asarray(d), np.asarray(o)], axis=-1)
    ray = ray + 0.01 * rng.standard_normal(ray.shape).astype(np.float32)
    conf = (1.0 + rng.random(ray.shape[:-1])).astype(np.float32)
    return jax.device_put(ray), jax.device_put(conf)


def bench_jax(model: str, n: int, hw: tuple[int, int], repeats: int) -> dict:
    import jax
    import jax.numpy as jnp

    from da3_jax.geometry import decode_pose, rays_to_camera
    from da3_jax.model import get_config
    from da3_jax.model.camera import CameraDec

    cfg = get_config(model)
    c = 2 * cfg.embed_dim if cfg.cat_token else cfg.embed_dim
    h, w = hw
    hw_ray = (8 * h // 14, 8 * w // 14)
    dec = CameraDec()
    feat = jax.random.normal(jax.random.PRNGKey(0), (1, n, c), jnp.float32)
    params = dec.init(jax.random.PRNGKey(1), feat)

    @jax.jit
    def decoder(p, f):
        return decode_pose(dec.apply(p, f), hw)

    ray, conf = _rays(n, hw_ray, hw, 0)
    solver = jax.jit(lambda r, c_: rays_to_camera(r, c_, hw, method="official"))
    jax.block_until_ready(decoder(params, feat))
    jax.block_until_ready(solver(ray, conf))
    t_dec = _common.timed(lambda: jax.block_until_ready(decoder(params, feat)), repeats, 2)
    t_ray = _common.timed(lambda: jax.block_until_ready(solver(ray, conf)), repeats, 1)
    return {"dec_s": _common.median(t_dec), "ray_s": _common.median(t_ray), "ray_hw": hw_ray}


def bench_official(model: str, n: int, hw: tuple[int, int], repeats: int) -> dict:
    import numpy as np
    import torch
    from depth_anything_3.model.cam_dec import CameraDec
    from depth_anything_3.model.utils.transform import pose_encoding_to_extri_intri
    from depth_anything_3.utils.geometry import affine_inverse
    from depth_anything_3.utils.ray_utils import get_extrinsic_from_camray

    from da3_jax.model import get_config

    cfg = get_config(model)
    c = 2 * cfg.embed_dim if cfg.cat_token else cfg.embed_dim
    h, w = hw
    hw_ray = (8 * h // 14, 8 * w // 14)
    torch.manual_seed(0)
    dec = CameraDec(dim_in=c).eval()
    feat = torch.randn(1, n, c)
    ray, conf = _rays(n, hw_ray, hw, 0)
    ray_t = torch.from_numpy(np.asarray(ray))
    conf_t = torch.from_numpy(np.asarray(conf))

    def decoder():
        with torch.inference_mode():
            c2w, ixt = pose_encoding_to_extri_intri(dec(feat), (h, w))
            return affine_inverse(c2w), ixt

    def solver():
        with torch.inference_mode():
            return get_extrinsic_from_camray(ray_t, conf_t, hw_ray[0], hw_ray[1])

    t_dec = _common.timed(decoder, repeats, 2)
    t_ray = _common.timed(solver, repeats, 1)
    return {"dec_s": _common.median(t_dec), "ray_s": _common.median(t_ray)}


def bench_end_to_end(model: str, n: int, hw: tuple[int, int], repeats: int) -> dict:
    import jax
    import jax.numpy as jnp

    from da3_jax.model import DA3, get_config

    net = DA3(get_config(model))
    x = jax.random.normal(jax.random.PRNGKey(0), (1, n) + hw + (3,), jnp.float32)
    params = jax.jit(net.init)(jax.random.PRNGKey(1), x[:, :1])["params"]
    out = {}
    for flag in (False, True):
        f = jax.jit(lambda p, x_, flag=flag: net.apply({"params": p}, x_, use_ray_pose=flag))
        jax.block_until_ready(f(params, x))
        out[f"fwd_ray_pose_{flag}_s"] = _common.median(
            _common.timed(lambda f=f: jax.block_until_ready(f(params, x)), repeats, 0))
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="da3-small")
    ap.add_argument("--views", default="1,4,8")
    ap.add_argument("--size", default="504x504", help="WxH of the network input")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--no-official", action="store_true")
    ap.add_argument("--end-to-end", action="store_true")
    ap.add_argument("--json", default="")
    a = ap.parse_args(argv)
    if a.repeats < 3:
        raise ValueError(f"--repeats must be >= 3; got {a.repeats}")
    w, h = (int(v) for v in a.size.lower().split("x"))
    _common.pin_threads(a.threads)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    info = _common.machine_info()
    if not a.no_official:
        import torch

        torch.set_num_threads(a.threads)
    rows = []
    for n in (int(v) for v in a.views.split(",")):
        r = {"views": n, "jax": bench_jax(a.model, n, (h, w), a.repeats)}
        if not a.no_official:
            r["official"] = bench_official(a.model, n, (h, w), a.repeats)
        if a.end_to_end:
            r["end_to_end"] = bench_end_to_end(a.model, n, (h, w), 3)
        print(f"# {json.dumps(r)}", file=sys.stderr, flush=True)
        rows.append(r)
    report = {"machine": info, "model": a.model, "size": a.size, "threads": a.threads,
              "rows": rows, "time": time.time()}
    return _common.publish(report, format_table, a.json)


def format_table(report: dict) -> str:
    headers = ["N", "ray grid", "jax decoder ms", "jax ray solver ms", "jax ratio",
               "official decoder ms", "official ray solver ms", "official ratio"]
    e2e = any("end_to_end" in r for r in report["rows"])
    if e2e:
        headers += ["jax fwd (decoder) ms", "jax fwd (ray pose) ms"]
    nan = float("nan")
    rows = []
    for r in report["rows"]:
        j, o = r["jax"], r.get("official", {})
        row = [r["views"], "x".join(map(str, j["ray_hw"])), j["dec_s"] * 1e3, j["ray_s"] * 1e3,
               j["ray_s"] / j["dec_s"], o.get("dec_s", nan) * 1e3, o.get("ray_s", nan) * 1e3,
               o.get("ray_s", nan) / o.get("dec_s", nan)]
        if e2e:
            ee = r.get("end_to_end", {})
            row += [ee.get("fwd_ray_pose_False_s", nan) * 1e3,
                    ee.get("fwd_ray_pose_True_s", nan) * 1e3]
        rows.append(row)
    return "\n".join([
        _common.machine_line(report["machine"]),
        f"Load average at the end: {report['machine_after']['load_avg'][0]:.2f} (1 min). "
        f"Model {report['model']}, input {report['size']} (WxH), threads {report['threads']}.",
        "", _common.markdown_table(headers, rows)])


if __name__ == "__main__":
    main()
