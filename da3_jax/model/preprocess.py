"""Input preprocessing identical to the official `InputProcessor` (DA3-official.md §5).

Pipeline per image (`depth_anything_3/utils/io/input_processor.py`):

1. load as RGB with PIL (paths, PIL images, or uint8 arrays `[H, W]`, `[H, W, 3|4]`);
2. boundary resize: `upper_bound_*` scales the longest side to `process_res`, `lower_bound_*`
   the shortest; new size = `max(1, int(round(side * scale)))` (Python's banker's rounding);
   OpenCV `INTER_CUBIC` when enlarging, `INTER_AREA` otherwise; skipped when the bound side
   already equals `process_res`;
3. multiple of 14: `*_resize` resizes each side to the nearest multiple (ties go up; CUBIC if
   any side grows, else AREA; skipped if unchanged), `*_crop` centre-crops each side down to a
   multiple (offset `(old - new) // 2`);
4. intrinsics follow: `diag(w'/w, h'/h, 1) K` for every resize, `c -= offset` for every crop
   (`da3_jax.geometry.rescale_intrinsics` / `crop_intrinsics`);
5. mixed sizes: every image is centre-cropped to the smallest H and W (torchvision `CenterCrop`
   offset `round((H - h) / 2)`, equal to `(H - h) // 2` here since sizes differ by multiples
   of 14), and `cx, cy` shift by the crop offset;
6. `x / 255`, then ImageNet `(x - mean) / std`, in float32.

Layout is NHWC (the official tensor is `[N, 3, H, W]`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image

from da3_jax.geometry import crop_intrinsics, rescale_intrinsics
from da3_jax.imagenet import imagenet_normalize

PATCH_SIZE = 14
METHODS = ("upper_bound_resize", "upper_bound_crop", "lower_bound_resize", "lower_bound_crop")


def load_rgb(image, name: str = "image") -> np.ndarray:
    """One image → uint8 `[H, W, 3]` RGB, converted with PIL exactly as upstream."""
    if isinstance(image, (str, os.PathLike)):
        if not os.path.isfile(image):
            raise ValueError(f"{name}: file not found: {os.fspath(image)!r}")
        with Image.open(image) as im:
            return np.asarray(im.convert("RGB"))
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ValueError(f"{name}: expected a uint8 array, got dtype {image.dtype}")
        if not (image.ndim == 2 or (image.ndim == 3 and image.shape[-1] in (1, 3, 4))):
            raise ValueError(f"{name}: expected [H, W], [H, W, 3] or [H, W, 4], got {image.shape}")
        if image.ndim == 3 and image.shape[-1] == 1:
            image = image[..., 0]
        return np.asarray(Image.fromarray(image).convert("RGB"))
    raise ValueError(f"{name}: expected a path, a PIL image or a uint8 array, got {type(image)}")


def _cv2_resize(arr: np.ndarray, new_w: int, new_h: int, enlarge: bool) -> np.ndarray:
    interp = cv2.INTER_CUBIC if enlarge else cv2.INTER_AREA
    return cv2.resize(arr, (new_w, new_h), interpolation=interp)


def boundary_resize(arr: np.ndarray, target: int, method: str) -> np.ndarray:
    """Step 2: scale the longest (`upper_bound_*`) or shortest (`lower_bound_*`) side to target."""
    h, w = arr.shape[:2]
    side = max(w, h) if method.startswith("upper_bound") else min(w, h)
    if side == target:
        return arr
    scale = target / float(side)
    new_w = max(1, int(round(w * scale)))
    new_h = max(1, int(round(h * scale)))
    return _cv2_resize(arr, new_w, new_h, enlarge=scale > 1.0)


def nearest_multiple(x: int, p: int = PATCH_SIZE) -> int:
    """Nearest multiple of p (ties go up), at least 1 (as upstream's `max(1, ...)`)."""
    down = (x // p) * p
    up = down + p
    return max(1, up if abs(up - x) <= abs(x - down) else down)


def _divisible_by_resize(arr: np.ndarray) -> np.ndarray:
    h, w = arr.shape[:2]
    new_w, new_h = nearest_multiple(w), nearest_multiple(h)
    if (new_w, new_h) == (w, h):
        return arr
    return _cv2_resize(arr, new_w, new_h, enlarge=(new_w > w) or (new_h > h))


def _divisible_by_crop(arr: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Centre crop each side down to a multiple of 14; returns (crop, left, top)."""
    h, w = arr.shape[:2]
    new_w, new_h = (w // PATCH_SIZE) * PATCH_SIZE, (h // PATCH_SIZE) * PATCH_SIZE
    left, top = (w - new_w) // 2, (h - new_h) // 2
    return arr[top : top + new_h, left : left + new_w], left, top


def _process_one(arr, k, process_res, method):
    orig_h, orig_w = arr.shape[:2]
    arr = boundary_resize(arr, process_res, method)
    h, w = arr.shape[:2]
    if k is not None:
        k = rescale_intrinsics(k, w / float(orig_w), h / float(orig_h))
    if method.endswith("resize"):
        arr = _divisible_by_resize(arr)
        new_h, new_w = arr.shape[:2]
        if k is not None:
            k = rescale_intrinsics(k, new_w / float(w), new_h / float(h))
    else:
        if h < PATCH_SIZE or w < PATCH_SIZE:
            raise ValueError(
                f"image of {w}x{h} after the boundary resize is smaller than {PATCH_SIZE} px; "
                f"'{method}' cannot crop it to a multiple of {PATCH_SIZE}"
            )
        arr, left, top = _divisible_by_crop(arr)
        if k is not None:
            k = crop_intrinsics(k, left, top)
    return arr, k


def preprocess_images(
    images,
    process_res: int = 504,
    method: str = "upper_bound_resize",
    intrinsics=None,
):
    """Prepare images for DA3 exactly as the official input processor.

    Args:
      images: a sequence of image paths, PIL images or uint8 arrays (`[H, W]`, `[H, W, 3|4]`),
        or one uint8 array `[N, H, W, 3]`; a single path / PIL image / `[H, W, 3]` array counts
        as one image.
      process_res: target size of the bound side in pixels (default 504).
      method: one of `upper_bound_resize`, `upper_bound_crop`, `lower_bound_resize`,
        `lower_bound_crop`.
      intrinsics: optional `[N, 3, 3]` pixel intrinsics of the original images.

    Returns:
      `(images_norm, processed_uint8, intrinsics)`: float32 `[N, H, W, 3]` ImageNet-normalised
      images, the uint8 `[N, H, W, 3]` images they came from, and float32 `[N, 3, 3]` intrinsics
      of the processed images (None when none were given). H, W are multiples of 14.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if isinstance(process_res, bool) or not isinstance(process_res, (int, np.integer)) or (
        process_res < PATCH_SIZE
    ):
        raise ValueError(f"process_res must be an int >= {PATCH_SIZE}, got {process_res!r}")
    if isinstance(images, (str, os.PathLike, Image.Image)) or (
        isinstance(images, np.ndarray) and images.ndim <= 3
    ):
        images = [images]
    if not isinstance(images, (Sequence, np.ndarray)) or len(images) == 0:
        raise ValueError("images must be a non-empty sequence of paths, PIL images or arrays")
    n = len(images)
    ks = None
    if intrinsics is not None:
        ks = np.asarray(intrinsics, dtype=np.float32)
        if ks.shape != (n, 3, 3):
            raise ValueError(f"intrinsics must have shape ({n}, 3, 3), got {ks.shape}")

    arrs, out_ks = [], []
    for i in range(n):
        arr = load_rgb(images[i], name=f"images[{i}]")
        arr, k = _process_one(arr, None if ks is None else ks[i], int(process_res), method)
        arrs.append(arr)
        out_ks.append(k)

    # Mixed sizes: centre-crop all to the smallest H and W.
    min_h = min(a.shape[0] for a in arrs)
    min_w = min(a.shape[1] for a in arrs)
    for i, a in enumerate(arrs):
        h, w = a.shape[:2]
        if (h, w) == (min_h, min_w):
            continue
        top, left = int(round((h - min_h) / 2.0)), int(round((w - min_w) / 2.0))
        arrs[i] = a[top : top + min_h, left : left + min_w]
        if out_ks[i] is not None:
            out_ks[i] = crop_intrinsics(out_ks[i], (w - min_w) // 2, (h - min_h) // 2)

    processed = np.stack(arrs).astype(np.uint8)
    norm = imagenet_normalize(processed.astype(np.float32) / np.float32(255.0))
    out_k = None if ks is None else np.stack([np.asarray(k, np.float32) for k in out_ks])
    return norm.astype(np.float32), processed, out_k
