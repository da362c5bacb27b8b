"""Input reading for inference: images, folders, videos and COLMAP folders.

Every image is turned into uint8 RGB ``[H, W, 3]`` **as a person sees it** (the official
`InputProcessor` only calls PIL ``convert('RGB')``; this module fixes its failure modes):

* EXIF orientation is applied (``PIL.ImageOps.exif_transpose``), so a portrait photo stored as
  a rotated landscape JPEG is read upright;
* 16-bit grey images (PIL modes ``I;16*`` / ``I``) are scaled by 255/65535 (PIL's own
  ``convert`` would clip everything above 255 to white, i.e. threshold them into a mask);
  32-bit float images (``F``) are taken as [0, 1] intensities;
* grey, grey + alpha, palette (with or without transparency) and CMYK are converted to RGB;
* transparent pixels (RGBA, LA, PA, palette transparency) are composited over **white**, the
  background a viewer shows (upstream drops alpha, which turns fully transparent pixels into
  whatever colour they happen to store, usually black).

Arrays are accepted as uint8 ``[H, W]``, ``[H, W, 1|3|4]`` (4 = RGBA, composited as above),
uint16 (scaled by 255/65535) or float in [0, 1] (scaled by 255 and rounded); anything else is a
ValueError naming the argument.

Size policy (``check_image_size``): an image needs at least one 14-px patch on each side, must
not be enlarged more than ``MAX_UPSCALE`` (8x) by the boundary resize, and must keep a short side
of at least one patch after it (extreme aspect ratios). Violations raise ValueError with the
numbers and a suggestion; nothing is silently upscaled 100x.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

PATCH = 14
MAX_UPSCALE = 8.0
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
_16BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """uint8 ``[H, W, 4]`` -> uint8 ``[H, W, 3]`` composited over a white background."""
    rgb = rgba[..., :3].astype(np.float32)
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    return np.round(rgb * a + 255.0 * (1.0 - a)).astype(np.uint8)


def pil_to_rgb(im: Image.Image, name: str = "image") -> np.ndarray:
    """A PIL image (any mode) -> uint8 RGB ``[H, W, 3]`` following the module rules."""
    mode = im.mode
    if mode in _16BIT_MODES:
        arr = np.asarray(im).astype(np.float64)
        gray = np.clip(np.round(arr * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    if mode == "F":
        arr = np.asarray(im).astype(np.float64)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name}: float image has NaN/Inf values")
        gray = np.clip(np.round(arr * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode == "P" and "transparency" in im.info
    ) or (mode in ("L", "RGB") and "transparency" in im.info)
    if has_alpha:
        return _composite_on_white(np.asarray(im.convert("RGBA")))
    return np.asarray(im.convert("RGB"))


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read one image file -> uint8 RGB ``[H, W, 3]``, EXIF-upright (see module docstring).

    Raises:
      ValueError: missing file, unsupported extension, or a file PIL cannot decode.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"image {path!r}: file not found")
    ext = os.path.splitext(path)[1].lower()
    if ext not in IMAGE_EXTS:
        raise ValueError(f"image {path!r}: unsupported extension {ext!r}; expected {IMAGE_EXTS}")
    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            return pil_to_rgb(im, name=f"image {path!r}")
    except Image.DecompressionBombError as e:
        raise ValueError(
            f"image {path!r}: too large ({e}); raise PIL.Image.MAX_IMAGE_PIXELS if you trust it"
        ) from e
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"image {path!r}: unreadable image file ({e})") from e


def array_to_rgb(arr: np.ndarray, name: str = "image") -> np.ndarray:
    """An image array (see module docstring for accepted dtypes/shapes) -> uint8 ``[H, W, 3]``."""
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (3, 4))):
        raise ValueError(f"{name}: expected an [H, W], [H, W, 1|3|4] array, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        out = arr
    elif arr.dtype == np.uint16:
        out = np.round(arr.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name}: float image has NaN/Inf values")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < -1e-6 or hi > 1.0 + 1e-6:
            raise ValueError(
                f"{name}: float images must hold values in [0, 1], got range [{lo:g}, {hi:g}] "
                "(pass uint8 for 0..255 data)"
            )
        out = np.round(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)
    else:
        raise ValueError(f"{name}: unsupported dtype {arr.dtype}; expected uint8, uint16 or float")
    if out.ndim == 2:
        return np.repeat(out[..., None], 3, axis=-1)
    if out.shape[-1] == 4:
        return _composite_on_white(out)
    return np.ascontiguousarray(out)


def to_rgb(image, name: str = "image") -> np.ndarray:
    """Path, PIL image or array -> uint8 RGB ``[H, W, 3]``."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    if isinstance(image, Image.Image):
        return pil_to_rgb(ImageOps.exif_transpose(image), name=name)
    if isinstance(image, np.ndarray) or hasattr(image, "__array__"):
        return array_to_rgb(np.asarray(image), name=name)
    raise ValueError(f"{name}: expected a path, a PIL image or an array, got {type(image)}")


def as_image_list(images) -> list:
    """Normalise the user's `images` argument to a list of single images.

    A single path / PIL image / ``[H, W(, C)]`` array is one image; an ``[N, H, W, C]`` array or
    a sequence is N images.
    """
    if isinstance(images, (str, os.PathLike, Image.Image)):
        return [images]
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            if images.shape[0] == 0:
                raise ValueError(f"images: got an empty array of shape {images.shape}")
            return list(images)
        if images.ndim in (2, 3):
            return [images]
        raise ValueError(f"images: array of shape {images.shape} is not [H, W(, C)] or [N,H,W,C]")
    if isinstance(images, Sequence) and not isinstance(images, (bytes, bytearray)):
        if len(images) == 0:
            raise ValueError("images: got an empty list")
        return list(images)
    raise ValueError(
        f"images: expected a path, an array, a PIL image or a list, got {type(images)}"
    )


def check_image_size(hw, process_res: int, method: str, name: str = "image") -> None:
    """Raise ValueError for images the boundary resize would break (see module docstring)."""
    h, w = int(hw[0]), int(hw[1])
    if min(h, w) < PATCH:
        raise ValueError(
            f"{name}: {w}x{h} px is too small; each side needs at least {PATCH} px (one patch)"
        )
    bound = max(h, w) if method.startswith("upper_bound") else min(h, w)
    scale = process_res / float(bound)
    if scale > MAX_UPSCALE:
        raise ValueError(
            f"{name}: {w}x{h} px would be enlarged {scale:.1f}x to process_res={process_res} "
            f"(limit {MAX_UPSCALE:g}x); use process_res <= {int(bound * MAX_UPSCALE)}"
        )
    short = round(min(h, w) * scale)
    if short < PATCH:
        raise ValueError(
            f"{name}: aspect ratio {max(h, w) / min(h, w):.1f}:1 of {w}x{h} px is too extreme: "
            f"the short side would be {short} px (< {PATCH}) at process_res={process_res}; "
            "crop the image or raise process_res"
        )


# ----------------------------------------------------------------------------------------------
# Command-line inputs: image, folder, video, COLMAP folder.


@dataclasses.dataclass
class InputSet:
    """Images gathered from one command-line INPUT.

    images: list of uint8 ``[H, W, 3]``; names: file names (for COLMAP export / logs);
    extrinsics ``[N, 4, 4]`` w2c and intrinsics ``[N, 3, 3]`` (original pixels) for COLMAP input.
    """

    kind: str
    images: list
    names: list
    extrinsics: np.ndarray | None = None
    intrinsics: np.ndarray | None = None


def _listdir_images(folder: str) -> list[str]:
    return sorted(
        os.path.join(folder, f)
        for f in os.listdir(folder)
        if os.path.splitext(f)[1].lower() in IMAGE_EXTS and not f.startswith(".")
    )


def find_colmap_model(folder: str) -> str | None:
    """``folder/sparse/0`` or ``folder/sparse`` holding ``cameras.{bin,txt}``, else None."""
    for sub in (os.path.join("sparse", "0"), "sparse"):
        d = os.path.join(folder, sub)
        if any(os.path.isfile(os.path.join(d, "cameras" + e)) for e in (".bin", ".txt")):
            return d
    return None


def detect_kind(path: str) -> str:
    """'image', 'video', 'colmap' or 'folder' for a command-line INPUT (ValueError otherwise)."""
    if os.path.isdir(path):
        if os.path.isdir(os.path.join(path, "images")) and find_colmap_model(path):
            return "colmap"
        return "folder"
    if not os.path.exists(path):
        raise ValueError(f"input {path!r}: no such file or folder")
    ext = os.path.splitext(path)[1].lower()
    if ext in IMAGE_EXTS:
        return "image"
    if ext in VIDEO_EXTS:
        return "video"
    raise ValueError(
        f"input {path!r}: unsupported extension {ext!r}; expected an image {IMAGE_EXTS}, "
        f"a video {VIDEO_EXTS}, a folder of images or a COLMAP folder (images/ + sparse/)"
    )


def read_video(path: str, fps: float = 1.0, max_frames: int | None = None) -> list[np.ndarray]:
    """Frames of a video sampled at ``fps`` (every round(src_fps / fps)-th frame, from frame 0).

    Uses imageio's ffmpeg plugin (imageio-ffmpeg). Raises ValueError for unreadable videos or
    when no frame comes out.
    """
    import imageio.v2 as imageio

    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a finite number > 0, got {fps}")
    try:
        reader = imageio.get_reader(path, "ffmpeg")
    except Exception as e:  # noqa: BLE001 - imageio/ffmpeg raise many error types
        raise ValueError(f"video {path!r}: cannot open ({e})") from e
    try:
        src_fps = float(reader.get_meta_data().get("fps") or fps)
        step = max(1, int(round(src_fps / fps)))
        frames = []
        for i, frame in enumerate(reader):
            if i % step == 0:
                frames.append(array_to_rgb(np.asarray(frame), name=f"video {path!r} frame {i}"))
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"video {path!r}: cannot decode ({e})") from e
    finally:
        reader.close()
    if not frames:
        raise ValueError(f"video {path!r}: no frames could be read")
    return frames


def colmap_image_path(image_dir: str, name: str) -> str:
    """``image_dir/name`` for an image name from a COLMAP model; ValueError when the name is
    absolute or climbs out of ``image_dir`` (``..``, symlinks), so a crafted model cannot make
    us read files outside the folder."""
    root = os.path.realpath(image_dir)
    path = os.path.realpath(os.path.join(root, name))
    if os.path.isabs(name) or os.path.commonpath([root, path]) != root:
        raise ValueError(f"colmap input: image name {name!r} points outside {image_dir!r}")
    return path


def read_colmap_folder(folder: str) -> InputSet:
    """COLMAP folder (``images/`` + ``sparse/0``) -> images with their cameras (w2c, K).

    The model is read with pycolmap (`data_pipelines.readers.colmap`: PINHOLE / SIMPLE_PINHOLE
    exact; radial models keep their pinhole part with a warning); views sorted by name. Images
    are read like folder input (`read_image`: EXIF orientation, 16-bit, alpha) and may differ
    in size; each must match its camera's width x height. Image names must stay inside
    ``images/`` (`colmap_image_path`).
    """
    from data_pipelines.readers.colmap import cam_from_world, camera_to_k, load_reconstruction

    model = find_colmap_model(folder)
    if model is None:
        raise ValueError(f"colmap input {folder!r}: no sparse/0 or sparse/ model found")
    rec = load_reconstruction(model)
    image_dir = os.path.join(folder, "images")
    by_name = {im.name: im for im in rec.images.values()}
    if not by_name:
        raise ValueError(f"colmap input {folder!r}: the model has no registered images")
    names = sorted(by_name)
    paths = [colmap_image_path(image_dir, n) for n in names]  # all names before any reading
    images, ks, exts = [], [], []
    for name, path in zip(names, paths, strict=True):
        im = by_name[name]
        img = read_image(path)
        cam = im.camera
        if img.shape[:2] != (cam.height, cam.width):
            raise ValueError(
                f"colmap input: image {path!r} is {img.shape[1]}x{img.shape[0]} px (after EXIF "
                f"orientation) but camera {cam.camera_id} is {cam.width}x{cam.height}"
            )
        images.append(img)
        ks.append(camera_to_k(cam))
        ext = np.eye(4)
        ext[:3, :] = cam_from_world(im)
        exts.append(ext)
    return InputSet(kind="colmap", images=images, names=names, extrinsics=np.stack(exts),
                    intrinsics=np.stack(ks).astype(np.float64))


class FrameSource:
    """Frames of a command-line INPUT read on demand (streaming: memory does not grow with the
    sequence). ``len(src)`` frames, ``src[i]`` -> uint8 RGB ``[H, W, 3]``, ``src.names[i]``.

    Folders and single images read one file per access (`read_image`); videos keep one
    imageio-ffmpeg reader open and decode forward, re-opening it to seek backwards (frames are
    sampled at ``fps`` as `read_video`); in-memory lists are indexed.
    """

    def __init__(self, kind: str, names: list, reader, count: int):
        self.kind, self.names, self._reader, self._count = kind, names, reader, count

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, i: int) -> np.ndarray:
        if not 0 <= int(i) < self._count:
            raise IndexError(f"frame {i} out of range [0, {self._count})")
        return self._reader(int(i))

    @classmethod
    def from_list(cls, images: list, names: list | None = None, kind: str = "list"):
        names = names or [f"frame_{i:06d}.png" for i in range(len(images))]
        return cls(kind, list(names), lambda i: images[i], len(images))


class _VideoFrames:
    """Sequential-decode access to every ``step``-th frame of a video (see `FrameSource`)."""

    def __init__(self, path: str, fps: float):
        import imageio.v2 as imageio

        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be a finite number > 0, got {fps}")
        self.path, self._imageio = path, imageio
        reader = self._open()
        try:
            src_fps = float(reader.get_meta_data().get("fps") or fps)
            total = reader.count_frames()
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"video {path!r}: cannot read its frame count ({e})") from e
        finally:
            reader.close()
        self.step = max(1, int(round(src_fps / fps)))
        self.count = -(-int(total) // self.step)
        if self.count == 0:
            raise ValueError(f"video {path!r}: no frames could be read")
        self._reader, self._next = None, 0

    def _open(self):
        try:
            return self._imageio.get_reader(self.path, "ffmpeg")
        except Exception as e:  # noqa: BLE001 - imageio/ffmpeg raise many error types
            raise ValueError(f"video {self.path!r}: cannot open ({e})") from e

    def __call__(self, i: int) -> np.ndarray:
        target = i * self.step
        if self._reader is None or target < self._next:
            if self._reader is not None:
                self._reader.close()
            self._reader, self._next = self._open(), 0
        try:
            while True:
                frame = self._reader.get_next_data()
                self._next += 1
                if self._next - 1 == target:
                    return array_to_rgb(np.asarray(frame), name=f"video {self.path!r} frame {i}")
        except (IndexError, StopIteration) as e:
            raise ValueError(f"video {self.path!r}: frame {target} could not be decoded") from e


def open_frames(path: str, fps: float = 1.0, max_frames: int | None = None) -> FrameSource:
    """A lazily read `FrameSource` for an image, a folder of images or a video INPUT."""
    path = os.fspath(path)
    kind = detect_kind(path)
    if kind == "colmap":
        raise ValueError(f"input {path!r}: COLMAP folders are read with collect_inputs")
    if kind == "video":
        video = _VideoFrames(path, fps)
        count = video.count if max_frames is None else min(video.count, max_frames)
        return FrameSource("video", [f"frame_{i:06d}.png" for i in range(count)], video, count)
    files = [path] if kind == "image" else _listdir_images(path)
    if not files:
        raise ValueError(f"input folder {path!r}: no images with extensions {IMAGE_EXTS}")
    files = files[:max_frames] if max_frames is not None else files
    return FrameSource(kind, [os.path.basename(f) for f in files],
                       lambda i: read_image(files[i]), len(files))


def collect_inputs(path: str, fps: float = 1.0, max_frames: int | None = None) -> InputSet:
    """Read a command-line INPUT (image, folder, video or COLMAP folder) into an `InputSet`."""
    path = os.fspath(path)
    kind = detect_kind(path)
    if kind == "image":
        return InputSet("image", [read_image(path)], [os.path.basename(path)])
    if kind == "video":
        frames = read_video(path, fps, max_frames)
        return InputSet("video", frames, [f"frame_{i:06d}.png" for i in range(len(frames))])
    if kind == "colmap":
        return read_colmap_folder(path)
    files = _listdir_images(path)
    if not files:
        raise ValueError(f"input folder {path!r}: no images with extensions {IMAGE_EXTS}")
    if max_frames is not None:
        files = files[:max_frames]
    from tqdm import tqdm

    imgs = [read_image(f) for f in tqdm(files, desc="reading images", leave=False)]
    return InputSet("folder", imgs, [os.path.basename(f) for f in files])
