"""Readers / converters from real dataset layouts into ``data_pipelines.record.SceneRecord``.

One small module per format:

| module        | format                                                                     |
| ------------- | -------------------------------------------------------------------------- |
| `colmap`      | COLMAP text/binary model + images (+ dense depth maps / sparse points3D)   |
| `rgbd`        | 7-Scenes and TUM RGB-D sequences, DeepVideoMVS HoloLens clip               |
| `middlebury`  | Middlebury 2014 stereo (PFM disparity + calib.txt), multi-view `*_par.txt` |
| `hypersim`    | Hypersim (HDF5 distance-to-camera -> z-depth)                              |
| `tartanair`   | TartanAir (NED poses -> OpenCV)                                            |
| `arkitscenes` | ARKitScenes raw `lowres_wide` / `lowres_depth` / `.traj`                   |
| `co3d`        | CO3D v2 (`frame_annotations.jgz`, PyTorch3D NDC cameras -> OpenCV)         |
| `hiroom`, `eth3d`, `sevenscenes`, `scannetpp`, `dtu64` | the DA3 benchmark layouts         |
| `dl3dv`, `tanks_temples`, `megadepth` | NVS benchmark layouts: all frames in order, 270x480 |
| `convert`     | CLI: any of the above -> record files for `data_pipelines.tfds.real_builder` |

`BENCHMARKS[name]` is a module with `NAME`, `list_scenes(root)`, `list_frames(root, scene)`
(ordered image paths before sampling) and `load_scene(root, scene, max_frames=None, seed=42)`
(frames sampled like the official evaluator: `random.seed(seed)`, shuffle, first `max_frames`,
sorted). The NVS readers add `hw` (default 270 x 480, `None` = stored size) and load all frames
by default (`_nvs`): DL3DV-10K Benchmark (nerfstudio / 3DGS formats), 3DGS `tandt_db`, MegaDepth
`Undistorted_SfM` / `MegaDepth_v1_SfM`. Records carry `provenance['image_files']` (the sampled
views, in record order) and the GT mesh / point-cloud path where the benchmark has one.

Conventions shared by all readers are in `_io` (K in the record's pixel-edge convention; every
reader states whether its format is pixel-edge like COLMAP or pixel-centre like OpenCV).
"""

from data_pipelines.readers import (
    dl3dv,
    dtu64,
    eth3d,
    hiroom,
    megadepth,
    scannetpp,
    sevenscenes,
    tanks_temples,
)

BENCHMARKS = {
    "hiroom": hiroom,
    "eth3d": eth3d,
    "7scenes": sevenscenes,
    "scannetpp": scannetpp,
    "dtu64": dtu64,
    "dl3dv": dl3dv,
    "tanks_temples": tanks_temples,
    "megadepth": megadepth,
}
NVS_BENCHMARKS = ("dl3dv", "tanks_temples", "megadepth")

__all__ = ["BENCHMARKS", "NVS_BENCHMARKS"]
