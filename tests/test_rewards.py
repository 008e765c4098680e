"""Reward terms against hand-computed values.

Every expected value is recomputed here from observable quantities (the simulation's state before
and after a step) with the formula written out in the test, never read back from the reward code.
Deterministic set-ups make some values exact: ``FORCED`` fills make a quote at depth 0 fill every
step under the paper rule (A * dt >> 1) while a quote at ``max_depth`` essentially never fills
(A * exp(-k * max_depth) * dt ~ 1e-37), so the action ``BUY`` buys one lot per step and ``SELL``
sells one.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from fractions import Fraction

import gymnasium
import numpy as np
import pytest

import lobgym
from lobgym.config import ConfigError, load_env_config
from lobgym.env import MarketMakingEnv
from lobgym.rewards import TERMS

N_STEPS = 10
DT = 0.01
FORCED = {"rule": "paper", "A": 1.0e9, "k": 10.0}
MAX_DEPTH = 10.0
BUY = (-1.0, 1.0)  # bid at depth 0 (always filled), ask at max depth (never filled)
SELL = (1.0, -1.0)
BOTH = (-1.0, -1.0)  # both sides at depth 0: one lot bought and one sold every step


def make_config(
    reward: list[dict],
    *,
    fill: dict | None = None,
    sigma: float = 2.0,
    noise: str = "binomial",
    n_steps: int = N_STEPS,
    initial: int | list[int] = 0,
    fees: dict | None = None,
) -> dict:
    """A small env config in the shape of envs/as2008.yaml with the given reward terms."""
    market = {
        "kind": "reduced_form",
        "s0": 100.0,
        "sigma": sigma,
        "noise": noise,
        "horizon": n_steps * DT,
        "dt": DT,
        "fill": copy.deepcopy(fill or FORCED),
        "inventory": {"initial": initial},
    }
    if fees is not None:
        market["fees"] = fees
    return {
        "market": market,
        "action": {"max_depth": MAX_DEPTH},
        "observation": {"features": ["inventory", "time_left"]},
        "reward": reward,
    }


@dataclass
class Snap:
    cash: float
    q: int
    mid: float
    fees: float

    @property
    def wealth(self) -> float:
        return self.cash + self.q * self.mid


def snap(env: MarketMakingEnv) -> Snap:
    s = env.sim.state
    return Snap(float(s.cash[0]), int(s.inventory[0]), float(s.mid[0]), float(s.fees[0]))


@dataclass
class Step:
    before: Snap
    after: Snap
    reward: float
    terminated: bool
    info: dict
    bought: int
    sold: int
    bid_depth: float
    ask_depth: float

    @property
    def pnl(self) -> float:
        """Mark-to-market change of cash + q * S, gross of fees."""
        return self.after.wealth - self.before.wealth

    @property
    def fee(self) -> float:
        return self.after.fees - self.before.fees

    @property
    def terms(self) -> dict[str, float]:
        return self.info["reward_terms"]


def assert_terms_sum_exactly(reward: float, terms: dict[str, float]) -> None:
    """The weighted terms, added in config order, give the reward bit for bit."""
    total = 0.0
    for value in terms.values():  # an explicit loop: sum() may use compensated summation
        total += value
    assert total == reward


def step(env: MarketMakingEnv, action) -> Step:
    before = snap(env)
    _, reward, terminated, truncated, info = env.step(np.asarray(action, dtype=np.float32))
    assert truncated is False
    assert_terms_sum_exactly(reward, info["reward_terms"])
    out = env.sim.outcome
    return Step(before, snap(env), reward, terminated, info, int(out.bid_lots[0]), int(out.ask_lots[0]),
                float(out.bid_depth[0]), float(out.ask_depth[0]))


def run_episode(env: MarketMakingEnv, actions, seed: int) -> list[Step]:
    """Reset with ``seed`` and play ``actions`` (one per step, or a callable of the step index)."""
    env.reset(seed=seed)
    steps = []
    for t in range(env.sim.params.n_steps):
        steps.append(step(env, actions(t) if callable(actions) else actions))
    assert [s.terminated for s in steps] == [False] * (len(steps) - 1) + [True]
    return steps


def random_actions(seed: int):
    rng = np.random.default_rng(seed)
    return lambda t: rng.uniform(-1.0, 1.0, size=2)


APPROX = {"rel": 1e-12, "abs": 1e-12}


# --------------------------------------------------------------------------------------- terms
def test_pnl_term_is_the_mark_to_market_change() -> None:
    env = MarketMakingEnv(
        make_config(
            [{"term": "pnl"}], fill={"rule": "poisson", "A": 140.0, "k": 1.5}, noise="normal", initial=[-3, 3]
        )
    )
    fills = 0
    for seed in range(3):
        for s in run_episode(env, random_actions(seed), seed):
            assert s.terms["pnl"] == pytest.approx(s.pnl, **APPROX)
            assert s.reward == s.terms["pnl"]
            fills += s.bought + s.sold
    assert fills > 0  # the check covered steps with trades, not only mid moves


def test_fees_term_is_minus_the_fee_paid() -> None:
    per_unit, rate = 0.01, 0.001
    env = MarketMakingEnv(
        make_config([{"term": "pnl"}, {"term": "fees"}], fees={"per_unit": per_unit, "rate": rate})
    )
    for s in run_episode(env, BOTH, seed=1):
        assert (s.bought, s.sold) == (1, 1)
        # Both quotes sit at the mid at the start of the step: fee = per_unit * lots + rate * traded value.
        fee = per_unit * 2 + rate * (1 * s.before.mid + 1 * s.before.mid)
        assert s.fee == pytest.approx(fee, **APPROX)
        assert s.terms["fees"] == pytest.approx(-fee, **APPROX)
        assert s.terms["pnl"] == pytest.approx(s.pnl, **APPROX)


def test_fees_term_is_positive_for_rebates() -> None:
    env = MarketMakingEnv(make_config([{"term": "pnl"}, {"term": "fees"}], fees={"per_unit": -0.02}))
    for s in run_episode(env, BUY, seed=2):
        assert s.terms["fees"] == pytest.approx(0.02 * s.bought, **APPROX)
        assert s.bought == 1


@pytest.mark.parametrize("weight", [1.0, 2.5])
def test_running_inventory_penalty(weight: float) -> None:
    phi = 0.3
    env = MarketMakingEnv(
        make_config(
            [{"term": "pnl"}, {"term": "running_inventory_penalty", "weight": weight, "params": {"phi": phi}}]
        )
    )
    steps = run_episode(env, BUY, seed=3)
    for t, s in enumerate(steps, start=1):
        assert s.after.q == t  # one lot bought per step
        # -phi * q^2 * dt with q AFTER the step
        assert s.terms["running_inventory_penalty"] == pytest.approx(weight * -phi * t**2 * DT, **APPROX)


def test_terminal_inventory_penalty_only_on_the_last_step() -> None:
    alpha = 0.07
    env = MarketMakingEnv(
        make_config(
            [{"term": "pnl"}, {"term": "terminal_inventory_penalty", "params": {"alpha": alpha}}], initial=2
        )
    )
    steps = run_episode(env, SELL, seed=4)
    assert [s.terms["terminal_inventory_penalty"] for s in steps[:-1]] == [0.0] * (N_STEPS - 1)
    q_t = 2 - N_STEPS
    assert steps[-1].after.q == q_t
    assert steps[-1].terms["terminal_inventory_penalty"] == pytest.approx(-alpha * q_t**2, **APPROX)


def test_terminal_liquidation_cost_at_the_horizon() -> None:
    c, b = 0.05, 0.002
    env = MarketMakingEnv(
        make_config(
            [{"term": "pnl"}, {"term": "terminal_liquidation", "params": {"cost_per_unit": c, "impact": b}}]
        )
    )
    steps = run_episode(env, SELL, seed=5)
    assert all(s.terms["terminal_liquidation"] == 0.0 for s in steps[:-1])
    q_t = steps[-1].after.q
    assert q_t == -N_STEPS
    assert steps[-1].terms["terminal_liquidation"] == pytest.approx(-(c * abs(q_t) + b * q_t**2), **APPROX)


@pytest.mark.parametrize("asymmetric", [True, False])
def test_dampened_pnl(asymmetric: bool) -> None:
    eta = 0.4
    env = MarketMakingEnv(
        make_config(
            [{"term": "pnl"}, {"term": "dampened_pnl", "params": {"eta": eta, "asymmetric": asymmetric}}],
            initial=-4,
            n_steps=20,
        )
    )
    signs = set()
    for seed in (6, 7):
        for s in run_episode(env, BUY, seed):
            speculative = eta * s.before.q * (s.after.mid - s.before.mid)  # q_{t-dt} * dS_t
            signs.add(np.sign(speculative))
            expected = s.pnl - max(0.0, speculative) if asymmetric else s.pnl - speculative
            assert s.terms["dampened_pnl"] == pytest.approx(expected, **APPROX)
    assert {-1.0, 1.0} <= signs  # both speculative gains and losses were exercised


def test_cara_utility_at_the_horizon() -> None:
    gamma = 0.5
    env = MarketMakingEnv(
        make_config(
            [{"term": "pnl"}, {"term": "cara_utility", "params": {"gamma": gamma}}],
            fill={"rule": "poisson", "A": 140.0, "k": 1.5},
            noise="normal",
            initial=3,
            fees={"per_unit": 0.01},
        )
    )
    for seed in range(3):
        steps = run_episode(env, random_actions(seed), seed)
        assert all(s.terms["cara_utility"] == 0.0 for s in steps[:-1])
        first, last = steps[0].before, steps[-1].after
        # W_T: net mark-to-market PnL of the episode, after fees (starting from cash 0 and q0 lots at S0).
        w_t = last.cash + last.q * last.mid - first.q * first.mid - last.fees
        assert w_t == pytest.approx(sum(s.pnl - s.fee for s in steps), rel=1e-9, abs=1e-9)
        assert steps[-1].terms["cara_utility"] == pytest.approx(-math.exp(-gamma * w_t), **APPROX)


def test_cara_utility_exponent_is_capped() -> None:
    # sigma = 0 and both quotes at the mid: no trading PnL, only 2 lots of fees a step, W_T = -2 * n.
    env = MarketMakingEnv(
        make_config(
            [{"term": "pnl"}, {"term": "cara_utility", "params": {"gamma": 100.0}}],
            sigma=0.0,
            fees={"per_unit": 1.0},
        )
    )
    steps = run_episode(env, BOTH, seed=0)
    assert steps[-1].after.fees == 2.0 * N_STEPS
    # -exp(-gamma * W_T) = -exp(2000) would overflow; the documented cap is an exponent of 50.
    assert steps[-1].terms["cara_utility"] == pytest.approx(-math.exp(50.0), **APPROX)
    assert math.isfinite(steps[-1].reward)


def test_differential_sharpe_recursion_over_episodes() -> None:
    eta = 0.1
    env = MarketMakingEnv(
        make_config(
            [{"term": "pnl"}, {"term": "fees"}, {"term": "differential_sharpe", "params": {"eta": eta}}],
            fill={"rule": "poisson", "A": 140.0, "k": 1.5},
            noise="normal",
            n_steps=30,
            fees={"per_unit": 0.003},
        )
    )
    nonzero = 0
    for seed in range(3):  # A and B restart from 0 at every reset
        a = b = 0.0
        for s in run_episode(env, random_actions(seed), seed):
            r = s.pnl - s.fee
            d_a, d_b = r - a, r * r - b
            var = b - a * a
            expected = (b * d_a - 0.5 * a * d_b) / var**1.5 if var > 0 else 0.0
            a, b = a + eta * d_a, b + eta * d_b
            assert s.terms["differential_sharpe"] == pytest.approx(expected, rel=1e-9, abs=1e-12)
            nonzero += expected != 0.0
    assert nonzero > 60


def tail_count(alpha: float, n: int) -> int:
    """ceil(alpha * n), exact on alpha's decimal value (0.3 * 10 is 3, not 3.0000000000000004)."""
    return max(1, math.ceil(Fraction(str(alpha)) * n))


def cvar_by_sorting(net: list[float], alpha: float) -> float:
    """Minus the mean of the ceil(alpha n) largest per-step losses -(pnl - fee)."""
    losses = sorted(-x for x in net)
    m = tail_count(alpha, len(losses))
    return -sum(losses[-m:]) / m


@pytest.mark.parametrize("alpha", [0.1, 0.3, 1.0])
def test_cvar_penalty_at_the_horizon(alpha: float) -> None:
    env = MarketMakingEnv(
        make_config(
            [{"term": "pnl"}, {"term": "cvar_penalty", "params": {"alpha": alpha}}],
            fill={"rule": "poisson", "A": 140.0, "k": 1.5},
            noise="normal",
            fees={"per_unit": 0.01},
        )
    )
    for seed in range(2):
        steps = run_episode(env, random_actions(seed), seed)
        assert all(s.terms["cvar_penalty"] == 0.0 for s in steps[:-1])
        expected = cvar_by_sorting([s.pnl - s.fee for s in steps], alpha)
        assert steps[-1].terms["cvar_penalty"] == pytest.approx(expected, rel=1e-9, abs=1e-12)
    if alpha == 1.0:  # the whole episode: minus the mean loss is the mean net PnL
        assert steps[-1].terms["cvar_penalty"] == pytest.approx(
            np.mean([s.pnl - s.fee for s in steps]), rel=1e-9
        )


def test_spread_captured_is_the_fills_distance_to_the_mid() -> None:
    env = MarketMakingEnv(make_config([{"term": "pnl"}, {"term": "spread_captured"}],
                                      fill={"rule": "poisson", "A": 140.0, "k": 1.5}, noise="normal"))
    for seed in range(2):
        steps = run_episode(env, random_actions(seed), seed)
        for s in steps:
            out_bid, out_ask = s.bid_depth, s.ask_depth
            expected = (s.bought * out_bid if s.bought else 0.0) + (s.sold * out_ask if s.sold else 0.0)
            assert s.terms["spread_captured"] == pytest.approx(expected, **APPROX)
            # PnL = spread captured + q_after * dS, exactly (up to rounding)
            inventory_part = s.after.q * (s.after.mid - s.before.mid)
            assert s.terms["pnl"] == pytest.approx(s.terms["spread_captured"] + inventory_part, rel=1e-9, abs=1e-9)
        assert any(s.terms["spread_captured"] > 0 for s in steps)


@pytest.mark.parametrize("horizon", [1, 3, 20])
def test_adverse_selection_marks_each_fill_horizon_steps_later(horizon: int) -> None:
    env = MarketMakingEnv(make_config([{"term": "adverse_selection", "params": {"horizon": horizon}}],
                                      fill={"rule": "poisson", "A": 140.0, "k": 1.5}, noise="normal"))
    for seed in range(2):
        steps = run_episode(env, random_actions(seed), seed)
        n = len(steps)
        expected = np.zeros(n)
        for t, s in enumerate(steps):  # the fills of step t, at the mid after step t + horizon (or T)
            due = min(t + horizon, n - 1)
            expected[due] += (s.bought - s.sold) * (steps[due].after.mid - s.before.mid)
        got = np.array([s.terms["adverse_selection"] for s in steps])
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)
        assert np.any(got != 0)


@pytest.mark.parametrize("sigma", [2.0, 0.0])  # sigma = 0: many tied losses (0 or the fee)
def test_cvar_heap_matches_sorting_over_random_episodes(sigma: float) -> None:
    for alpha in (0.05, 0.13, 0.5, 0.77):
        env = MarketMakingEnv(
            make_config(
                [{"term": "pnl"}, {"term": "fees"}, {"term": "cvar_penalty", "params": {"alpha": alpha}}],
                fill={"rule": "poisson", "A": 60.0, "k": 1.0},
                noise="normal",
                sigma=sigma,
                n_steps=40,
                initial=[-5, 5],
                fees={"per_unit": 0.02},
            )
        )
        for seed in range(4):
            rng = np.random.default_rng(100 + seed)
            env.reset(seed=seed)
            net, terminated = [], False
            while not terminated:
                _, reward, terminated, _, info = env.step(rng.uniform(-1, 1, size=2).astype(np.float32))
                terms = info["reward_terms"]
                assert_terms_sum_exactly(reward, terms)
                net.append(terms["pnl"] + terms["fees"])
            assert len(net) == 40
            assert terms["cvar_penalty"] == pytest.approx(cvar_by_sorting(net, alpha), rel=1e-9, abs=1e-12)


# ------------------------------------------------------------------------------- composition
ALL_TERMS = [
    {"term": "pnl"},
    {"term": "fees", "weight": 0.5},
    {"term": "running_inventory_penalty", "weight": 3.0, "params": {"phi": 0.1}},
    {"term": "terminal_inventory_penalty", "weight": 0.7, "params": {"alpha": 0.01}},
    {"term": "terminal_liquidation", "weight": 1.3, "params": {"cost_per_unit": 0.1, "impact": 0.01}},
    {"term": "dampened_pnl", "weight": -0.2, "params": {"eta": 0.5}},
    {"term": "cara_utility", "weight": 0.01, "params": {"gamma": 0.1}},
    {"term": "differential_sharpe", "weight": 0.05, "params": {"eta": 0.2}},
    {"term": "cvar_penalty", "weight": 2.0, "params": {"alpha": 0.2}},
    {"term": "spread_captured", "weight": 0.3},
    {"term": "adverse_selection", "weight": 0.4, "params": {"horizon": 3}},
]


def test_all_terms_listed_and_every_registered_term_is_tested() -> None:
    assert sorted(t["term"] for t in ALL_TERMS) == sorted(TERMS)


def test_weighted_terms_sum_exactly_and_weights_multiply() -> None:
    fill = {"rule": "poisson", "A": 140.0, "k": 1.5}
    weighted = MarketMakingEnv(make_config(ALL_TERMS, fill=fill, noise="normal", fees={"per_unit": 0.01}))
    unit = MarketMakingEnv(
        make_config(
            [{k: v for k, v in t.items() if k != "weight"} for t in ALL_TERMS],
            fill=fill,
            noise="normal",
            fees={"per_unit": 0.01},
        )
    )
    weights = {t["term"]: t.get("weight", 1.0) for t in ALL_TERMS}
    for seed in range(2):
        a = run_episode(weighted, random_actions(seed), seed)  # run_episode checks the exact sums
        b = run_episode(unit, random_actions(seed), seed)
        for sa, sb in zip(a, b, strict=True):
            assert list(sa.terms) == [t["term"] for t in ALL_TERMS]
            for name, w in weights.items():
                assert sa.terms[name] == w * sb.terms[name]
        assert any(v != 0.0 for v in a[-1].terms.values())


def test_unknown_term_fails_at_construction_listing_known_terms() -> None:
    cfg = make_config([{"term": "pnl"}, {"term": "sharpe_ratio"}])
    for build in (load_env_config, lambda c: gymnasium.make(lobgym.ENV_ID, config=c)):
        with pytest.raises(ConfigError) as err:
            build(cfg)
        msg = str(err.value)
        assert "reward[1]" in msg and "'sharpe_ratio'" in msg
        for name in TERMS:
            assert name in msg


@pytest.mark.parametrize(
    ("term", "params", "field", "fragment"),
    [
        ("running_inventory_penalty", {}, "params.phi", "Field required"),
        ("terminal_inventory_penalty", {"alpha": -0.5}, "params.alpha = -0.5", "greater than or equal to 0"),
        ("cvar_penalty", {"alpha": 0.1, "beta": 2}, "params.beta = 2", "Extra inputs"),
        ("cvar_penalty", {"alpha": 1.5}, "params.alpha = 1.5", "less than or equal to 1"),
        ("differential_sharpe", {"eta": 1.0}, "params.eta = 1.0", "less than 1"),
        ("pnl", {"phi": 1.0}, "params.phi = 1.0", "Extra inputs"),
    ],
)
def test_bad_term_params_name_the_field(term: str, params: dict, field: str, fragment: str) -> None:
    cfg = make_config([{"term": "pnl"}, {"term": term, "params": params}])
    for build in (load_env_config, lambda c: gymnasium.make(lobgym.ENV_ID, config=c)):
        with pytest.raises(ConfigError) as err:
            build(cfg)
        msg = str(err.value)
        assert "reward[1]" in msg and field in msg and fragment in msg and repr(term) in msg


def test_cj2015_reward_is_pnl_minus_running_and_terminal_penalties() -> None:
    env = gymnasium.make(lobgym.ENV_ID, config="cj2015").unwrapped
    dt, n = env.sim.params.dt, env.sim.params.n_steps
    assert (dt, n) == (0.01, 100)
    inventories = set()
    for seed in range(2):
        steps = run_episode(env, random_actions(seed), seed)
        for t, s in enumerate(steps, start=1):
            q = s.after.q
            inventories.add(q)
            expected = s.pnl - 0.5 * q * q * dt - (0.001 * q * q if t == n else 0.0)
            assert s.reward == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert len(inventories) > 3  # the penalties were exercised at several inventories
