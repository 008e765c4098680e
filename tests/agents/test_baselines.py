"""The analytic baselines: quotes against the published formulas (written out here), the
Cartea–Jaimungal table against an independent RK4 solution of its HJB equation, withdrawal at
inventory bounds, config errors, and the central result of Avellaneda & Stoikov (2008) on the env."""

from __future__ import annotations

import math

import numpy as np
import pytest

import lobgym
from lobgym.agents import (
    AvellanedaStoikov,
    BaselineAgent,
    CarteaJaimungal,
    FixedSpread,
    Gueant,
    RandomAgent,
    make_agent,
)
from lobgym.config import load_agent_config, load_env_config
from lobgym.presets import list_presets, read_yaml
from lobgym.simulation import Simulation
from lobgym.spaces import decode_one

AS2008 = load_env_config("as2008")  # sigma 2, k 1.5, A 140, dt 0.005, 200 steps, max_depth 5
CJ2015 = load_env_config("cj2015")  # sigma 0.1, k 1, A 10, dt 0.01, 100 steps, phi 0.5, alpha 0.001


def env_with(base, **changes) -> dict:
    """``base`` (a preset name) as a dict with top-level sections updated."""
    data = load_env_config(base).model_dump()
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


def make_obs(cfg, q, steps_left) -> np.ndarray:
    """Observations [inventory, time_left] as the env writes them (q / scale, steps_left / n_steps)."""
    q = np.asarray(q, dtype=np.float64)
    n = np.broadcast_to(np.asarray(steps_left, dtype=np.float64), q.shape)
    return np.stack([q / cfg.inventory_scale, n / cfg.market.n_steps], axis=-1).astype(np.float32)


def decode_depths(actions, max_depth):
    actions = np.asarray(actions, dtype=np.float64)
    return (actions[..., 0] + 1) / 2 * max_depth, (actions[..., 1] + 1) / 2 * max_depth


Q_POINTS = np.array([-7, -1, 0, 0, 2, 12])
N_POINTS = np.array([200, 1, 200, 57, 100, 200])


# ------------------------------------------------------------------------------------ Avellaneda–Stoikov
@pytest.mark.parametrize("gamma", [0.1, 0.5])
def test_avellaneda_stoikov_quotes_match_the_paper(gamma):
    agent = make_agent({"kind": "avellaneda_stoikov", "params": {"gamma": gamma}}, AS2008)
    assert isinstance(agent, AvellanedaStoikov)
    sigma, k, dt = 2.0, 1.5, 0.005
    bid, ask = agent.quotes(Q_POINTS, N_POINTS)
    for j, (q, n) in enumerate(zip(Q_POINTS, N_POINTS, strict=True)):
        tau = n * dt
        spread = gamma * sigma**2 * tau + (2 / gamma) * math.log(1 + gamma / k)
        reservation_offset = q * gamma * sigma**2 * tau  # s - r
        assert bid[j] == pytest.approx(spread / 2 + reservation_offset, rel=1e-12)
        assert ask[j] == pytest.approx(spread / 2 - reservation_offset, rel=1e-12)
    # q = 12 with the whole horizon left asks for a negative ask depth and a bid beyond max_depth:
    assert ask[-1] < 0 < 5 < bid[-1]

    actions, state = agent.predict(make_obs(AS2008, Q_POINTS, N_POINTS))
    assert state is None and actions.shape == (len(Q_POINTS), 2) and actions.dtype == np.float32
    got_bid, got_ask = decode_depths(actions, 5.0)
    np.testing.assert_allclose(got_bid, np.clip(bid, 0, 5), atol=1e-5)
    np.testing.assert_allclose(got_ask, np.clip(ask, 0, 5), atol=1e-5)


def test_avellaneda_stoikov_quotes_through_the_mid_when_the_env_allows_it():
    """With a negative ``action.min_depth`` the negative AS depths reach the market unclipped."""
    cfg = load_env_config(env_with("as2008", action={"max_depth": 5.0, "min_depth": -5.0}))
    agent = make_agent("avellaneda_stoikov", cfg)
    bid, ask = agent.quotes(Q_POINTS, N_POINTS)
    assert ask[-1] < 0  # q = 12, the whole horizon left
    sim = Simulation(cfg, len(Q_POINTS), parallel=False)
    sim.actions[:] = agent.predict(make_obs(cfg, Q_POINTS, N_POINTS))[0]
    got = [decode_one(i, sim.actions, sim.codec)[:2] for i in range(len(Q_POINTS))]
    np.testing.assert_allclose([g[0] for g in got], np.clip(bid, -5, 5), atol=1e-5)
    np.testing.assert_allclose([g[1] for g in got], np.clip(ask, -5, 5), atol=1e-5)
    # the default env clips at the mid, as before
    default = make_agent("avellaneda_stoikov", AS2008).predict(make_obs(AS2008, Q_POINTS, N_POINTS))[0]
    assert decode_depths(default, 5.0)[1][-1] == pytest.approx(0.0, abs=1e-6)


def test_avellaneda_stoikov_symmetric_is_the_papers_constant_benchmark():
    """The paper's symmetric strategy: the inventory strategy's average spread, constant, centred on the mid."""
    inv = make_agent("avellaneda_stoikov", AS2008)
    sym = make_agent("avellaneda_stoikov_symmetric", AS2008)
    bid, ask = sym.quotes(Q_POINTS, N_POINTS)
    n = AS2008.market.n_steps
    steps = np.arange(1, round(n) + 1)  # steps left at the episode's decisions
    inv_bid, inv_ask = inv.quotes(np.zeros_like(steps), steps)
    average = float(np.mean(inv_bid + inv_ask))  # the inventory strategy's spread does not depend on q
    assert average == pytest.approx(0.1 * 4.0 * 0.5 * (n + 1) * 0.005 + 20 * math.log(1 + 0.1 / 1.5), rel=1e-12)
    np.testing.assert_allclose(bid, average / 2, rtol=1e-12)
    np.testing.assert_allclose(ask, average / 2, rtol=1e-12)


# ------------------------------------------------------------------------------------------------ GLFT
@pytest.mark.parametrize("gamma", [0.1, 0.02])
def test_gueant_quotes_match_the_closed_form(gamma):
    agent = make_agent({"kind": "gueant", "params": {"gamma": gamma}}, AS2008)
    assert isinstance(agent, Gueant)
    sigma, k, A = 2.0, 1.5, 140.0
    c = math.sqrt(sigma**2 * gamma / (2 * k * A) * (1 + gamma / k) ** (1 + k / gamma))
    bid, ask = agent.quotes(Q_POINTS, N_POINTS)
    for j, q in enumerate(Q_POINTS):
        assert bid[j] == pytest.approx(math.log(1 + gamma / k) / gamma + (2 * q + 1) / 2 * c, rel=1e-12)
        assert ask[j] == pytest.approx(math.log(1 + gamma / k) / gamma - (2 * q - 1) / 2 * c, rel=1e-12)
    got_bid, got_ask = decode_depths(agent.predict(make_obs(AS2008, Q_POINTS, N_POINTS))[0], 5.0)
    np.testing.assert_allclose(got_bid, np.clip(bid, 0, 5), atol=1e-5)
    np.testing.assert_allclose(got_ask, np.clip(ask, 0, 5), atol=1e-5)


def test_gueant_withdraws_at_the_inventory_bound():
    agent = make_agent({"kind": "gueant", "params": {"gamma": 0.1, "inventory_bound": 3}}, AS2008)
    q = np.array([-4, -3, -2, 0, 2, 3, 4])
    bid, ask = agent.quotes(q, np.full(q.shape, 10))
    assert np.array_equal(np.isinf(bid), q >= 3)
    assert np.array_equal(np.isinf(ask), q <= -3)
    # Without sizes a withdrawn side is quoted at max_depth (action +1).
    actions, _ = agent.predict(make_obs(AS2008, q, 10))
    assert np.array_equal(actions[:, 0] == 1.0, q >= 3)
    assert np.array_equal(actions[:, 1] == 1.0, q <= -3)
    # With sizes it gets size 0 and the live side size 1.
    sized_cfg = load_env_config(env_with("as2008", action={"max_depth": 5.0, "sizes": {"max_size": 3}}))
    sized = make_agent({"kind": "gueant", "params": {"gamma": 0.1, "inventory_bound": 3}}, sized_cfg)
    actions, _ = sized.predict(make_obs(sized_cfg, q, 10))
    assert actions.shape == (len(q), 4)
    sizes = np.rint((actions[:, 2:].astype(np.float64) + 1) / 2 * 3).astype(int)
    np.testing.assert_array_equal(sizes[:, 0], np.where(q >= 3, 0, 1))
    np.testing.assert_array_equal(sizes[:, 1], np.where(q <= -3, 0, 1))


# ----------------------------------------------------------------------------------- Cartea–Jaimungal
def rk4_hjb_depths(phi, alpha, kappa, lam, big_q, n_steps, dt, substeps=200):
    """Depths from integrating the HJB for h(t, q) backward from h(T, q) = -alpha q^2 with RK4.

    With tau = T - t:
        dh/dtau = -phi q^2 + sum over live sides (lam/kappa) e^{-1} e^{kappa (h(q -/+ 1) - h(q))},
    and the optimal depths are delta = 1/kappa - (h(q -/+ 1) - h(q)). Returns (bid, ask) of shape
    (n_steps + 1, 2Q + 1), indexed by steps left, with inf where a side is not quoted.
    """
    q = np.arange(-big_q, big_q + 1, dtype=np.float64)

    def rhs(h):
        d = -phi * q**2
        up = np.zeros_like(h)  # buying moves q to q+1 (bid side), allowed below Q
        up[:-1] = np.exp(kappa * (h[1:] - h[:-1]))
        down = np.zeros_like(h)  # selling moves q to q-1 (ask side), allowed above -Q
        down[1:] = np.exp(kappa * (h[:-1] - h[1:]))
        return d + lam / kappa * math.exp(-1) * (up + down)

    h = -alpha * q**2
    step = dt / substeps
    bid = np.full((n_steps + 1, q.size), np.inf)
    ask = np.full((n_steps + 1, q.size), np.inf)
    for n in range(n_steps + 1):
        if n > 0:
            for _ in range(substeps):
                k1 = rhs(h)
                k2 = rhs(h + step / 2 * k1)
                k3 = rhs(h + step / 2 * k2)
                k4 = rhs(h + step * k3)
                h = h + step / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        bid[n, :-1] = 1 / kappa - (h[1:] - h[:-1])
        ask[n, 1:] = 1 / kappa - (h[:-1] - h[1:])
    return bid, ask


@pytest.mark.parametrize("params, phi, alpha, kappa, lam", [
    ({"inventory_bound": 6}, 0.5, 0.001, 1.0, 10.0),  # penalties from the cj2015 reward
    ({"inventory_bound": 4, "phi": 0.1, "alpha": 0.3}, 0.1, 0.3, 1.5, 8.0),
])
@pytest.mark.slow
def test_cartea_jaimungal_matches_an_rk4_solution_of_the_hjb(params, phi, alpha, kappa, lam):
    env = env_with("cj2015", market={"fill": {"rule": "poisson", "A": lam, "k": kappa}})
    agent = make_agent({"kind": "cartea_jaimungal", "params": params}, env)
    assert isinstance(agent, CarteaJaimungal)
    big_q = params["inventory_bound"]
    bid, ask = rk4_hjb_depths(phi, alpha, kappa=kappa, lam=lam, big_q=big_q, n_steps=100, dt=0.01)
    grid = np.arange(-big_q, big_q + 1)
    for n in (0, 1, 17, 50, 100):
        got_bid, got_ask = agent.quotes(grid, np.full(grid.shape, n))
        assert np.array_equal(np.isinf(got_bid), np.isinf(bid[n]))
        assert np.array_equal(np.isinf(got_ask), np.isinf(ask[n]))
        live_b, live_a = np.isfinite(bid[n]), np.isfinite(ask[n])
        np.testing.assert_allclose(got_bid[live_b], bid[n][live_b], rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(got_ask[live_a], ask[n][live_a], rtol=1e-6, atol=1e-9)
    # A long inventory is worked off: the ask comes in and the bid moves out.
    b, a = agent.quotes(np.array([0, 3]), np.array([100, 100]))
    assert a[1] < a[0] and b[1] > b[0]


def test_cartea_jaimungal_without_penalties_quotes_one_over_kappa_inside():
    cfg = load_env_config(env_with("cj2015", market={"fill": {"rule": "poisson", "A": 10.0, "k": 2.0}}))
    params = {"phi": 0, "alpha": 0, "inventory_bound": 50}
    agent = make_agent({"kind": "cartea_jaimungal", "params": params}, cfg)
    q = np.arange(-10, 11)
    for n in (1, 50, 100):
        bid, ask = agent.quotes(q, np.full(q.shape, n))
        np.testing.assert_allclose(bid, 0.5, atol=1e-8)
        np.testing.assert_allclose(ask, 0.5, atol=1e-8)
    # ... while near the bound the one-sided risk shows.
    bid, ask = agent.quotes(np.array([49]), np.array([100]))
    assert abs(bid[0] - 0.5) > 1e-3


def test_cartea_jaimungal_withdraws_and_clamps_at_its_bound():
    agent = make_agent({"kind": "cartea_jaimungal", "params": {"inventory_bound": 5}}, CJ2015)
    bid, ask = agent.quotes(np.array([-8, -5, -4, 4, 5, 9]), np.full(6, 30))
    assert np.isinf(bid[4]) and np.isinf(bid[5]) and np.all(np.isfinite(bid[:4]))
    assert np.isinf(ask[0]) and np.isinf(ask[1]) and np.all(np.isfinite(ask[2:]))
    assert ask[5] == ask[4] and bid[0] == bid[1]  # outside the grid: the bound's quotes
    actions, _ = agent.predict(make_obs(CJ2015, np.array([5, -5]), 30))
    assert actions[0, 0] == 1.0 and actions[1, 1] == 1.0  # withdrawn sides at max_depth


def test_cartea_jaimungal_takes_its_penalties_from_the_env_reward():
    agent = make_agent("cartea_jaimungal", "cj2015")
    assert agent.phi == pytest.approx(0.5) and agent.alpha == pytest.approx(0.001)
    running = {"term": "running_inventory_penalty", "weight": 2.0, "params": {"phi": 0.3}}
    weighted = env_with("cj2015", reward=[{"term": "pnl"}, running])
    agent = make_agent("cartea_jaimungal", weighted)
    assert agent.phi == pytest.approx(0.6) and agent.alpha == 0.0
    explicit = make_agent({"kind": "cartea_jaimungal", "params": {"phi": 0.05}}, "cj2015")
    assert explicit.phi == 0.05 and explicit.alpha == pytest.approx(0.001)
    with pytest.raises(ValueError, match=r"params\.phi"):
        make_agent("cartea_jaimungal", "as2008")  # reward: pnl only
    with pytest.raises(ValueError, match=r"market\.drift"):
        make_agent("cartea_jaimungal", env_with("cj2015", market={"drift": 0.2}))


# ------------------------------------------------------------------------------------ common behaviour
def test_missing_features_are_named():
    inventory_only = env_with("cj2015", observation={"features": ["inventory"]})
    with pytest.raises(ValueError, match="'time_left'"):
        make_agent("avellaneda_stoikov", inventory_only)
    with pytest.raises(ValueError, match="'time_left'"):
        make_agent("cartea_jaimungal", inventory_only)
    make_agent("gueant", inventory_only)  # stationary quotes: the inventory is enough
    with pytest.raises(ValueError, match="'inventory'"):
        make_agent("gueant", env_with("cj2015", observation={"features": ["time_left"]}))


def test_features_are_read_by_name_not_position():
    features = ["mid_change", "time_left", "inventory"]
    cfg = load_env_config(env_with("as2008", observation={"features": features}))
    agent = make_agent("avellaneda_stoikov", cfg)
    q, n = np.array([-3, 4]), np.array([20, 150])
    obs = np.stack([np.array([0.7, -1.2]), n / 200, q / 10], axis=-1).astype(np.float32)
    expected = make_agent("avellaneda_stoikov", AS2008).quotes(q, n)
    np.testing.assert_allclose(decode_depths(agent.predict(obs)[0], 5.0), np.clip(expected, 0, 5), atol=1e-5)


def test_predict_shapes_and_errors():
    agent = make_agent("avellaneda_stoikov", AS2008)
    batch = make_obs(AS2008, Q_POINTS, N_POINTS)
    many, _ = agent.predict(batch)
    one, _ = agent.predict(batch[2])
    assert one.shape == (2,) and one.dtype == np.float32
    np.testing.assert_array_equal(one, many[2])
    assert np.all(np.abs(many) <= 1)
    with pytest.raises(ValueError, match="observation.shape"):
        agent.predict(np.zeros((4, 3), np.float32))


def test_fixed_spread_and_random():
    fixed = make_agent("fixed_spread", AS2008)
    assert isinstance(fixed, FixedSpread)
    bid, ask = decode_depths(fixed.predict(make_obs(AS2008, Q_POINTS, N_POINTS))[0], 5.0)
    np.testing.assert_allclose(bid, 0.75, atol=1e-5)
    np.testing.assert_allclose(ask, 0.75, atol=1e-5)

    rnd = make_agent("random", AS2008)
    assert isinstance(rnd, RandomAgent)
    obs = make_obs(AS2008, np.zeros(500, int), 100)
    first, _ = rnd.predict(obs)
    assert first.shape == (500, 2) and first.dtype == np.float32
    assert first.min() >= -1 and first.max() <= 1 and first.std() > 0.4  # uniform on [-1, 1]: std 0.577
    second, _ = rnd.predict(obs)
    assert not np.array_equal(first, second)
    rnd.reset()
    np.testing.assert_array_equal(rnd.predict(obs)[0], first)  # the same sequence from params.seed
    other = make_agent({"kind": "random", "params": {"seed": 1}}, AS2008)
    assert not np.array_equal(other.predict(obs)[0], first)


def test_presets_load_and_describe_themselves():
    presets = list_presets("agents")
    expected = {"avellaneda_stoikov": "avellaneda_stoikov", "gueant": "gueant", "random": "random",
                "avellaneda_stoikov_symmetric": "avellaneda_stoikov", "cartea_jaimungal": "cartea_jaimungal",
                "fixed_spread": "fixed_spread"}
    for name, kind in expected.items():
        data = read_yaml(presets[name])
        assert isinstance(data["description"], str) and "\n" not in data["description"].strip()
        cfg = load_agent_config(name)
        assert cfg.kind == kind and cfg.name == name
        agent = make_agent(name, "cj2015")
        assert isinstance(agent, BaselineAgent)
        actions, _ = agent.predict(make_obs(CJ2015, np.array([-2, 0, 3]), 40))
        assert actions.shape == (3, 2) and np.all(np.abs(actions) <= 1)
    assert load_agent_config("avellaneda_stoikov_symmetric").typed_params.symmetric is True
    assert load_agent_config("cartea_jaimungal").typed_params.inventory_bound == 20


# ------------------------------------------------------------------------ the 2008 paper, on the env
def run_episodes(agent, n_envs=200, seed=0):
    venv = lobgym.make_vec_env("as2008", n_envs=n_envs, seed=seed)
    obs = venv.reset()
    for _ in range(venv.config.market.n_steps):
        actions, _ = agent.predict(obs)
        obs, _rewards, dones, infos = venv.step(actions)
    assert dones.all()
    metrics = [infos[i]["episode_metrics"] for i in range(n_envs)]
    pnl = np.array([m["pnl"] for m in metrics])
    q_final = np.array([m["final_inventory"] for m in metrics])
    return pnl, q_final


@pytest.mark.slow
@pytest.mark.parametrize("gamma", [0.1, 0.01, 0.5, 1.0])
def test_avellaneda_stoikov_experiment_on_the_paper_env(gamma):
    """The paper's experiment on ``as2008_paper`` (quotes through the mid allowed), 1,000 episodes on
    common seeds: both strategies quote the same average spread; the inventory strategy has a lower
    std of PnL and of q_T than the symmetric benchmark, and the gap closes as gamma falls."""
    from lobgym.evaluation import evaluate, paired_differences

    env = load_env_config("as2008_paper")
    agents = {name: make_agent({"name": name, "kind": "avellaneda_stoikov",
                                "params": {"gamma": gamma, "symmetric": name == "symmetric"}}, env)
              for name in ("inventory", "symmetric")}
    inv, sym = (evaluate(a, env, episodes=1000, seed=0, name=n) for n, a in agents.items())
    assert inv.summary["mean_spread"] == pytest.approx(sym.summary["mean_spread"], rel=0.01)
    assert inv.summary["pnl_std"] < 0.75 * sym.summary["pnl_std"]
    assert inv.summary["final_inventory_std"] < 0.6 * sym.summary["final_inventory_std"]
    (diff,) = paired_differences([inv, sym])  # symmetric - inventory, episode by episode
    ci = diff.diffs["pnl"]
    assert ci.low > 0 if gamma >= 0.1 else ci.mean > -1.0  # risk aversion costs PnL, less as gamma falls
    # through the mid: the inventory strategy's depth goes negative at large |q| when gamma is large
    if gamma == 1.0:
        bid, ask = agents["inventory"].quotes(np.array([3]), np.array([env.market.n_steps]))
        assert ask[0] < 0


@pytest.mark.slow
def test_inventory_strategy_cuts_risk_against_the_symmetric_benchmark():
    """On ``as2008`` (depths clipped at the mid), gamma = 0.1: the inventory strategy roughly halves the
    std of PnL and cuts the std of q_T by two thirds against the symmetric benchmark."""
    pnl_as, q_as = run_episodes(make_agent("avellaneda_stoikov", "as2008"))
    pnl_sym, q_sym = run_episodes(make_agent("avellaneda_stoikov_symmetric", "as2008"))
    std = {name: float(np.std(x, ddof=1)) for name, x in
           {"pnl_as": pnl_as, "pnl_sym": pnl_sym, "q_as": q_as, "q_sym": q_sym}.items()}
    print(f"AS: mean PnL {pnl_as.mean():.2f} std {std['pnl_as']:.2f}, std q_T {std['q_as']:.2f}; "
          f"symmetric: mean PnL {pnl_sym.mean():.2f} std {std['pnl_sym']:.2f}, std q_T {std['q_sym']:.2f}")
    assert std["pnl_as"] < 0.6 * std["pnl_sym"]
    assert std["q_as"] < 0.5 * std["q_sym"]
    # Loose ranges, to catch gross errors only.
    assert 3 < std["pnl_as"] < 9 and 9 < std["pnl_sym"] < 18
    assert 1.5 < std["q_as"] < 4 and 6 < std["q_sym"] < 11
    assert 55 < pnl_as.mean() < 75 and 55 < pnl_sym.mean() < 80
