"""The order-book env: checkers, determinism, the agent's orders in real queues, latency, fees, PnL accounting."""

from __future__ import annotations

import copy
import warnings
import zlib

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from helpers import assert_traces_equal, episode_ends, short_cst2010, vec_trace

import lobgym
from lobgym.book_simulation import BookSimulation
from lobgym.book_spaces import encode_book_action
from lobgym.config import BookEnvConfig, ConfigError, load_env_config
from lobgym.market.book import lob as B
from lobgym.market.constants import ASK, BID
from lobgym.presets import list_presets, read_yaml
from lobgym.simulation_base import ActionError


def book_presets() -> list[str]:
    return sorted(n for n, p in list_presets("envs").items() if read_yaml(p)["market"].get("kind") == "book")


def test_cst2010_preset_is_a_book_env():
    cfg = load_env_config("cst2010")
    assert isinstance(cfg, BookEnvConfig)
    assert cfg.market.flow.model == "cst" and cfg.market.n_steps == 300


@pytest.mark.parametrize("name", book_presets())
def test_env_checkers_pass_without_warnings(name):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    cfg = read_yaml(list_presets("envs")[name])
    cfg["market"].update({"horizon": 5 * cfg["market"]["dt"], "warmup": 10 * cfg["market"]["dt"]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = gymnasium.make("lobgym/MarketMaking-v0", config=cfg)
        gym_check_env(env.unwrapped)
        sb3_check_env(lobgym.MarketMakingEnv(cfg), warn=True)


def run(env, actions, seed):
    obs, _ = env.reset(seed=seed)
    out = [obs]
    rewards = []
    for a in actions:
        obs, r, term, trunc, info = env.step(a)
        out.append(obs)
        rewards.append(r)
        if term:
            break
    return np.array(out), np.array(rewards), info


def test_same_seed_same_episode_and_batch_matches_single():
    cfg = short_cst2010(horizon=8)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(8, 4)).astype(np.float32)
    env = lobgym.MarketMakingEnv(cfg)
    a = run(env, actions, seed=5)
    b = run(env, actions, seed=5)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    c = run(env, actions, seed=6)
    assert not np.array_equal(a[0], c[0])
    venv = lobgym.make_vec_env(cfg, n_envs=3, seed=4)
    obs = [venv.reset()]
    rewards = []
    for t in range(8):
        o, r, _, _ = venv.step(np.repeat(actions[t][None], 3, axis=0))
        obs.append(o)
        rewards.append(r)
    np.testing.assert_array_equal(np.array(obs)[:-1, 1], a[0][:-1])  # the last obs is the auto-reset one
    np.testing.assert_allclose(np.array(rewards)[:, 1], a[1], rtol=0, atol=1e-6)  # float32 rewards in a VecEnv


def test_pnl_decomposes_exactly_and_terms_sum_to_reward():
    cfg = short_cst2010(fees={"maker": {"per_unit": -0.002, "rate": 0.0001}, "taker": {"per_unit": 0.003}})
    cfg["action"]["market_order"] = 2
    cfg["reward"] = [{"term": "pnl"}, {"term": "fees"}, {"term": "spread_captured"},
                     {"term": "adverse_selection", "params": {"horizon": 20}}]
    env = lobgym.MarketMakingEnv(cfg)
    rng = np.random.default_rng(1)
    for seed in range(3):
        env.reset(seed=seed)
        sums = dict.fromkeys(["pnl", "fees", "spread_captured", "adverse_selection"], 0.0)
        while True:
            obs, r, term, _, info = env.step(rng.uniform(-1, 1, 5).astype(np.float32))
            assert r == pytest.approx(sum(info["reward_terms"].values()), abs=1e-12)
            for k, v in info["reward_terms"].items():
                sums[k] += v
            if term:
                break
        m = info["episode_metrics"]
        assert m["fills"] > 0 and m["taker_lots"] > 0
        assert m["pnl"] == pytest.approx(m["spread_pnl"] + m["inventory_pnl"] - m["fees"], abs=1e-9)
        assert sums["pnl"] + sums["fees"] == pytest.approx(m["pnl"], abs=1e-9)
        assert sums["spread_captured"] == pytest.approx(m["spread_pnl"], abs=1e-9)
        # with a markout horizon of the whole episode every fill is marked at the final mid, so spread +
        # markout = each fill's value at the final mid = the gross PnL (q0 = 0)
        assert sums["spread_captured"] + sums["adverse_selection"] == pytest.approx(sums["pnl"], abs=1e-9)


def agent_orders(env):
    sim = env.unwrapped.sim
    return sim.state.order[0, :, 0].copy()  # one order per side (the offsets codec)


def test_unchanged_quotes_keep_their_queue_position_and_price_changes_lose_it():
    cfg = short_cst2010(horizon=50)
    env = lobgym.MarketMakingEnv(cfg)
    env.reset(seed=3)
    codec = env.unwrapped.sim.codec
    quote = encode_book_action(codec, 2, 2, 3, 3)
    env.step(quote)
    first = agent_orders(env)
    book = env.unwrapped.sim.book
    assert (first != B.NO_ORDER).all()
    kept = 0
    for _ in range(10):  # the same action: where the priced tick and the size are unchanged, the order stays
        before = agent_orders(env)
        prices = [book.o_price[0, before[s] % book.orders.shape[1]] for s in (BID, ASK)]
        live = [B.order_slot(book, 0, before[s]) != B.NO_SLOT for s in (BID, ASK)]
        sizes = [book.o_qty[0, before[s] % book.orders.shape[1]] for s in (BID, ASK)]
        env.step(quote)
        after = agent_orders(env)
        for side in (BID, ASK):
            if after[side] == before[side]:
                kept += 1
                assert live[side] and sizes[side] == 3
            elif live[side] and sizes[side] == 3:  # replaced although live and full: the price must have moved
                assert book.o_price[0, after[side] % book.orders.shape[1]] != prices[side] or after[side] == B.NO_ORDER
    assert kept > 0
    # a size decrease keeps the order (and its place), a price change replaces it
    env.step(quote)
    kept = agent_orders(env)
    qty_before = [book.o_qty[0, kept[s] % book.orders.shape[1]] for s in (BID, ASK)]
    env.step(encode_book_action(codec, 2, 2, 1, 1))
    reduced = agent_orders(env)
    for s in (BID, ASK):
        if qty_before[s] > 1 and B.order_slot(book, 0, kept[s]) != B.NO_SLOT:
            assert reduced[s] == kept[s]
            assert book.o_qty[0, reduced[s] % book.orders.shape[1]] == 1
    env.step(encode_book_action(codec, 4, 4, 1, 1))
    moved = agent_orders(env)
    assert moved[BID] != reduced[BID] and moved[ASK] != reduced[ASK]
    assert B.order_slot(book, 0, reduced[BID]) == B.NO_SLOT  # the old ones are gone


def test_orders_arrive_after_their_latency():
    """With entry latency L, the agent's new order gets the sequence number right after the
    background limit orders that arrived in [t0, t0 + L): it sits behind exactly those."""
    latency = 0.6
    cfg = short_cst2010(latency={"entry": {"dist": "constant", "value": latency}, "cancel": {"dist": "constant",
                                                                                     "value": latency}})
    sim = BookSimulation(load_env_config(cfg), 1, tape_capacity=100_000)
    sim.seed(np.array([11], dtype=np.uint64))
    sim.reset()
    book, flow = sim.state.book, sim.state.flow
    from lobgym.market.book import flow as F

    checked = 0
    for step in range(15):
        seq0, tape0, t0 = int(book.next_seq[0]), int(flow.tape_len[0]), float(flow.t[0])
        offset = step % 3  # a new price every step: a new order each side
        sim.actions[0] = encode_book_action(sim.codec, offset, offset, 1, 1)
        sim.step(auto_reset=False)
        tape = flow.tape[0, tape0:flow.tape_len[0]]
        limits = np.isin(tape[:, F.TAPE_EVENT], [F.EVENT_LIMIT_BID, F.EVENT_LIMIT_ASK])
        before = int((limits & (tape[:, F.TAPE_T] < t0 + latency)).sum())
        assert (tape[:, F.TAPE_T] >= t0).all() and (tape[:, F.TAPE_T] <= t0 + 1.0).all()
        for side in (BID, ASK):
            oid = sim.state.order[0, side, 0]
            if oid == B.NO_ORDER:
                continue
            seq = oid // book.orders.shape[1]
            if seq < seq0:
                continue  # kept from an earlier step: the same price and size
            assert seq - seq0 in (before, before + 1), (step, side, seq - seq0, before)  # bid sent first
            checked += 1
    assert checked > 10


def test_fees_are_maker_on_passive_and_taker_on_aggressive_lots():
    cfg = short_cst2010(horizon=30, fees={"maker": {"per_unit": -0.002, "rate": 0.0}, "taker": {"per_unit": 0.003}})
    cfg["action"]["market_order"] = 3
    env = lobgym.MarketMakingEnv(cfg)
    codec = env.unwrapped.sim.codec
    env.reset(seed=2)
    rng = np.random.default_rng(3)
    while True:
        market = int(rng.integers(-3, 4)) if rng.random() < 0.3 else 0
        _, _, term, _, info = env.step(encode_book_action(codec, 0, 0, 2, 2, market))
        if term:
            break
    m = info["episode_metrics"]
    passive = m["fills"] - m["taker_lots"]
    assert passive > 0 and m["taker_lots"] > 0
    assert m["fees"] == pytest.approx(-0.002 * passive + 0.003 * m["taker_lots"], abs=1e-12)


def test_post_only_rejects_orders_that_arrive_marketable():
    late = {"entry": {"dist": "uniform", "low": 0.5, "high": 0.9}, "observation": 0.9}
    cfg = short_cst2010(horizon=60, latency=late)
    cfg["action"]["reference"] = "touch"
    env = lobgym.MarketMakingEnv(cfg)
    codec = env.unwrapped.sim.codec
    env.reset(seed=0)
    for t in range(60):
        _, _, term, _, info = env.step(encode_book_action(codec, t % 2, t % 2, 1, 1))
    assert info["episode_metrics"]["rejected"] > 0 and info["episode_metrics"]["taker_lots"] == 0
    cfg["market"]["post_only"] = False
    env = lobgym.MarketMakingEnv(cfg)
    env.reset(seed=0)
    for t in range(60):
        _, _, term, _, info = env.step(encode_book_action(codec, t % 2, t % 2, 1, 1))
    assert info["episode_metrics"]["rejected"] == 0 and info["episode_metrics"]["taker_lots"] > 0


def test_inventory_limit_holds_under_random_orders():
    cfg = short_cst2010(horizon=40, inventory={"initial": [-2, 2], "limit": 3})
    cfg["action"]["market_order"] = 5
    venv = lobgym.make_vec_env(cfg, n_envs=8, seed=0)
    venv.reset()
    rng = np.random.default_rng(0)
    sim = venv.sim
    for _ in range(40):
        venv.step(rng.uniform(-1, 1, size=(8, 5)).astype(np.float32))
        assert (np.abs(sim.state.inventory) <= 3).all()


def test_bad_actions_and_configs_name_the_field():
    env = lobgym.MarketMakingEnv(short_cst2010())
    env.reset(seed=0)
    with pytest.raises(ActionError, match=r"action\[1\] \(ask_offset\) = nan"):
        env.step(np.array([0, np.nan, 0, 0], dtype=np.float32))
    with pytest.raises(ActionError, match=r"action\[2\] \(bid_size\) = 1.5"):
        env.step(np.array([0, 0, 1.5, 0], dtype=np.float32))
    bad = short_cst2010(latency={"entry": {"dist": "constant", "value": 1.0}})
    with pytest.raises(ConfigError, match=r"latency.entry = 1 .*must be < dt = 1"):
        load_env_config(bad)
    bad = short_cst2010()
    bad["market"]["kind"] = "bok"
    with pytest.raises(ConfigError, match=r"market.kind = 'bok'.*allowed: reduced_form, book"):
        load_env_config(bad)
    bad = short_cst2010(s0=100.005)
    with pytest.raises(ConfigError, match=r"s0 = 100.005: must be a multiple of tick_size"):
        load_env_config(bad)
    bad = copy.deepcopy(short_cst2010())
    bad["observation"]["features"] = ["inventory", "depth", "inventory"]
    with pytest.raises(ConfigError, match=r"observation.features.*listed twice"):
        load_env_config(bad)


def test_observation_is_inside_its_bounds_and_shows_the_agents_queue():
    env = lobgym.MarketMakingEnv(short_cst2010(horizon=30))
    space = env.observation_space
    names = env.unwrapped.sim.feature_names
    obs, _ = env.reset(seed=1)
    codec = env.unwrapped.sim.codec
    for _ in range(30):
        assert space.contains(obs)
        obs, _, term, _, _ = env.step(encode_book_action(codec, 1, 1, 2, 2))
    q_bid = obs[names.index("queue.bid")]
    q_ask = obs[names.index("queue.ask")]
    assert q_bid >= -1 and q_ask >= -1
    sim = env.unwrapped.sim
    for side, value in ((BID, q_bid), (ASK, q_ask)):
        oid = sim.state.order[0, side, 0]
        expected = -1.0 if oid == B.NO_ORDER else B.queue_ahead(sim.book, 0, oid) / 10.0
        assert value == pytest.approx(expected)  # no observation delay in this preset


def test_book_baselines_quote_and_skew_against_inventory():
    from lobgym.agents import make_agent
    from lobgym.evaluation import evaluate

    cfg = load_env_config(short_cst2010())
    quoter = make_agent({"kind": "book_quoter", "params": {"offset": 1, "size": 2, "skew": 1.0, "max_inventory": 3}},
                        cfg)
    names = lobgym.MarketMakingEnv(cfg).unwrapped.sim.feature_names
    obs = np.zeros((3, len(names)), dtype=np.float32)
    obs[:, names.index("inventory")] = np.array([-3, 0, 2]) / cfg.inventory_scale
    actions, _ = quoter.predict(obs)
    codec = quoter.codec
    u = (actions + 1) / 2
    offsets = np.rint(u[:, :2] * codec.max_offset)
    sizes = np.rint(u[:, 2:4] * codec.max_size)
    np.testing.assert_array_equal(offsets, [[0, 4], [1, 1], [3, 0]])  # long: bid further, ask closer
    np.testing.assert_array_equal(sizes, [[2, 0], [2, 2], [2, 2]])  # at -3 it stops selling
    with pytest.raises(ConfigError, match="kind = 'avellaneda_stoikov': not available on the book env '.*'; it runs "
                                         "on market.kind = reduced_form; allowed there: book_quoter, random"):
        make_agent("avellaneda_stoikov", cfg)
    with pytest.raises(ConfigError, match="kind = 'book_quoter': not available on the reduced_form env 'as2008'; "
                                         "it runs on market.kind = book"):
        make_agent("book_quoter", "as2008")
    ev = evaluate(make_agent("book_quoter", cfg), cfg, episodes=4, seed=0)
    assert ev.summary["fills_mean"] > 0 and np.isfinite(ev.summary["spread_pnl_mean"])
    rnd = evaluate(make_agent("random", cfg), cfg, episodes=4, seed=0)
    assert rnd.metrics.shape == ev.metrics.shape


def test_informed_flow_makes_passive_fills_adversely_selected():
    """With a latent fundamental tilting market orders, the mid moves against the quoter after its
    fills: the 10-step markout of a passive quoter is much more negative than under pure ZI flow."""
    markouts = {}
    for informed in (None, {"rate": 0.1, "jump_ticks": 4.0, "kappa": 0.5}):
        cfg = short_cst2010(horizon=40, warmup=30, **({"informed": informed} if informed else {}))
        cfg["reward"] = [{"term": "spread_captured"}, {"term": "adverse_selection", "params": {"horizon": 10}}]
        venv = lobgym.make_vec_env(cfg, n_envs=48, seed=0)
        venv.reset()
        action = np.repeat(encode_book_action(venv.sim.codec, 0, 0, 1, 1)[None], 48, axis=0)
        total = np.zeros(48)
        for _ in range(40):
            venv.step(action)
            total += venv.sim.buffers.terms[:, 1]
        markouts[informed is not None] = (total.mean(), total.std(ddof=1) / np.sqrt(48))
    (zi, zi_se), (inf, inf_se) = markouts[False], markouts[True]
    assert inf < 0
    assert zi - inf > 4 * np.hypot(zi_se, inf_se), markouts


def test_serial_and_parallel_kernels_give_identical_episodes():
    """Everything a step returns, infos and episode counts included, is identical with the threaded kernel."""
    cfg = short_cst2010(horizon=10, warmup=10)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(25, 40, 4)).astype(np.float32)  # crosses an auto-reset
    serial, parallel = (vec_trace(lobgym.make_vec_env(cfg, n_envs=40, seed=3, parallel=p), actions)
                        for p in (False, True))
    assert episode_ends(parallel) == (2 * 40, 2 * 40)  # every ended episode reported in full
    assert_traces_equal(serial, parallel)


LATENCIES = [  # (entry, cancel): cancels before entries, after them, random either way
    ({"dist": "constant", "value": 0.001}, {"dist": "constant", "value": 0.2}),
    ({"dist": "constant", "value": 0.3}, {"dist": "constant", "value": 0.05}),
    ({"dist": "uniform", "low": 0.0, "high": 0.5}, {"dist": "exponential", "mean": 0.2, "cap": 0.6}),
]


@pytest.mark.slow
@pytest.mark.parametrize("preset", book_presets())
def test_inventory_stays_within_the_limit_under_any_actions_and_latencies(preset):
    """|q| <= limit and observations inside the space, for random actions that push against the limit,
    orders replaced while older ones can still fill during the cancel latency, and market orders."""
    gen = np.random.default_rng(zlib.crc32(preset.encode()))
    for k, (entry, cancel) in enumerate(LATENCIES):
        cfg = read_yaml(list_presets("envs")[preset])
        cfg["market"].update({"horizon": 60, "dt": 1.0, "warmup": 20, "inventory": {"initial": [-2, 2], "limit": 4},
                              "latency": {"entry": entry, "cancel": cancel}})
        cfg["action"].update({"max_size": 3, "market_order": 2 if k == 2 else 0})
        venv = lobgym.make_vec_env(cfg, n_envs=16, seed=k)
        obs = venv.reset()
        space = venv.observation_space
        lean = gen.choice([-1.0, 1.0], size=16)  # each env mostly buys or mostly sells
        worst = 0
        for _ in range(120):
            a = gen.uniform(-1, 1, size=(16, venv.action_space.shape[0])).astype(np.float32)
            push = gen.random(16) < 0.8
            a[push, 0] = -1.0  # at the touch on both sides, the leaning side large, the other small
            a[push, 1] = -1.0
            a[push, 2] = lean[push]
            a[push, 3] = -lean[push]
            obs, _, _, _ = venv.step(a)
            q = venv.sim.state.inventory
            worst = max(worst, int(np.abs(q).max()))
            assert np.abs(q).max() <= 4, (preset, k, q)
            assert all(space.contains(o) for o in obs), (preset, k)
        assert worst == 4, (preset, k, worst)  # the limit was reached: the check bit


@pytest.mark.slow
def test_tiny_ppo_and_sac_train_on_the_book_env():
    import torch
    from stable_baselines3 import PPO, SAC

    torch.set_num_threads(1)
    venv = lobgym.make_vec_env(short_cst2010(horizon=10, warmup=10), 2, seed=0)
    ppo = PPO("MlpPolicy", venv, n_steps=32, batch_size=64, n_epochs=1, seed=0, device="cpu").learn(64)
    sac = SAC("MlpPolicy", venv, learning_starts=16, batch_size=16, seed=0, device="cpu").learn(48)
    assert ppo.num_timesteps == 64 and sac.num_timesteps == 48
    actions, _ = ppo.predict(venv.reset(), deterministic=True)
    assert actions.shape == (2, 4) and venv.action_space.contains(actions[0])
