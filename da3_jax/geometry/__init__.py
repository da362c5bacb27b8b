"""Camera geometry for da3_jax: pure JAX, batched over leading dims, jit/vmap-able.

Conventions (one home for all of da3_jax): extrinsics are **w2c** ``[..., 3, 4]``; OpenCV axes
(x right, y down, z forward); depth is z-depth; intrinsics in pixels, pixel-edge convention
(pixel ``(i, j)`` has centre ``(j + 0.5, i + 0.5)``); quaternions are scalar-last (xyzw).
Ray maps: ``ray[..., 0:3]`` = unnormalised world direction ``R^T K^{-1} [u, v, 1]``,
``ray[..., 3:6]`` = camera centre (official channel order).

Modules: :mod:`.rotation`, :mod:`.cameras`, :mod:`.pose_encoding`, :mod:`.ray_solver`,
:mod:`.align`, :mod:`.checks`, :mod:`.point_rays`.
"""

from da3_jax.geometry.align import (
    align_camera_centres_sim3,
    apply_sim3,
    fit_scale,
    fit_scale_shift,
    normalize_scene_scale,
    ransac_scale_shift,
    ransac_umeyama,
    transform_w2c_sim3,
    umeyama,
)
from da3_jax.geometry.cameras import (
    c2w_to_w2c,
    camera_center,
    camera_ray_map,
    camera_rays,
    crop_intrinsics,
    invert_intrinsics,
    opengl_to_opencv_c2w,
    pixel_grid,
    points_from_depth,
    points_from_depth_rays,
    project,
    rescale_intrinsics,
    to_homogeneous,
    w2c_to_c2w,
)
from da3_jax.geometry.checks import (
    check_batch_compatible,
    check_finite,
    check_image_hw,
    check_intrinsics,
    check_trailing_shape,
)
from da3_jax.geometry.point_rays import rays_from_points
from da3_jax.geometry.pose_encoding import decode_pose, encode_pose
from da3_jax.geometry.ray_solver import rays_to_camera
from da3_jax.geometry.rotation import (
    quat_to_rotmat,
    relative_rotation_angle,
    rotmat_to_quat,
    standardize_quaternion,
)

__all__ = [
    "align_camera_centres_sim3",
    "apply_sim3",
    "fit_scale",
    "fit_scale_shift",
    "normalize_scene_scale",
    "ransac_scale_shift",
    "ransac_umeyama",
    "rays_to_camera",
    "transform_w2c_sim3",
    "umeyama",
    "c2w_to_w2c",
    "camera_center",
    "camera_ray_map",
    "camera_rays",
    "check_batch_compatible",
    "check_finite",
    "check_image_hw",
    "check_intrinsics",
    "check_trailing_shape",
    "crop_intrinsics",
    "decode_pose",
    "encode_pose",
    "invert_intrinsics",
    "opengl_to_opencv_c2w",
    "pixel_grid",
    "points_from_depth",
    "points_from_depth_rays",
    "project",
    "quat_to_rotmat",
    "rays_from_points",
    "relative_rotation_angle",
    "rescale_intrinsics",
    "rotmat_to_quat",
    "standardize_quaternion",
    "to_homogeneous",
    "w2c_to_c2w",
]
