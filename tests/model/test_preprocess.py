"""`preprocess_images` against the official `InputProcessor` (real SOH images + synthetic ones).

The official module imports torchvision for three tiny transforms. torchvision is not a
dependency of this project (the PyPI wheel does not load against the CPU torch), so when it is
absent a test-local stand-in provides exactly those three, following torchvision 0.28:
`ToTensor` (uint8 HWC → float CHW / 255), `Normalize` (`(x - mean) / std`) and `CenterCrop`
(`top = int(round((H - h) / 2.0))`, likewise left).
"""

import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

from da3_jax.imagenet import IMAGENET_MEAN, IMAGENET_STD
from da3_jax.model.preprocess import preprocess_images

METHODS = ("upper_bound_resize", "upper_bound_crop", "lower_bound_resize", "lower_bound_crop")


def _torchvision_standin():
    class ToTensor:
        def __call__(self, pic):
            arr = np.array(pic, np.uint8, copy=True)
            t = torch.from_numpy(arr).view(pic.size[1], pic.size[0], len(pic.getbands()))
            return t.permute(2, 0, 1).contiguous().to(torch.get_default_dtype()).div(255)

    class Normalize:
        def __init__(self, mean, std):
            self.mean, self.std = mean, std

        def __call__(self, t):
            mean = torch.as_tensor(self.mean, dtype=t.dtype)[:, None, None]
            std = torch.as_tensor(self.std, dtype=t.dtype)[:, None, None]
            return t.clone().sub_(mean).div_(std)

    class CenterCrop:
        def __init__(self, size):
            self.size = size

        def __call__(self, t):
            h, w = self.size
            top = int(round((t.shape[-2] - h) / 2.0))
            left = int(round((t.shape[-1] - w) / 2.0))
            return t[..., top : top + h, left : left + w]

    tv = types.ModuleType("torchvision")
    tv.transforms = types.ModuleType("torchvision.transforms")
    tv.transforms.ToTensor, tv.transforms.Normalize = ToTensor, Normalize
    tv.transforms.CenterCrop = CenterCrop
    return tv


@pytest.fixture(scope="module")
def official():
    try:
        import torchvision  # noqa: F401
    except Exception:
        tv = _torchvision_standin()
        sys.modules.setdefault("torchvision", tv)
        sys.modules.setdefault("torchvision.transforms", tv.transforms)
    from depth_anything_3.utils.io.input_processor import InputProcessor

    proc = InputProcessor()

    def run(images, method, process_res=504, intrinsics=None):
        t, _, k = proc(image=list(images), intrinsics=intrinsics, process_res=process_res,
                       process_res_method=method, sequential=True)
        return t.numpy().transpose(0, 2, 3, 1), None if k is None else k.numpy()

    return run


def make_k(w, h, fx=900.0, fy=870.0, skew=0.0):
    return np.array([[fx, skew, w / 2.0 + 3.3], [0, fy, h / 2.0 - 1.7], [0, 0, 1]], np.float32)


def check_same(ours, ref_img, ref_k):
    norm, u8, k = ours
    assert norm.dtype == np.float32 and u8.dtype == np.uint8
    assert norm.shape == ref_img.shape and u8.shape == ref_img.shape
    assert norm.shape[1] % 14 == 0 and norm.shape[2] % 14 == 0
    np.testing.assert_allclose(norm, ref_img, rtol=0, atol=1e-6)
    # The uint8 images are the ones that were normalised.
    np.testing.assert_array_equal((u8 / np.float32(255) - IMAGENET_MEAN) / IMAGENET_STD, norm)
    if ref_k is None:
        assert k is None
    else:
        assert k.dtype == np.float32 and k.shape == ref_k.shape
        np.testing.assert_allclose(k, ref_k, rtol=1e-6, atol=1e-4)
    return float(np.max(np.abs(norm - ref_img)))


@pytest.mark.parametrize("method", METHODS)
def test_real_soh_images(shared_data, official, method):
    paths = sorted(str(p) for p in (shared_data / "da3_example_soh" / "images").glob("*.png"))
    assert len(paths) == 2
    ks = np.stack([make_k(1208, 680, 1100.0, 1100.0)] * 2)
    ref_img, ref_k = official(paths, method, intrinsics=ks)
    ours = preprocess_images(paths, method=method, intrinsics=ks)
    check_same(ours, ref_img, ref_k)
    expected = {"upper_bound_resize": (280, 504), "upper_bound_crop": (280, 504),
                "lower_bound_resize": (504, 896), "lower_bound_crop": (504, 882)}[method]
    assert ours[0].shape[1:3] == expected


@pytest.mark.parametrize("method", METHODS)
def test_synthetic_odd_sizes_mixed_batch(official, method):
    rng = np.random.default_rng(0)
    sizes = [(37, 53), (331, 1001), (505, 377), (200, 150)]  # (H, W): enlarge and shrink
    arrs = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]
    # One PIL image, one RGBA array and one grayscale array exercise the RGB conversion.
    images = [arrs[0], Image.fromarray(arrs[1]), np.concatenate(
        [arrs[2], np.full((*sizes[2], 1), 200, np.uint8)], -1), arrs[3][..., 0]]
    ks = np.stack([make_k(w, h, skew=0.5) for h, w in sizes])
    for res in (504, 140):
        ref_img, ref_k = official(images, method, process_res=res, intrinsics=ks)
        check_same(preprocess_images(images, res, method, ks), ref_img, ref_k)
    ref_img, _ = official(images, method, process_res=98)
    check_same(preprocess_images(images, 98, method), ref_img, None)


def test_single_image_and_batch_array(official):
    rng = np.random.default_rng(1)
    batch = rng.integers(0, 256, (2, 60, 90, 3), dtype=np.uint8)
    ref_img, _ = official([batch[0], batch[1]], "upper_bound_resize")
    check_same(preprocess_images(batch), ref_img, None)
    ref1, _ = official([batch[0]], "lower_bound_crop", process_res=70)
    check_same(preprocess_images(batch[0], 70, "lower_bound_crop"), ref1, None)
    # Bound side already 504 (boundary resize skipped); 376 -> 378 and a tie 385 -> 392 (up).
    for h in (376, 385):
        img = rng.integers(0, 256, (h, 504, 3), dtype=np.uint8)
        k = make_k(504, h)[None]
        ref_img, ref_k = official([img], "upper_bound_resize", intrinsics=k)
        ours = preprocess_images([img], intrinsics=k)
        check_same(ours, ref_img, ref_k)
        assert ours[0].shape[1:3] == ({376: 378, 385: 392}[h], 504)


def test_bad_inputs_raise():
    img = np.zeros((20, 30, 3), np.uint8)
    with pytest.raises(ValueError, match="method"):
        preprocess_images([img], method="bicubic")
    with pytest.raises(ValueError, match="uint8"):
        preprocess_images([img.astype(np.float32)])
    with pytest.raises(ValueError, match="intrinsics"):
        preprocess_images([img], intrinsics=np.eye(3)[None].repeat(2, 0))
    with pytest.raises(ValueError, match="not found"):
        preprocess_images(["/nonexistent/x.png"])
    with pytest.raises(ValueError, match="process_res"):
        preprocess_images([img], process_res=0)
