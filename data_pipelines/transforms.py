"""Per-view image/depth transforms of the training pipeline (NumPy, host side).

Conventions: images uint8/float [..., H, W, 3]; depth float32 [..., H, W] z-depth (0 = invalid);
valid bool [..., H, W]; K in pixels with the pixel-edge convention (see data_pipelines.record).
Intrinsics updates go through `da3_jax.geometry.rescale_intrinsics` / `crop_intrinsics`
(evaluated on the CPU backend so data workers never touch an accelerator).

- Images are resized with area averaging when shrinking and bilinear when enlarging (OpenCV,
  pixel-centre aligned); depth and valid with pixel-centre-aligned nearest neighbour, so depth
  values are never blended across occlusion edges.
- `resize_crop_plan` draws a scale that covers the target (times a random zoom) and a crop
  offset; `apply_plan` applies it to one view; `plan_intrinsics` applies it to K.
"""

from __future__ import annotations

import contextlib
import dataclasses

import cv2
import numpy as np

from da3_jax import geometry

PATCH = 14


@dataclasses.dataclass(frozen=True)
class ResizeCropPlan:
    """Resize a [h, w] view to [rh, rw] (sx = rw / w, sy = rh / h), then crop [H, W] at (x0, y0)."""

    rh: int
    rw: int
    x0: int
    y0: int
    out_h: int
    out_w: int


def check_target_hw(hw) -> tuple[int, int]:
    """Validates a target (H, W): positive multiples of the 14-pixel patch."""
    h, w = (int(x) for x in hw)
    if h <= 0 or w <= 0 or h % PATCH or w % PATCH:
        raise ValueError(f"image_hw must be positive multiples of {PATCH}, got {tuple(hw)}")
    return h, w


def resize_crop_plan(in_hw, out_hw, rng: np.random.Generator | None = None,
                     zoom_range=(1.0, 1.0)) -> ResizeCropPlan:
    """Scale so the resized view covers out_hw (aspect preserved), times a zoom drawn from
    zoom_range; crop offset uniform (rng) or centred (rng None)."""
    h, w = in_hw
    oh, ow = check_target_hw(out_hw)
    zoom = 1.0 if rng is None else float(rng.uniform(*zoom_range))
    scale = max(oh / h, ow / w) * zoom
    rh, rw = max(oh, int(round(h * scale))), max(ow, int(round(w * scale)))
    if rng is None:
        x0, y0 = (rw - ow) // 2, (rh - oh) // 2
    else:
        x0, y0 = int(rng.integers(rw - ow + 1)), int(rng.integers(rh - oh + 1))
    return ResizeCropPlan(rh, rw, x0, y0, oh, ow)


def _nearest_index(n_in: int, n_out: int) -> np.ndarray:
    # Output pixel centre (k + 0.5) maps to input coordinate (k + 0.5) * n_in / n_out.
    idx = np.floor((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.int64)
    return np.clip(idx, 0, n_in - 1)


def apply_plan(plan: ResizeCropPlan, image: np.ndarray, depth: np.ndarray, valid: np.ndarray):
    """One view: image uint8 [h, w, 3], depth [h, w], valid [h, w] -> the same at [H, W]."""
    h, w = image.shape[:2]
    interp = cv2.INTER_AREA if plan.rh < h and plan.rw < w else cv2.INTER_LINEAR
    img = cv2.resize(image, (plan.rw, plan.rh), interpolation=interp)
    rows = _nearest_index(h, plan.rh)[plan.y0:plan.y0 + plan.out_h]
    cols = _nearest_index(w, plan.rw)[plan.x0:plan.x0 + plan.out_w]
    img = img[plan.y0:plan.y0 + plan.out_h, plan.x0:plan.x0 + plan.out_w]
    d = depth[rows[:, None], cols[None, :]]
    m = valid[rows[:, None], cols[None, :]]
    return np.ascontiguousarray(img), d, m


def reference_c2w(w2c: np.ndarray) -> np.ndarray:
    """c2w [..., 4, 4] float64 of w2c [..., 3, 4] (via da3_jax.geometry, on the CPU)."""
    with on_cpu():
        return np.asarray(_jitted("ref_c2w")(np.asarray(w2c, np.float32)), np.float64)


def ray_maps(w2c: np.ndarray, intrinsics: np.ndarray, hw) -> np.ndarray:
    """[..., h, w, 6] = [direction, origin] of da3_jax.geometry.camera_rays at pixel centres."""
    with on_cpu():
        origins, dirs = _jitted("rays")(np.asarray(w2c, np.float32),
                                        np.asarray(intrinsics, np.float32), tuple(hw))
    return np.concatenate([np.asarray(dirs), np.asarray(origins)], axis=-1)


@contextlib.contextmanager
def on_cpu():
    """Runs da3_jax.geometry calls of the host pipeline on the CPU backend."""
    import jax

    with jax.default_device(jax.local_devices(backend="cpu")[0]):
        yield


def plan_intrinsics(intrinsics: np.ndarray, in_hw: np.ndarray, plans) -> np.ndarray:
    """K [M, 3, 3] after each view's plan (in_hw [M, 2]); via da3_jax.geometry, on the CPU."""
    sx = np.array([p.rw for p in plans], np.float32) / in_hw[:, 1]
    sy = np.array([p.rh for p in plans], np.float32) / in_hw[:, 0]
    x0 = np.array([p.x0 for p in plans], np.float32)
    y0 = np.array([p.y0 for p in plans], np.float32)
    with on_cpu():
        k = _jitted("intrinsics")(np.asarray(intrinsics, np.float32), sx, sy, x0, y0)
    return np.asarray(k, np.float32)


_JITTED = {}


def _jitted(name: str):
    """jax.jit of the host-side geometry helpers (one dispatch instead of ~20 eager ops)."""
    if name not in _JITTED:
        import jax

        fns = {
            "intrinsics": lambda k, sx, sy, x0, y0: geometry.crop_intrinsics(
                geometry.rescale_intrinsics(k, sx, sy), x0, y0),
            "ref_c2w": lambda w2c: geometry.to_homogeneous(geometry.w2c_to_c2w(w2c)),
            "rays": lambda w2c, k, hw: geometry.camera_rays(w2c, k, hw, pixel_center=0.5),
        }
        _JITTED[name] = jax.jit(fns[name], static_argnums=(2,) if name == "rays" else ())
    return _JITTED[name]


def color_jitter(images: np.ndarray, rng: np.random.Generator, brightness: float = 0.2,
                 contrast: float = 0.2, saturation: float = 0.2) -> np.ndarray:
    """Per-view photometric jitter of float images [N, H, W, 3] in [0, 1]; returns [0, 1].

    brightness: multiply by U(1-b, 1+b); contrast: blend with the view's mean grey by
    U(1-c, 1+c); saturation: blend with the per-pixel grey by U(1-s, 1+s). Random order-free
    (fixed order) so a seed fully determines the result.
    """
    n = images.shape[0]
    b = rng.uniform(1 - brightness, 1 + brightness, (n, 1, 1, 1)).astype(np.float32)
    c = rng.uniform(1 - contrast, 1 + contrast, (n, 1, 1, 1)).astype(np.float32)
    s = rng.uniform(1 - saturation, 1 + saturation, (n, 1, 1, 1)).astype(np.float32)
    x = images * b
    grey = (x @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    x = grey + s * (x - grey)
    mean = grey.mean(axis=(1, 2, 3), keepdims=True)
    x = mean + c * (x - mean)
    return np.clip(x, 0.0, 1.0)
