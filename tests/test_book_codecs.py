"""The order-book env's action codecs (offsets, spread_skew, ladder) and its multi-order engine.

The decode is checked against an oracle written from the tables in :mod:`lobgym.book_spaces`' docstring
(not from the kernel); the engine against its invariants (inventory limit counting every resting
order, one agent order per price, no cancels left pending, exact PnL decomposition), the queue
places of kept orders, determinism (threads, batch sizes, codecs that express the same quotes),
the checkers, the scales of the observation features and the config errors.
"""

from __future__ import annotations

import math
import warnings
import zlib

import gymnasium
import numba
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from helpers import assert_traces_equal, episode_ends, vec_trace

import lobgym
from lobgym.book_simulation import BookSimulation
from lobgym.book_spaces import BOOK_FEATURES, QUOTE_CAP, decode_book_one, encode_quotes
from lobgym.config import ConfigError, load_env_config
from lobgym.market.book import lob as B
from lobgym.market.constants import ASK, BID
from lobgym.presets import list_presets, read_yaml
from lobgym.simulation_base import ActionError

PRESETS = ("cst2010", "hawkes", "queue_reactive")
ALL_FEATURES = list(BOOK_FEATURES)


def env_cfg(preset: str = "cst2010", kind: str = "offsets", levels: int = 1, action: dict | None = None,
            observation: dict | None = None, reward: list | None = None, **market) -> dict:
    """A book preset with a short episode and warm-up, a small book, and the given codec."""
    cfg = read_yaml(list_presets("envs")[preset])
    cfg["market"].update({"horizon": 20, "dt": 1.0, "warmup": 30, "levels": 64, "max_orders": 256})
    cfg["market"].update(market)
    cfg["action"].update({"kind": kind, "levels": levels, **(action or {})})
    cfg["observation"].update(observation or {})
    if reward is not None:
        cfg["reward"] = reward
    return cfg


# ------------------------------------------------------------------------------ the decode oracle
def _u(a: float) -> float:
    return min(max((a + 1.0) / 2.0, 0.0), 1.0)


def _round(x: float) -> int:
    """The docstring's round: half away from zero."""
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def _round_even(x: float) -> int:
    """Half to even (np.round), what the offsets codec and every market order use: the offsets codec
    stays bit-identical to its earlier releases (the docstring's header promises half away from zero)."""
    return int(round(x))


def oracle_decode(codec, action, seen_bid: int, seen_ask: int, q: int):
    """(prices (2, K), lots (2, K), market lots) from the docstring of lobgym.book_spaces."""
    kind = ("offsets", "spread_skew", "ladder")[codec.kind]
    a = [min(max(float(x), -1.0), 1.0) for x in action]  # values beyond +-1 (action.clip) count as +-1
    m2 = seen_bid + seen_ask
    mid_bid = -(-m2 // 2) - 1  # ceil((b + a) / 2) - 1
    mid_ask = m2 // 2 + 1  # floor((b + a) / 2) + 1
    ref_bid, ref_ask = (mid_bid, mid_ask) if codec.reference == 0 else (seen_bid, seen_ask)
    k_levels = codec.levels
    if kind == "offsets":
        px = [[ref_bid - _round_even(_u(a[0]) * codec.max_offset)],
              [ref_ask + _round_even(_u(a[1]) * codec.max_offset)]]
        lots = [[_round_even(_u(a[2]) * codec.max_size)], [_round_even(_u(a[3]) * codec.max_size)]]
        base = 4
    else:
        h = _round(a[0] * codec.max_offset)
        s = _round(a[1] * codec.max_skew * q / codec.inventory_scale)
        bid0 = min(ref_bid - h - s, mid_bid)
        ask0 = max(ref_ask + h - s, mid_ask)
        if kind == "spread_skew":
            px = [[bid0], [ask0]]
            lots = [[min(max(_round(1 + a[2 + side] * codec.max_size), 0), codec.max_size)] for side in (0, 1)]
            base = 4
        else:
            g = 1 + _round(_u(a[2]) * (codec.max_spacing - 1))
            r = _u(a[5])
            weights = [r ** k for k in range(k_levels)]  # 0 ** 0 = 1: r = 0 puts everything at level 0
            norm = 0.0
            for w in weights:
                norm += w
            px = [[bid0 - k * g for k in range(k_levels)], [ask0 + k * g for k in range(k_levels)]]
            lots = []
            for side in (0, 1):
                total = _round(_u(a[3 + side]) * k_levels * codec.max_size)
                cum, given, row = 0.0, 0, []
                for k in range(k_levels):
                    cum += weights[k]
                    upto = _round(total * (cum / norm))
                    row.append(upto - given)
                    given = upto
                lots.append(row)
            base = 6
    market = _round_even(a[base] * codec.market_lots) if codec.market_lots > 0 else 0
    return np.array(px), np.array(lots), market


@numba.njit
def _decode_rows(actions, codec, st, market):
    for i in range(actions.shape[0]):
        market[i] = decode_book_one(i, actions, codec, st)


def kernel_decode(sim: BookSimulation, codec, actions: np.ndarray, bg: np.ndarray, q: np.ndarray):
    """The engine's decode of one action per env of ``sim`` (rows), from the given observed background
    best bid / ask and inventory."""
    st = sim.state
    st.seen_bg[:] = bg
    st.seen_inventory[:] = q
    st.want_px[:] = -7  # anything the decode leaves alone shows up
    st.want_lots[:] = -7
    market = np.zeros(len(actions), dtype=np.int64)
    _decode_rows(np.ascontiguousarray(actions, dtype=np.float32), codec, st, market)
    return st.want_px.copy(), st.want_lots.copy(), market


EDGE = np.array([-1.0, 0.0, 1.0], dtype=np.float32)
HALVES = np.array([-1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1 / 3, -1 / 3, 0.2, -0.6], dtype=np.float32)


def decode_inputs(n: int, width: int, seed: int):
    """Actions (uniform, edge values -1/0/+1, quarter and third steps where rounding halves bite, a few
    beyond +-1), observed quotes (one-tick and wide spreads, both parities of mid2) and inventories."""
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-1, 1, size=(n, width)).astype(np.float32)
    actions[: n // 4] = rng.choice(EDGE, size=(n // 4, width))
    actions[n // 4: n // 2] = rng.choice(HALVES, size=(n // 2 - n // 4, width))
    actions[:3] = [[-1.0] * width, [0.0] * width, [1.0] * width]
    beyond = rng.random((n, width)) < 0.02
    actions[beyond] = rng.choice(np.array([-3.0, -1.5, 1.5, 3.0], dtype=np.float32), size=int(beyond.sum()))
    bid = rng.integers(9_000, 9_100, size=n)
    spread = rng.choice([1, 1, 1, 2, 3, 4, 5, 8, 11], size=n)
    q = rng.integers(-20, 21, size=n)
    q[:5] = [0, 20, -20, 7, -3]
    return actions, np.stack([bid, bid + spread], axis=1), q


def codec_variants(sim: BookSimulation):
    """The sim's codec with other ranges, references and market orders (the kernel takes the codec
    as an argument: no rebuild)."""
    base = sim.codec
    for ref in (0, 1):
        for max_offset, max_size, market_lots in ((5, 3, 0), (4, 2, 2), (10, 5, 3), (1, 1, 1)):
            for max_skew, scale, spacing in ((5.0, 20.0, 3), (2.5, 7.0, 4), (0.0, 20.0, 1), (13.0, 3.0, 2)):
                yield base._replace(reference=ref, max_offset=max_offset, max_size=max_size, market_lots=market_lots,
                                    max_skew=max_skew, inventory_scale=scale, max_spacing=spacing)


CODECS = [("offsets", 1), ("spread_skew", 1)] + [("ladder", k) for k in range(1, 6)]


def decode_sim(kind: str, levels: int, n: int) -> BookSimulation:
    return BookSimulation(load_env_config(env_cfg(kind=kind, levels=levels)), n)


@pytest.mark.slow
@pytest.mark.parametrize("kind,levels", CODECS)
def test_decode_matches_the_docstring_oracle(kind, levels):
    n = 240
    sim = decode_sim(kind, levels, n)
    assert sim.state.want_px.shape == (n, 2, levels)
    checked = 0
    for v, codec in enumerate(codec_variants(sim)):
        assert codec.levels == levels
        actions, bg, q = decode_inputs(n, 7, seed=1000 * levels + 17 * codec.kind + v)
        px, lots, market = kernel_decode(sim, codec, actions, bg, q)
        for i in range(n):
            want_px, want_lots, want_market = oracle_decode(codec, actions[i], int(bg[i, 0]), int(bg[i, 1]), int(q[i]))
            where = f"{kind} K={levels} codec {codec} action {actions[i].tolist()} bg {bg[i].tolist()} q {q[i]}"
            np.testing.assert_array_equal(px[i], want_px, err_msg=f"prices: {where}")
            np.testing.assert_array_equal(lots[i], want_lots, err_msg=f"lots: {where}")
            assert market[i] == want_market, where
            if kind == "ladder":  # the lots are differences of rounded cumulative shares: they sum to the total
                for side in (BID, ASK):
                    assert lots[i, side].sum() == _round(_u(min(max(float(actions[i, 3 + side]), -1), 1))
                                                         * levels * codec.max_size), where
                    assert (lots[i, side] >= 0).all(), where
            checked += 1
        # quotes never cross the background mid; the first level is the nearest to it
        m2 = bg.sum(axis=1)
        assert (2 * px[:, BID, :] < m2[:, None]).all() and (2 * px[:, ASK, :] > m2[:, None]).all()
        if kind != "offsets":
            assert (px[:, BID, 0] <= -(-m2 // 2) - 1).all() and (px[:, ASK, 0] >= m2 // 2 + 1).all()
            assert (np.diff(px[:, BID, :], axis=1) < 0).all() and (np.diff(px[:, ASK, :], axis=1) > 0).all()
    assert checked == 32 * n


def test_decode_edge_actions_by_hand():
    """A few values worked out from the docstring, independently of the oracle above."""
    sim = decode_sim("ladder", 3, 4)
    codec = sim.codec._replace(reference=0, max_offset=5, max_size=3, market_lots=2, max_skew=5.0,
                               inventory_scale=20.0, max_spacing=3)
    bg = np.array([[100, 101], [100, 104], [100, 103], [100, 101]])  # one tick, wide even, wide odd mid2
    q = np.array([0, 0, 10, -20])
    actions = np.array([
        [0, 0, 0, 0, 0, 0, 0],  # h 0, g 2, totals round(4.5) = 5, r 0.5: shares 4/7 2/7 1/7 -> 3, 1, 1
        [-1, 0, -1, 1, -1, -1, 1],  # h -5 (clipped at the mid ticks), g 1, bid 9 lots at level 0, no ask; buy 2
        [0, 1, 1, 1, 1, 1, -0.75],  # skew round(1 * 5 * 10 / 20) = 3 down, g 3, 9 lots 3/3/3; sell round(1.5) = 2
        [1, 1, 0, -1, 1, 1, -0.25],  # h 5, skew round(5 * -20 / 20) = -5 up; market round(-0.5) = 0 (half to even)
    ], dtype=np.float32)
    px, lots, market = kernel_decode(sim, codec, actions, bg, q)
    np.testing.assert_array_equal(px[0], [[100, 98, 96], [101, 103, 105]])
    np.testing.assert_array_equal(lots[0], [[3, 1, 1], [3, 1, 1]])
    np.testing.assert_array_equal(px[1], [[101, 100, 99], [103, 104, 105]])  # mid 102: ticks 101 and 103
    np.testing.assert_array_equal(lots[1], [[9, 0, 0], [0, 0, 0]])
    # mid2 203: mid ticks 101 / 102; bid min(101 - 3, 101) = 98, ask max(102 - 3, 102) = 102 (never past the mid)
    np.testing.assert_array_equal(px[2], [[98, 95, 92], [102, 105, 108]])
    np.testing.assert_array_equal(lots[2], [[3, 3, 3], [3, 3, 3]])
    np.testing.assert_array_equal(px[3], [[min(100 - 5 + 5, 100), 98, 96], [101 + 5 + 5, 113, 115]])
    np.testing.assert_array_equal(lots[3], [[0, 0, 0], [3, 3, 3]])
    np.testing.assert_array_equal(market, [0, 2, -2, 0])

    sim = decode_sim("spread_skew", 1, 3)
    codec = sim.codec._replace(reference=1, max_offset=5, max_size=3, market_lots=0)
    actions = np.array([[0, 0, 0, 0], [-0.2, 0, -1, 1], [0.5, 0, -0.5, 0.5]], dtype=np.float32)
    px, lots, _ = kernel_decode(sim, codec, actions, np.array([[100, 101], [100, 106], [100, 106]]), np.zeros(3))
    # the zero action: one lot at the touch; h = -1 improves a wide spread (sizes clip(1 - 3) = 0 and
    # clip(1 + 3) = 3); h = round(2.5) = 3 ticks, sizes clip(round(-0.5)) = 0 and round(2.5) = 3 (half away
    # from zero)
    np.testing.assert_array_equal(px[:, :, 0], [[100, 101], [101, 105], [97, 109]])
    np.testing.assert_array_equal(lots[:, :, 0], [[1, 1], [0, 3], [0, 3]])

    # offsets: the zero action is half of max_offset = 5 away, round(2.5) = 2 ticks, and round(1.5) = 2 lots:
    # halves to even as np.round, as in the releases before the other codecs (not half away from zero)
    sim = decode_sim("offsets", 1, 2)
    codec = sim.codec._replace(reference=0, max_offset=5, max_size=3, market_lots=3)
    actions = np.array([[0, 0, 0, 0, 0], [-1, 1, -1, 1, 0.5]], dtype=np.float32)
    px, lots, market = kernel_decode(sim, codec, actions, np.array([[100, 101], [100, 103]]), np.zeros(2))
    np.testing.assert_array_equal(px[:, :, 0], [[98, 103], [101, 107]])
    np.testing.assert_array_equal(lots[:, :, 0], [[2, 2], [0, 3]])
    np.testing.assert_array_equal(market, [0, 2])  # round(1.5) = 2


# ------------------------------------------------------------------------------ encode_quotes
@pytest.mark.parametrize("kind,levels", CODECS)
def test_encode_quotes_round_trips_through_the_decode(kind, levels):
    n = 200
    sim = decode_sim(kind, levels, n)
    rng = np.random.default_rng(levels + 10 * len(kind))
    for codec in list(codec_variants(sim))[::5]:
        top = codec.levels * codec.max_size if kind == "ladder" else codec.max_size
        bid_off = rng.integers(0, codec.max_offset + 1, size=n)
        ask_off = rng.integers(0, codec.max_offset + 1, size=n) if kind == "offsets" else bid_off
        bid_size, ask_size = rng.integers(0, top + 1, size=(2, n))
        market = rng.integers(-codec.market_lots, codec.market_lots + 1, size=n)
        actions = encode_quotes(codec, bid_off, ask_off, bid_size, ask_size, market)
        width = (6 if kind == "ladder" else 4) + (codec.market_lots > 0)
        assert actions.dtype == np.float32 and actions.shape == (n, width)
        assert (np.abs(actions) <= 1).all()
        actions = np.pad(actions, ((0, 0), (0, 7 - actions.shape[1])))
        _, bg, q = decode_inputs(n, 1, seed=3)
        px, lots, got_market = kernel_decode(sim, codec, actions, bg, q)  # q does not matter: no skew
        m2 = bg.sum(axis=1)
        ref = np.stack([-(-m2 // 2) - 1, m2 // 2 + 1], axis=1) if codec.reference == 0 else bg
        np.testing.assert_array_equal(px[:, BID, 0], ref[:, BID] - bid_off)
        np.testing.assert_array_equal(px[:, ASK, 0], ref[:, ASK] + ask_off)
        np.testing.assert_array_equal(lots[:, BID, 0], bid_size)
        np.testing.assert_array_equal(lots[:, ASK, 0], ask_size)
        assert (lots[:, :, 1:] == 0).all()  # a ladder puts everything at its first level
        np.testing.assert_array_equal(got_market, market if codec.market_lots > 0 else 0)
    if kind != "offsets":
        with pytest.raises(ValueError, match="bid_offset must equal ask_offset"):
            encode_quotes(sim.codec, 1, 2, 1, 1)


def codec_trace(cfg: dict, quotes: np.ndarray, seed: int):
    """vec_trace of ``quotes`` (T, N, 5: bid offset, ask offset, bid size, ask size, market) in ``cfg``'s codec."""
    venv = lobgym.make_vec_env(cfg, n_envs=quotes.shape[1], seed=seed, parallel=False)
    codec = venv.sim.codec
    actions = np.stack([encode_quotes(codec, *np.moveaxis(q, -1, 0)) for q in quotes])
    return vec_trace(venv, actions)


@pytest.mark.parametrize("reference,latency", [("mid", None), ("touch", {
    "entry": {"dist": "uniform", "low": 0.0, "high": 0.5}, "cancel": {"dist": "exponential", "mean": 0.2, "cap": 0.6},
    "observation": 0.3})])
def test_the_same_quotes_through_every_codec_give_bit_identical_episodes(reference, latency):
    """Equal offsets, unskewed, the same reference: offsets, spread_skew and ladder (K = 1, and K = 4
    with everything at the first level, which runs the flow's general multi-order path) give the same
    episodes to the bit with the same seeds (common random numbers)."""
    market = {"horizon": 15, "inventory": {"initial": [-2, 2], "limit": 6}, **({"latency": latency} if latency else {})}
    rng = np.random.default_rng(7)
    t, n = 35, 6  # crosses two auto-resets
    off = rng.integers(0, 6, size=(t, n))
    quotes = np.stack([off, off, rng.integers(0, 4, size=(t, n)), rng.integers(0, 4, size=(t, n)),
                       rng.integers(-2, 3, size=(t, n))], axis=-1)
    action = {"reference": reference, "max_offset": 5, "max_size": 3, "market_order": 2}
    obs = {"features": ALL_FEATURES}
    traces = {(kind, k): codec_trace(env_cfg(kind=kind, levels=k, action=action, observation=obs, **market), quotes,
                                     seed=11)
              for kind, k in (("offsets", 1), ("spread_skew", 1), ("ladder", 1), ("ladder", 4))}
    base = traces[("offsets", 1)]
    fills = sum(s["infos"][i]["episode_metrics"]["fills"] for s in base[1:] for i in np.flatnonzero(s["dones"]))
    assert fills > 0
    for key, trace in traces.items():
        try:
            assert_traces_equal(base, trace)  # names the step and the field
        except AssertionError as err:
            raise AssertionError(f"{key} differs from offsets: {err}") from None


# ------------------------------------------------------------------------------ spread_skew's zero action
def test_spread_skew_zero_action_quotes_one_lot_at_the_reference_and_trades_in_every_env():
    cfg = read_yaml(list_presets("envs")["cst2010"])
    cfg["market"].update({"horizon": 40, "warmup": 60})
    cfg["action"]["kind"] = "spread_skew"
    n = 8
    sim = BookSimulation(load_env_config(cfg), n)
    sim.seed(np.arange(100, 100 + n, dtype=np.uint64))
    sim.reset()
    sim.actions[:] = 0.0
    first = True
    while True:
        m2 = sim.state.seen_bg.sum(axis=1)
        b = sim.step(auto_reset=False)
        if first:  # the mid reference ticks, one lot each
            np.testing.assert_array_equal(sim.state.want_px[:, BID, 0], -(-m2 // 2) - 1)
            np.testing.assert_array_equal(sim.state.want_px[:, ASK, 0], m2 // 2 + 1)
            assert (sim.state.want_lots == 1).all()
            first = False
        if b.dones.all():
            break
    fills = b.metrics[:, sim.metric_names.index("fills")]
    assert (fills > 0).all(), fills


# ------------------------------------------------------------------------------ engine invariants
INVARIANT_RUNS = [  # (entry, cancel, observation delay, post_only, market_order, levels)
    ({"dist": "constant", "value": 0.001}, {"dist": "constant", "value": 0.2}, 0.0, True, 2, 3),
    ({"dist": "constant", "value": 0.3}, {"dist": "constant", "value": 0.05}, 0.5, False, 2, 4),
    ({"dist": "uniform", "low": 0.0, "high": 0.5}, {"dist": "exponential", "mean": 0.2, "cap": 0.6}, 0.9, True, 3, 5),
    ({"dist": "exponential", "mean": 0.1, "cap": 0.8}, {"dist": "uniform", "low": 0.0, "high": 0.4}, 0.2, False, 3, 5),
]
LIMIT = 5


def agent_book_orders(book, i: int, side: int) -> dict[int, tuple[int, int]]:
    """{order id: (price, lots)} of every agent order resting (or parked) on ``side`` of book ``i``,
    read from the order records, independently of the engine's bookkeeping."""
    m = book.orders.shape[1]
    live = (book.o_status[i] != B.FREE) & (book.o_owner[i] == B.OWNER_AGENT) & (book.o_side[i] == side)
    return {int(book.o_seq[i, s]) * m + int(s): (int(book.o_price[i, s]), int(book.o_qty[i, s]))
            for s in np.flatnonzero(live)}


def check_orders(sim: BookSimulation, where: str) -> None:
    st, book = sim.state, sim.book
    assert (st.pend == B.NO_ORDER).all(), f"{where}: cancels left pending"
    for i in range(sim.n_envs):
        q = int(st.inventory[i])
        assert abs(q) <= LIMIT, f"{where}, env {i}: q = {q}"
        for side in (BID, ASK):
            in_book = agent_book_orders(book, i, side)
            ids = [int(o) for o in st.order[i, side] if B.order_slot(book, i, o) != B.NO_SLOT]
            assert sorted(ids) == sorted(in_book), f"{where}, env {i}, side {side}: tracked {ids}, in book {in_book}"
            prices = [in_book[o][0] for o in ids]
            assert len(set(prices)) == len(prices), f"{where}, env {i}, side {side}: two orders at one price {prices}"
            resting = sum(lots for _, lots in in_book.values())
            # the limit counts every resting order: all of them filling keeps |q| within it
            assert (q + resting if side == BID else resting - q) <= LIMIT, (where, i, side, q, resting)


@pytest.mark.parametrize("preset", PRESETS)
def test_multi_order_invariants_under_random_actions_and_latencies(preset):
    """Ladders of 3 to 5 orders per side, random actions pushing against the inventory limit, random
    entry / cancel latencies (either order), observation delays, post_only on and off, market orders:
    after every step |q| <= limit even if every resting order fills, every agent order in the book is
    tracked in ``state.order`` on its side (and only those), at most one per price, no cancel left
    pending; the step PnL is spread captured + q * mid change, the episode PnL its sum net of fees,
    and the reward terms sum to the reward; observations stay inside the space."""
    gen = np.random.default_rng(zlib.crc32(preset.encode()))
    n, horizon = 12, 40
    reward = [{"term": "pnl"}, {"term": "fees"}, {"term": "spread_captured"},
              {"term": "running_inventory_penalty", "params": {"phi": 0.001}}]
    worst = 0
    for r, (entry, cancel, seen, post_only, market_order, levels) in enumerate(INVARIANT_RUNS):
        cfg = env_cfg(preset, kind="ladder", levels=levels, reward=reward,
                      action={"max_size": 2, "market_order": market_order, "reference": ("mid", "touch")[r % 2]},
                      observation={"features": ALL_FEATURES},
                      horizon=horizon, inventory={"initial": [-2, 2], "limit": LIMIT}, post_only=post_only,
                      latency={"entry": entry, "cancel": cancel, "observation": seen},
                      fees={"maker": {"per_unit": -0.002, "rate": 0.0001}, "taker": {"per_unit": 0.003}})
        sim = BookSimulation(load_env_config(cfg), n)
        low, high = sim.observation_bounds()
        names = sim.metric_names
        for episode in range(2):
            sim.seed(np.arange(n, dtype=np.uint64) + 100 * r + 10 * episode)
            sim.reset()
            check_orders(sim, f"{preset} run {r} reset")
            lean = gen.choice([-1.0, 1.0], size=n)
            net = np.zeros(n)
            for t in range(horizon):
                a = gen.uniform(-1, 1, size=sim.actions.shape).astype(np.float32)
                push = gen.random(n) < 0.5  # inside the spread, the leaning side's total large, the other small
                a[push, 0] = -1.0
                a[push, 3] = lean[push]
                a[push, 4] = -lean[push]
                edge = gen.random(sim.actions.shape) < 0.1
                a[edge] = gen.choice(np.array([-1.0, 0.0, 1.0], dtype=np.float32), size=int(edge.sum()))
                sim.actions[:] = a
                q_before, mid_before = sim.state.inventory.copy(), sim.state.mid.copy()
                b = sim.step(auto_reset=False)
                out, st = sim.outcome, sim.state
                where = f"{preset} run {r} episode {episode} step {t}"
                check_orders(sim, where)
                worst = max(worst, int(np.abs(st.inventory).max()))
                np.testing.assert_array_equal(out.mid_before, mid_before)
                np.testing.assert_array_equal(out.inventory_before, q_before, err_msg=where)
                np.testing.assert_allclose(out.pnl, out.spread_captured + st.inventory * (st.mid - mid_before),
                                           rtol=0, atol=1e-9, err_msg=where)
                np.testing.assert_allclose(b.terms.sum(axis=1), b.rewards, rtol=0, atol=1e-12, err_msg=where)
                np.testing.assert_allclose(b.terms[:, 0] + b.terms[:, 1], out.pnl - out.fee, rtol=0, atol=1e-12)
                np.testing.assert_allclose(b.terms[:, 2], out.spread_captured, rtol=0, atol=1e-12)
                assert ((b.obs >= low) & (b.obs <= high)).all(), where
                net += out.pnl - out.fee
            assert b.dones.all()
            m = {k: b.metrics[:, j] for j, k in enumerate(names)}
            np.testing.assert_allclose(m["pnl"], m["spread_pnl"] + m["inventory_pnl"] - m["fees"], rtol=0, atol=1e-9)
            np.testing.assert_allclose(m["pnl"], net, rtol=0, atol=1e-9)
            assert m["fills"].sum() > 0 and m["taker_lots"].sum() > 0
    assert worst == LIMIT, worst  # the limit was reached: the checks bit


# ------------------------------------------------------------------------------ queue places
def ladder_action(codec, half: int, gap: int, bid_total: int, ask_total: int, r: float) -> np.ndarray:
    """The ladder action with these ticks, spacing, totals and decay (skew 0)."""
    top = codec.levels * codec.max_size
    return np.array([half / codec.max_offset, 0.0, 2.0 * (gap - 1) / (codec.max_spacing - 1) - 1.0,
                     2.0 * bid_total / top - 1.0, 2.0 * ask_total / top - 1.0, 2.0 * r - 1.0], dtype=np.float32)


def best_agent_order(sim, i, side) -> int:
    st, book = sim.state, sim.book
    live = [int(o) for o in st.order[i, side] if B.order_slot(book, i, o) != B.NO_SLOT]
    if not live:
        return B.NO_ORDER
    price = {o: book.o_price[i, B.order_slot(book, i, o)] for o in live}
    return max(live, key=lambda o: price[o]) if side == BID else min(live, key=lambda o: price[o])


def background_best(book, i, side) -> int | None:
    bg = (book.o_status[i] == B.RESTING) & (book.o_owner[i] == B.OWNER_BACKGROUND) & (book.o_side[i] == side)
    prices = book.o_price[i][bg]
    if not len(prices):
        return None
    return int(prices.max() if side == BID else prices.min())


def test_kept_ladder_levels_keep_their_ids_and_queue_places():
    """A constant ladder action keeps every level whose price and size did not change (same id, lots
    ahead never growing), each order with its own place; fewer lots at a level reduce the order (same
    id), more lots replace it, prices no longer wanted are cancelled. The queue feature shows the lots
    ahead of the best-priced order, quotes its distance from the background mid."""
    cfg = env_cfg(kind="ladder", levels=3, action={"max_size": 3, "max_spacing": 3, "max_offset": 5},
                  observation={"features": ALL_FEATURES}, horizon=80)
    n = 16
    sim = BookSimulation(load_env_config(cfg), n)
    names = sim.feature_names
    depth_scale = float(cfg["observation"]["depth_scale"])
    max_offset = sim.codec.max_offset
    sim.seed(np.arange(n, dtype=np.uint64) + 40)
    sim.reset()
    full = ladder_action(sim.codec, 1, 2, 6, 6, 1.0)  # 2 lots at each of 3 levels 2 ticks apart, 1 tick out
    thin = ladder_action(sim.codec, 1, 2, 3, 3, 1.0)  # 1 lot each
    no_ask = ladder_action(sim.codec, 1, 2, 6, 0, 1.0)
    schedule = ([full] * 8 + [thin] + [thin] * 3 + [full] + [no_ask]) * 5
    counts = dict.fromkeys(("kept", "kept_live", "several_kept", "reduced", "replaced", "cancelled", "no_side"), 0)
    book = sim.book
    for t, action in enumerate(schedule):
        before = [[{int(o): (int(book.o_price[i, s]), int(book.o_qty[i, s]), int(B.queue_ahead(book, i, o)))
                    for o in sim.state.order[i, side] if (s := B.order_slot(book, i, o)) != B.NO_SLOT}
                   for side in (BID, ASK)] for i in range(n)]
        sim.actions[:] = action
        obs = sim.step(auto_reset=False).obs
        st = sim.state
        for i in range(n):
            for side in (BID, ASK):
                kept_here = 0
                for oid, (price, qty, ahead) in before[i][side].items():
                    where = f"step {t}, env {i}, side {side}, order {oid} at {price} x {qty}"
                    wanted = [k for k in range(3) if st.want_px[i, side, k] == price and st.want_lots[i, side, k] > 0]
                    slot = B.order_slot(book, i, oid)
                    if not wanted:  # the price is no longer wanted: cancelled (or filled first)
                        assert slot == B.NO_SLOT and oid not in st.order[i, side], where
                        counts["cancelled"] += 1
                        continue
                    (k,) = wanted
                    lots = st.want_lots[i, side, k]
                    if lots > qty:  # more lots: a new order, the old one is gone
                        assert st.order[i, side, k] != oid and slot == B.NO_SLOT, where
                        counts["replaced"] += 1
                        continue
                    assert st.order[i, side, k] == oid, where  # kept or reduced: the same order at that level
                    counts["reduced" if lots < qty else "kept"] += 1
                    if slot != B.NO_SLOT:
                        assert book.o_price[i, slot] == price and book.o_qty[i, slot] <= lots, where
                        after = B.queue_ahead(book, i, oid)
                        assert 0 <= after <= ahead, f"{where}: {ahead} lots ahead before, {after} after"
                        counts["kept_live"] += 1
                        kept_here += 1
                counts["several_kept"] += kept_here >= 2
                best = best_agent_order(sim, i, side)
                q_obs = obs[i, names.index(f"queue.{('bid', 'ask')[side]}")]
                quote_obs = obs[i, names.index(f"quotes.{('bid', 'ask')[side]}")]
                if best == B.NO_ORDER:
                    assert q_obs == -1.0 and quote_obs == QUOTE_CAP, (t, i, side)
                    counts["no_side"] += 1
                else:
                    assert q_obs == np.float32(B.queue_ahead(book, i, best) / depth_scale), (t, i, side)
                    price = book.o_price[i, B.order_slot(book, i, best)]
                    bg_bid, bg_ask = background_best(book, i, BID), background_best(book, i, ASK)
                    if bg_bid is not None and bg_ask is not None:
                        assert (bg_bid, bg_ask) == tuple(st.seen_bg[i]), (t, i)
                        dist = (bg_bid + bg_ask - 2 * price) / 2 if side == BID else (2 * price - bg_bid - bg_ask) / 2
                        assert quote_obs == np.float32(min(max(dist / max_offset, -QUOTE_CAP), QUOTE_CAP)), (t, i, side)
    assert min(counts.values()) > 0, counts
    assert counts["kept_live"] > 10 * n and counts["several_kept"] > 2 * n, counts


# ------------------------------------------------------------------------------ determinism
@pytest.mark.slow
@pytest.mark.parametrize("kind,levels", [("ladder", 4), ("spread_skew", 1)])
def test_serial_and_threaded_kernels_give_identical_episodes(kind, levels):
    cfg = env_cfg(kind=kind, levels=levels, action={"market_order": 2}, observation={"features": ALL_FEATURES},
                  horizon=10, warmup=10, latency={"entry": {"dist": "uniform", "low": 0.0, "high": 0.4},
                                                  "cancel": {"dist": "exponential", "mean": 0.1, "cap": 0.5},
                                                  "observation": 0.2})
    rng = np.random.default_rng(1)
    dim = 7 if kind == "ladder" else 5
    actions = rng.uniform(-1, 1, size=(25, 40, dim)).astype(np.float32)
    serial, threaded = (vec_trace(lobgym.make_vec_env(cfg, n_envs=40, seed=3, parallel=p), actions)
                        for p in (False, True))
    assert episode_ends(threaded) == (2 * 40, 2 * 40)
    assert_traces_equal(serial, threaded)


def test_ladder_batch_matches_single_env():
    cfg = load_env_config(env_cfg(kind="ladder", levels=5, action={"market_order": 1},
                                  observation={"features": ALL_FEATURES}, horizon=12,
                                  latency={"entry": {"dist": "uniform", "low": 0.0, "high": 0.3},
                                           "cancel": {"dist": "uniform", "low": 0.0, "high": 0.3}}))
    single, batch = BookSimulation(cfg, 1), BookSimulation(cfg, 4)
    single.seed(np.array([21], dtype=np.uint64))
    batch.seed(np.array([5, 6, 21, 8], dtype=np.uint64))
    np.testing.assert_array_equal(single.reset()[0], batch.reset()[2])
    rng = np.random.default_rng(2)
    dones = 0
    for t in range(30):  # crosses two auto-resets
        a = rng.uniform(-1, 1, size=(4, 7)).astype(np.float32)
        single.actions[0] = a[2]
        batch.actions[:] = a
        x, y = single.step(auto_reset=True), batch.step(auto_reset=True)
        for field in ("obs", "rewards", "terms", "dones", "metrics", "terminal_obs"):
            np.testing.assert_array_equal(getattr(x, field)[0], getattr(y, field)[2], err_msg=f"step {t}: {field}")
        dones += int(x.dones[0])
    assert dones == 2


# ------------------------------------------------------------------------------ checkers
@pytest.mark.parametrize("kind,levels,market_order", [("offsets", 1, 0), ("spread_skew", 1, 2), ("ladder", 3, 0),
                                                      ("ladder", 5, 2)])
def test_env_checkers_pass_without_warnings_for_every_codec(kind, levels, market_order):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    cfg = env_cfg(kind=kind, levels=levels, action={"market_order": market_order},
                  observation={"features": ALL_FEATURES}, horizon=5, warmup=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = gymnasium.make("lobgym/MarketMaking-v0", config=cfg)
        assert env.observation_space.shape == (len(env.unwrapped.sim.feature_names),)
        assert env.action_space.shape == ((6 if kind == "ladder" else 4) + (market_order > 0),)
        gym_check_env(env.unwrapped)
        sb3_check_env(lobgym.MarketMakingEnv(cfg), warn=True)


# ------------------------------------------------------------------------------ observation scales
#: the settings the training presets use with the book envs
TRAINING_SETTINGS = {"kind": "spread_skew", "reference": "touch"}


@pytest.mark.parametrize("preset", PRESETS)
def test_every_feature_has_a_usable_scale_under_a_random_policy(preset, record_property):
    """With every feature on, ``action.kind: spread_skew``, ``reference: touch`` and
    ``observation.return_scale: 1`` (the settings the training presets use), a uniform random policy over
    10,000 steps (20 envs x 500 steps of the full preset, auto-reset) sees every observation entry with
    an empirical std within [0.05, 20] (``time_left`` is deterministic, but also within range), and
    every observation (terminal ones included) inside the observation space."""
    cfg = read_yaml(list_presets("envs")[preset])
    cfg["action"].update(TRAINING_SETTINGS)
    cfg["observation"].update({"features": ALL_FEATURES, "return_scale": 1})
    n, steps = 20, 500
    venv = lobgym.make_vec_env(cfg, n_envs=n, seed=zlib.crc32(preset.encode()), parallel=False)
    space = venv.observation_space
    names = venv.sim.feature_names
    rng = np.random.default_rng(0)
    rows = []
    obs = venv.reset()
    assert all(space.contains(o) for o in obs)
    ends = 0
    for _ in range(steps):
        obs, _, dones, infos = venv.step(rng.uniform(-1, 1, size=(n, venv.action_space.shape[0])).astype(np.float32))
        rows.append(obs.copy())
        for i in np.flatnonzero(dones):
            assert space.contains(infos[i]["terminal_observation"]), (preset, i)
            ends += 1
    assert ends >= n  # the episodes (300 steps) ended and restarted
    x = np.concatenate(rows)
    assert x.shape == (n * steps, len(names))
    outside = ~((x >= space.low) & (x <= space.high))
    assert not outside.any(), f"outside the space: {sorted({names[j] for j in np.flatnonzero(outside.any(0))})}"
    std = x.std(axis=0)
    record_property("feature_std", {k: round(float(s), 4) for k, s in zip(names, std, strict=True)})
    bad = {k: float(s) for k, s in zip(names, std, strict=True) if not 0.05 <= s <= 20}
    assert not bad, f"{preset}: features with std outside [0.05, 20]: {bad}"


# ------------------------------------------------------------------------------ config errors
def test_config_and_action_errors_name_the_field():
    bad = env_cfg(kind="spread_skew", levels=3)
    with pytest.raises(ConfigError, match=r"levels = 3: only kind ladder rests several orders.*spread_skew"):
        load_env_config(bad)
    with pytest.raises(ConfigError, match=r"action\.levels = 6"):
        load_env_config(env_cfg(kind="ladder", levels=6))
    with pytest.raises(ConfigError, match=r"action\.kind = 'laddder'.*'offsets', 'spread_skew' or 'ladder'"):
        load_env_config(env_cfg(kind="laddder"))
    env = lobgym.MarketMakingEnv(env_cfg(kind="ladder", levels=3, action={"market_order": 2}))
    env.reset(seed=0)
    ok = np.zeros(7, dtype=np.float32)
    for j, name in enumerate(("half_spread", "skew", "spacing", "bid_total", "ask_total", "decay", "market_order")):
        a = ok.copy()
        a[j] = np.nan if j % 2 else 1.5
        with pytest.raises(ActionError, match=rf"action\[{j}\] \({name}\) = {'nan' if j % 2 else '1.5'}: allowed"):
            env.step(a)
    env = lobgym.MarketMakingEnv(env_cfg(kind="spread_skew"))
    env.reset(seed=0)
    with pytest.raises(ActionError, match=r"action\[1\] \(skew\) = -2.0"):
        env.step(np.array([0, -2, 0, 0], dtype=np.float32))
