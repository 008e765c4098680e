"""N order-book market-making envs advanced by one fused kernel call.

Each step decodes the actions into orders, runs each book's flow with the agent's latency, settle fills, compute
reward terms, write the (delayed) observations and, at the horizon, episode metrics; auto-reset where asked.

A :class:`~lobgym.simulation_base.SimulationBase`, like the reduced-form
:class:`~lobgym.simulation.Simulation`, so the env and vector adapters take either.
"""

from __future__ import annotations

import numba
import numpy as np

from lobgym.book_spaces import (
    BOOK_FEATURES,
    BookObservationSpec,
    book_action_codec,
    book_action_dim,
    book_action_names,
    book_max_lots_per_side,
    book_observation_bounds,
    decode_book_one,
    feature_names,
    feature_widths,
    write_book_obs_one,
)
from lobgym.config import BookEnvConfig, Delay
from lobgym.flow_config import build_flow_params
from lobgym.market._jit import inline, kernel, parallel_kernel
from lobgym.market.book import flow as F
from lobgym.market.book import lob as B
from lobgym.market.book.step import (
    DELAY_CONSTANT,
    DELAY_EXPONENTIAL,
    DELAY_UNIFORM,
    AgentArrays,
    BookEpisodeStats,
    BookMarketParams,
    BookMarketState,
    BookStepOutcome,
    MarketScalars,
    begin_step_outcome,
    book_reset_one,
    book_step_one,
    make_book_outcome,
    make_book_state,
    make_book_stats,
)
from lobgym.market.constants import NO_INVENTORY_LIMIT
from lobgym.market.rng import make_rng
from lobgym.metrics import BOOK_METRICS, write_book_metrics_one
from lobgym.rewards import reset_reward_state_one, reward_one
from lobgym.simulation_base import PARALLEL_CHUNKS, SimulationBase, count_done
from lobgym.spaces import find_bad_action

#: A book env step is ~1000x a reduced-form one: threads pay off from a handful of envs (measured on 2
#: cores: 0.81x at 4 books, 1.26x at 8 - docs/performance.md).
BOOK_PARALLEL_MIN_ENVS = 8


def _delay(d: Delay) -> tuple[int, float, float]:
    if d.dist == "constant":
        return DELAY_CONSTANT, float(d.value), 0.0
    if d.dist == "uniform":
        return DELAY_UNIFORM, float(d.low), float(d.high)
    return DELAY_EXPONENTIAL, float(d.mean), float(d.cap)


def book_market_params(cfg: BookEnvConfig) -> BookMarketParams:
    """Kernel parameters for a validated book-market config."""
    m = cfg.market
    entry, cancel = _delay(m.latency.entry), _delay(m.latency.cancel)
    low, high = m.inventory.bounds
    return BookMarketParams(
        tick_size=float(m.tick_size), s0_tick=m.s0_tick, n_steps=m.n_steps, dt=float(m.dt), warmup=float(m.warmup),
        seed_depth=m.initial_book.depth, seed_per_level=m.initial_book.orders_per_level,
        entry_kind=entry[0], entry_a=entry[1], entry_b=entry[2],
        cancel_kind=cancel[0], cancel_a=cancel[1], cancel_b=cancel[2],
        obs_delay=float(m.latency.observation),
        maker_unit=float(m.fees.maker.per_unit), maker_rate=float(m.fees.maker.rate),
        taker_unit=float(m.fees.taker.per_unit), taker_rate=float(m.fees.taker.rate),
        post_only=bool(m.post_only),
        inventory_limit=int(m.inventory.limit) if m.inventory.limit is not None else int(NO_INVENTORY_LIMIT),
        q0_low=int(low), q0_high=int(high),
        ewma_alpha=1.0 - 0.5 ** (1.0 / cfg.observation.flow_halflife),
        flow=build_flow_params(m.flow, m.informed),
    )


@inline
def _step_env(i, st, stats, out, p, rng, actions, codec, rspec, rstate, ospec, buf, auto_reset):
    market = decode_book_one(i, actions, codec, st)
    begin_step_outcome(out, i)
    book_step_one(i, st, stats, out, p, rng, market)
    buf.rewards[i] = reward_one(i, rspec, out, st, stats, p, rstate, buf.terms)
    done = out.done[i]
    buf.dones[i] = done
    write_book_obs_one(i, ospec, st, p, buf.obs)
    if not done:
        return 0
    write_book_metrics_one(i, st, stats, buf.metrics)
    if auto_reset:
        for j in range(buf.obs.shape[1]):
            buf.terminal_obs[i, j] = buf.obs[i, j]
        _reset_env(i, st, stats, p, rng, rstate, ospec, buf)
    return 1


@inline
def _reset_env(i, st, stats, p, rng, rstate, ospec, buf):
    book_reset_one(i, st, stats, p, rng)
    reset_reward_state_one(i, rstate)
    write_book_obs_one(i, ospec, st, p, buf.obs)


@kernel
def _step_chunk(lo, hi, st, stats, out, p, rng, actions, codec, rspec, rstate, ospec, buf, auto_reset):
    n_done = 0
    for i in range(np.uint64(lo), np.uint64(hi)):  # unsigned: no negative-index wraparound (lobgym.simulation)
        n_done += _step_env(i, st, stats, out, p, rng, actions, codec, rspec, rstate, ospec, buf, auto_reset)
    return n_done


@kernel
def _reset_chunk(lo, hi, st, stats, p, rng, rstate, ospec, buf, mask):
    for i in range(np.uint64(lo), np.uint64(hi)):
        if mask[i]:
            _reset_env(i, st, stats, p, rng, rstate, ospec, buf)


def _step_all(st, stats, out, p, rng, actions, codec, rspec, rstate, ospec, buf, auto_reset):
    bad = find_bad_action(actions, codec.clip)
    if bad >= 0:
        return -1 - bad
    # np.int64(0), not 0: a literal 0 would make numba build the whole step a second time, apart from the
    # threaded kernels' int64 bounds (a cold start paid ~39 s for it)
    return _step_chunk(np.int64(0), st.step.shape[0], st, stats, out, p, rng, actions, codec, rspec, rstate, ospec,
                       buf, auto_reset)


def _reset_all(st, stats, p, rng, rstate, ospec, buf, mask):
    _reset_chunk(np.int64(0), st.step.shape[0], st, stats, p, rng, rstate, ospec, buf, mask)


# The parallel kernels. numba's parallel backend cannot hand a NamedTuple that nests other
# NamedTuples (the market state holds the book, the flow and the fill log; the params hold the flow's)
# to its worker functions, so the state and params are taken apart before the prange and put back
# together inside it; each chunk then calls a kernel, as in lobgym.simulation.
@kernel
def _join(book, flow, fills, a, s, fp):
    """The market state and params from the parts the parallel kernels pass around.

    By keyword, so that the order of the fields cannot be got wrong; a field left out fails the compile.
    """
    st = BookMarketState(
        book=book, flow=flow, fills=fills,
        step=a.step, mid=a.mid, mid2=a.mid2, cash=a.cash, inventory=a.inventory, fees=a.fees, order=a.order,
        pend=a.pend, want_px=a.want_px, want_lots=a.want_lots, plan=a.plan, seen_px=a.seen_px,
        seen_qty=a.seen_qty, seen_queue=a.seen_queue, seen_inventory=a.seen_inventory, seen_bg=a.seen_bg,
        seen_mid2=a.seen_mid2, seen_quote=a.seen_quote, seen_fills=a.seen_fills, seen_trades=a.seen_trades,
        trade_last=a.trade_last, trade_ewma=a.trade_ewma, var_ewma=a.var_ewma, last_fill=a.last_fill)
    p = BookMarketParams(
        tick_size=s.tick_size, s0_tick=s.s0_tick, n_steps=s.n_steps, dt=s.dt, warmup=s.warmup,
        seed_depth=s.seed_depth, seed_per_level=s.seed_per_level, entry_kind=s.entry_kind, entry_a=s.entry_a,
        entry_b=s.entry_b, cancel_kind=s.cancel_kind, cancel_a=s.cancel_a, cancel_b=s.cancel_b,
        obs_delay=s.obs_delay, maker_unit=s.maker_unit, maker_rate=s.maker_rate, taker_unit=s.taker_unit,
        taker_rate=s.taker_rate, post_only=s.post_only, inventory_limit=s.inventory_limit, q0_low=s.q0_low,
        q0_high=s.q0_high, ewma_alpha=s.ewma_alpha,
        flow=fp)
    return st, p


@kernel
def _step_parts(lo, hi, book, flow, fills, arrays, scalars, fp, stats, out, rng, actions, codec, rspec, rstate, ospec,
                buf, auto_reset):
    st, p = _join(book, flow, fills, arrays, scalars, fp)
    return _step_chunk(lo, hi, st, stats, out, p, rng, actions, codec, rspec, rstate, ospec, buf, auto_reset)


@kernel
def _reset_parts(lo, hi, book, flow, fills, arrays, scalars, fp, stats, rng, rstate, ospec, buf, mask):
    st, p = _join(book, flow, fills, arrays, scalars, fp)
    _reset_chunk(lo, hi, st, stats, p, rng, rstate, ospec, buf, mask)


# numba's parallel backend cannot pass NamedTuples that nest NamedTuples to its workers, so the
# parallel kernels take the state and params in parts (book, flow, fill log, the agent's arrays,
# the scalar params, the flow params) and each chunk puts them back together in a kernel.
def _step_all_chunked(book, flow, fills, arrays, scalars, fp, stats, out, rng, actions, codec, rspec, rstate, ospec,
                      buf, auto_reset):
    bad = find_bad_action(actions, codec.clip)
    if bad >= 0:
        return -1 - bad
    n = arrays.step.shape[0]
    chunks = min(n, PARALLEL_CHUNKS)
    for c in numba.prange(chunks):  # writes nothing itself (see lobgym.simulation)
        _step_parts(c * n // chunks, (c + 1) * n // chunks, book, flow, fills, arrays, scalars, fp, stats, out, rng,
                    actions, codec, rspec, rstate, ospec, buf, auto_reset)
    return count_done(buf.dones)


def _reset_all_chunked(book, flow, fills, arrays, scalars, fp, stats, rng, rstate, ospec, buf, mask):
    n = arrays.step.shape[0]
    chunks = min(n, PARALLEL_CHUNKS)
    for c in numba.prange(chunks):
        _reset_parts(c * n // chunks, (c + 1) * n // chunks, book, flow, fills, arrays, scalars, fp, stats, rng,
                     rstate, ospec, buf, mask)


_step_serial = kernel(_step_all)
_step_parallel = parallel_kernel(_step_all_chunked)
_reset_serial = kernel(_reset_all)
_reset_parallel = parallel_kernel(_reset_all_chunked)


class BookSimulation(SimulationBase):
    """Arrays and compiled kernels for ``n_envs`` copies of one order-book env config.

    ``tape_capacity`` > 0 records each book's background events (``state.flow.tape``) for analysis.
    """

    kind = "book"
    metric_names = BOOK_METRICS
    step_structs = {"out": BookStepOutcome, "state": BookMarketState, "stats": BookEpisodeStats,
                    "p": BookMarketParams}
    parallel_min_envs = BOOK_PARALLEL_MIN_ENVS

    def __init__(self, cfg: BookEnvConfig, n_envs: int, parallel: bool | None = None, tape_capacity: int = 0):
        n = self._begin(cfg, n_envs, parallel)
        m, a, o = cfg.market, cfg.action, cfg.observation
        self.params = book_market_params(cfg)
        self.codec = book_action_codec(a, cfg.inventory_scale)
        self.action_names = book_action_names(a.kind, a.market_order > 0)
        self.features = list(o.features)
        self.feature_names = feature_names(self.features, o.depth_levels, o.returns)
        self.obs_spec = BookObservationSpec(
            features=np.array([BOOK_FEATURES[f][0] for f in self.features], dtype=np.int64),
            inventory_scale=cfg.inventory_scale, spread_scale=float(a.max_offset), depth_scale=float(o.depth_scale),
            return_scale=float(o.return_scale), spread_cap=m.levels, size_scale=float(a.max_size),
            halflife=float(o.flow_halflife))
        self._build_reward(m.n_steps)
        side_lots = book_max_lots_per_side(self.codec)
        max_lots = 4 * side_lots + a.market_order + 1  # every agent execution in a step takes >= 1 of these
        book = B.make_book(n, m.levels, m.max_orders)
        fills = B.make_fill_log(n, max_lots, agent_only=True)
        self.state = make_book_state(n, book, F.make_flow_state(n, tape_capacity), fills, o.depth_levels, o.returns + 1,
                                     a.levels)
        self.stats = make_book_stats(n)
        self.outcome = make_book_outcome(n)
        self.rng = make_rng(n)
        self._finish(sum(feature_widths(o.depth_levels, o.returns)[x] for x in self.features),
                     book_action_dim(self.codec))

    def observation_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Finite low and high bounds of the observation vector."""
        m, a, o = self.cfg.market, self.cfg.action, self.cfg.observation
        low, high = m.inventory.bounds
        if m.inventory.limit is not None:
            inv = float(m.inventory.limit)
        else:  # each step the agent's orders fill at most 4 * (lots per side) + market_order lots
            inv = max(abs(low), abs(high)) + m.n_steps * (4 * book_max_lots_per_side(self.codec) + a.market_order)
        lots = float(m.max_orders) * max(self.params.flow.size, a.max_size)
        fill_lots = 2 * book_max_lots_per_side(self.codec) + a.market_order  # old and new orders of one side
        return book_observation_bounds(self.features, self.obs_spec, o.depth_levels, o.returns, inv, lots, fill_lots)

    # ----------------------------------------------------------------------------------- control
    def _market_args(self) -> tuple:
        """The state and params as the kernels take them: whole, or in parts for the parallel ones."""
        st, p = self.state, self.params
        if self.parallel:
            return (st.book, st.flow, st.fills, AgentArrays(*st[3:]), MarketScalars(*p[:-1]), p.flow, self.stats)
        return (st, self.stats)

    def reset(self, mask: np.ndarray | None = None) -> np.ndarray:
        """Start new episodes (where ``mask`` is true): seed the books, warm them up; returns the observations."""
        mask = self._all if mask is None else mask
        if self.parallel:
            _reset_parallel(*self._market_args(), self.rng, self.reward_state, self.obs_spec, self.buffers, mask)
        else:
            _reset_serial(self.state, self.stats, self.params, self.rng, self.reward_state, self.obs_spec,
                          self.buffers, mask)
        return self.buffers.obs

    def _step_call(self, auto_reset: bool) -> tuple:
        rest = (self.rng, self.actions, self.codec, self.reward_spec, self.reward_state, self.obs_spec, self.buffers,
                auto_reset)
        if self.parallel:
            return _step_parallel, (*self._market_args(), self.outcome, *rest)
        return _step_serial, (self.state, self.stats, self.outcome, self.params, *rest)

    @property
    def book(self) -> B.BookState:
        """The N books (``state.book``)."""
        return self.state.book
