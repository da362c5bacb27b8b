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
| `convert`     | CLI: any of the above -> record files for `data_pipelines.tfds.real_builder` |

`BENCHMARKS[name]` is a module with `NAME`, `list_scenes(root)`, `list_frames(root, scene)`
(ordered image paths before sampling) and `load_scene(root, scene, max_frames=None, seed=42)`
(frames sampled like the official evaluator: `random.seed(seed)`, shuffle, first `max_frames`,
sorted). Records carry `provenance['image_files']` (the sampled views, in record order) and the
GT mesh / point-cloud path where the benchmark has one.

Conventions shared by all readers are in `_io` (K in the record's pixel-edge convention; every
reader states whether its format is pixel-edge like COLMAP or pixel-centre like OpenCV).
"""

from data_pipelines.readers import dtu64, eth3d, hiroom, scannetpp, sevenscenes

BENCHMARKS = {
    "hiroom": hiroom,
    "eth3d": eth3d,
    "7scenes": sevenscenes,
    "scannetpp": scannetpp,
    "dtu64": dtu64,
}

__all__ = ["BENCHMARKS"]
