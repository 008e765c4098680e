"""The agent in N order-book markets: its orders, latency, fees, fills and marks, one env step at a time.

A step of env ``i`` covers ``dt`` seconds of background flow (:mod:`lobgym.market.book.flow`) on book
``i``. The agent decided its orders at the step's start from what it had observed; then:

1. its cancels and size reductions reach the book after the *cancel latency*, its new limit
   orders and its market order after the *entry latency* (each drawn per step); in between the
   flow runs, so an order can arrive to a book that moved: with ``post_only`` a limit order that
   would execute on arrival is rejected, else it executes as a taker like any marketable order;
2. ``latency.observation`` seconds before the step ends, the agent's view is recorded (``seen_*``:
   top-of-book levels, its queue positions, its inventory, the background mid): that is what the
   observation shows and what the next step's orders are priced from;
3. the flow runs to the end of the step; the agent's fills are settled (maker fees on passive
   fills, taker fees on its executions as aggressor) and the position is marked at the mid.

Marks use the mid of the *background* book (best bid and ask among the other participants'
orders), so the agent cannot move its own mark by quoting inside the spread. Per step,
``PnL = spread captured + q_after * (mid change)`` holds exactly, where a fill's spread capture is
its signed distance to the mid at the start of the step. Random draws: the background flow uses
the market stream, the latencies two uniforms per step of the fills stream.

The agent may rest up to ``K`` orders per side (``state.order`` is ``(N, 2, K)``; ``K = 1`` for the
single-quote codecs). Each step the action codec writes the wanted ``(price, lots)`` of every level
into ``want_px`` / ``want_lots``; a wanted level is matched to a resting agent order *at the same
price*, which is kept (or reduced) with its queue position; every other resting agent order is
cancelled and the unmatched levels are sent as new orders. Orders whose cancel is on its way are
held in ``pend``; the agent's view (queue, quotes) and the background mid count every agent order
still resting, in ``order`` or in ``pend``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from lobgym.market._jit import inline, kernel
from lobgym.market.book.flow import EVENT_MARKET_BUY, EVENT_MARKET_SELL, advance_one, advance_one_ids, seed_book
from lobgym.market.book.lob import (
    F_MAKER_OWNER,
    F_PRICE,
    F_QTY,
    F_TAKER_OWNER,
    F_TAKER_SIDE,
    LV_QTY,
    M_BASE,
    M_BEST_ASK,
    M_BEST_BID,
    M_N_REJECTED,
    NO_ASK,
    NO_BID,
    NO_ORDER,
    NO_SLOT,
    O_PRICE,
    O_QTY,
    OWNER_AGENT,
    add_limit,
    cancel,
    in_window,
    keep_centered,
    market_order,
    next_ask,
    next_bid,
    order_slot,
    queue_ahead,
    reduce,
)
from lobgym.market.constants import ASK as _ASK_CODE
from lobgym.market.constants import BID as _BID_CODE
from lobgym.market.constants import STREAM_FILLS, STREAM_MARKET
from lobgym.market.rng import uniform

# Sides as int64 values: numba types a plain int global passed to a compiled function as a literal and
# compiles that function once per side (lobgym warmup / cold starts pay for every copy).
BID = np.int64(_BID_CODE)
ASK = np.int64(_ASK_CODE)

DELAY_CONSTANT = 0
DELAY_UNIFORM = 1
DELAY_EXPONENTIAL = 2


class BookMarketParams(NamedTuple):
    """Scalars of the book market (prices in ticks, quantities in lots) and the flow's parameters."""

    tick_size: float  #: price of one tick
    s0_tick: int  #: initial mid tick
    n_steps: int
    dt: float  #: seconds of flow per step
    warmup: float  #: seconds of flow before an episode
    seed_depth: int  #: initial book: levels per side ...
    seed_per_level: int  #: ... and orders per level
    entry_kind: int  #: DELAY_* of the entry latency
    entry_a: float  #: constant value / uniform low / exponential mean
    entry_b: float  #: uniform high / exponential cap
    cancel_kind: int
    cancel_a: float
    cancel_b: float
    obs_delay: float  #: the agent's view is taken this long before the step ends
    maker_unit: float  #: fees per lot and per traded value, for passive and aggressive fills
    maker_rate: float
    taker_unit: float
    taker_rate: float
    post_only: bool
    inventory_limit: int
    q0_low: int
    q0_high: int
    ewma_alpha: float  #: weight of the newest step in the trade-flow and volatility averages
    flow: tuple  #: the flow model's parameters (lobgym.market.book.flow)


class BookMarketState(NamedTuple):
    """Books, flow and the agent's position in each env; ``seen_*`` is the agent's delayed view."""

    book: tuple  #: BookState
    flow: tuple  #: FlowState
    fills: tuple  #: FillLog recording only executions that involve the agent
    step: np.ndarray  #: (N,) int64
    mid: np.ndarray  #: (N,) float64 mark: background mid in price units
    mid2: np.ndarray  #: (N,) int64 background best bid + best ask, ticks
    cash: np.ndarray  #: (N,) float64 gross of fees
    inventory: np.ndarray  #: (N,) int64
    fees: np.ndarray  #: (N,) float64 fees paid this episode (negative = rebates)
    order: np.ndarray  #: (N, 2, K) int64 the agent's order ids per side and level (NO_ORDER: none)
    pend: np.ndarray  #: (N, 2, K) int64 agent orders whose cancel is on its way (NO_ORDER: none)
    want_px: np.ndarray  #: (N, 2, K) int64 this step's wanted price per level (from the action codec)
    want_lots: np.ndarray  #: (N, 2, K) int64 ... and lots (0: no order at that level)
    plan: np.ndarray  #: (N, 2, K) int64 _KEEP / _REDUCE / _NEW per level, decided at the step's start
    seen_px: np.ndarray  #: (N, 2, K) int64 observed top-K price levels, bids then asks
    seen_qty: np.ndarray  #: (N, 2, K) int64 their lots
    seen_queue: np.ndarray  #: (N, 2) int64 lots ahead of the agent's orders (-1: none)
    seen_inventory: np.ndarray  #: (N,) int64
    seen_bg: np.ndarray  #: (N, 2) int64 observed background best bid and ask (pricing reference)
    seen_mid2: np.ndarray  #: (N, H) int64 observed background mid2, latest first
    seen_quote: np.ndarray  #: (N, 2) int64 observed price of the agent's best bid / ask (NO_BID / NO_ASK: none)
    seen_fills: np.ndarray  #: (N, 2) int64 lots bought / sold this step by the time of the view
    seen_trades: np.ndarray  #: (N, 2) int64 background market buys / sells this episode at the view
    trade_last: np.ndarray  #: (N, 2) int64 ... at the view before
    trade_ewma: np.ndarray  #: (N, 2) float64 moving average of background market buys / sells per step
    var_ewma: np.ndarray  #: (N,) float64 moving average of the squared observed mid change, ticks^2
    last_fill: np.ndarray  #: (N,) int64 step count at the view that last showed a fill of the agent


class BookEpisodeStats(NamedTuple):
    """Per-env statistics of the current episode, from which the episode metrics are computed."""

    wealth0: np.ndarray  #: (N,) mark-to-market value at reset
    bid_lots: np.ndarray  #: (N,) int64 lots bought (passive and aggressive)
    ask_lots: np.ndarray  #: (N,) int64 lots sold
    passive_lots: np.ndarray  #: (N,) int64 lots filled as maker
    taker_lots: np.ndarray  #: (N,) int64 lots executed as aggressor
    posted_lots: np.ndarray  #: (N,) int64 lots submitted in limit orders
    rejected: np.ndarray  #: (N,) int64 agent orders rejected (post-only or book full)
    quoted: np.ndarray  #: (N,) int64 step-sides with an agent order resting at the step's end
    spread_sum: np.ndarray  #: (N,) float64 sum of the agent's quoted spread (ticks), two-sided steps
    two_sided: np.ndarray  #: (N,) int64
    spread_pnl: np.ndarray  #: (N,) float64 spread captured
    inventory_pnl: np.ndarray  #: (N,) float64 q * mid changes
    abs_inventory_sum: np.ndarray
    max_abs_inventory: np.ndarray  #: int64
    pnl_sum: np.ndarray
    pnl_sumsq: np.ndarray
    events: np.ndarray  #: (N,) int64 background flow events this episode
    warmup_events: np.ndarray  #: (N,) int64 background events of this episode's warm-up


class BookStepOutcome(NamedTuple):
    """Per-env outcome of the last step, which the rewards read."""

    pnl: np.ndarray  #: (N,) float64 change of cash + q * mid, gross of fees
    fee: np.ndarray
    inventory_before: np.ndarray  #: int64
    mid_before: np.ndarray
    bid_lots: np.ndarray  #: int64 lots bought this step
    ask_lots: np.ndarray  #: int64 lots sold this step
    spread_captured: np.ndarray  #: sum over fills of signed (mid_before - price) * lots, price units
    events: np.ndarray  #: int64 background events this step
    done: np.ndarray  #: bool


#: The parts of the state and params that numba's parallel backend can take as arguments (it cannot
#: take NamedTuples that nest NamedTuples): everything but the nested book, flow and fill log / flow params.
AgentArrays = NamedTuple("AgentArrays", [(f, np.ndarray) for f in BookMarketState._fields[3:]])
MarketScalars = NamedTuple("MarketScalars", [(f, BookMarketParams.__annotations__[f])
                                             for f in BookMarketParams._fields[:-1]])


def make_book_state(n: int, book, flow, fills, depth_levels: int, history: int, levels: int = 1) -> BookMarketState:
    """Arrays for ``n`` envs whose agent rests up to ``levels`` orders per side."""
    i64 = np.int64
    per_level = (n, 2, levels)
    return BookMarketState(
        book=book, flow=flow, fills=fills, step=np.zeros(n, i64), mid=np.zeros(n), mid2=np.zeros(n, i64),
        cash=np.zeros(n), inventory=np.zeros(n, i64), fees=np.zeros(n), order=np.full(per_level, NO_ORDER, i64),
        pend=np.full(per_level, NO_ORDER, i64), want_px=np.zeros(per_level, i64), want_lots=np.zeros(per_level, i64),
        plan=np.zeros(per_level, i64),
        seen_px=np.zeros((n, 2, depth_levels), i64), seen_qty=np.zeros((n, 2, depth_levels), i64),
        seen_queue=np.full((n, 2), -1, i64), seen_inventory=np.zeros(n, i64), seen_bg=np.zeros((n, 2), i64),
        seen_mid2=np.zeros((n, history), i64), seen_quote=np.zeros((n, 2), i64), seen_fills=np.zeros((n, 2), i64),
        seen_trades=np.zeros((n, 2), i64), trade_last=np.zeros((n, 2), i64), trade_ewma=np.zeros((n, 2)),
        var_ewma=np.zeros(n), last_fill=np.zeros(n, i64))


def make_book_stats(n: int) -> BookEpisodeStats:
    """Zeroed episode statistics for ``n`` envs (int64 counts, float64 sums)."""
    ints = {"bid_lots", "ask_lots", "passive_lots", "taker_lots", "posted_lots", "rejected", "quoted", "two_sided",
            "max_abs_inventory", "events", "warmup_events"}
    return BookEpisodeStats(**{f: np.zeros(n, np.int64 if f in ints else np.float64)
                               for f in BookEpisodeStats._fields})


def make_book_outcome(n: int) -> BookStepOutcome:
    """A zeroed step outcome for ``n`` envs (int64 lots and counts, bool ``done``, float64 otherwise)."""
    ints = {"inventory_before", "bid_lots", "ask_lots", "events"}
    return BookStepOutcome(**{f: np.zeros(n, np.bool_ if f == "done" else np.int64 if f in ints else np.float64)
                              for f in BookStepOutcome._fields})


# --------------------------------------------------------------------------------------- helpers
@inline
def _draw_delay(kind, a, b, u):
    if kind == DELAY_CONSTANT:
        return a
    if kind == DELAY_UNIFORM:
        return a + (b - a) * u
    return -a * math.log(1.0 - u * (1.0 - math.exp(-b / a)))  # exponential(mean a) truncated at b


@inline
def _live_slot(book, i, oid):
    return order_slot(book, i, oid) if oid != NO_ORDER else NO_SLOT


@kernel
def agent_lots_at(st, i, side, price):
    """Lots of the agent's orders resting at ``price`` on ``side`` (in ``order`` or ``pend``)."""
    book = st.book
    lots = 0
    for k in range(st.order.shape[2]):
        for oid in (st.order[i, side, k], st.pend[i, side, k]):
            slot = _live_slot(book, i, oid)
            if slot != NO_SLOT and book.orders[i, slot, O_PRICE] == price:
                lots += book.orders[i, slot, O_QTY]
    return lots


@kernel
def background_best(st, i, side):
    """Best price of ``side`` among orders other than the agent's (NO_BID / NO_ASK if none)."""
    book = st.book
    price = book.meta[i, M_BEST_BID] if side == BID else book.meta[i, M_BEST_ASK]
    while price != NO_BID and price != NO_ASK and in_window(book, i, price):
        agent = agent_lots_at(st, i, side, price)
        if agent == 0 or book.levels[i, price - book.meta[i, M_BASE], LV_QTY] > agent:
            return price  # others rest at this price too
        price = next_bid(book, i, price) if side == BID else next_ask(book, i, price)
    return price


@inline
def _background_mid2(st, i):
    """Background best bid + best ask, each falling back to the flow's last known quote."""
    bid = background_best(st, i, BID)
    ask = background_best(st, i, ASK)
    if bid == NO_BID:
        bid = st.flow.last_bid[i]
    if ask == NO_ASK:
        ask = st.flow.last_ask[i]
    return bid, ask


@kernel
def _best_agent_order(st, i, side):
    """(price, lots ahead) of the agent's best-placed resting order on ``side``; (NO_BID / NO_ASK, -1) if none.

    Best-placed: the best price, and at equal prices the fewest lots ahead.
    """
    book = st.book
    best = NO_BID if side == BID else NO_ASK
    ahead = np.int64(-1)
    for k in range(st.order.shape[2]):
        for oid in (st.order[i, side, k], st.pend[i, side, k]):
            slot = _live_slot(book, i, oid)
            if slot == NO_SLOT:
                continue
            price = book.orders[i, slot, O_PRICE]
            better = price > best if side == BID else price < best
            if better or price == best:
                q = queue_ahead(book, i, oid)
                if better or ahead < 0 or (0 <= q < ahead):
                    best = price
                    ahead = q
    return best, ahead


@kernel
def _observe(st, i):
    """Record the agent's view of book ``i`` now (the ``seen_*`` arrays, but not the mid history)."""
    book = st.book
    price = book.meta[i, M_BEST_BID]
    if price == NO_BID:
        price = st.flow.last_bid[i]
    for lvl in range(st.seen_px.shape[2]):  # price levels a tick apart from the best, empty ones included
        st.seen_px[i, BID, lvl] = price - lvl
        st.seen_qty[i, BID, lvl] = _lots_at(book, i, price - lvl)
    price = book.meta[i, M_BEST_ASK]
    if price == NO_ASK:
        price = st.flow.last_ask[i]
    for lvl in range(st.seen_px.shape[2]):
        st.seen_px[i, ASK, lvl] = price + lvl
        st.seen_qty[i, ASK, lvl] = _lots_at(book, i, price + lvl)
    for side in range(2):
        st.seen_quote[i, side], st.seen_queue[i, side] = _best_agent_order(st, i, side)
    st.seen_inventory[i] = st.inventory[i]
    st.seen_trades[i, BID] = st.flow.events[i, EVENT_MARKET_BUY]
    st.seen_trades[i, ASK] = st.flow.events[i, EVENT_MARKET_SELL]
    bid, ask = _background_mid2(st, i)
    st.seen_bg[i, BID] = bid
    st.seen_bg[i, ASK] = ask


@inline
def _lots_at(book, i, price):
    if in_window(book, i, price):
        return book.levels[i, price - book.meta[i, M_BASE], LV_QTY]
    return 0  # beyond the window: not shown


@inline
def _push_mid(st, i, mid2):
    h = st.seen_mid2.shape[1]
    for j in range(h - 1, 0, -1):
        st.seen_mid2[i, j] = st.seen_mid2[i, j - 1]
    st.seen_mid2[i, 0] = mid2


@inline
def _track(st, p, i):
    """Update the moving averages of what the agent saw this step (trade flow, volatility, fills)."""
    a = p.ewma_alpha
    for side in range(2):
        new = st.seen_trades[i, side] - st.trade_last[i, side]
        st.trade_last[i, side] = st.seen_trades[i, side]
        st.trade_ewma[i, side] += a * (new - st.trade_ewma[i, side])
    move = 0.5 * (st.seen_mid2[i, 0] - st.seen_mid2[i, 1])
    st.var_ewma[i] += a * (move * move - st.var_ewma[i])
    if st.seen_fills[i, BID] + st.seen_fills[i, ASK] > 0:
        st.last_fill[i] = st.step[i]


# Plans for one wanted level, decided at the start of a step.
_KEEP = 0  #: keep the matched order as it is (or nothing wanted)
_REDUCE = 1  #: reduce the matched order's size (it keeps its queue position)
_NEW = 2  #: send a new order when the entry latency has passed


@kernel
def _plan_side(st, i, side):
    """Match the wanted levels of ``side`` to the agent's resting orders at the same price.

    All resting orders move to ``pend`` first; a matched one moves back into ``order`` at its level
    (kept, or reduced if fewer lots are wanted); what is left in ``pend`` is cancelled when the cancel
    latency has passed. More lots than rest at a price need a new order (the old one loses its place).
    """
    book = st.book
    n_lv = st.order.shape[2]
    for k in range(n_lv):
        oid = st.order[i, side, k]
        st.pend[i, side, k] = oid if _live_slot(book, i, oid) != NO_SLOT else NO_ORDER
        st.order[i, side, k] = NO_ORDER
    for k in range(n_lv):
        lots = st.want_lots[i, side, k]
        st.plan[i, side, k] = _KEEP
        if lots <= 0:
            continue
        st.plan[i, side, k] = _NEW
        for j in range(n_lv):
            oid = st.pend[i, side, j]
            if oid == NO_ORDER:
                continue
            slot = order_slot(book, i, oid)
            if book.orders[i, slot, O_PRICE] != st.want_px[i, side, k]:
                continue
            resting = book.orders[i, slot, O_QTY]
            if lots <= resting:
                st.order[i, side, k] = oid
                st.pend[i, side, j] = NO_ORDER
                st.plan[i, side, k] = _KEEP if lots == resting else _REDUCE
            break


@kernel
def _send_cancels(st, i):
    for side in range(2):
        for k in range(st.order.shape[2]):
            if st.pend[i, side, k] != NO_ORDER:
                cancel(st.book, i, st.pend[i, side, k])  # false if it filled in the meantime: nothing to do
                st.pend[i, side, k] = NO_ORDER
            if st.plan[i, side, k] == _REDUCE:
                reduce(st.book, i, st.order[i, side, k], st.want_lots[i, side, k])  # rejected if fills got there first


@inline
def _room(buy_room, sell_room, market):
    """The market order (signed lots) cut to the room left on its side, and the room left after it.

    The room left is for limit orders on each side (lots that may still be bought, sold).
    """
    buy_room = max(buy_room, 0)
    sell_room = max(sell_room, 0)
    if market > 0:
        market = min(market, buy_room)
        buy_room -= market
    elif market < 0:
        market = -min(-market, sell_room)
        sell_room += market
    return market, buy_room, sell_room


@kernel
def _resting_lots(st, i, side):
    """Lots of the agent's orders on ``side`` still in book ``i`` (in ``order`` or ``pend``)."""
    book = st.book
    lots = 0
    for k in range(st.order.shape[2]):
        for oid in (st.order[i, side, k], st.pend[i, side, k]):
            slot = _live_slot(book, i, oid)
            if slot != NO_SLOT:
                lots += book.orders[i, slot, O_QTY]
    return lots


@kernel
def _send_entries(st, stats, out, p, i, market, mid_before):
    book = st.book
    # The room is measured again on arrival: fills since the step began (of orders whose cancel is
    # still on its way, say) and the agent's orders resting now count against the limit, so that
    # |q| stays within it even if everything still open fills.
    _settle(st, stats, out, p, i, mid_before)
    q = st.inventory[i]
    market, buy_room, sell_room = _room(p.inventory_limit - q - _resting_lots(st, i, BID),
                                        p.inventory_limit + q - _resting_lots(st, i, ASK), market)
    if market != 0:
        market_order(book, i, BID if market > 0 else ASK, abs(market), OWNER_AGENT, st.fills)
    for side in range(2):
        room = buy_room if side == BID else sell_room
        for k in range(st.order.shape[2]):  # levels nearest the touch first
            if st.plan[i, side, k] != _NEW:
                continue
            price = st.want_px[i, side, k]
            lots = min(st.want_lots[i, side, k], room)
            if lots <= 0:
                continue  # no room left on arrival: nothing is sent
            room -= lots
            crosses = price >= book.meta[i, M_BEST_ASK] if side == BID else price <= book.meta[i, M_BEST_BID]
            if p.post_only and crosses:
                stats.rejected[i] += 1
                st.order[i, side, k] = NO_ORDER
                continue
            rejected_before = book.meta[i, M_N_REJECTED]
            st.order[i, side, k] = add_limit(book, i, side, price, lots, OWNER_AGENT, st.fills)
            stats.posted_lots[i] += lots
            stats.rejected[i] += book.meta[i, M_N_REJECTED] - rejected_before


@inline
def _any_order(st, i, side):
    for k in range(st.order.shape[2]):
        if st.order[i, side, k] != NO_ORDER or st.pend[i, side, k] != NO_ORDER:
            return True
    return False


@kernel
def _run_flow(st, p, rng, i, t_end):
    """Flow of book ``i`` up to ``t_end`` around the agent's resting orders."""
    if st.order.shape[2] == 1:  # the flow's fast path knows two agent orders per side by id
        return advance_one_ids(st.book, i, st.flow, p.flow, rng, st.fills, t_end, st.order[i, BID, 0],
                               st.pend[i, BID, 0], st.order[i, ASK, 0], st.pend[i, ASK, 0])
    return advance_one(st.book, i, st.flow, p.flow, rng, st.fills, t_end, np.int64(_any_order(st, i, BID)),
                       np.int64(_any_order(st, i, ASK)))


@inline
def _cut_to_room(st, i, side, room):
    """Cut the wanted lots of ``side``, the levels nearest the touch first, to ``room`` lots in all."""
    for k in range(st.want_lots.shape[2]):
        lots = min(st.want_lots[i, side, k], room)
        st.want_lots[i, side, k] = lots
        room -= max(lots, 0)


# ------------------------------------------------------------------------------------------ step
@kernel
def book_step_one(i, st, stats, out, p, rng, market):
    """Advance env ``i`` one step given its wanted orders and ``market`` (signed lots of a market order).

    The wanted orders are ``st.want_px`` / ``st.want_lots`` (ticks and lots per side and level).
    """
    book = st.book
    q = st.inventory[i]
    mid_before = st.mid[i]
    wealth_before = st.cash[i] + q * mid_before
    # Nothing the agent sends may take |q| past the limit, even if all of it fills (checked again
    # when the orders arrive, see _send_entries).
    market, buy_room, sell_room = _room(p.inventory_limit - q, p.inventory_limit + q, market)
    _cut_to_room(st, i, BID, buy_room)
    _cut_to_room(st, i, ASK, sell_room)

    keep_centered(book, i, st.mid2[i] // 2)
    st.fills.counts[i, 0] = 0
    t0 = st.flow.t[i]
    u_entry = uniform(rng, i, STREAM_FILLS)  # both drawn every step: the fills stream stays aligned
    u_cancel = uniform(rng, i, STREAM_FILLS)
    t_entry = t0 + _draw_delay(p.entry_kind, p.entry_a, p.entry_b, u_entry)
    t_cancel = t0 + _draw_delay(p.cancel_kind, p.cancel_a, p.cancel_b, u_cancel)
    t_seen = t0 + p.dt - p.obs_delay
    t_end = t0 + p.dt
    _plan_side(st, i, BID)
    _plan_side(st, i, ASK)

    # Three moments in time order (cancels before entries before the view on ties). Until the
    # cancels arrive, the old orders may still rest (``st.pend``).
    events = np.int64(0)
    done_cancel = False
    done_entry = False
    done_seen = False
    for _ in range(3):
        if not done_cancel and t_cancel <= t_entry and t_cancel <= t_seen:
            events += _run_flow(st, p, rng, i, t_cancel)
            _send_cancels(st, i)
            done_cancel = True
            t_cancel = np.inf
        elif not done_entry and t_entry <= t_seen:
            events += _run_flow(st, p, rng, i, t_entry)
            _send_entries(st, stats, out, p, i, market, mid_before)
            done_entry = True
            t_entry = np.inf
        else:
            events += _run_flow(st, p, rng, i, t_seen)
            _settle(st, stats, out, p, i, mid_before)  # fills so far count in the seen inventory
            _observe(st, i)
            st.seen_fills[i, BID] = out.bid_lots[i]
            st.seen_fills[i, ASK] = out.ask_lots[i]
            done_seen = True
            t_seen = np.inf
    events += _run_flow(st, p, rng, i, t_end)
    _settle(st, stats, out, p, i, mid_before)
    if not done_seen:
        _observe(st, i)
        st.seen_fills[i, BID] = out.bid_lots[i]
        st.seen_fills[i, ASK] = out.ask_lots[i]

    bid, ask = _background_mid2(st, i)
    st.mid2[i] = bid + ask
    new_mid = 0.5 * (bid + ask) * p.tick_size
    _push_mid(st, i, st.seen_bg[i, BID] + st.seen_bg[i, ASK])
    q = st.inventory[i]
    pnl = st.cash[i] + q * new_mid - wealth_before
    st.step[i] += 1
    _track(st, p, i)
    st.mid[i] = new_mid
    out.pnl[i] = pnl
    out.inventory_before[i] = q - out.bid_lots[i] + out.ask_lots[i]
    out.mid_before[i] = mid_before
    out.events[i] = events
    out.done[i] = st.step[i] >= p.n_steps

    stats.events[i] += events
    stats.inventory_pnl[i] += q * (new_mid - mid_before)
    stats.abs_inventory_sum[i] += abs(q)
    stats.max_abs_inventory[i] = max(stats.max_abs_inventory[i], abs(q))
    best_bid, _ = _best_agent_order(st, i, BID)
    best_ask, _ = _best_agent_order(st, i, ASK)
    live_bid = best_bid != NO_BID
    live_ask = best_ask != NO_ASK
    stats.quoted[i] += np.int64(live_bid) + np.int64(live_ask)
    if live_bid and live_ask:
        stats.spread_sum[i] += best_ask - best_bid
        stats.two_sided[i] += 1
    net = pnl - out.fee[i]
    stats.pnl_sum[i] += net
    stats.pnl_sumsq[i] += net * net


@kernel
def _settle(st, stats, out, p, i, mid_before):
    """Book the agent's fills logged since the step started (or since the last call).

    They go into cash, inventory, fees and this step's outcome; the log is then emptied.
    """
    rec = st.fills.records
    n = st.fills.counts[i, 0]
    for k in range(n):
        maker_agent = rec[i, k, F_MAKER_OWNER] == OWNER_AGENT
        taker_agent = rec[i, k, F_TAKER_OWNER] == OWNER_AGENT
        if maker_agent and taker_agent:
            continue  # the agent traded with itself: no change of position or cash
        qty = rec[i, k, F_QTY]
        price = rec[i, k, F_PRICE] * p.tick_size
        # taker_side BID = a buy hit the asks: the agent bought if it was that taker, sold if it was the maker
        bought = (rec[i, k, F_TAKER_SIDE] == BID) == taker_agent
        if maker_agent:
            fee = p.maker_unit * qty + p.maker_rate * price * qty
            stats.passive_lots[i] += qty
        else:
            fee = p.taker_unit * qty + p.taker_rate * price * qty
            stats.taker_lots[i] += qty
        if bought:
            st.cash[i] -= price * qty
            st.inventory[i] += qty
            out.bid_lots[i] += qty
            stats.bid_lots[i] += qty
            capture = (mid_before - price) * qty
        else:
            st.cash[i] += price * qty
            st.inventory[i] -= qty
            out.ask_lots[i] += qty
            stats.ask_lots[i] += qty
            capture = (price - mid_before) * qty
        st.fees[i] += fee
        out.fee[i] += fee
        out.spread_captured[i] += capture
        stats.spread_pnl[i] += capture
    st.fills.counts[i, 0] = 0


@inline
def begin_step_outcome(out, i):
    """Zero env ``i``'s per-step accumulators before :func:`book_step_one`."""
    out.fee[i] = 0.0
    out.bid_lots[i] = 0
    out.ask_lots[i] = 0
    out.spread_captured[i] = 0.0




# ----------------------------------------------------------------------------------------- reset
@kernel
def book_reset_one(i, st, stats, p, rng):
    """New episode in env ``i``.

    A fresh book seeded around S0, ``warmup`` seconds of flow, no agent orders, inventory drawn from
    {q0_low..q0_high}.
    """
    book = st.book
    seed_book(book, st.flow, st.fills, i, p.s0_tick, p.seed_depth, p.seed_per_level, p.flow.size)
    t = 0.0
    warmup_events = 0
    while t < p.warmup:  # in steps of dt, recentring the window as the price wanders
        t = min(t + p.dt, p.warmup)
        keep_centered(book, i, (st.flow.last_bid[i] + st.flow.last_ask[i]) // 2)
        warmup_events += advance_one(book, i, st.flow, p.flow, rng, st.fills, t, np.int64(0), np.int64(0))
    stats.warmup_events[i] = warmup_events
    st.fills.counts[i, 0] = 0
    st.fills.counts[i, 1] = 0
    q0 = p.q0_low
    if p.q0_high > p.q0_low:
        q0 += np.int64(uniform(rng, i, STREAM_MARKET) * (p.q0_high - p.q0_low + 1))
    for side in range(2):
        for k in range(st.order.shape[2]):
            st.order[i, side, k] = NO_ORDER
            st.pend[i, side, k] = NO_ORDER
    st.step[i] = 0
    st.cash[i] = 0.0
    st.fees[i] = 0.0
    st.inventory[i] = q0
    bid, ask = _background_mid2(st, i)
    st.mid2[i] = bid + ask
    st.mid[i] = 0.5 * (bid + ask) * p.tick_size
    _observe(st, i)
    for j in range(st.seen_mid2.shape[1]):
        st.seen_mid2[i, j] = bid + ask
    for side in range(2):
        st.seen_fills[i, side] = 0
        st.trade_last[i, side] = st.seen_trades[i, side]
        st.trade_ewma[i, side] = 0.0
    st.var_ewma[i] = 0.0
    st.last_fill[i] = 0
    stats.wealth0[i] = q0 * st.mid[i]
    stats.bid_lots[i] = 0
    stats.ask_lots[i] = 0
    stats.passive_lots[i] = 0
    stats.taker_lots[i] = 0
    stats.posted_lots[i] = 0
    stats.rejected[i] = 0
    stats.quoted[i] = 0
    stats.spread_sum[i] = 0.0
    stats.two_sided[i] = 0
    stats.spread_pnl[i] = 0.0
    stats.inventory_pnl[i] = 0.0
    stats.abs_inventory_sum[i] = 0.0
    stats.max_abs_inventory[i] = abs(q0)
    stats.pnl_sum[i] = 0.0
    stats.pnl_sumsq[i] = 0.0
    stats.events[i] = 0
