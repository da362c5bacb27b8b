"""Analytic FLOP count of the DA3 forward (matmuls and convolutions only; 1 MAC = 2 FLOPs).

    python -m benchmarks.flops [--model da3-small] [--views 1,4] [--size 518x518]

Counts what `da3_jax.model.DA3` computes for an any-view config without input cameras
(the camera encoder does not run): patch embedding, the transformer blocks (qkv, proj, MLP,
and the two attention matmuls; within-view blocks attend over the 1 + P tokens of a view,
cross-view blocks over the N (1 + P) tokens of the scene), the camera decoder MLP, and the
DualDPT head (reassembly, 3x3 `layer_rn` convs, two fusion chains, the depth branch at image
resolution and the last ray-map level). Element-wise work (LayerNorm, softmax, GELU, resizes) is
not counted. The official head additionally computes three auxiliary ray levels it discards;
`official_extra_head` is left to the torch FLOP counter in `benchmarks.inference`.
Used as the cross-check of XLA's cost analysis in `inference.py` and `train_step.py`.
"""

from __future__ import annotations

import argparse
import math


def forward_flops(cfg, n_views: int, hw: tuple[int, int], batch: int = 1) -> dict[str, float]:
    """FLOPs of one forward of `DA3(cfg)` on `[batch, n_views, H, W, 3]`, by part.

    Returns {'patch_embed', 'blocks_matmul', 'attention_local', 'attention_global', 'cam_dec',
    'head', 'total'}.
    """
    h, w = hw
    p = cfg.patch_size
    ph, pw = h // p, w // p
    n_patch = ph * pw
    k = 1 + n_patch
    d = cfg.embed_dim
    n = n_views
    r = cfg.mlp_ratio
    out = {"patch_embed": 2.0 * n * n_patch * (p * p * 3) * d}
    blocks = attn_local = attn_global = 0.0
    for i in range(cfg.depth):
        if cfg.ffn == "swiglu":
            hidden = (int(int(d * r) * 2 / 3) + 7) // 8 * 8
            ffn = 2.0 * n * k * (d * 2 * hidden + hidden * d)
        else:
            ffn = 2.0 * n * k * (2 * d * int(d * r))
        blocks += 2.0 * n * k * (4 * d * d) + ffn
        is_global = cfg.alt_start != -1 and i >= cfg.alt_start and i % 2 == 1
        if is_global:
            attn_global += 4.0 * (n * k) ** 2 * d
        else:
            attn_local += 4.0 * n * k * k * d
    out["blocks_matmul"] = blocks
    out["attention_local"] = attn_local
    out["attention_global"] = attn_global
    c = 2 * d if cfg.cat_token else d
    out["cam_dec"] = 2.0 * n * (2 * c * c + c * 9) if cfg.cam_dec else 0.0
    out["head"] = n * dualdpt_flops(c, cfg.head_features, tuple(cfg.head_out_channels), ph, pw)
    out = {key: v * batch for key, v in out.items()}
    out["total"] = sum(out.values())
    return out


def dualdpt_flops(dim_in: int, f: int, ch: tuple[int, ...], ph: int, pw: int) -> float:
    """FLOPs of the da3_jax DualDPT head for one view with a ph x pw patch grid."""
    s2 = ph * pw
    s0, s1 = 16 * s2, 4 * s2
    s3 = math.ceil(ph / 2) * math.ceil(pw / 2)
    s8 = 64 * s2
    s_img = (14 * ph) * (14 * pw)
    c0, c1, c2, c3 = ch
    fl = 2.0 * s2 * dim_in * (c0 + c1 + c2 + c3)  # projects_k (1x1)
    fl += 2.0 * s2 * c0 * c0 * 16 + 2.0 * s2 * c1 * c1 * 4  # ConvTranspose k4 s4, k2 s2
    fl += 2.0 * s3 * 9 * c3 * c3  # resize_layers_3 (3x3 stride 2)
    fl += 2.0 * 9 * f * (c0 * s0 + c1 * s1 + c2 * s2 + c3 * s3)  # layer{1..4}_rn
    chain = 2.0 * 9 * f * f * (2 * s3 + 4 * s2 + 4 * s1 + 4 * s0)  # RCUs
    chain += 2.0 * f * f * (s2 + s1 + s0 + s8)  # out_conv 1x1
    fl += 2 * chain  # main + aux fusion chains
    # depth branch
    fl += 2.0 * 9 * f * (f // 2) * s8
    fl += 2.0 * 9 * (f // 2) * 32 * s_img + 2.0 * 32 * 2 * s_img
    # ray branch (last level): 5 alternating 3x3 convs F <-> F/2, then 3x3 -> 32, 1x1 -> 7
    fl += 5 * 2.0 * 9 * f * (f // 2) * s8
    fl += 2.0 * 9 * (f // 2) * 32 * s8 + 2.0 * 32 * 7 * s8
    return fl


# Dense peak throughput (FLOP/s) from the vendors' data sheets (no sparsity).
ACCELERATORS = {
    "H100 SXM bf16": 989e12,
    "H100 SXM tf32": 495e12,
    "A100 bf16": 312e12,
    "TPU v5e bf16": 197e12,
    "TPU v5p bf16": 459e12,
}


def estimate_table(flops: float, mfus=(0.3, 0.5)) -> list[list]:
    """Rows [accelerator, peak TFLOP/s, ms at 100 % of peak, ms at each assumed MFU]."""
    return [[name, peak / 1e12, flops / peak * 1e3] + [flops / (peak * m) * 1e3 for m in mfus]
            for name, peak in ACCELERATORS.items()]


def main(argv=None) -> None:
    from benchmarks._common import markdown_table
    from da3_jax.model import get_config

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="da3-small,da3-base")
    ap.add_argument("--views", default="1,4")
    ap.add_argument("--size", default="518x518", help="WxH")
    ap.add_argument("--estimate", action="store_true",
                    help="also print ESTIMATED accelerator times (forward, and train step = 3x)")
    a = ap.parse_args(argv)
    w, h = (int(v) for v in a.size.split("x"))
    rows = []
    parts = ["patch_embed", "blocks_matmul", "attention_local", "attention_global", "cam_dec",
             "head", "total"]
    for m in a.models.split(","):
        cfg = get_config(m)
        for n in (int(v) for v in a.views.split(",")):
            f = forward_flops(cfg, n, (h, w))
            rows.append([m, a.size, n] + [f[x] / 1e9 for x in parts])
    print(markdown_table(["model", "W x H", "N"] + [f"{x} GFLOP" for x in parts], rows))
    if a.estimate:
        print("\nESTIMATES (not measured): time = FLOPs / (peak x MFU); matmul/conv FLOPs only.")
        for row in rows:
            fwd = row[-1] * 1e9
            for what, fl in (("forward", fwd), ("train step (3x fwd)", 3 * fwd)):
                print(f"\n{row[0]}, {row[1]}, N={row[2]}, {what}: {fl / 1e9:.0f} GFLOP\n")
                print(markdown_table(["accelerator", "peak TFLOP/s", "ms @ 100 %",
                                      "ms @ 30 % MFU", "ms @ 50 % MFU"], estimate_table(fl)))


if __name__ == "__main__":
    main()
