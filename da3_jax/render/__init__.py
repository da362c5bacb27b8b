"""Differentiable Gaussian splatting in JAX (gsplat classic-mode semantics), the one home of
splatting maths: :mod:`.project` (EWA projection), :mod:`.sh` (SH colours), :mod:`.raster`
(tile binning + compositing), :mod:`.checks` (input validation), :mod:`.views` (predicted
Gaussians into many cameras), :mod:`.trajectory` (video camera paths)."""

from da3_jax.render.checks import check_gaussians, check_scene_in_front
from da3_jax.render.project import project_gaussians, quat_scale_to_covar
from da3_jax.render.raster import rasterize_gaussians
from da3_jax.render.sh import sh_basis, sh_to_rgb
from da3_jax.render.trajectory import camera_path
from da3_jax.render.views import render_args, render_views

__all__ = [
    "check_gaussians",
    "camera_path",
    "check_scene_in_front",
    "project_gaussians",
    "quat_scale_to_covar",
    "rasterize_gaussians",
    "render_args",
    "render_views",
    "sh_basis",
    "sh_to_rgb",
]
