"""Background order flow on the L3 book, simulated exactly in event time.

Zero-intelligence flow of Cont, Stoikov & Talreja (2010), "A stochastic model for order book
dynamics" (Operations Research 58(3)). Prices are in ticks and distances are counted from the
*opposite* best quote: a buy limit order at distance ``d`` is placed at ``best_ask - d`` and a sell
limit order at ``best_bid + d`` (``d = 1 .. D``). Independently:

* buy (sell) limit orders arrive at distance ``d`` with rate ``lam[BID, d-1]`` (``lam[ASK, d-1]``);
* buy (sell) market orders arrive with rate ``mu[BID]`` (``mu[ASK]``) and walk the opposite side;
* every resting order at distance ``d <= D`` is cancelled with rate ``theta[side, d-1]``, and every
  order further out with rate ``theta[side, D]``.

Orders are ``size`` lots each. The next event is drawn with the Gillespie (next-event) algorithm
from the intensities of the current book, so the flow reacts to the book and so to the agent's
orders, which sit in the same queues and are cancelled by nobody but the agent (the cancellation
rates apply to background orders only). ``advance`` runs events until the next one would fall
after ``t_end``; discarding that residual waiting time and drawing afresh at the next call is
exact because waiting times are exponential (memoryless) and intensities only change at events.

When a side is empty, distances on the other side are counted from that side's last best quote
(or from the initial reference price if it never had one).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from lobgym.market._jit import inline, kernel
from lobgym.market.book import (
    LV_HEAD,
    M_BASE,
    M_BEST_ASK,
    M_BEST_BID,
    M_PARK_HEAD,
    M_RESTING,
    NO_ASK,
    NO_BID,
    NO_SLOT,
    O_NEXT,
    O_OWNER,
    O_PRICE,
    O_SIDE,
    OWNER_BACKGROUND,
    add_limit,
    cancel,
    in_window,
    keep_centered,
    level_count,
    market_order,
    order_id,
    reset_book,
)
from lobgym.market.constants import ASK, BID, STREAM_MARKET
from lobgym.market.rng import uniform

# Event codes counted per book in FlowState.events (column index).
EVENT_LIMIT_BID = 0
EVENT_LIMIT_ASK = 1
EVENT_MARKET_BUY = 2
EVENT_MARKET_SELL = 3
EVENT_CANCEL_BID = 4
EVENT_CANCEL_ASK = 5
N_EVENT_TYPES = 6


#: The calibration of Cont, Stoikov & Talreja (2010), Table 2: limit arrival rates at distance
#: 1..5 from the opposite best, k / d**alpha beyond; cancellation rates per order at 1..5 (the
#: last one used further out); market order rate. Rates per second, orders of one unit.
CST2010 = {"lam_table": (1.85, 1.51, 1.09, 0.88, 0.77), "theta_table": (0.71, 0.81, 0.68, 0.56, 0.47),
           "mu": 0.94, "k": 1.92, "alpha": 0.52}


class CSTParams(NamedTuple):
    """Rates of the Cont–Stoikov–Talreja flow (per unit time) for both sides."""

    lam: np.ndarray  #: (2, D) limit arrival rate at distance 1..D from the opposite best
    lam_cum: np.ndarray  #: (2, D) cumulative sums of lam, for sampling the distance
    theta: np.ndarray  #: (2, D + 1) cancel rate per order at distance 1..D, and beyond D
    mu: np.ndarray  #: (2,) market order rate of buyers (BID) and sellers (ASK)
    size: int  #: lots per background order


class FlowState(NamedTuple):
    """Per-book clock and reference prices of the flow."""

    t: np.ndarray  #: (N,) time of the book
    last_bid: np.ndarray  #: (N,) last best bid seen (reference when the bid side is empty)
    last_ask: np.ndarray  #: (N,) last best ask seen
    events: np.ndarray  #: (N, N_EVENT_TYPES) events applied, by type
    cancel_intensity: np.ndarray  #: (N,) integral over time of the total cancellation intensity


def make_cst_params(lam_table, theta_table, mu: float, levels: int, k: float | None = None,
                    alpha: float | None = None, size: int = 1, theta_beyond: float | None = None) -> CSTParams:
    """Symmetric CST rates for ``levels`` distances: ``lam_table`` for the first distances and
    ``k / d**alpha`` beyond it; ``theta_table`` for the first distances, then its last value (or
    ``theta_beyond``) for every distance further out."""
    lam = np.zeros(levels)
    for d in range(1, levels + 1):
        if d <= len(lam_table):
            lam[d - 1] = lam_table[d - 1]
        elif k is not None and alpha is not None:
            lam[d - 1] = k / d**alpha
    theta = np.empty(levels + 1)
    far = theta_table[-1] if theta_beyond is None else theta_beyond
    for d in range(1, levels + 2):
        theta[d - 1] = theta_table[d - 1] if d <= len(theta_table) else far
    lam2 = np.stack([lam, lam])
    return CSTParams(lam=lam2, lam_cum=np.cumsum(lam2, axis=1), theta=np.stack([theta, theta]),
                     mu=np.array([mu, mu], dtype=np.float64), size=int(size))


def make_flow_state(n_books: int) -> FlowState:
    return FlowState(t=np.zeros(n_books), last_bid=np.zeros(n_books, dtype=np.int64),
                     last_ask=np.zeros(n_books, dtype=np.int64),
                     events=np.zeros((n_books, N_EVENT_TYPES), dtype=np.int64),
                     cancel_intensity=np.zeros(n_books))


@kernel
def _background_at(book, i, side, price):
    """Background orders of ``side`` resting at ``price`` (agent orders are never cancelled by the flow)."""
    n = 0
    if in_window(book, i, price):
        s = book.levels[i, price - book.meta[i, M_BASE], LV_HEAD]
        while s != NO_SLOT:
            if book.orders[i, s, O_SIDE] == side and book.orders[i, s, O_OWNER] == OWNER_BACKGROUND:
                n += 1
            s = book.orders[i, s, O_NEXT]
        return n
    s = book.meta[i, M_PARK_HEAD]
    while s != NO_SLOT:
        if book.orders[i, s, O_PRICE] == price and _is_background(book, i, s, side):
            n += 1
        s = book.orders[i, s, O_NEXT]
    return n


@inline
def _is_background(book, i, s, side):
    return book.orders[i, s, O_SIDE] == side and book.orders[i, s, O_OWNER] == OWNER_BACKGROUND


@inline
def _cancellable_at(book, i, side, price, agent):
    """Background orders of ``side`` at ``price``; straight from the level arrays when the agent has
    no order on that side (``agent`` false), else by walking the queue."""
    if agent:
        return _background_at(book, i, side, price)
    return level_count(book, i, side, price)


@inline
def _far_prices(book, i, side, ref, levels):
    """Price range (inclusive, in the window) of ``side``'s levels beyond distance ``levels``."""
    base = book.meta[i, M_BASE]
    top = base + book.levels.shape[1] - 1
    if side == BID:
        return base, min(ref - levels - 1, top)
    return max(ref + levels + 1, base), top


@inline
def _far_count(book, i, side, ref, levels, near, agent):
    """Cancellable orders of ``side`` further than ``levels`` ticks from ``ref``."""
    if not agent:
        return book.meta[i, M_RESTING + side] - near
    n = 0
    lo, hi = _far_prices(book, i, side, ref, levels)
    for price in range(lo, hi + 1):
        n += _background_at(book, i, side, price)
    s = book.meta[i, M_PARK_HEAD]
    while s != NO_SLOT:
        if book.orders[i, s, O_SIDE] == side and book.orders[i, s, O_OWNER] == OWNER_BACKGROUND:
            d = ref - book.orders[i, s, O_PRICE] if side == BID else book.orders[i, s, O_PRICE] - ref
            if d > levels:
                n += 1
        s = book.orders[i, s, O_NEXT]
    return n


@inline
def _cancel_rate(book, i, p, side, ref, agent):
    """Total cancellation intensity of ``side``'s background orders; ``ref`` is the opposite best."""
    levels = p.lam.shape[1]
    rate = 0.0
    near = 0
    for d in range(1, levels + 1):
        n = _cancellable_at(book, i, side, ref - d if side == BID else ref + d, agent)
        near += n
        rate += p.theta[side, d - 1] * n
    return rate + p.theta[side, levels] * _far_count(book, i, side, ref, levels, near, agent)


@kernel
def _pick_cancel(book, i, p, side, ref, x, agent):
    """Cancel the background order selected by ``x`` in [0, cancellation intensity of ``side``)."""
    levels = p.lam.shape[1]
    for d in range(1, levels + 1):
        price = ref - d if side == BID else ref + d
        w = p.theta[side, d - 1]
        if w <= 0.0:
            continue
        n = _cancellable_at(book, i, side, price, agent)
        if x < w * n:
            _cancel_kth_at(book, i, side, price, int(x / w))
            return
        x -= w * n
    # Beyond D every order has the same rate: the k-th far order, window levels outward first.
    w = p.theta[side, levels]
    k = int(x / w) if w > 0.0 else 0
    lo, hi = _far_prices(book, i, side, ref, levels)
    if side == BID:
        for price in range(hi, lo - 1, -1):
            n = _cancellable_at(book, i, side, price, agent)
            if k < n:
                _cancel_kth_at(book, i, side, price, k)
                return
            k -= n
    else:
        for price in range(lo, hi + 1):
            n = _cancellable_at(book, i, side, price, agent)
            if k < n:
                _cancel_kth_at(book, i, side, price, k)
                return
            k -= n
    last = NO_SLOT  # then the parked ones, in list order
    s = book.meta[i, M_PARK_HEAD]
    while s != NO_SLOT:
        if book.orders[i, s, O_SIDE] == side and book.orders[i, s, O_OWNER] == OWNER_BACKGROUND:
            d = ref - book.orders[i, s, O_PRICE] if side == BID else book.orders[i, s, O_PRICE] - ref
            if d > levels:
                last = s
                if k == 0:
                    break
                k -= 1
        s = book.orders[i, s, O_NEXT]
    if last != NO_SLOT:  # float rounding can put k one past the end: the last far order goes
        cancel(book, i, order_id(book, i, last))


@kernel
def _cancel_kth_at(book, i, side, price, k):
    """Cancel the ``k``-th background order (in queue order) of ``side`` at ``price``."""
    if in_window(book, i, price):
        s = book.levels[i, price - book.meta[i, M_BASE], LV_HEAD]
        last = NO_SLOT
        while s != NO_SLOT:
            if book.orders[i, s, O_OWNER] == OWNER_BACKGROUND:
                last = s
                if k == 0:
                    break
                k -= 1
            s = book.orders[i, s, O_NEXT]
    else:
        last = NO_SLOT
        s = book.meta[i, M_PARK_HEAD]
        while s != NO_SLOT:
            if book.orders[i, s, O_PRICE] == price and _is_background(book, i, s, side):
                last = s
                if k == 0:
                    break
                k -= 1
            s = book.orders[i, s, O_NEXT]
    if last != NO_SLOT:
        cancel(book, i, order_id(book, i, last))


@inline
def _pick_distance(p, side, x):
    """Distance d >= 1 whose slice of the cumulative arrival rates contains ``x``."""
    row = p.lam_cum[side]
    lo = 0
    hi = row.shape[0] - 1
    while lo < hi:  # first index with row[idx] > x
        mid = (lo + hi) // 2
        if row[mid] > x:
            hi = mid
        else:
            lo = mid + 1
    return lo + 1


@kernel
def advance_one(book, i, flow, p, rng, fills, t_end, agent_bid_lots, agent_ask_lots):
    """Run book ``i``'s flow until ``t_end``; returns the number of events applied.

    ``agent_*_lots`` say whether the agent has orders resting on each side (0 = none), which
    selects the fast path that counts cancellable orders straight from the level arrays.
    """
    n_levels = p.lam.shape[1]
    lam_bid = p.lam_cum[BID, n_levels - 1]
    lam_ask = p.lam_cum[ASK, n_levels - 1]
    t = flow.t[i]
    applied = 0
    while True:
        if book.meta[i, M_BEST_BID] != NO_BID:
            flow.last_bid[i] = book.meta[i, M_BEST_BID]
        if book.meta[i, M_BEST_ASK] != NO_ASK:
            flow.last_ask[i] = book.meta[i, M_BEST_ASK]
        ref_ask = flow.last_ask[i]  # bids are placed and cancelled relative to the best ask
        ref_bid = flow.last_bid[i]
        c_bid = _cancel_rate(book, i, p, BID, ref_ask, agent_bid_lots > 0)
        c_ask = _cancel_rate(book, i, p, ASK, ref_bid, agent_ask_lots > 0)
        total = lam_bid + lam_ask + p.mu[BID] + p.mu[ASK] + c_bid + c_ask
        if total <= 0.0:
            break
        wait = -math.log(1.0 - uniform(rng, i, STREAM_MARKET)) / total
        if t + wait >= t_end:
            flow.cancel_intensity[i] += (t_end - t) * (c_bid + c_ask)
            break
        flow.cancel_intensity[i] += wait * (c_bid + c_ask)
        t += wait
        x = uniform(rng, i, STREAM_MARKET) * total
        if x < lam_bid:
            add_limit(book, i, BID, ref_ask - _pick_distance(p, BID, x), p.size, OWNER_BACKGROUND, fills)
            flow.events[i, EVENT_LIMIT_BID] += 1
        elif x < lam_bid + lam_ask:
            add_limit(book, i, ASK, ref_bid + _pick_distance(p, ASK, x - lam_bid), p.size, OWNER_BACKGROUND,
                      fills)
            flow.events[i, EVENT_LIMIT_ASK] += 1
        elif x < lam_bid + lam_ask + p.mu[BID]:
            market_order(book, i, BID, p.size, OWNER_BACKGROUND, fills)
            flow.events[i, EVENT_MARKET_BUY] += 1
        elif x < lam_bid + lam_ask + p.mu[BID] + p.mu[ASK]:
            market_order(book, i, ASK, p.size, OWNER_BACKGROUND, fills)
            flow.events[i, EVENT_MARKET_SELL] += 1
        elif x < lam_bid + lam_ask + p.mu[BID] + p.mu[ASK] + c_bid:
            _pick_cancel(book, i, p, BID, ref_ask, x - (lam_bid + lam_ask + p.mu[BID] + p.mu[ASK]), agent_bid_lots > 0)
            flow.events[i, EVENT_CANCEL_BID] += 1
        else:
            _pick_cancel(book, i, p, ASK, ref_bid, x - (lam_bid + lam_ask + p.mu[BID] + p.mu[ASK] + c_bid),
                         agent_ask_lots > 0)
            flow.events[i, EVENT_CANCEL_ASK] += 1
        applied += 1
    flow.t[i] = t_end
    return applied


@kernel
def advance(book, flow, p, rng, fills, t_end):
    """Advance every book's background flow to ``t_end`` (no agent orders), recentring windows
    first where needed; returns the total number of events."""
    total = 0
    for i in range(book.meta.shape[0]):
        keep_centered(book, i, (flow.last_bid[i] + flow.last_ask[i]) // 2)
        total += advance_one(book, i, flow, p, rng, fills, t_end, 0, 0)
        fills.counts[i, 0] = 0  # nobody reads background-only fills here
    return total


@kernel
def seed_book(book, flow, fills, i, mid_tick, depth, per_level, size):
    """Empty book ``i`` and start it around ``mid_tick``: ``per_level`` background orders of ``size``
    lots at each of ``depth`` ticks on both sides of a one-tick spread, window centred on the mid."""
    reset_book(book, i, mid_tick - book.levels.shape[1] // 2)
    for d in range(depth):
        for _ in range(per_level):
            add_limit(book, i, BID, mid_tick - 1 - d, size, OWNER_BACKGROUND, fills)
            add_limit(book, i, ASK, mid_tick + d, size, OWNER_BACKGROUND, fills)
    flow.events[i, :] = 0
    flow.cancel_intensity[i] = 0.0
    flow.last_bid[i] = book.meta[i, M_BEST_BID]
    flow.last_ask[i] = book.meta[i, M_BEST_ASK]
    flow.t[i] = 0.0
