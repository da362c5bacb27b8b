"""Exporters of a `Prediction` (one module per format; see each module's docstring).

`FORMATS`: npz, mini_npz, ply, glb, colmap, depth_vis, gs_ply, gs_video. `parse_formats`
validates a comma (or '-') separated list before inference; `export` writes several formats,
collecting failures so one broken format does not hide the others.
"""

from __future__ import annotations

from da3_jax.infer.export.colmap import export_colmap
from da3_jax.infer.export.depth_vis import export_depth_vis
from da3_jax.infer.export.glb import export_glb
from da3_jax.infer.export.gs_ply import export_gs_ply
from da3_jax.infer.export.gs_video import export_gs_video
from da3_jax.infer.export.npz import export_mini_npz, export_npz
from da3_jax.infer.export.ply import export_ply

EXPORTERS = {
    "npz": export_npz,
    "mini_npz": export_mini_npz,
    "ply": export_ply,
    "glb": export_glb,
    "colmap": export_colmap,
    "depth_vis": export_depth_vis,
    "gs_ply": export_gs_ply,
    "gs_video": export_gs_video,
}
FORMATS = tuple(EXPORTERS)


def parse_formats(spec: str | list | tuple) -> list[str]:
    """'npz,ply' / 'npz-ply' / ['npz', 'ply'] -> ['npz', 'ply']; ValueError for unknown names."""
    if isinstance(spec, str):
        spec = spec.replace("-", ",").split(",")
    names = [s.strip() for s in spec if s and s.strip()]
    if not names:
        raise ValueError(f"export: no format given; choose from {', '.join(FORMATS)}")
    unknown = [s for s in names if s not in EXPORTERS]
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
            written[fmt] = EXPORTERS[fmt](prediction, export_dir, **kwargs.get(fmt, {}))
        except Exception as e:  # noqa: BLE001 - reported with the format name
            failed[fmt] = f"{type(e).__name__}: {e}"
    if failed:
        msg = "; ".join(f"{k}: {v}" for k, v in failed.items())
        raise ValueError(f"export failed for {sorted(failed)}: {msg}")
    return written


__all__ = ["EXPORTERS", "FORMATS", "export", "parse_formats"] + [
    f.__name__ for f in EXPORTERS.values()
]
