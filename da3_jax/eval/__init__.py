"""Evaluation: the Visual Geometry Benchmark (pose AUC, reconstruction F-score), depth and NVS
metrics, the benchmark runner and its reports.

Modules: `metrics` (pose AUC, depth errors, PSNR / SSIM; re-exports reconstruction metrics),
`recon` (Sim(3) camera alignment, depth -> points, Acc / Comp / F-score, optional TSDF),
`protocols` (per-dataset constants), `runner` (predictor protocol, per-scene evaluation,
`evaluate_predictions`), `predictors`, `report` (JSON / markdown / plots).
CLI: `python -m da3_jax.eval --help`.
"""
