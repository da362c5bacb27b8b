"""Input reading: every image flavour is read as the picture a person sees; clear errors."""

import numpy as np
import pytest
from PIL import Image

from da3_jax.infer import io as io_lib


def _gradient(h=40, w=60):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 4, y * 6, (x + y) * 2], -1).astype(np.uint8)


def test_grayscale_png(tmp_path):
    g = _gradient()[..., 0]
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    out = io_lib.read_image(tmp_path / "g.png")
    assert out.shape == (40, 60, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.repeat(g[..., None], 3, -1))


def test_16bit_png_is_scaled_not_thresholded(tmp_path):
    v = np.linspace(0, 65535, 40 * 60).reshape(40, 60).astype(np.uint16)
    Image.fromarray(v).save(tmp_path / "d.png")
    assert Image.open(tmp_path / "d.png").mode.startswith("I")
    out = io_lib.read_image(tmp_path / "d.png")
    want = np.round(v.astype(np.float64) * 255 / 65535).astype(np.uint8)
    np.testing.assert_array_equal(out[..., 0], want)
    assert len(np.unique(out)) > 200  # a gradient, not a 0/255 mask
    # PIL's own convert('RGB') would clip: almost everything white
    assert (np.asarray(Image.open(tmp_path / "d.png").convert("RGB")) == 255).mean() > 0.9


def test_rgba_composited_on_white(tmp_path):
    rgba = np.zeros((40, 60, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :30, 3] = 255  # left opaque red, right fully transparent (stored black-ish)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = io_lib.read_image(tmp_path / "a.png")
    np.testing.assert_array_equal(out[:, :30], np.broadcast_to([200, 0, 0], (40, 30, 3)))
    np.testing.assert_array_equal(out[:, 30:], 255)


def test_palette_png(tmp_path):
    rgb = _gradient()
    pal = Image.fromarray(rgb).quantize(16)
    pal.save(tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").mode == "P"
    out = io_lib.read_image(tmp_path / "p.png")
    np.testing.assert_array_equal(out, np.asarray(pal.convert("RGB")))
    assert np.abs(out.astype(int) - rgb).mean() < 20


def test_exif_rotated_jpeg_is_upright(tmp_path):
    upright = np.zeros((60, 40, 3), np.uint8)  # portrait, bright top rows
    upright[:10] = 255
    stored = np.rot90(upright, k=1)  # what a camera stores (landscape) for orientation 6
    im = Image.fromarray(np.ascontiguousarray(stored))
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 CW to display
    im.save(tmp_path / "r.jpg", exif=exif, quality=95)
    out = io_lib.read_image(tmp_path / "r.jpg")
    assert out.shape == (60, 40, 3)
    assert out[:10].mean() > 200 and out[20:].mean() < 40


def test_arrays():
    u8 = _gradient()
    np.testing.assert_array_equal(io_lib.to_rgb(u8), u8)
    np.testing.assert_array_equal(io_lib.to_rgb(u8 / 255.0), u8)
    np.testing.assert_array_equal(io_lib.to_rgb(u8.astype(np.uint16) * 257), u8)
    np.testing.assert_array_equal(io_lib.to_rgb(u8[..., :1]), np.repeat(u8[..., :1], 3, -1))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        io_lib.to_rgb(u8.astype(np.float32))  # 0..255 floats are ambiguous
    with pytest.raises(ValueError, match="NaN"):
        io_lib.to_rgb(np.full((20, 20, 3), np.nan))
    with pytest.raises(ValueError, match="shape"):
        io_lib.to_rgb(np.zeros((20, 20, 5), np.uint8))
    assert len(io_lib.as_image_list(np.zeros((3, 20, 20, 3), np.uint8))) == 3
    assert len(io_lib.as_image_list("one.png")) == 1
    with pytest.raises(ValueError, match="empty"):
        io_lib.as_image_list([])


def test_size_policy():
    io_lib.check_image_size((680, 1208), 504, "upper_bound_resize")
    with pytest.raises(ValueError, match="too small"):
        io_lib.check_image_size((10, 200), 504, "upper_bound_resize")
    with pytest.raises(ValueError, match="enlarged"):
        io_lib.check_image_size((20, 20), 504, "upper_bound_resize")
    with pytest.raises(ValueError, match="aspect ratio"):
        io_lib.check_image_size((20, 4000), 504, "upper_bound_resize")


def test_bad_files(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="unreadable"):
        io_lib.read_image(tmp_path / "broken.png")
    (tmp_path / "x.gif2").write_bytes(b"")
    with pytest.raises(ValueError, match="unsupported extension"):
        io_lib.read_image(tmp_path / "x.gif2")
    with pytest.raises(ValueError, match="unsupported extension"):
        io_lib.collect_inputs(str(tmp_path / "x.gif2"))
    with pytest.raises(ValueError, match="not found"):
        io_lib.read_image(tmp_path / "missing.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        io_lib.collect_inputs(str(tmp_path / "empty"))


def test_video_fps_sampling(tmp_path):
    import imageio.v2 as imageio

    path = str(tmp_path / "v.mp4")
    w = imageio.get_writer(path, fps=4, codec="libx264", quality=9, macro_block_size=16)
    levels = [0, 80, 160, 240]
    for v in levels:
        w.append_data(np.full((32, 48, 3), v, np.uint8))
    w.close()
    assert io_lib.detect_kind(path) == "video"
    frames = io_lib.read_video(path, fps=2)
    assert len(frames) == 2 and frames[0].shape == (32, 48, 3)
    np.testing.assert_allclose([f.mean() for f in frames], [0, 160], atol=6)
    assert len(io_lib.read_video(path, fps=4)) == 4


def test_colmap_folder_cameras(shared_data):
    """COLMAP input: cameras as stored in the text model (independent parse here)."""
    folder = shared_data / "colmap_maupertuis"
    assert io_lib.detect_kind(str(folder)) == "colmap"
    inp = io_lib.collect_inputs(str(folder))
    assert inp.names == ["00.jpg", "01.jpg", "02.jpg", "03.jpg"]
    rows = [ln.split() for ln in open(folder / "sparse/0/images.txt") if ln[0] != "#"][::2]
    by_name = {r[9]: r for r in rows}
    for i, name in enumerate(inp.names):
        qw, qx, qy, qz, tx, ty, tz = map(float, by_name[name][1:8])
        np.testing.assert_allclose(inp.extrinsics[i, :3, 3], [tx, ty, tz], atol=1e-9)
        r = inp.extrinsics[i, :3, :3]
        # R e_z from the quaternion (w, x, y, z)
        z = [2 * (qx * qz + qw * qy), 2 * (qy * qz - qw * qx), 1 - 2 * (qx * qx + qy * qy)]
        np.testing.assert_allclose(r[:, 2], z, atol=1e-6)
    np.testing.assert_allclose(inp.intrinsics[0], [[1847.53, 0, 959.5], [0, 1847.53, 539.5],
                                                   [0, 0, 1]], atol=1e-6)


def test_decompression_bomb_and_empty_array(tmp_path, monkeypatch):
    Image.fromarray(_gradient(64, 64)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 64 // 4)  # PIL errors above 2x this
    with pytest.raises(ValueError, match="big.png.*too large"):
        io_lib.read_image(tmp_path / "big.png")
    with pytest.raises(ValueError, match="empty array"):
        io_lib.as_image_list(np.zeros((0, 28, 28, 3), np.uint8))
    with pytest.raises(ValueError, match="finite number > 0"):
        io_lib.read_video(str(tmp_path / "x.mp4"), fps=float("nan"))


def _write_colmap(folder, entries):
    """entries: (name, width, height, w2c [3, 4]) -> COLMAP text model in folder/sparse/0."""
    from scipy.spatial.transform import Rotation

    model = folder / "sparse" / "0"
    model.mkdir(parents=True)
    cams, ims = [], []
    for i, (name, w, h, w2c) in enumerate(entries, start=1):
        cams.append(f"{i} PINHOLE {w} {h} {w * 1.1} {w * 1.2} {w / 2} {h / 2}")
        x, y, z, qw = Rotation.from_matrix(w2c[:, :3]).as_quat()
        tx, ty, tz = (repr(float(v)) for v in w2c[:, 3])
        ims.append(f"{i} {qw} {x} {y} {z} {tx} {ty} {tz} {i} {name}\n\n")
    (model / "cameras.txt").write_text("\n".join(cams) + "\n")
    (model / "images.txt").write_text("".join(ims))
    (model / "points3D.txt").write_text("")


def test_colmap_input_like_folder_input(tmp_path):
    """COLMAP images read as folder input (16-bit scaled, EXIF upright), mixed sizes allowed,
    names confined to images/."""
    from scipy.spatial.transform import Rotation

    (tmp_path / "images").mkdir()
    g16 = (np.arange(40 * 60).reshape(40, 60) * 27).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "images" / "a.png")
    stored = Image.fromarray(_gradient(30, 50))  # landscape pixels, EXIF 6: shown rotated
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "images" / "b.jpg", exif=exif, quality=95)
    w2c = [np.concatenate([Rotation.random(random_state=i).as_matrix(),
                           [[1e5 + 0.125], [2.0], [-3.0]]], 1) for i in range(2)]
    _write_colmap(tmp_path, [("a.png", 60, 40, w2c[0]), ("b.jpg", 30, 50, w2c[1])])
    inp = io_lib.collect_inputs(str(tmp_path))
    assert inp.kind == "colmap" and inp.names == ["a.png", "b.jpg"]
    ref = np.round(g16.astype(np.float64) * 255.0 / 65535.0).astype(np.uint8)
    np.testing.assert_array_equal(inp.images[0], np.repeat(ref[..., None], 3, -1))
    assert inp.images[1].shape == (50, 30, 3)  # upright
    np.testing.assert_array_equal(inp.images[1], io_lib.read_image(tmp_path / "images/b.jpg"))
    np.testing.assert_allclose(inp.extrinsics[:, :3], np.stack(w2c), atol=1e-9)
    assert inp.extrinsics.dtype == np.float64 and inp.extrinsics[0, 0, 3] == 1e5 + 0.125

    crafted = tmp_path / "crafted"
    (crafted / "images").mkdir(parents=True)
    Image.fromarray(_gradient()).save(tmp_path / "secret.png")
    _write_colmap(crafted, [("../../secret.png", 60, 40, w2c[0])])
    with pytest.raises(ValueError, match="points outside"):
        io_lib.collect_inputs(str(crafted))
