"""Per-dataset benchmark constants and the paper's reference numbers.

Values copied from the official `depth_anything_3/utils/constants.py` and `docs/BENCHMARK.md`
(DA3-official.md §8). Distances in metres.

`PROTOCOLS[name]`:
  `tau`: F-score threshold; `down_sample`: voxel size for evaluation downsampling;
  `voxel_length`, `sdf_trunc`, `max_depth`: TSDF fusion (Open3D) settings; `recon`: whether the
  dataset is part of the reconstruction benchmark (DTU-64 is pose only).
"""

from __future__ import annotations

PROTOCOLS: dict[str, dict] = {
    "hiroom": dict(tau=0.05, down_sample=4.0 / 512.0, voxel_length=4.0 / 512.0, sdf_trunc=0.04,
                   max_depth=10000.0, recon=True),
    "eth3d": dict(tau=0.25, down_sample=5 * 4.0 / 512.0, voxel_length=5 * 4.0 / 512.0,
                  sdf_trunc=0.2, max_depth=100000.0, recon=True),
    "7scenes": dict(tau=0.05, down_sample=4.0 / 512.0, voxel_length=4.0 / 512.0, sdf_trunc=0.04,
                    max_depth=1000000.0, recon=True),
    "scannetpp": dict(tau=0.05, down_sample=0.02, voxel_length=0.02, sdf_trunc=0.15,
                      max_depth=5.0, recon=True),
    "dtu64": dict(tau=None, down_sample=None, voxel_length=None, sdf_trunc=None,
                  max_depth=None, recon=False),
}
"""Official per-dataset constants; unknown datasets fall back to `DEFAULT_PROTOCOL`."""

DEFAULT_PROTOCOL = dict(tau=0.05, down_sample=4.0 / 512.0, voxel_length=4.0 / 512.0,
                        sdf_trunc=0.04, max_depth=10000.0, recon=True)

POSE_AVERAGE = ("hiroom", "eth3d", "dtu64", "7scenes", "scannetpp")
RECON_AVERAGE = ("hiroom", "eth3d", "7scenes", "scannetpp")

MAX_FRAMES = 100
SAMPLE_SEED = 42
REF_VIEW_STRATEGY = "first"

# docs/BENCHMARK.md, DA3-GIANT: (AUC@3, AUC@30) per dataset.
REFERENCE_POSE_AUC = {
    "hiroom": (0.8030, 0.9592),
    "eth3d": (0.4872, 0.9153),
    "dtu64": (0.9408, 0.9939),
    "7scenes": (0.2744, 0.8668),
    "scannetpp": (0.8470, 0.9827),
}


def protocol(dataset: str) -> dict:
    """Constants of `dataset` (case-insensitive), `DEFAULT_PROTOCOL` for unknown names."""
    return dict(PROTOCOLS.get(dataset.lower(), DEFAULT_PROTOCOL))
