"""Every export written and read back with an independent library, checked against numpy
float64 references and the official exporter."""

import importlib.util
import os

import numpy as np
import pytest

from da3_jax.infer import export as export_lib
from da3_jax.infer.api import Prediction

OFFICIAL = importlib.util.find_spec("depth_anything_3")


def _official_module(rel):
    """Load one official exporter file without its package __init__ (needs moviepy/gsplat)."""
    path = os.path.join(list(OFFICIAL.submodule_search_locations)[0], *rel.split("/"))
    spec = importlib.util.spec_from_file_location("official_" + rel.replace("/", "_"), path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _ref_points(p, thr):
    """float64 numpy unprojection with integer pixel indices (official convention)."""
    n, h, w = p.depth.shape
    v, u = np.mgrid[0:h, 0:w]
    pix = np.stack([u, v, np.ones_like(u)], -1).reshape(-1, 3).astype(np.float64)
    pts, cols = [], []
    for i in range(n):
        keep = (p.conf[i].reshape(-1) >= thr) & (p.depth[i].reshape(-1) > 0)
        xc = (pix[keep] @ np.linalg.inv(p.intrinsics[i].astype(np.float64)).T)
        xc *= p.depth[i].reshape(-1)[keep, None]
        r, t = p.extrinsics[i, :, :3].astype(np.float64), p.extrinsics[i, :, 3].astype(np.float64)
        pts.append((xc - t) @ r)
        cols.append(p.processed_images[i].reshape(-1, 3)[keep])
    return np.concatenate(pts), np.concatenate(cols)


def _glb_thr(conf):
    return min(max(1.05, np.percentile(conf, 40)), np.percentile(conf, 90))


@pytest.mark.skipif(OFFICIAL is None, reason="official package not installed")
@pytest.mark.parametrize("fmt", ["npz", "mini_npz"])
def test_npz_matches_official_exporter(soh_pred, tmp_path, fmt):
    import depth_anything_3.specs as specs

    off = _official_module("utils/export/npz.py")
    fn = getattr(off, f"export_to_{fmt}").__closure__[0].cell_contents  # unwrap @async_call
    p = soh_pred
    op = specs.Prediction(depth=p.depth, is_metric=0, conf=p.conf, extrinsics=p.extrinsics,
                          intrinsics=p.intrinsics, processed_images=p.processed_images)
    fn(op, str(tmp_path / "official"))
    getattr(export_lib, f"export_{fmt}")(p, str(tmp_path / "ours"))
    a = np.load(tmp_path / "official" / "exports" / fmt / "results.npz")
    b = np.load(tmp_path / "ours" / "exports" / fmt / "results.npz")
    assert sorted(a.files) == sorted(b.files)
    for k in a.files:
        assert a[k].dtype == b[k].dtype, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_ply_roundtrip(soh_pred, tmp_path):
    from plyfile import PlyData

    path = export_lib.export_ply(soh_pred, str(tmp_path))
    v = PlyData.read(path)["vertex"]
    ref_pts, ref_cols = _ref_points(soh_pred, _glb_thr(soh_pred.conf))
    assert v.count == len(ref_pts) > 0
    got = np.stack([v["x"], v["y"], v["z"]], -1)
    np.testing.assert_allclose(got, ref_pts, rtol=1e-4, atol=1e-4 * np.abs(ref_pts).max())
    np.testing.assert_array_equal(np.stack([v["red"], v["green"], v["blue"]], -1), ref_cols)


def test_glb_roundtrip(soh_pred, tmp_path):
    import trimesh

    path = export_lib.export_glb(soh_pred, str(tmp_path))
    scene = trimesh.load(path)
    clouds = [g for g in scene.geometry.values() if isinstance(g, trimesh.PointCloud)]
    paths = [g for g in scene.geometry.values() if isinstance(g, trimesh.path.Path3D)]
    ref_pts, _ = _ref_points(soh_pred, _glb_thr(soh_pred.conf))
    assert len(clouds) == 1 and len(clouds[0].vertices) == len(ref_pts)
    assert len(paths) == 2
    # independent glTF alignment: flip y, z of the first camera frame, centre on the median
    w2c0 = np.eye(4)
    w2c0[:3] = soh_pred.extrinsics[0]
    a = np.diag([1.0, -1, -1, 1]) @ w2c0
    cam0 = ref_pts @ a[:3, :3].T + a[:3, 3]
    centre = np.median(cam0, 0)
    scale = np.abs(cam0).max()
    np.testing.assert_allclose(np.sort(clouds[0].vertices[:, 2]), np.sort(cam0[:, 2] - centre[2]),
                               atol=1e-4 * scale)
    for i in range(2):  # frustum apex = camera centre in the scene frame
        r, t = soh_pred.extrinsics[i, :, :3], soh_pred.extrinsics[i, :, 3]
        c = a[:3, :3] @ (-r.T @ t) + a[:3, 3] - centre
        verts = np.concatenate([np.asarray(q.vertices) for q in paths])
        assert np.min(np.linalg.norm(verts - c, axis=1)) < 1e-4 * scale


def test_colmap_roundtrip(soh_pred, tmp_path):
    import pycolmap

    out = export_lib.export_colmap(soh_pred, str(tmp_path))
    rec = pycolmap.Reconstruction(out)
    p = soh_pred
    n, h, w = p.depth.shape
    thr = np.percentile(p.conf, 40)
    assert rec.num_points3D() == int((p.conf >= thr).sum())
    assert len(rec.images) == 2
    for img in rec.images.values():
        i = p.image_names.index(img.name)
        cam = img.camera
        oh, ow = p.original_sizes[i]
        assert cam.model.name == "PINHOLE" and (cam.width, cam.height) == (ow, oh)
        k = p.intrinsics[i].astype(np.float64)
        np.testing.assert_allclose(cam.params, [k[0, 0] * ow / w, k[1, 1] * oh / h,
                                                k[0, 2] * ow / w, k[1, 2] * oh / h], rtol=1e-6)
        pose = img.cam_from_world
        pose = pose() if callable(pose) else pose
        np.testing.assert_allclose(pose.matrix(), p.extrinsics[i], atol=1e-6)
        assert img.num_points3D == int((p.conf[i] >= thr).sum())
    pt = next(iter(rec.points3D.values()))
    assert pt.track.length() == 1


def test_depth_vis_matches_official_colouring(soh_pred, tmp_path):
    from PIL import Image

    vis = pytest.importorskip("depth_anything_3.utils.visualize")
    from da3_jax.infer.export.depth_vis import colorize_depth

    for d in soh_pred.depth:
        np.testing.assert_array_equal(colorize_depth(d), vis.visualize_depth(d))
    paths = export_lib.export_depth_vis(soh_pred, str(tmp_path))
    assert [os.path.basename(x) for x in paths] == ["0000.jpg", "0001.jpg"]
    im = np.asarray(Image.open(paths[0]))
    assert im.shape == (84, 280, 3)
    assert np.abs(im[:, :140].astype(int) - soh_pred.processed_images[0]).mean() < 8


def test_gs_ply_roundtrip(tmp_path):
    from plyfile import PlyData

    rng = np.random.default_rng(0)
    g = 50
    q = rng.normal(size=(g, 4)).astype(np.float32)
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    gs = dict(means=rng.normal(size=(g, 3)), scales=rng.uniform(0.01, 1, (g, 3)), rotations=q,
              harmonics=rng.normal(size=(g, 3, 9)), opacities=rng.uniform(0.05, 0.95, g))
    pred = Prediction(depth=np.ones((1, 2, 2), np.float32), gaussians=gs)
    v = PlyData.read(export_lib.export_gs_ply(pred, str(tmp_path)))["vertex"]
    assert v.count == g
    np.testing.assert_allclose(np.stack([v["x"], v["y"], v["z"]], -1), gs["means"], rtol=1e-6)
    np.testing.assert_allclose(1 / (1 + np.exp(-v["opacity"])), gs["opacities"], rtol=1e-5)
    np.testing.assert_allclose(np.exp(np.stack([v[f"scale_{i}"] for i in range(3)], -1)),
                               gs["scales"], rtol=1e-5)
    wxyz = np.stack([v[f"rot_{i}"] for i in range(4)], -1)
    np.testing.assert_allclose(wxyz, q[:, [3, 0, 1, 2]], atol=1e-6)
    np.testing.assert_allclose(np.stack([v[f"f_dc_{i}"] for i in range(3)], -1),
                               gs["harmonics"][:, :, 0], rtol=1e-6)


def test_format_parsing_and_failures(soh_pred, tmp_path):
    assert export_lib.parse_formats("npz-glb, ply") == ["npz", "glb", "ply"]
    with pytest.raises(ValueError, match="unknown format"):
        export_lib.parse_formats("npz,obj")
    with pytest.raises(ValueError, match=r"export failed for \['gs_ply'\]"):
        export_lib.export(soh_pred, "mini_npz,gs_ply", str(tmp_path))
    assert (tmp_path / "exports" / "mini_npz" / "results.npz").is_file()  # others still written
