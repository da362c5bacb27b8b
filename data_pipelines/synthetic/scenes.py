"""Random scene layouts (indoor rooms, object-centric scenes) and camera trajectories.

World frame: z up, metres. Cameras are returned as w2c [3, 4] with OpenCV axes (x right,
y down, z forward) and K [3, 3] in pixels (pixel-edge convention, see data_pipelines.record).

- room:   a room box (walls/floor/ceiling, one material per face) with boxes, spheres and
          cylinders on the floor or floating, lit by a point light under the ceiling. Every
          pixel hits a surface: all depth is valid.
- object: 1-5 objects on a textured ground disk, lit by a distant light; rays that miss
          everything see the sky and are invalid (background).
Trajectories: 'orbit' (an arc around the content, looking at it), 'walk' (a short walk with a
slowly turning heading), 'random' (scattered positions looking at a shared target region).
All views of a scene share K (fov and principal point drawn per scene).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from data_pipelines.synthetic.primitives import Primitive, rot_z
from data_pipelines.synthetic.raycast import Scene
from data_pipelines.synthetic.textures import random_material

TRAJECTORIES = ("orbit", "walk", "random")


@dataclasses.dataclass(frozen=True)
class SceneConfig:
    """Knobs of the procedural dataset. fov_deg = horizontal fov range in degrees;
    principal_jitter = max |cx - W/2| / W and |cy - H/2| / H (applied with prob. offcentre_prob)."""

    room_prob: float = 0.5
    textureless_prob: float = 0.3
    fov_deg: tuple[float, float] = (50.0, 85.0)
    offcentre_prob: float = 0.5
    principal_jitter: float = 0.06
    trajectory_probs: tuple[float, float, float] = (0.4, 0.3, 0.3)


def look_at(eye: np.ndarray, target: np.ndarray, roll: float = 0.0) -> np.ndarray:
    """w2c [3, 4] float32 of a camera at `eye` looking at `target`, world z up, OpenCV axes."""
    eye = np.asarray(eye, np.float64)
    fwd = np.asarray(target, np.float64) - eye
    fwd /= np.linalg.norm(fwd)
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    if np.linalg.norm(right) < 1e-6:  # looking straight up/down
        right = np.cross(fwd, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    c, s = np.cos(roll), np.sin(roll)
    right, down = c * right + s * down, -s * right + c * down
    r_w2c = np.stack([right, down, fwd], axis=0)
    return np.concatenate([r_w2c, (-r_w2c @ eye)[:, None]], axis=1).astype(np.float32)


def sample_intrinsics(rng: np.random.Generator, cfg: SceneConfig, height: int, width: int):
    """K [3, 3] float32: square pixels, horizontal fov from cfg, optional off-centre point."""
    fov = np.deg2rad(rng.uniform(*cfg.fov_deg))
    f = 0.5 * width / np.tan(0.5 * fov)
    cx, cy = 0.5 * width, 0.5 * height
    if rng.random() < cfg.offcentre_prob:
        cx += rng.uniform(-1, 1) * cfg.principal_jitter * width
        cy += rng.uniform(-1, 1) * cfg.principal_jitter * height
    return np.array([[f, 0, cx], [0, f, cy], [0, 0, 1]], np.float32)


def _mats(rng, n, cfg):
    return tuple(random_material(rng, cfg.textureless_prob) for _ in range(n))


def _random_object(rng, cfg, xy, on_floor_z, max_size):
    kind = ("box", "sphere", "cylinder")[int(rng.integers(3))]
    if kind == "box":
        size = rng.uniform(0.15, max_size, 3)
        z = on_floor_z + size[2]
        return Primitive("box", np.array([*xy, z], np.float32), rot_z(rng.uniform(0, np.pi)),
                         size.astype(np.float32), _mats(rng, 6, cfg))
    if kind == "sphere":
        r = rng.uniform(0.15, max_size)
        z = on_floor_z + r + (rng.uniform(0, 0.8) if rng.random() < 0.3 else 0.0)
        return Primitive("sphere", np.array([*xy, z], np.float32), np.eye(3, dtype=np.float32),
                         np.array([r, r, r], np.float32), _mats(rng, 1, cfg))
    r = rng.uniform(0.1, 0.7 * max_size)
    hh = rng.uniform(0.2, 1.5 * max_size)
    return Primitive("cylinder", np.array([*xy, on_floor_z + hh], np.float32),
                     np.eye(3, dtype=np.float32), np.array([r, r, hh], np.float32),
                     _mats(rng, 3, cfg))


def _free(eye, prims, margin):
    return all(np.linalg.norm(eye - p.center) > p.bounding_radius() + margin for p in prims)


def make_room(rng: np.random.Generator, cfg: SceneConfig):
    """(Scene, objects) for a room; objects are the movable primitives (cameras avoid them)."""
    half = np.array([rng.uniform(1.8, 3.5), rng.uniform(1.8, 3.5), rng.uniform(1.2, 1.6)],
                    np.float32)
    room = Primitive("room", np.array([0, 0, half[2]], np.float32), rot_z(0.0), half,
                     _mats(rng, 6, cfg))
    objs = []
    for _ in range(int(rng.integers(3, 9))):
        xy = rng.uniform(-1, 1, 2) * (half[:2] - 0.5)
        objs.append(_random_object(rng, cfg, xy, 0.0, 0.6))
    light = np.array([*(rng.uniform(-0.5, 0.5, 2) * half[:2]), 2 * half[2] - 0.2], np.float32)
    scene = Scene("room", (room, *objs), ambient=float(rng.uniform(0.25, 0.45)), light_pos=light)
    return scene, objs, half


def make_object_scene(rng: np.random.Generator, cfg: SceneConfig):
    """(Scene, objects) for objects on a ground disk under the sky."""
    ground = Primitive("disk", np.zeros(3, np.float32), np.eye(3, dtype=np.float32),
                       np.array([rng.uniform(4, 9), 0, 0], np.float32), _mats(rng, 1, cfg))
    objs = []
    for _ in range(int(rng.integers(2, 7))):
        xy = rng.uniform(-1.2, 1.2, 2)
        objs.append(_random_object(rng, cfg, xy, 0.0, 0.8))
    sun = np.array([*rng.uniform(-0.6, 0.6, 2), 1.0], np.float32)
    scene = Scene("object", (ground, *objs), ambient=float(rng.uniform(0.25, 0.45)),
                  light_dir=sun / np.linalg.norm(sun))
    return scene, objs


def _centroid(objs):
    return np.mean([p.center for p in objs], axis=0)


def _push_out(eye, target, objs, margin=0.3):
    """Moves `eye` away from `target` until it is clear of every object's bounding sphere."""
    for _ in range(30):
        if _free(eye, objs, margin):
            break
        eye = target + (eye - target) * 1.15
    return eye


def object_cameras(rng, objs, n, trajectory):
    """n w2c [n, 3, 4] around object content (orbit / walk past it / random hemisphere)."""
    target = _centroid(objs) + rng.normal(0, 0.1, 3)
    target[2] = max(target[2], 0.3)
    dist = rng.uniform(2.2, 4.0)
    out = []
    if trajectory == "orbit":
        az0, arc = rng.uniform(0, 2 * np.pi), np.deg2rad(rng.uniform(40, 200))
        elev = np.deg2rad(rng.uniform(10, 45))
        for a in az0 + np.linspace(0, arc, n):
            eye = target + dist * np.array([np.cos(a) * np.cos(elev), np.sin(a) * np.cos(elev),
                                            np.sin(elev)])
            eye = _push_out(eye, target, objs)
            out.append(look_at(eye, target + rng.normal(0, 0.05, 3), rng.normal(0, 0.03)))
    elif trajectory == "walk":
        a = rng.uniform(0, 2 * np.pi)
        side = np.array([-np.sin(a), np.cos(a), 0.0])
        base = target + dist * np.array([np.cos(a), np.sin(a), 0.0])
        for s in np.linspace(-1, 1, n) * rng.uniform(0.5, 1.5):
            eye = _push_out(base + s * side + np.array([0, 0, rng.uniform(0.8, 1.8)]), target,
                            objs)
            out.append(look_at(eye, target + rng.normal(0, 0.1, 3), rng.normal(0, 0.03)))
    else:
        for _ in range(n):
            a, elev = rng.uniform(0, 2 * np.pi), np.deg2rad(rng.uniform(8, 60))
            d = dist * rng.uniform(0.8, 1.2)
            eye = target + d * np.array([np.cos(a) * np.cos(elev), np.sin(a) * np.cos(elev),
                                         np.sin(elev)])
            eye = _push_out(eye, target, objs)
            out.append(look_at(eye, target + rng.normal(0, 0.2, 3), rng.normal(0, 0.05)))
    return np.stack(out)


def room_cameras(rng, objs, half, n, trajectory):
    """n w2c [n, 3, 4] inside the room box of half extents `half`, avoiding objects."""
    lo = np.array([-half[0] + 0.3, -half[1] + 0.3, 0.9])
    hi = np.array([half[0] - 0.3, half[1] - 0.3, min(1.9, 2 * half[2] - 0.3)])

    def free_eye():
        for _ in range(200):
            eye = rng.uniform(lo, hi)
            if _free(eye, objs, 0.25):
                return eye
        return np.array([0.0, 0.0, 1.5])

    target = _centroid(objs)
    target[2] = rng.uniform(0.3, 1.2)
    out = []
    if trajectory == "orbit":
        radius = rng.uniform(0.8, 0.95) * min(half[0], half[1]) - 0.3
        az0, arc = rng.uniform(0, 2 * np.pi), np.deg2rad(rng.uniform(40, 160))
        z = rng.uniform(lo[2], hi[2])
        for a in az0 + np.linspace(0, arc, n):
            eye = np.array([radius * np.cos(a), radius * np.sin(a), z])
            if not _free(eye, objs, 0.15):
                eye = free_eye()
            out.append(look_at(eye, target + rng.normal(0, 0.1, 3), rng.normal(0, 0.03)))
    elif trajectory == "walk":
        start = free_eye()
        step = rng.normal(0, 1, 3) * np.array([1, 1, 0.1])
        step *= rng.uniform(0.6, 1.6) / max(n - 1, 1) / (np.linalg.norm(step) + 1e-9)
        yaw0 = np.arctan2(*(target - start)[1::-1])
        turn = np.deg2rad(rng.uniform(-50, 50))
        pitch = np.deg2rad(rng.uniform(-20, 5))
        for k in range(n):
            eye = np.clip(start + k * step, lo, hi)
            yaw = yaw0 + turn * k / max(n - 1, 1)
            fwd = np.array([np.cos(yaw) * np.cos(pitch), np.sin(yaw) * np.cos(pitch),
                            np.sin(pitch)])
            out.append(look_at(eye, eye + fwd, rng.normal(0, 0.03)))
    else:
        for _ in range(n):
            out.append(look_at(free_eye(), target + rng.normal(0, 0.3, 3), rng.normal(0, 0.05)))
    return np.stack(out)


def make_scene(seed, num_views: int, height: int, width: int, cfg: SceneConfig | None = None):
    """Deterministic (Scene, K [n,3,3], w2c [n,3,4], trajectory name) for an int/tuple seed."""
    cfg = cfg or SceneConfig()
    rng = np.random.default_rng(seed)
    trajectory = TRAJECTORIES[int(rng.choice(3, p=np.asarray(cfg.trajectory_probs) /
                                               np.sum(cfg.trajectory_probs)))]
    if rng.random() < cfg.room_prob:
        scene, objs, half = make_room(rng, cfg)
        w2c = room_cameras(rng, objs, half, num_views, trajectory)
    else:
        scene, objs = make_object_scene(rng, cfg)
        w2c = object_cameras(rng, objs, num_views, trajectory)
    k = sample_intrinsics(rng, cfg, height, width)
    return scene, np.repeat(k[None], num_views, axis=0), w2c, trajectory
