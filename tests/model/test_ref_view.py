"""Reference-view selection against a float64 NumPy transcription of the official selector
(`depth_anything_3/model/reference_view_selector.py`)."""

import jax.numpy as jnp
import numpy as np
import pytest

from da3_jax.model.ref_view import select_reference_view


def _official_scores64(x: np.ndarray, strategy: str) -> np.ndarray:
    """[B, S] score the official selector maximises (sim_range) or minimises (balanced)."""
    tok = x[:, :, 0].astype(np.float64)
    unit = tok / np.linalg.norm(tok, axis=-1, keepdims=True)
    s = tok.shape[1]
    sim = unit @ unit.transpose(0, 2, 1) - np.eye(s)[None]
    if strategy == "saddle_sim_range":
        return sim.max(-1) - sim.min(-1)
    sim_score = sim.sum(-1) / (s - 1)

    def norm01(m):
        lo, hi = m.min(1, keepdims=True), m.max(1, keepdims=True)
        return (m - lo) / (hi - lo + 1e-8)

    metrics = (sim_score, np.linalg.norm(tok, axis=-1), unit.var(-1, ddof=1))
    return sum(np.abs(norm01(m) - 0.5) for m in metrics)


@pytest.mark.parametrize("strategy", ["saddle_sim_range", "saddle_balanced"])
@pytest.mark.parametrize("similar", [False, True])
def test_selection_matches_float64_official_up_to_ties(strategy, similar):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, 5, 2, 32)).astype(np.float32)
    if similar:  # nearly parallel cls tokens, as random images give: sim_range ties in pairs
        x[:, :, 0] = 5.0 + 0.05 * x[:, :, 0]
    got = np.asarray(select_reference_view(jnp.asarray(x), strategy))
    score = _official_scores64(x, strategy)
    best = score.max(1) if strategy == "saddle_sim_range" else score.min(1)
    picked = score[np.arange(len(got)), got]
    # The pick is an optimum of the official score (float64), up to float32 rounding.
    np.testing.assert_allclose(picked, best, atol=1e-5)
    if not similar:  # well separated: the exact index
        ref = score.argmax(1) if strategy == "saddle_sim_range" else score.argmin(1)
        np.testing.assert_array_equal(got, ref)
