"""Python inference API: `Predictor` and its `Prediction`.

    from da3_jax.infer import Predictor
    pred = Predictor.from_checkpoint("ckpt_dir_or_model.safetensors")
    out = pred.predict(["a.jpg", "b.jpg"], process_res=504)
    out.depth            # [N, H, W] float32 z-depth
    out.extrinsics       # [N, 3, 4] float32 w2c (OpenCV axes)

Semantics follow the official `DepthAnything3.inference` (DA3-official.md §7.1): inputs are
read (`da3_jax.infer.io`: EXIF, 16-bit, alpha handled), preprocessed exactly as upstream
(`da3_jax.model.preprocess.preprocess_images`), input poses normalised
(`da3_jax.model.normalize_input_extrinsics`), the network run (`da3_jax.infer.forward`), and
with input poses the prediction is aligned back to them (`da3_jax.infer.poses`). Intrinsics are
in pixels of the processed images. Several independent scenes run as one batch with
`predict_batch`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from typing import Any

import jax
import ml_collections
import numpy as np

from da3_jax.infer import io as io_lib
from da3_jax.infer import poses as poses_lib
from da3_jax.infer.forward import Forward
from da3_jax.model import get_config, normalize_input_extrinsics
from da3_jax.model.preprocess import METHODS, preprocess_images


@dataclasses.dataclass
class Prediction:
    """Result for one scene of N views (processed resolution H x W, multiples of 14).

    depth: [N, H, W] float32 z-depth (input-pose units when posed and align_to_input_scale;
      metres for metric/nested models; otherwise the model's normalised scale).
    conf: [N, H, W] float32 depth confidence (>= 1; None for mono/metric models).
    extrinsics: [N, 3, 4] float32 w2c, OpenCV axes (None for mono/metric models).
    intrinsics: [N, 3, 3] float32 pixels of the processed images (None for mono/metric).
    processed_images: [N, H, W, 3] uint8 images the network saw.
    sky: [N, H, W] bool sky mask (models with a sky head), else None.
    descriptor: [N, C] float32 per-view global descriptor (`forward.view_descriptor`) when
      requested with ``with_descriptor=True``, else None.
    gaussians: dict of world-space 3D Gaussians (`means [G,3]`, `scales [G,3]`, `rotations [G,4]`
      xyzw, `harmonics [G,3,9]`, `opacities [G]`) when requested from a GS model, else None.
    is_metric: 1 when depth is in metres (metric / nested models).
    scale_factor: nested model's metric scale, or the input-pose alignment scale s, else None.
    image_names: names of the inputs (file names; 'image_{i}' for arrays).
    original_sizes: [(H, W)] of every input image before preprocessing.
    """

    depth: np.ndarray
    conf: np.ndarray | None = None
    extrinsics: np.ndarray | None = None
    intrinsics: np.ndarray | None = None
    processed_images: np.ndarray | None = None
    sky: np.ndarray | None = None
    descriptor: np.ndarray | None = None
    gaussians: dict | None = None
    is_metric: int = 0
    scale_factor: float | None = None
    image_names: list = dataclasses.field(default_factory=list)
    original_sizes: list = dataclasses.field(default_factory=list)
    process_res_method: str = "upper_bound_resize"

    @property
    def num_views(self) -> int:
        return int(self.depth.shape[0])


def _is_training_dir(path: str) -> str | None:
    """`<workdir>`, `<workdir>/checkpoints` or a step dir of the training CheckpointManager ->
    the step's `state` directory (latest step when a manager dir is given), else None."""
    cands = [path, os.path.join(path, "checkpoints")]
    for c in cands:
        if os.path.isdir(os.path.join(c, "state")):
            return os.path.join(c, "state")
        if os.path.isdir(c):
            steps = sorted((int(d) for d in os.listdir(c) if d.isdigit()), reverse=True)
            for s in steps:
                if os.path.isdir(os.path.join(c, str(s), "state")):
                    return os.path.join(c, str(s), "state")
    return None


def _training_model_config(path: str, state_dir: str) -> ml_collections.ConfigDict:
    """The model config of a training work dir: its experiment ``config.json`` (written by
    ``experiments.launch``; the named variant + ``model.overrides``, via
    ``train.da3_tasks.model_config``), or a ``model_config.json`` holding a model config."""
    # state_dir = <workdir>/checkpoints/<step>/state
    workdir = os.path.dirname(os.path.dirname(os.path.dirname(state_dir)))
    names = ("config.json", "model_config.json")
    cfg_file = next((os.path.join(d, n) for d in dict.fromkeys((path, workdir)) for n in names
                     if os.path.isfile(os.path.join(d, n))), None)
    if cfg_file is None:
        raise ValueError(f"checkpoint {path!r} is a training checkpoint without a model "
                         "config: pass config= (e.g. 'da3-large') / --model-name")
    with open(cfg_file) as f:
        data = json.load(f)
    model = data.get("model") if isinstance(data, dict) else None
    if isinstance(model, dict) and "name" in model and "task" in data:
        from da3_jax.train.da3_tasks import model_config

        return model_config(ml_collections.ConfigDict(data))
    return ml_collections.ConfigDict(data)


def load_checkpoint(path: str | os.PathLike, config=None):
    """Load (config, params) from any supported checkpoint (see `Predictor.from_checkpoint`)."""
    from da3_jax.convert import load_converted, load_official

    path = os.fspath(path)
    if isinstance(config, str):
        config = get_config(config)
    if os.path.isfile(path):
        if not path.endswith(".safetensors"):
            raise ValueError(f"checkpoint {path!r}: expected a model.safetensors file or a folder")
        name = None if config is None else config.name
        return load_official(path, name)
    if not os.path.isdir(path):
        raise ValueError(f"checkpoint {path!r}: no such file or folder")
    if os.path.isfile(os.path.join(path, "config.json")) and os.path.isdir(
        os.path.join(path, "params")
    ):
        return load_converted(path)
    if os.path.isfile(os.path.join(path, "model.safetensors")):
        name = None if config is None else config.name
        return load_official(os.path.join(path, "model.safetensors"), name)
    state_dir = _is_training_dir(path)
    if state_dir is not None:
        import orbax.checkpoint as ocp

        if config is None:
            config = _training_model_config(path, state_dir)
        state = ocp.StandardCheckpointer().restore(state_dir)
        params = state.get("ema_params") or state["params"]
        return config, params
    raise ValueError(
        f"checkpoint {path!r}: not a converted checkpoint (config.json + params/), a folder with "
        "model.safetensors, or a training checkpoint (checkpoints/<step>/state)"
    )


class Predictor:
    """DA3 inference on images (see module docstring).

    Args:
      config: model config (`get_config(name)` or a loaded one).
      params: flax params of `DA3(config)`.
      max_views_per_device: heads run on at most this many views per device at a time.
      view_parallel: shard views over devices (None: when several accelerators exist).
    """

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        params,
        max_views_per_device: int | None = None,
        view_parallel: bool | None = None,
    ):
        self.config = config
        self.params = jax.tree.map(jax.numpy.asarray, params)
        self.forward = Forward(config, self.params, max_views_per_device, view_parallel)

    @classmethod
    def from_checkpoint(cls, path, config=None, **kwargs) -> Predictor:
        """Load from an orbax dir written by `da3_jax.convert` (config.json + params/), an
        official `model.safetensors` (or a folder holding one + its config.json), or a training
        checkpoint (`<workdir>[/checkpoints[/<step>]]`, EMA params when present; needs `config`
        or a config.json in the workdir). kwargs go to `Predictor`."""
        cfg, params = load_checkpoint(path, config)
        return cls(cfg, params, **kwargs)

    @property
    def num_params(self) -> int:
        return int(sum(np.prod(x.shape) for x in jax.tree.leaves(self.params)))

    @property
    def has_cameras(self) -> bool:
        c = self.config.anyview if self.config.kind == "nested" else self.config
        return bool(c.cam_dec)

    # -- rendering ---------------------------------------------------------------------------

    @staticmethod
    def render(prediction: Prediction, w2c, K, hw, background=None, *, chunk: int = 8,
               tile_capacity: int = 1024, **options) -> dict[str, np.ndarray]:
        """Render the prediction's 3D Gaussians (`predict(..., infer_gs=True)`) into cameras.

        Args:
          prediction: a `Prediction` holding `gaussians`.
          w2c: `[V, 3|4, 4]` world→camera (OpenCV axes, the prediction's world frame);
          K: `[V, 3, 3]` pixel intrinsics of images of size `hw = (H, W)`.
          background: `[3]` RGB in [0, 1] (default black, as the official renderer).
          chunk, tile_capacity, options: `da3_jax.render.render_views` /
            `rasterize_gaussians` options; a warning reports tile overflow (raise
            `tile_capacity` when it appears).
        Returns:
          NumPy dict `rgb [V, H, W, 3]` (float, [0, 1]-ish), `alpha [V, H, W]`,
          `depth [V, H, W]` (alpha-weighted z), `overflow [V]`.
        """
        from da3_jax.render import render_views

        if prediction.gaussians is None:
            raise ValueError("prediction has no Gaussians: predict with infer_gs=True using a "
                             "model with a GS head (e.g. da3-giant)")
        out = render_views(prediction.gaussians, w2c, K, hw, background, chunk=chunk,
                           tile_capacity=tile_capacity, **options)
        if np.any(out["overflow"] > 0):
            warnings.warn(f"render: {int(out['overflow'].sum())} Gaussian-tile intersections "
                          f"exceeded tile_capacity={tile_capacity} and were dropped (the "
                          "farthest ones); pass a larger tile_capacity", stacklevel=2)
        return out

    # -- preprocessing ---------------------------------------------------------------------

    def _prepare(self, images, extrinsics, intrinsics, process_res, process_res_method,
                 infer_gs=False):
        if infer_gs and extrinsics is not None:
            raise ValueError("infer_gs=True with input cameras is not supported: the Gaussians "
                             "are in the prediction's frame; run without extrinsics")
        if process_res_method not in METHODS:
            raise ValueError(f"process_res_method must be one of {METHODS}, "
                             f"got {process_res_method!r}")
        if isinstance(process_res, bool) or not isinstance(process_res, (int, np.integer)) or (
            process_res < io_lib.PATCH
        ):
            raise ValueError(f"process_res must be an int >= {io_lib.PATCH}, got {process_res!r}")
        items = io_lib.as_image_list(images)
        ext, k = poses_lib.validate_cameras(extrinsics, intrinsics, len(items))
        if ext is not None and not self._can_condition():
            raise ValueError(f"model {self.config.name} takes no input cameras (no camera "
                             "encoder); call predict without extrinsics/intrinsics")
        names = [
            os.path.basename(os.fspath(x)) if isinstance(x, (str, os.PathLike)) else f"image_{i}"
            for i, x in enumerate(items)
        ]
        rgbs = [io_lib.to_rgb(x, name=f"images[{i}]") for i, x in enumerate(items)]
        for i, (rgb, name) in enumerate(zip(rgbs, names, strict=True)):
            io_lib.check_image_size(rgb.shape[:2], process_res, process_res_method,
                                    name=f"images[{i}] ({name})")
        norm, proc, k_proc = preprocess_images(rgbs, process_res, process_res_method, k)
        return dict(
            norm=norm, proc=proc, ext=ext, k=k_proc, names=names,
            sizes=[tuple(int(s) for s in r.shape[:2]) for r in rgbs],
        )

    def _can_condition(self) -> bool:
        c = self.config.anyview if self.config.kind == "nested" else self.config
        return bool(c.cam_enc)

    # -- prediction ------------------------------------------------------------------------

    def predict(
        self,
        images,
        extrinsics=None,
        intrinsics=None,
        process_res: int = 504,
        process_res_method: str = "upper_bound_resize",
        ref_view_strategy: str = "saddle_balanced",
        use_ray_pose: bool = False,
        align_to_input_scale: bool = True,
        infer_gs: bool = False,
        with_descriptor: bool = False,
    ) -> Prediction:
        """Depth and cameras for one scene.

        Args:
          images: a path, a list of paths, PIL images or arrays (uint8, uint16, float in [0, 1]),
            or one [N, H, W, C] array.
          extrinsics: optional [N, 4, 4] or [N, 3, 4] w2c (OpenCV axes) of every view;
          intrinsics: optional [N, 3, 3] pixel intrinsics of the original images (with
            extrinsics). Both condition the model; results are then aligned to them.
          process_res, process_res_method: preprocessing (DA3-official.md §5).
          ref_view_strategy: 'first' | 'middle' | 'saddle_balanced' | 'saddle_sim_range'.
          use_ray_pose: cameras from the ray map instead of the camera decoder.
          align_to_input_scale: with input poses, output them unchanged and rescale depth
            (True), or map them into the prediction's frame (False).
          infer_gs: also predict 3D Gaussians (models with a GS head).
          with_descriptor: also return `Prediction.descriptor` (any-view models).
        """
        return self.predict_batch(
            [dict(images=images, extrinsics=extrinsics, intrinsics=intrinsics)],
            process_res=process_res,
            process_res_method=process_res_method,
            ref_view_strategy=ref_view_strategy,
            use_ray_pose=use_ray_pose,
            align_to_input_scale=align_to_input_scale,
            infer_gs=infer_gs,
            with_descriptor=with_descriptor,
        )[0]

    def predict_batch(
        self,
        scenes: list[Any],
        process_res: int = 504,
        process_res_method: str = "upper_bound_resize",
        ref_view_strategy: str = "saddle_balanced",
        use_ray_pose: bool = False,
        align_to_input_scale: bool = True,
        infer_gs: bool = False,
        with_descriptor: bool = False,
    ) -> list[Prediction]:
        """Several independent scenes. Each scene is an `images` argument of `predict` or a dict
        `{'images': ..., 'extrinsics': ..., 'intrinsics': ...}`. Scenes with the same view count,
        processed size and posedness run together as one batch (B > 1); the nested model runs
        scenes one at a time (its metric scale is a whole-batch statistic). Every input is
        validated before any model work. Returns one `Prediction` per scene, in order."""
        if not isinstance(scenes, (list, tuple)) or not scenes:
            raise ValueError("scenes: expected a non-empty list of scenes")
        prepared = []
        for i, sc in enumerate(scenes):
            sc = sc if isinstance(sc, dict) else {"images": sc}
            unknown = set(sc) - {"images", "extrinsics", "intrinsics"}
            if unknown or "images" not in sc:
                raise ValueError(f"scenes[{i}]: expected keys images[, extrinsics, intrinsics]; "
                                 f"got {sorted(sc)}")
            try:
                prepared.append(self._prepare(sc["images"], sc.get("extrinsics"),
                                              sc.get("intrinsics"), process_res,
                                              process_res_method, infer_gs))
            except ValueError as e:
                if len(scenes) == 1:
                    raise
                raise ValueError(f"scenes[{i}]: {e}") from e
        groups: dict = {}
        for i, p in enumerate(prepared):
            key = (p["norm"].shape, p["ext"] is not None)
            if self.config.kind == "nested":
                key = key + (i,)
            groups.setdefault(key, []).append(i)
        results: list = [None] * len(prepared)
        for idxs in groups.values():
            outs = self._run([prepared[i] for i in idxs], ref_view_strategy, use_ray_pose,
                             infer_gs, with_descriptor)
            for j, i in enumerate(idxs):
                results[i] = self._finish(prepared[i], {k: v[j] for k, v in outs.items()},
                                          align_to_input_scale, process_res_method)
        return results

    def _run(self, group, ref_view_strategy, use_ray_pose, infer_gs, with_descriptor=False):
        images = np.stack([p["norm"] for p in group])
        ext = k = None
        if group[0]["ext"] is not None:
            ext = np.asarray(normalize_input_extrinsics(  # centred in float64 first
                np.stack([poses_lib.centre_world(p["ext"]) for p in group]).astype(np.float32)))
            k = np.stack([p["k"] for p in group]).astype(np.float32)
        out = self.forward(images, ext, k, ref_view_strategy, use_ray_pose, infer_gs,
                           with_descriptor)
        if infer_gs:
            from da3_jax.model.gs_adapter import model_gaussians

            gs = model_gaussians(self.config, out["extrinsics"], out["intrinsics"], out["depth"],
                                 out["raw_gs"], out["raw_gs_conf"], images)
            out.update({f"gs_{k}": np.asarray(v) for k, v in gs.items()})
        scale = out.pop("scale_factor", None)
        if scale is not None:  # nested: one scalar per (B=1) batch
            out["scale_factor"] = np.broadcast_to(np.asarray(scale), (len(group),))
        return out

    def _finish(self, prep, out, align_to_input_scale, method) -> Prediction:
        depth = np.asarray(out["depth"], np.float32)
        ext = out.get("extrinsics")
        k = out.get("intrinsics")
        scale_factor = out.get("scale_factor")
        gaussians = None
        if "gs_means" in out:
            gaussians = {k2[3:]: np.asarray(v) for k2, v in out.items() if k2.startswith("gs_")}
        if prep["ext"] is not None:
            depth, ext, s = poses_lib.align_to_input(depth, np.asarray(ext), prep["ext"],
                                                     align_to_input_scale)
            k = prep["k"]
            if scale_factor is None:
                scale_factor = s
        sky = out.get("sky")
        return Prediction(
            depth=depth,
            conf=None if out.get("depth_conf") is None else np.asarray(out["depth_conf"],
                                                                         np.float32),
            extrinsics=None if ext is None else np.asarray(ext, np.float32)[:, :3, :],
            intrinsics=None if k is None else np.asarray(k, np.float32),
            processed_images=prep["proc"],
            sky=None if sky is None else np.asarray(sky) >= 0.3,
            descriptor=out.get("descriptor"),
            gaussians=gaussians,
            is_metric=int(self.config.kind == "nested"
                          or str(self.config.name).startswith("da3metric")),
            scale_factor=None if scale_factor is None else float(np.asarray(scale_factor)),
            image_names=prep["names"],
            original_sizes=prep["sizes"],
            process_res_method=method,
        )
