"""Evaluation runs on common random numbers: every agent sees the same market."""

from __future__ import annotations

import numpy as np

from lobgym.agents.evaluation import evaluate
from lobgym.metrics import METRICS
from lobgym.vec_env import make_vec_env


def test_mid_paths_do_not_depend_on_the_agent():
    a = make_vec_env("as2008", n_envs=8, seed=11)
    b = make_vec_env("as2008", n_envs=8, seed=11)
    a.reset(), b.reset()
    rng = np.random.default_rng(0)
    for _ in range(50):
        a.step(rng.uniform(-1, 1, (8, 2)).astype(np.float32))
        b.step(np.zeros((8, 2), dtype=np.float32))
        np.testing.assert_array_equal(a.sim.state.mid, b.sim.state.mid)
    assert not np.array_equal(a.sim.state.inventory, b.sim.state.inventory)


class _Constant:
    def __init__(self, value: float):
        self.value = value

    def predict(self, obs, state=None, episode_start=None, deterministic=True):
        return np.full((len(obs), 2), self.value, dtype=np.float32), None


def test_evaluate_is_chunk_invariant_and_seed_dependent():
    agent = _Constant(-0.7)
    whole = evaluate(agent, "as2008", episodes=10, seed=5)
    chunked = evaluate(agent, "as2008", episodes=10, seed=5, batch=3)
    np.testing.assert_array_equal(whole.metrics, chunked.metrics)
    np.testing.assert_array_equal(whole.returns, chunked.returns)
    other = evaluate(agent, "as2008", episodes=10, seed=6)
    assert not np.array_equal(whole.metrics, other.metrics)
    # Episode j of the seed-5 run is episode j-1 of a seed-6 run: market seeds are seed + j.
    np.testing.assert_array_equal(whole.metrics[1:], other.metrics[:-1])


def test_summary_matches_episode_rows():
    ev = evaluate(_Constant(0.0), "as2008", episodes=12, seed=0)
    pnl = ev.metrics[:, METRICS.index("pnl")]
    assert ev.summary["pnl_mean"] == np.mean(pnl)
    assert ev.summary["pnl_std"] == np.std(pnl, ddof=1)
    assert ev.summary["sharpe"] == np.mean(pnl) / np.std(pnl, ddof=1)
    # pnl-only reward: the return of an episode is its PnL.
    np.testing.assert_allclose(ev.returns, pnl, rtol=1e-9, atol=1e-9)
