"""Exporters of a `Prediction` (one module per format; see each module's docstring).

`FORMATS`: npz, mini_npz, ply, glb, colmap, depth_vis, gs_ply, gs_video. `parse_formats`
validates a comma (or '-') separated list before inference; `export` writes several formats,
collecting failures so one broken format does not hide the others.
"""

from __future__ import annotations

import importlib

# format -> (module, function); the modules are imported on first use (`da3-jax --help` and
# format validation stay free of jax / trimesh imports).
_EXPORTER_PATHS = {
    "npz": ("npz", "export_npz"),
    "mini_npz": ("npz", "export_mini_npz"),
    "ply": ("ply", "export_ply"),
    "glb": ("glb", "export_glb"),
    "colmap": ("colmap", "export_colmap"),
    "depth_vis": ("depth_vis", "export_depth_vis"),
    "gs_ply": ("gs_ply", "export_gs_ply"),
    "gs_video": ("gs_video", "export_gs_video"),
}
FORMATS = tuple(_EXPORTER_PATHS)
# What each format writes under the export directory (removed before a re-run rewrites it).
OUTPUTS = {
    "npz": "exports/npz",
    "mini_npz": "exports/mini_npz",
    "ply": "points.ply",
    "glb": "scene.glb",
    "colmap": "colmap",
    "depth_vis": "depth_vis",
    "gs_ply": "gs_ply",
    "gs_video": "gs_video",
}


def _load(fmt: str):
    module, fn = _EXPORTER_PATHS[fmt]
    return getattr(importlib.import_module(f"da3_jax.infer.export.{module}"), fn)


def __getattr__(name: str):
    if name == "EXPORTERS":
        return {fmt: _load(fmt) for fmt in FORMATS}
    for fmt, (_, fn) in _EXPORTER_PATHS.items():
        if fn == name:
            return _load(fmt)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def parse_formats(spec: str | list | tuple) -> list[str]:
    """'npz,ply' / 'npz-ply' / ['npz', 'ply'] -> ['npz', 'ply']; ValueError for unknown names."""
    if isinstance(spec, str):
        spec = spec.replace("-", ",").split(",")
    names = [s.strip() for s in spec if s and s.strip()]
    if not names:
        raise ValueError(f"export: no format given; choose from {', '.join(FORMATS)}")
    unknown = [s for s in names if s not in FORMATS]
    if unknown:
        raise ValueError(f"export: unknown format(s) {unknown}; choose from {', '.join(FORMATS)}")
    return list(dict.fromkeys(names))


def export(prediction, formats, export_dir: str, **kwargs) -> dict:
    """Write every format; returns {format: output path(s)}. Raises ValueError listing the
    formats that failed (after trying all). kwargs[fmt] are keyword arguments of that
    exporter."""
    written, failed = {}, {}
    for fmt in parse_formats(formats):
        try:
            written[fmt] = _load(fmt)(prediction, export_dir, **kwargs.get(fmt, {}))
        except Exception as e:  # noqa: BLE001 - reported with the format name
            failed[fmt] = f"{type(e).__name__}: {e}"
    if failed:
        msg = "; ".join(f"{k}: {v}" for k, v in failed.items())
        raise ValueError(f"export failed for {sorted(failed)}: {msg}")
    return written


__all__ = ["EXPORTERS", "FORMATS", "OUTPUTS", "export", "parse_formats"] + [
    fn for _, fn in _EXPORTER_PATHS.values()
]
