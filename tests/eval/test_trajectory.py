"""ATE / RPE against evo (the reference implementation of the TUM metrics)."""

import numpy as np
from scipy.spatial.transform import Rotation

from da3_jax.eval.trajectory import ate, rpe


def _trajectories(n=40, seed=0):
    rng = np.random.default_rng(seed)
    c2w = np.tile(np.eye(4), (n, 1, 1))
    c2w[:, :3, :3] = Rotation.from_rotvec(np.cumsum(rng.normal(size=(n, 3)) * 0.05, 0)).as_matrix()
    c2w[:, :3, 3] = np.cumsum(rng.normal(size=(n, 3)) * 0.3, 0)
    est = c2w.copy()
    est[:, :3, :3] = Rotation.from_rotvec(rng.normal(size=(n, 3)) * 0.02).as_matrix() @ \
        est[:, :3, :3]
    est[:, :3, 3] += rng.normal(size=(n, 3)) * 0.05
    g = np.eye(4)  # a Sim(3) gauge the alignment must undo
    g[:3, :3] = 2.5 * Rotation.random(random_state=seed).as_matrix()
    g[:3, 3] = [10.0, -3.0, 1.0]
    est = g @ est
    est[:, :3, :3] /= 2.5
    return c2w, est


def test_ate_rpe_match_evo():
    from evo.core import metrics
    from evo.core.trajectory import PoseTrajectory3D

    gt_c2w, est_c2w = _trajectories()
    t = np.arange(len(gt_c2w), dtype=float)
    ref = PoseTrajectory3D(poses_se3=list(gt_c2w), timestamps=t)
    est = PoseTrajectory3D(poses_se3=list(est_c2w), timestamps=t)
    est.align(ref, correct_scale=True)
    ape = metrics.APE(metrics.PoseRelation.translation_part)
    ape.process_data((ref, est))
    w2c = lambda c: np.linalg.inv(c)[:, :3]
    np.testing.assert_allclose(ate(w2c(est_c2w), w2c(gt_c2w)),
                               ape.get_statistic(metrics.StatisticsType.rmse), rtol=1e-4)
    ours = rpe(w2c(est_c2w), w2c(gt_c2w), delta=2)
    for rel, key, stat in ((metrics.PoseRelation.translation_part, "rpe_trans", "rmse"),
                           (metrics.PoseRelation.rotation_angle_deg, "rpe_rot_deg", "mean")):
        m = metrics.RPE(rel, delta=2, delta_unit=metrics.Unit.frames, all_pairs=True)
        m.process_data((ref, est))
        np.testing.assert_allclose(ours[key], m.get_statistic(metrics.StatisticsType(stat)),
                                   rtol=1e-4)
