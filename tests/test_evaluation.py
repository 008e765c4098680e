"""Evaluation runs on common random numbers: every agent sees the same market."""

from __future__ import annotations

import numpy as np
import pytest

from lobgym.evaluation import evaluate, paired_differences
from lobgym.metrics import METRICS
from lobgym.stats import paired_diff
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


def test_paired_differences_pair_episodes_against_the_first_or_the_named_reference():
    tight, wide, still = _Constant(-0.7), _Constant(-0.6), _Constant(0.0)
    evals = [evaluate(a, "as2008", episodes=30, seed=2, name=n) for a, n in ((tight, "tight"), (wide, "wide"),
                                                                              (still, "still"))]
    first = paired_differences(evals)
    assert [(p.agent, p.reference) for p in first] == [("wide", "tight"), ("still", "tight")]
    pnl = {e.agent: e.metrics[:, METRICS.index("pnl")] for e in evals}
    d = pnl["wide"] - pnl["tight"]
    got = first[0].diffs["pnl"]
    assert got.mean == pytest.approx(d.mean()) and got.se == pytest.approx(d.std(ddof=1) / np.sqrt(30))
    assert got == paired_diff(pnl["wide"], pnl["tight"]) and got.n == 30 and got.method == "t"
    assert first[0].diffs["return"] == paired_diff(evals[1].returns, evals[0].returns)
    assert set(first[0].diffs) == {"return", "pnl", "fees", "final_inventory", "mean_abs_inventory", "fills",
                                   "quote_uptime"}  # the book-only metrics are not measured on as2008
    # Common random numbers: for two similar quoters the paired SE is far below that of two independent means.
    unpaired = np.hypot(pnl["wide"].std(ddof=1), pnl["tight"].std(ddof=1)) / np.sqrt(30)
    assert got.se < 0.5 * unpaired
    named = paired_differences(evals, reference="still")
    assert [p.agent for p in named] == ["tight", "wide"]
    assert named[0].diffs["pnl"].mean == pytest.approx(-first[1].diffs["pnl"].mean)
    js = named[1].to_json()
    assert js["paired_reference"] == "still" and js["paired_diff"]["pnl"] == named[1].diffs["pnl"].mean
    assert js["paired_ci"]["pnl"] == [named[1].diffs["pnl"].low, named[1].diffs["pnl"].high]
    assert js["paired_method"]["pnl"] == "95% t interval, n = 30 episodes"


def test_paired_differences_refuse_an_unknown_reference_and_different_episodes():
    a = evaluate(_Constant(0.0), "as2008", episodes=4, seed=0, name="a")
    with pytest.raises(ValueError, match=r"reference = 'b': not one of the evaluated agents \(a\)"):
        paired_differences([a], reference="b")
    other_seed = evaluate(_Constant(0.0), "as2008", episodes=4, seed=1, name="c")
    with pytest.raises(ValueError, match="'c' ran 4 episodes from seed 1.*same episodes"):
        paired_differences([a, other_seed])
    fewer = evaluate(_Constant(0.0), "as2008", episodes=3, seed=0, name="d")
    with pytest.raises(ValueError, match="'d' ran 3 episodes"):
        paired_differences([a, fewer])


@pytest.mark.slow
def test_evaluating_an_analytic_agent_imports_neither_torch_nor_sb3():
    import subprocess
    import sys

    code = ("import sys\n"
            "from lobgym.agents import make_agent\n"
            "from lobgym.evaluation import evaluate\n"
            "ev = evaluate(make_agent('avellaneda_stoikov', 'as2008'), 'as2008', episodes=3)\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'stable_baselines3'))\n"
            "print(len(ev.returns), loaded[:3])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["3", "[]"], proc.stdout
