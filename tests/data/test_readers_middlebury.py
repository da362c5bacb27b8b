"""Middlebury readers: a stereo-2014 scene written here (PFM + calib), the real Motorcycle pair
(left depth warped into the right view lands on the GT disparity and matches the right image),
the real temple ring (object box projects into every view), and bad inputs."""

import shutil

import cv2
import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from data_pipelines.readers import _io, middlebury

HW = (20, 30)
CALIB = """cam0=[100.5 0 14.25; 0 100.5 9.5; 0 0 1]
cam1=[100.5 0 19.25; 0 100.5 9.5; 0 0 1]
doffs=5.0
baseline=150.0
width=30
height=20
ndisp=40
"""


def _write_pfm(path, img_top_down, little_endian=True):
    h, w = img_top_down.shape
    with open(path, "wb") as f:
        f.write(f"Pf\n{w} {h}\n{-1.0 if little_endian else 1.0}\n".encode())
        f.write(np.flipud(img_top_down).astype("<f4" if little_endian else ">f4").tobytes())


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("mb") / "Toy"
    root.mkdir()
    rng = np.random.default_rng(0)
    for n in ("im0.png", "im1.png"):
        cv2.imwrite(str(root / n), rng.integers(0, 255, (*HW, 3), dtype=np.uint8))
    disp = np.linspace(10, 30, HW[0])[:, None] + np.zeros(HW)  # row-dependent: catches flips
    disp[3, 4] = np.inf
    _write_pfm(root / "disp0GT.pfm", disp)
    (root / "calib.txt").write_text(CALIB)
    return root, disp


def test_stereo2014_depth_and_cameras(scene):
    root, disp = scene
    rec = middlebury.read_stereo2014(root)
    want = 0.150 * 100.5 / (disp + 5.0)
    ok = np.isfinite(disp)
    np.testing.assert_allclose(rec.depth[0][ok], want[ok], rtol=1e-6)
    assert not rec.valid[0, 3, 4] and not rec.valid[1].any()
    np.testing.assert_allclose(rec.extrinsics[1], [[1, 0, 0, -0.15], [0, 1, 0, 0], [0, 0, 1, 0]])
    np.testing.assert_allclose(rec.intrinsics[:, 0, 2], [14.75, 19.75])


def test_pfm_big_endian_and_truncated(tmp_path):
    img = np.arange(12, dtype=np.float32).reshape(3, 4)
    _write_pfm(tmp_path / "a.pfm", img, little_endian=False)
    np.testing.assert_array_equal(_io.read_pfm(tmp_path / "a.pfm"), img)
    data = (tmp_path / "a.pfm").read_bytes()
    (tmp_path / "b.pfm").write_bytes(data[:-8])
    with pytest.raises(ValueError, match="b.pfm.*truncated"):
        _io.read_pfm(tmp_path / "b.pfm")
    (tmp_path / "c.pfm").write_bytes(b"P6\n4 3\n255\n" + bytes(36))
    with pytest.raises(ValueError, match="c.pfm.*header"):
        _io.read_pfm(tmp_path / "c.pfm")


def test_stereo2014_bad_inputs(scene, tmp_path):
    root, _ = scene
    bad = tmp_path / "bad"
    shutil.copytree(root, bad)
    (bad / "calib.txt").write_text(CALIB.replace("baseline=150.0\n", ""))
    with pytest.raises(ValueError, match="calib.txt.*baseline"):
        middlebury.read_stereo2014(bad)
    (bad / "calib.txt").unlink()
    with pytest.raises(ValueError, match="calib.txt"):
        middlebury.read_stereo2014(bad)
    shutil.copy(root / "calib.txt", bad / "calib.txt")
    _write_pfm(bad / "disp0GT.pfm", np.ones((HW[0] + 1, HW[1])))
    with pytest.raises(ValueError, match="disp0GT.pfm.*shape"):
        middlebury.read_stereo2014(bad)


def test_real_motorcycle_left_to_right(shared_data):
    from da3_jax.geometry import points_from_depth, project

    root = shared_data / "middlebury" / "stereo2014_motorcycle_quarter"
    rec = middlebury.read_stereo2014(root)
    assert rec.images.shape == (2, 497, 741, 3) and rec.valid[0].mean() > 0.95
    disp = _io.read_pfm(root / "disp0GT.pfm")
    pts = np.asarray(points_from_depth(rec.depth[0], rec.extrinsics[0], rec.intrinsics[0],
                                       pixel_center=0.5))
    uv, _ = project(pts[rec.valid[0]], rec.extrinsics[1], rec.intrinsics[1])
    uv = np.asarray(uv, np.float64)
    rows, cols = np.nonzero(rec.valid[0])
    geo_err = np.abs(uv[:, 0] - (cols + 0.5 - disp[rows, cols]))
    print(f"middlebury left->right: |u_r - (u_l - d)| median {np.median(geo_err):.2e} px, "
          f"max {geo_err.max():.2e} px, |dv| max {np.abs(uv[:, 1] - rows - 0.5).max():.2e} px")
    assert geo_err.max() < 0.02 and np.abs(uv[:, 1] - (rows + 0.5)).max() < 0.02
    # photometric check on non-occluded pixels: sample the right image at the warped position
    nocc = cv2.imread(str(root / "mask0nocc.png"), cv2.IMREAD_GRAYSCALE)[rows, cols] == 255
    grey = [cv2.cvtColor(im, cv2.COLOR_RGB2GRAY).astype(np.float32) for im in rec.images]
    left = grey[0][rows, cols][nocc]

    def sample(shift):  # bilinear, pixel-edge uv -> array index uv - 0.5
        coords = np.stack([uv[nocc, 1] - 0.5, uv[nocc, 0] - 0.5 + shift])
        return map_coordinates(grey[1], coords, order=1, mode="nearest")

    err, err_off = np.median(np.abs(sample(0) - left)), np.median(np.abs(sample(8) - left))
    print(f"middlebury photometric |I_r(warp) - I_l| median {err:.2f} (8 px off: {err_off:.2f})")
    assert err < 8 and err < 0.5 * err_off


def test_real_temple_ring_projects_object(shared_data):
    from da3_jax.geometry import project

    rec = middlebury.read_multiview(shared_data / "middlebury" / "mview_temple_sparse_ring")
    assert rec.num_views == 16 and not rec.valid.any()
    np.testing.assert_allclose(rec.extrinsics[0], rec.extrinsics[10])
    lo = np.array([-0.073568, 0.021728, -0.012445])
    hi = np.array([0.028855, 0.181892, 0.062736])
    corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1])
                        for c in (lo[2], hi[2])], np.float32)
    uv, z = project(np.broadcast_to(corners, (16, 8, 3)), rec.extrinsics, rec.intrinsics)
    uv, z = np.asarray(uv), np.asarray(z)
    assert (z > 0.3).all() and (z < 0.8).all()
    assert (uv >= 0).all() and (uv[..., 0] < 640).all() and (uv[..., 1] < 480).all()
    # visual hull: box grid points seen on the object (bright plaster on black) in all 16 views
    grid = np.stack(np.meshgrid(*[np.linspace(lo[i], hi[i], 24) for i in range(3)],
                                indexing="ij"), -1).reshape(-1, 3).astype(np.float32)
    bright = rec.images.astype(np.float32).mean(-1) > 40

    def hull_fraction(ext):
        uv, _ = project(np.broadcast_to(grid, (16, *grid.shape)), ext, rec.intrinsics)
        col = np.clip(np.floor(np.asarray(uv[..., 0])).astype(int), 0, 639)
        row = np.clip(np.floor(np.asarray(uv[..., 1])).astype(int), 0, 479)
        return bright[np.arange(16)[:, None], row, col].all(0).mean()

    good, bad = hull_fraction(rec.extrinsics), hull_fraction(np.roll(rec.extrinsics, 4, 0))
    print(f"temple visual hull: {good:.3f} of the box grid (poses of other views: {bad:.3f})")
    assert good > 0.12 and good > 1.5 * bad


def test_multiview_par_layout(tmp_path):
    from tests.data import readers_scene as S

    w2cs = S.cameras(2)
    k = np.array([[1520.4, 0, 302.32], [0, 1525.9, 246.87], [0, 0, 1]])
    lines = ["2"]
    for i, w2c in enumerate(w2cs):
        cv2.imwrite(str(tmp_path / f"toySR{i + 1:04d}.png"), S.texture((8, 10), i))
        vals = [*k.reshape(-1), *w2c[:, :3].reshape(-1), *w2c[:, 3]]
        lines.append(f"toySR{i + 1:04d}.png " + " ".join(f"{v:.17g}" for v in vals))
    (tmp_path / "toySR_par.txt").write_text("\n".join(lines) + "\n")
    rec = middlebury.read_multiview(tmp_path)
    np.testing.assert_allclose(rec.extrinsics, w2cs, atol=1e-6)
    np.testing.assert_allclose(rec.intrinsics[0, :2, 2], k[:2, 2] + 0.5)
    (tmp_path / "toySR_par.txt").write_text("\n".join(lines[:2]) + "\n")
    with pytest.raises(ValueError, match="toySR_par.txt"):
        middlebury.read_multiview(tmp_path)
