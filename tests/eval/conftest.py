"""Fixtures for the evaluation tests: the OFFICIAL benchmark functions as references.

`depth_anything_3.bench.utils` imports `open3d` at module level (and evaluates `o3d.*` type
annotations at definition time). open3d is not installed, so for the import only we put a stub
`open3d` module in `sys.modules`: it provides the names the annotations mention and a plain
point container (`PointCloud` with a `.points` array, `utility.Vector3dVector = np.asarray`).
The functions we compare against (`compute_pose` and helpers, `evaluate_3d_reconstruction`
with `down_sample=None`, `nn_correspondance`) then run their own, unmodified math (torch and
scipy's KDTree); nothing of ours is involved. The stub is removed from `sys.modules` afterwards.
`depth_anything_3.utils.pose_align` needs `evo` (installed with `pip install --no-deps evo`).
"""

from __future__ import annotations

import importlib
import sys
import types

import numpy as np
import pytest


class _PointCloud:
    """Container standing in for `open3d.geometry.PointCloud` (points only)."""

    def __init__(self):
        self.points = np.zeros((0, 3))


def _open3d_stub() -> types.ModuleType:
    o3d = types.ModuleType("open3d")
    o3d.geometry = types.SimpleNamespace(PointCloud=_PointCloud, TriangleMesh=object)
    o3d.utility = types.SimpleNamespace(Vector3dVector=lambda a: np.asarray(a, np.float64))
    o3d.pipelines = types.SimpleNamespace(
        integration=types.SimpleNamespace(ScalableTSDFVolume=object))
    return o3d


@pytest.fixture(scope="session")
def official_bench():
    """The official `depth_anything_3.bench.utils` module (see module docstring)."""
    try:
        import open3d  # noqa: F401

        return importlib.import_module("depth_anything_3.bench.utils")
    except ImportError:
        pass
    sys.modules["open3d"] = _open3d_stub()
    try:
        sys.modules.pop("depth_anything_3.bench.utils", None)
        return importlib.import_module("depth_anything_3.bench.utils")
    finally:
        del sys.modules["open3d"]


@pytest.fixture(scope="session")
def official_pose_align():
    """The official `depth_anything_3.utils.pose_align` (Umeyama + RANSAC via evo)."""
    return importlib.import_module("depth_anything_3.utils.pose_align")
