"""Procedural multi-view scenes with exact ground truth: the embedded default dataset.

Modules: `textures` (procedural materials, incl. textureless), `primitives` (analytic ray
intersection), `raycast` (vectorised NumPy renderer: z-depth, valid mask, Lambertian colour),
`scenes` (random rooms / object scenes and camera trajectories), `render` (`render_scene` ->
`data_pipelines.record.SceneRecord`, and the CLI writing scenes plus a contact sheet).
"""
