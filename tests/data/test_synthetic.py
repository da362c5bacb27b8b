"""Procedural renderer: exact depth against float64 references, cross-view consistency through
da3_jax.geometry, determinism, scene variety, and the CLI."""

import numpy as np
import pytest

from da3_jax import geometry
from data_pipelines.sources import ArrayRecordSceneSource
from data_pipelines.synthetic import raycast, render, scenes
from data_pipelines.synthetic.primitives import Primitive, rot_z
from data_pipelines.synthetic.textures import Material, random_material

FLAT = Material("flat", np.array([0.5, 0.5, 0.5], np.float32), np.zeros(3, np.float32))


def _k(f, cx, cy):
    return np.array([[f, 0, cx], [0, f, cy], [0, 0, 1]], np.float32)


def _ref_rays(k, w2c, h, w):
    """float64 reference: camera centre, world directions of pixel centres [h*w, 3]."""
    k, w2c = k.astype(np.float64), w2c.astype(np.float64)
    v, u = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
    pix = np.stack([u.ravel(), v.ravel(), np.ones(h * w)], axis=1)
    return -w2c[:, :3].T @ w2c[:, 3], pix @ np.linalg.inv(k).T @ w2c[:, :3]


def test_sphere_and_ground_depth_match_float64_reference():
    h, w = 24, 32
    sphere = Primitive("sphere", np.array([0.3, -0.2, 0.8], np.float32),
                       np.eye(3, dtype=np.float32), np.full(3, 0.6, np.float32), (FLAT,))
    ground = Primitive("disk", np.zeros(3, np.float32), np.eye(3, dtype=np.float32),
                       np.array([5.0, 0, 0], np.float32), (FLAT,))
    scene = raycast.Scene("object", (ground, sphere), 0.3, light_dir=np.array([0, 0, 1.0]))
    k = _k(30.0, 17.3, 11.1)
    w2c = scenes.look_at(np.array([3.0, 1.0, 2.0]), np.array([0.2, 0.0, 0.5]), 0.1)
    img, depth, valid = raycast.render_view(scene, k, w2c, h, w)
    c, d = _ref_rays(k, w2c, h, w)
    # Sphere: |c + t d - s|^2 = r^2, nearest root; plane z = 0 within radius 5.
    oc = c - sphere.center.astype(np.float64)
    a, b, cc = (d * d).sum(1), d @ oc, oc @ oc - 0.36
    disc = b * b - a * cc
    t_s = np.where(disc >= 0, (-b - np.sqrt(np.maximum(disc, 0))) / a, np.inf)
    t_g = -c[2] / d[:, 2]
    hit_g = (t_g > 0) & (np.hypot(c[0] + t_g * d[:, 0], c[1] + t_g * d[:, 1]) <= 5.0)
    t_ref = np.minimum(t_s, np.where(hit_g, t_g, np.inf))
    # t is z-depth because the camera-z component of d is 1.
    z_cam = (d @ w2c[:, :3].astype(np.float64).T)[:, 2]
    np.testing.assert_allclose(z_cam, 1.0, atol=1e-12)
    ref_valid = np.isfinite(t_ref).reshape(h, w)
    assert ref_valid.any() and (~ref_valid).any()  # sphere, ground and sky all visible
    assert (np.abs(ref_valid.astype(int) - valid).sum()) <= 2  # silhouette pixels may flip
    both = ref_valid & valid
    np.testing.assert_allclose(depth[both], t_ref.reshape(h, w)[both], rtol=2e-5)
    assert (depth[~valid] == 0).all() and img.dtype == np.uint8


def test_box_and_cylinder_depth_fronto_parallel():
    box = Primitive("box", np.array([0, 0, 0], np.float32), rot_z(0.4),
                    np.array([0.5, 0.5, 0.3], np.float32), (FLAT,) * 6)
    cyl = Primitive("cylinder", np.array([0, 0, -2.0], np.float32), np.eye(3, dtype=np.float32),
                    np.array([6.0, 6.0, 0.5], np.float32), (FLAT,) * 3)
    scene = raycast.Scene("object", (box, cyl), 0.3, light_dir=np.array([0, 0, 1.0]))
    # Looking straight down from z = 2.3: box top at z = 0.3 (depth 2.0), cylinder top cap at
    # z = -1.5 (depth 3.8).
    w2c = np.array([[1, 0, 0, 0], [0, -1, 0, 0], [0, 0, -1, 2.3]], np.float32)
    _, depth, valid = raycast.render_view(scene, _k(20.0, 16.0, 16.0), w2c, 32, 32)
    assert valid.all()
    assert np.isclose(depth[16, 16], 2.0, rtol=1e-6)
    assert np.isclose(depth[0, 0], 3.8, rtol=1e-6)
    np.testing.assert_allclose(np.unique(np.round(depth, 5)), [2.0, 3.8], rtol=1e-6)


@pytest.fixture(scope="module")
def scene_and_record():
    scene, ks, w2cs, _ = scenes.make_scene((0, 1), 4, 40, 56)
    rec = render.render_scene(1, 4, 40, 56, seed=0)
    return scene, ks, w2cs, rec


def test_render_scene_matches_make_scene_and_is_deterministic(scene_and_record):
    _, ks, w2cs, rec = scene_and_record
    np.testing.assert_array_equal(rec.intrinsics, ks)
    np.testing.assert_array_equal(rec.extrinsics, w2cs)
    again = render.render_scene(1, 4, 40, 56, seed=0)
    np.testing.assert_array_equal(again.images, rec.images)
    np.testing.assert_array_equal(again.depth, rec.depth)
    other = render.render_scene(4, 4, 40, 56, seed=0)
    assert not np.array_equal(other.depth, rec.depth)
    assert rec.depth_kind == "dense_gt" and rec.is_metric and rec.dataset == "synthetic"


def test_cross_view_reprojection_through_geometry(scene_and_record):
    """Unproject view i with geometry.points_from_depth, project into view j with
    geometry.project, re-render view j at those exact pixel coordinates: depths agree."""
    scene, _, _, rec = scene_and_record
    h, w = rec.image_hw
    matched, total = 0, 0
    for i in range(rec.num_views):
        pts = np.asarray(geometry.points_from_depth(rec.depth[i], rec.extrinsics[i],
                                                    rec.intrinsics[i], pixel_center=0.5))
        pts = pts.reshape(-1, 3)  # all pixels: one jit shape for every pair
        for j in range(rec.num_views):
            if j == i:
                continue
            uv, z = (np.asarray(x, np.float64) for x in geometry.project(
                pts, rec.extrinsics[j], rec.intrinsics[j]))
            inside = (rec.valid[i].ravel() & (z > 0) & (uv[:, 0] > 0) & (uv[:, 0] < w)
                      & (uv[:, 1] > 0) & (uv[:, 1] < h))
            _, dj, vj = raycast.render_pixels(scene, rec.intrinsics[j], rec.extrinsics[j],
                                              uv[inside])
            rel = (dj - z[inside]) / z[inside]
            # A surface point is either what view j sees there or hidden behind an occluder:
            # the rendered depth is never beyond it (beyond = wrong pixel convention or K).
            assert (vj & (rel < 1e-4)).mean() > 0.995, (i, j)
            matched += int((np.abs(rel) < 1e-4).sum())
            total += int(inside.sum())
    assert matched > 0.3 * total and matched > 1000, (matched, total)


def test_rendered_pixels_equal_render_view(scene_and_record):
    scene, _, _, rec = scene_and_record
    uv = raycast.pixel_centers(*rec.image_hw)
    rgb, depth, valid = raycast.render_pixels(scene, rec.intrinsics[2], rec.extrinsics[2], uv)
    np.testing.assert_array_equal(depth.reshape(rec.image_hw), rec.depth[2])
    np.testing.assert_array_equal(valid.reshape(rec.image_hw), rec.valid[2])


def test_scene_variety_rooms_objects_textureless_and_cameras():
    kinds, trajs = set(), set()
    for idx in range(12):
        scene, ks, w2cs, traj = scenes.make_scene((1, idx), 3, 32, 48)
        kinds.add(scene.kind)
        trajs.add(traj)
        k = ks[0]
        fov = np.rad2deg(2 * np.arctan(24.0 / k[0, 0]))
        assert 49.9 < fov < 85.1
        assert abs(k[0, 2] - 24) <= 0.06 * 48 + 1e-4 and abs(k[1, 2] - 16) <= 0.06 * 32 + 1e-4
        rot = w2cs[:, :, :3].astype(np.float64)
        np.testing.assert_allclose(rot @ rot.transpose(0, 2, 1), np.broadcast_to(np.eye(3),
                                   rot.shape), atol=1e-5)
    assert kinds == {"room", "object"} and trajs == set(scenes.TRAJECTORIES)
    cfg = scenes.SceneConfig(textureless_prob=1.0, room_prob=1.0, offcentre_prob=0.0)
    scene, ks, _, _ = scenes.make_scene(5, 2, 32, 48, cfg)
    assert all(m.kind == "flat" for p in scene.prims for m in p.materials)
    assert ks[0, 0, 2] == 24 and ks[0, 1, 2] == 16
    rng = np.random.default_rng(0)
    assert {random_material(rng, 0.0).kind for _ in range(60)} == {
        "checker", "stripes", "noise", "gradient"}


def test_rooms_fully_valid_objects_have_sky():
    room = render.render_scene(0, 2, 24, 32, seed=7,
                               cfg=scenes.SceneConfig(room_prob=1.0))
    obj = render.render_scene(0, 2, 24, 32, seed=7,
                              cfg=scenes.SceneConfig(room_prob=0.0, fov_deg=(84.0, 85.0)))
    assert room.valid.all() and (room.depth > 0).all()
    assert 0 < obj.valid.mean() < 1 and (obj.depth[~obj.valid] == 0).all()


def test_cli_writes_scenes_and_contact_sheet(tmp_path):
    render.main(["--out", str(tmp_path), "--scenes", "2", "--views", "2", "--size", "28x42",
                 "--seed", "3"])
    rec = render.load_npz(tmp_path / "scene_00001.npz")
    ref = render.render_scene(1, 2, 28, 42, seed=3)
    np.testing.assert_array_equal(rec.depth, ref.depth)
    assert rec.provenance == ref.provenance
    png = (tmp_path / "contact_sheet.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    with pytest.raises(ValueError, match="--size"):
        render.main(["--out", str(tmp_path), "--size", "28by42"])
    render.main(["--out", str(tmp_path / "ar"), "--scenes", "1", "--views", "2", "--size",
                 "28x42", "--seed", "3", "--start", "1", "--format", "array_record"])
    got = ArrayRecordSceneSource(tmp_path / "ar" / "scenes.array_record")[0]
    np.testing.assert_array_equal(got.images, ref.images)
