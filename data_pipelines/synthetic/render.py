"""Render procedural multi-view scenes into `SceneRecord`s; CLI writing scenes + a contact sheet.

    python -m data_pipelines.synthetic.render --out DIR --scenes 4 [--views 8 --size 224x224
        --seed 0 --start 0 --format npz|array_record --workers 1]

writes DIR/scene_XXXXX.npz (the record's `to_example()` fields; load with `load_npz(path)`)
or, with --format array_record, DIR/scenes.array_record (read with
`data_pipelines.sources.ArrayRecordSceneSource`), plus DIR/contact_sheet.png (the first <= 6
scenes: a row of views and a row of colour-mapped depth each, invalid pixels black).
--start offsets the scene indices (disjoint splits); --workers renders in parallel processes
(identical output: every scene depends only on (seed, index)).

`render_scene(index, ...)` is deterministic in (seed, index): the scene layout, cameras and
pixels depend on nothing else. Depth is exact z-depth in metres (`is_metric=True`,
`depth_kind='dense_gt'`).
"""

from __future__ import annotations

import argparse
import os
import pathlib

import numpy as np

from data_pipelines.record import SceneRecord
from data_pipelines.synthetic.raycast import render_view
from data_pipelines.synthetic.scenes import SceneConfig, make_scene

DATASET = "synthetic"


def render_scene(index: int, num_views: int = 8, height: int = 224, width: int = 224,
                 seed: int = 0, cfg: SceneConfig | None = None,
                 dataset: str = DATASET) -> SceneRecord:
    """Scene `index` of the procedural dataset with seed `seed`, as a validated SceneRecord."""
    if num_views < 1 or height < 1 or width < 1:
        raise ValueError(f"num_views/height/width must be >= 1, got {num_views}/{height}/{width}")
    scene, ks, w2cs, trajectory = make_scene((seed, index), num_views, height, width, cfg)
    views = [render_view(scene, k, e, height, width) for k, e in zip(ks, w2cs, strict=True)]
    images, depth, valid = (np.stack(x) for x in zip(*views, strict=True))
    return SceneRecord(
        images=images,
        depth=depth,
        valid=valid,
        intrinsics=ks.astype(np.float32),
        extrinsics=w2cs.astype(np.float32),
        dataset=dataset,
        scene_id=f"{scene.kind}_{seed}_{index:06d}",
        is_metric=True,
        depth_kind="dense_gt",
        provenance={"renderer": "data_pipelines.synthetic", "seed": seed, "index": index,
                    "scene_kind": scene.kind, "trajectory": trajectory},
    ).validate()


def save_npz(record: SceneRecord, path) -> None:
    """Writes a record's `to_example()` fields into an uncompressed .npz (no pickle)."""
    ex = record.to_example()
    np.savez(path, **{k: np.asarray(v) for k, v in ex.items()})


def load_npz(path) -> SceneRecord:
    """Inverse of `save_npz`; validates."""
    with np.load(path, allow_pickle=False) as z:
        return SceneRecord.from_example({k: z[k] for k in z.files}).validate()


def colorize_depth(depth: np.ndarray, valid: np.ndarray, cmap: str = "turbo",
                   vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """uint8 [H, W, 3] colour-mapped inverse depth (near = warm); invalid pixels black."""
    from matplotlib import colormaps

    inv = np.where(valid, 1.0 / np.maximum(depth, 1e-6), 0.0)
    if valid.any():
        lo = 1.0 / vmax if vmax else float(np.percentile(inv[valid], 2))
        hi = 1.0 / vmin if vmin else float(np.percentile(inv[valid], 98))
    else:
        lo, hi = 0.0, 1.0
    x = np.clip((inv - lo) / max(hi - lo, 1e-9), 0, 1)
    rgb = (colormaps[cmap](x)[..., :3] * 255).astype(np.uint8)
    rgb[~valid] = 0
    return rgb


def contact_sheet(records, path, max_views: int = 8) -> None:
    """PNG grid: per scene one row of images and one row of colour-mapped depth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(max_views, max(r.num_views for r in records))
    h, w = records[0].image_hw
    fig, axes = plt.subplots(2 * len(records), n, squeeze=False,
                             figsize=(1.6 * n * w / max(h, w) + 0.2, 3.3 * len(records)))
    for s, rec in enumerate(records):
        for v in range(n):
            top, bottom = axes[2 * s, v], axes[2 * s + 1, v]
            if v < rec.num_views:
                top.imshow(rec.images[v])
                bottom.imshow(colorize_depth(rec.depth[v], rec.valid[v]))
            if v == 0:
                top.set_title(rec.scene_id, fontsize=7, loc="left")
            top.axis("off")
            bottom.axis("off")
    fig.tight_layout(pad=0.2)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _parse_size(s: str) -> tuple[int, int]:
    """'HxW' -> (H, W)."""
    try:
        h, w = (int(x) for x in s.lower().split("x"))
    except ValueError as e:
        raise ValueError(f"--size must be HxW (e.g. 224x224), got {s!r}") from e
    return h, w


def _render_args(args):
    return render_scene(*args)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--scenes", type=int, default=4)
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--size", default="224x224", help="HxW")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--start", type=int, default=0, help="index of the first scene")
    ap.add_argument("--format", choices=("npz", "array_record"), default="npz")
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args(argv)
    h, w = _parse_size(args.size)
    out = pathlib.Path(args.out)
    os.makedirs(out, exist_ok=True)
    jobs = [(args.start + i, args.views, h, w, args.seed) for i in range(args.scenes)]
    if args.workers > 1:
        import concurrent.futures
        import multiprocessing

        pool = concurrent.futures.ProcessPoolExecutor(
            args.workers, mp_context=multiprocessing.get_context("spawn"))
        records = pool.map(_render_args, jobs)
    else:
        pool, records = None, map(_render_args, jobs)
    shown = []

    def _each():
        for rec in records:
            if len(shown) < 6:
                shown.append(rec)
            print(f"{rec.scene_id}: {rec.provenance['trajectory']}, "
                  f"valid {rec.valid.mean():.0%}")
            yield rec

    try:
        if args.format == "array_record":
            from data_pipelines.record import write_array_record

            n = write_array_record(_each(), out / "scenes.array_record")
            print(f"wrote {n} scenes to {out / 'scenes.array_record'}")
        else:
            for rec in _each():
                save_npz(rec, out / f"scene_{rec.provenance['index']:05d}.npz")
            print(f"wrote {args.scenes} scene_*.npz files to {out}")
    finally:
        if pool is not None:
            pool.shutdown()
    contact_sheet(shown, out / "contact_sheet.png")
    print(f"wrote {out / 'contact_sheet.png'}")


if __name__ == "__main__":
    main()
