"""How precise must pose be for AUC@3, and how far is a trained student from it?

``python -m experiments.pose_precision --workdir=runs/demo`` (after ``make demo``) prints, as
markdown, for the demo's held-out split (``<workdir>/data/eval.array_record``):

1. the per-pair error distribution (degrees; official protocol: rotation error, translation
   *direction* error, pair error = their max; ``da3_jax.eval.metrics.relative_pose_errors``) of
   the trained student (``<workdir>/student``), for the camera decoder and the ray-map pose;
2. a controlled-noise sweep on the *true* poses: every view's rotation is perturbed by a random
   axis with an angle drawn from ``|N(0, sigma)|``, and every camera centre is moved by
   ``N(0, (tan(sigma) * b)^2)`` per axis, ``b`` = the scene's median pairwise baseline, so both
   error kinds grow with ``sigma``. It gives AUC@3 / AUC@30 and the median pair error as a
   function of sigma, i.e. the precision a predictor needs for a target AUC (mean of ``draws``
   draws, float64 NumPy).

The first view is the reference, as in the demo's evaluation.
"""

from __future__ import annotations

import os

import numpy as np
from absl import app, flags, logging
from scipy.spatial.transform import Rotation

from da3_jax.eval import metrics
from experiments import demo  # defines --workdir (a finished `make demo` work dir)

_DRAWS = flags.DEFINE_integer("draws", 8, "Noise draws per sigma.")
SIGMAS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 12.0)


def perturb_w2c(w2c: np.ndarray, sigma_deg: float, rng: np.random.Generator) -> np.ndarray:
    """True w2c ``[N, 3|4, 4]`` -> perturbed w2c ``[N, 3, 4]`` (see the module docstring)."""
    w2c = np.asarray(w2c, np.float64)[:, :3]
    rot, t = w2c[:, :, :3], w2c[:, :, 3]
    centres = -np.einsum("nji,nj->ni", rot, t)  # c = -R^T t
    n = len(w2c)
    axes = rng.standard_normal((n, 3))
    axes /= np.linalg.norm(axes, axis=-1, keepdims=True)
    angles = np.abs(rng.normal(0.0, np.radians(sigma_deg), (n, 1)))
    rot_p = Rotation.from_rotvec(axes * angles).as_matrix() @ rot
    i, j = np.triu_indices(n, k=1)
    baseline = float(np.median(np.linalg.norm(centres[i] - centres[j], axis=-1)))
    centres_p = centres + rng.normal(0.0, np.tan(np.radians(sigma_deg)) * baseline, (n, 3))
    t_p = -np.einsum("nij,nj->ni", rot_p, centres_p)
    return np.concatenate([rot_p, t_p[..., None]], axis=-1)


def noise_sweep(gt_w2c: list[np.ndarray], sigmas=SIGMAS, draws: int = 8, seed: int = 0) -> list:
    """``[(sigma, auc3, auc30, median pair error)]`` over all scenes' pairs, mean of draws."""
    rng = np.random.default_rng(seed)
    rows = []
    for sigma in sigmas:
        auc3, auc30, med = [], [], []
        for _ in range(draws):
            errs = np.concatenate([
                metrics.relative_pose_errors(perturb_w2c(g, sigma, rng), g)["pair_err"]
                for g in gt_w2c])
            auc3.append(metrics.auc_from_errors(errs, 3))
            auc30.append(metrics.auc_from_errors(errs, 30))
            med.append(np.median(errs))
        rows.append((sigma, float(np.mean(auc3)), float(np.mean(auc30)), float(np.mean(med))))
    return rows


def _quantiles(x: np.ndarray) -> str:
    q = np.quantile(x, (0.05, 0.25, 0.5, 0.75))
    frac3 = float(np.mean(x < 3.0))
    return " | ".join(f"{v:.1f}" for v in q) + f" | {frac3:.3f}"


def student_errors(workdir: str) -> dict:
    """Per-pair errors of the demo student: ``{'decoder'|'ray map': {kind: [P] degrees}}``."""
    import jax

    from da3_jax.imagenet import imagenet_normalize
    from da3_jax.train import evaluate
    from da3_jax.train.checkpoint import restore_params
    from da3_jax.train.da3_tasks import build_model

    records = evaluate.load_records([os.path.join(workdir, "data", "eval.array_record")])
    config = demo.stage_config("student", workdir)
    params = restore_params(os.path.join(workdir, "student"))
    model = build_model(config)
    predict = jax.jit(lambda x: model.apply({"params": params}, x, ref_view_strategy="first"))
    errs = {"decoder": [], "ray map": []}
    for r in records:
        out = predict(imagenet_normalize(r.images.astype(np.float32) / 255.0)[None])
        errs["decoder"].append(metrics.relative_pose_errors(out["extrinsics"][0], r.extrinsics))
        ray_w2c = evaluate._ray_extrinsics(out["ray"][0], out["ray_conf"][0], r.image_hw)
        errs["ray map"].append(metrics.relative_pose_errors(ray_w2c, r.extrinsics))
    out = {k: {kind: np.concatenate([e[kind] for e in v])
               for kind in ("rot_err", "trans_err", "pair_err")} for k, v in errs.items()}
    out["gt_w2c"] = [r.extrinsics for r in records]
    return out


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every file it reads at INFO
    errs = student_errors(demo._WORKDIR.value)
    n_pairs = len(errs["decoder"]["pair_err"])
    print(f"## Per-pair pose errors of the student ({n_pairs} held-out pairs, degrees)\n")
    print("| predictor | error | p05 | p25 | median | p75 | fraction < 3 deg |")
    print("|---|---|---|---|---|---|---|")
    for name in ("decoder", "ray map"):
        for kind in ("rot_err", "trans_err", "pair_err"):
            print(f"| {name} | {kind} | {_quantiles(errs[name][kind])} |")
    for name in ("decoder", "ray map"):
        e = errs[name]["pair_err"]
        print(f"\n{name}: AUC@3 {metrics.auc_from_errors(e, 3):.4f}, "
              f"AUC@30 {metrics.auc_from_errors(e, 30):.4f}")
    print("\n## True poses with controlled noise (sigma in degrees, "
          f"{_DRAWS.value} draws)\n")
    print("| sigma | AUC@3 | AUC@30 | median pair error |")
    print("|---|---|---|---|")
    for sigma, a3, a30, med in noise_sweep(errs["gt_w2c"], draws=_DRAWS.value):
        print(f"| {sigma:.1f} | {a3:.4f} | {a30:.3f} | {med:.1f} |")


if __name__ == "__main__":
    app.run(main)
