"""What every flow model shares: the parameter and state types, the codes, and the kernel helpers.

:class:`FlowParams` (one layout for every model; each model subclasses it, see ``dispatch.MODELS``),
:class:`FlowState` and :func:`make_flow_state`; the ``EVENT_*`` event codes
and ``TAPE_*`` tape columns; the builders' validation helpers (``_rates``, ``_size``,
``_placeholders``, ``_profiles``); and the kernel helpers the models' next-event loops call: book
queries (background orders at a price or beyond a distance), the choice of the order a cancellation
removes under per-order rates ``theta`` by distance (a fast path from the level arrays and a queue
walk that skips agent orders), and applying, counting and taping an event (``_limit``, ``_market``,
``_cancel_event`` and their non-inlined ``*_call`` forms).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lobgym.market._jit import inline, kernel
from lobgym.market.book.lob import (
    LV_COUNT,
    LV_HEAD,
    M_BASE,
    M_BEST_ASK,
    M_BEST_BID,
    M_PARK_HEAD,
    M_RESTING,
    NO_ASK,
    NO_BID,
    NO_ORDER,
    NO_SLOT,
    O_NEXT,
    O_OWNER,
    O_PRICE,
    O_QTY,
    O_SIDE,
    OWNER_BACKGROUND,
    add_limit,
    cancel,
    in_window,
    level_count,
    market_order,
    order_id,
)
from lobgym.market.constants import ASK, BID

# Sides as int64 values for the kernels: numba types a plain int global passed to a compiled
# function as a literal, and compiles that function once per literal (twice or thrice as long).
_BID = np.int64(BID)
_ASK = np.int64(ASK)
_NO_ORDER = np.int64(NO_ORDER)

# Event codes counted per book in FlowState.events (column index) and written on the tape.
EVENT_LIMIT_BID = 0
EVENT_LIMIT_ASK = 1
EVENT_MARKET_BUY = 2
EVENT_MARKET_SELL = 3
EVENT_CANCEL_BID = 4
EVENT_CANCEL_ASK = 5
N_EVENT_TYPES = 6

# Columns of the event tape FlowState.tape (N, C, 4), one row per applied event while there is room.
TAPE_T = 0  #: event time
TAPE_EVENT = 1  #: event code (EVENT_*)
TAPE_PRICE = 2  #: ticks: limit price; cancelled order's price; market order: best opposite at arrival (NaN: none)
TAPE_QTY = 3  #: lots: limit order size; cancelled order's remaining lots; market order: lots executed
N_TAPE_COLUMNS = 4


class FlowParams(NamedTuple):
    """Parameters of every flow model: one layout, subclassed once per model (:class:`~.cst.CSTParams`, ...).

    ``model`` says which fields are read (the others are tiny placeholders of fixed rank); the subclass is what
    the dispatch compiles the model's kernel for.
    """

    model: int  #: the model's code (``FLOW_*``, defined in the model's module)
    size: int  #: lots per background order
    lam: np.ndarray  #: (2, D) CST: limit rate at distance 1..D from the opposite best; Hawkes: distance profile
    lam_cum: np.ndarray  #: (2, D) cumulative sums of lam, for sampling the distance
    theta: np.ndarray  #: (2, D + 1) CST: cancel rate per order at distance 1..D and beyond; Hawkes: weights
    mu: np.ndarray  #: (2,) CST: market order rate of buyers (BID) and sellers (ASK)
    hawkes_baseline: np.ndarray  #: (6,) baseline intensity per event type (EVENT_* order)
    hawkes_alpha: np.ndarray  #: (6, 6) alpha[e, j]: jump of lambda_e at an event of type j
    hawkes_beta: np.ndarray  #: (6,) decay rate of lambda_e's excitation
    hawkes_order_cancel: float  #: Hawkes: extra Poisson cancellation of each order at this times theta(d)
    qr_insert: np.ndarray  #: (2, K, Q + 1) limit insertion rate at level k by queue size q
    qr_cancel: np.ndarray  #: (2, K, Q + 1) cancellation rate of level k's queue by its size
    qr_market: np.ndarray  #: (2, Q + 1) rate of market orders hitting side's best queue, by its size
    qr_inside: np.ndarray  #: (2,) rate of a side's limit order strictly inside a spread of >= 2 ticks
    qr_far_cancel: np.ndarray  #: (2,) cancel rate per background order beyond level K
    informed: bool  #: whether the fundamental price and the market-order tilt are on
    informed_rate: float  #: jumps of the fundamental per unit time
    informed_jump: float  #: standard deviation of a jump, ticks
    informed_kappa: float  #: tilt of market-order direction per tick of F - mid
    extra: np.ndarray  #: (n,) float64: parameters of a model without fields of its own (its module names offsets)


class FlowState(NamedTuple):
    """Per-book clock, reference prices, model state and counters of the flow."""

    t: np.ndarray  #: (N,) time of the book
    last_bid: np.ndarray  #: (N,) last best bid seen (reference when the bid side is empty)
    last_ask: np.ndarray  #: (N,) last best ask seen
    events: np.ndarray  #: (N, N_EVENT_TYPES) events applied, by type
    cancel_intensity: np.ndarray  #: (N,) integral over time of the total cancellation intensity (its compensator)
    tape: np.ndarray  #: (N, C, 4) the first C events since seed_book (TAPE_* columns); C = 0 records nothing
    tape_len: np.ndarray  #: (N,) rows of the tape in use
    skipped: np.ndarray  #: (N, N_EVENT_TYPES) events drawn that changed nothing (Hawkes cancel, empty side)
    excite: np.ndarray  #: (N, N_EVENT_TYPES) Hawkes excitation lambda_e - baseline_e at time t
    fundamental: np.ndarray  #: (N,) informed flow's fundamental price F, ticks
    jumps: np.ndarray  #: (N,) jumps of the fundamental so far


# ----------------------------------------------------------------------------------------- builders
def _rates(name: str, value, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """``value`` as a float64 array of non-negative finite rates (ValueError naming ``name``)."""
    a = np.array(value, dtype=np.float64)
    if shape is not None and a.shape != shape:
        raise ValueError(f"{name}: shape {a.shape}; must be {shape}")
    if not np.isfinite(a).all() or (a < 0).any():
        raise ValueError(f"{name} = {a.tolist()}: rates must be finite and >= 0")
    return a  # a fresh C-contiguous copy (np.ascontiguousarray would turn a scalar into shape (1,))


def _size(size) -> int:
    if int(size) != size or size < 1:
        raise ValueError(f"size = {size}: must be an integer >= 1 (lots per background order)")
    return int(size)


def _placeholders() -> dict:
    """Tiny arrays of the right rank for the fields a model does not read."""
    return {"lam": np.zeros((2, 1)), "lam_cum": np.zeros((2, 1)), "theta": np.zeros((2, 2)), "mu": np.zeros(2),
            "hawkes_baseline": np.zeros(N_EVENT_TYPES), "hawkes_alpha": np.zeros((N_EVENT_TYPES, N_EVENT_TYPES)),
            "hawkes_beta": np.ones(N_EVENT_TYPES), "hawkes_order_cancel": 0.0, "qr_insert": np.zeros((2, 1, 2)),
            "qr_cancel": np.zeros((2, 1, 2)), "qr_market": np.zeros((2, 2)), "qr_inside": np.zeros(2),
            "qr_far_cancel": np.zeros(2), "informed": False, "informed_rate": 0.0, "informed_jump": 0.0,
            "informed_kappa": 0.0, "extra": np.zeros(1)}


def _profiles(lam_table, theta_table, levels: int, k: float | None, alpha: float | None,
              theta_beyond: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-distance rate arrays of shapes (levels,) and (levels + 1,).

    ``lam_table`` then ``k / d**alpha``; ``theta_table`` then its last value (or ``theta_beyond``).
    """
    if int(levels) != levels or levels < 1:
        raise ValueError(f"levels = {levels}: must be an integer >= 1 (distances D from the opposite best)")
    if len(lam_table) == 0 or len(theta_table) == 0:
        raise ValueError("lam_table and theta_table need at least one entry each")
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
    return _rates("lam", lam), _rates("theta", theta)


def make_flow_state(n_books: int, tape_capacity: int = 0) -> FlowState:
    """Flow state of ``n_books`` books; the tape records each book's first ``tape_capacity`` events."""
    return FlowState(t=np.zeros(n_books), last_bid=np.zeros(n_books, dtype=np.int64),
                     last_ask=np.zeros(n_books, dtype=np.int64),
                     events=np.zeros((n_books, N_EVENT_TYPES), dtype=np.int64),
                     cancel_intensity=np.zeros(n_books),
                     tape=np.zeros((n_books, int(tape_capacity), N_TAPE_COLUMNS)),
                     tape_len=np.zeros(n_books, dtype=np.int64),
                     skipped=np.zeros((n_books, N_EVENT_TYPES), dtype=np.int64),
                     excite=np.zeros((n_books, N_EVENT_TYPES)), fundamental=np.zeros(n_books),
                     jumps=np.zeros(n_books, dtype=np.int64))


# ---------------------------------------------------------------- book queries and cancel picking
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
    """Background orders of ``side`` at ``price``.

    Read straight from the level arrays when the agent has no order on that side (``agent`` false), else by walking
    the queue.
    """
    if agent:
        return _background_at(book, i, side, price)
    return level_count(book, i, side, price)


@inline
def _far_prices(book, i, side, ref, levels):
    """Price range (inclusive, in the window) of ``side``'s levels beyond distance ``levels``."""
    base = book.meta[i, M_BASE]
    top = base + book.levels.shape[1] - 1
    if side == _BID:
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
            d = ref - book.orders[i, s, O_PRICE] if side == _BID else book.orders[i, s, O_PRICE] - ref
            if d > levels:
                n += 1
        s = book.orders[i, s, O_NEXT]
    return n


@inline
def _cancel_rate(book, i, theta, side, ref, agent):
    """Total cancellation intensity of ``side``'s background orders.

    Under the per-order rates ``theta`` (2, D + 1) by distance from ``ref``, the opposite best.
    """
    levels = theta.shape[1] - 1
    j = ref - book.meta[i, M_BASE]
    lo = j - levels if side == _BID else j + 1
    if agent or lo < 0 or lo + levels > book.levels.shape[1]:
        return _cancel_rate_walk(book, i, theta, side, ref, agent)
    # Fast path, all D prices in the window and no agent order: every price strictly on ``side``'s
    # side of the opposite best holds orders of ``side`` only (the book is never crossed, and ``ref``
    # is the opposite best whenever that side quotes), so the level counts need no side check.
    rate = 0.0
    near = 0
    for d in range(1, levels + 1):
        n = book.levels[i, j - d if side == _BID else j + d, LV_COUNT]
        near += n
        rate += theta[side, d - 1] * n
    return rate + theta[side, levels] * (book.meta[i, M_RESTING + side] - near)


@kernel
def _cancel_rate_walk(book, i, theta, side, ref, agent):
    """:func:`_cancel_rate` when the agent may have orders on ``side`` or the levels leave the window."""
    levels = theta.shape[1] - 1
    rate = 0.0
    near = 0
    for d in range(1, levels + 1):
        n = _cancellable_at(book, i, side, ref - d if side == _BID else ref + d, agent)
        near += n
        rate += theta[side, d - 1] * n
    return rate + theta[side, levels] * _far_count(book, i, side, ref, levels, near, agent)


@inline
def _pick_cancel(book, i, theta, side, ref, x, agent):
    """Slot of the background order that ``x`` selects for cancellation (NO_SLOT if none).

    ``x`` lies in [0, cancellation intensity of ``side``), under the per-order rates ``theta`` (2, D + 1); the caller
    cancels it.
    """
    levels = theta.shape[1] - 1
    j = ref - book.meta[i, M_BASE]
    lo = j - levels if side == _BID else j + 1
    if agent or lo < 0 or lo + levels > book.levels.shape[1]:
        return _pick_cancel_walk(book, i, theta, side, ref, x, agent)
    for d in range(1, levels + 1):  # fast path, as in _cancel_rate
        w = theta[side, d - 1]
        if w <= 0.0:
            continue
        jd = j - d if side == _BID else j + d
        n = book.levels[i, jd, LV_COUNT]
        if x < w * n:
            return _kth_in_level(book, i, jd, int(x / w))
        x -= w * n
    w = theta[side, levels]
    return _pick_far(book, i, side, ref, levels, int(x / w) if w > 0.0 else 0, agent)


@kernel
def _pick_cancel_walk(book, i, theta, side, ref, x, agent):
    """:func:`_pick_cancel` when the agent may have orders on ``side`` or the levels leave the window."""
    levels = theta.shape[1] - 1
    for d in range(1, levels + 1):
        price = ref - d if side == _BID else ref + d
        w = theta[side, d - 1]
        if w <= 0.0:
            continue
        n = _cancellable_at(book, i, side, price, agent)
        if x < w * n:
            return _kth_background_at(book, i, side, price, int(x / w))
        x -= w * n
    # Beyond D every order has the same rate: the k-th far order.
    w = theta[side, levels]
    return _pick_far(book, i, side, ref, levels, int(x / w) if w > 0.0 else 0, agent)


@kernel
def _pick_far(book, i, side, ref, levels, k, agent):
    """Slot of the ``k``-th cancellable order of ``side`` further than ``levels`` ticks from ``ref``.

    Window levels outward first, then the parked ones in list order (the last one if ``k`` is past
    the end, which float rounding can cause; NO_SLOT if there is none).
    """
    lo, hi = _far_prices(book, i, side, ref, levels)
    if side == _BID:
        for price in range(hi, lo - 1, -1):
            n = _cancellable_at(book, i, side, price, agent)
            if k < n:
                return _kth_background_at(book, i, side, price, k)
            k -= n
    else:
        for price in range(lo, hi + 1):
            n = _cancellable_at(book, i, side, price, agent)
            if k < n:
                return _kth_background_at(book, i, side, price, k)
            k -= n
    return _pick_parked_far(book, i, side, ref, levels, k)


@inline
def _pick_parked_far(book, i, side, ref, levels, k):
    """The parked part of :func:`_pick_far`: the ``k``-th parked background order beyond ``levels``."""
    last = NO_SLOT
    s = book.meta[i, M_PARK_HEAD]
    while s != NO_SLOT:
        if book.orders[i, s, O_SIDE] == side and book.orders[i, s, O_OWNER] == OWNER_BACKGROUND:
            d = ref - book.orders[i, s, O_PRICE] if side == _BID else book.orders[i, s, O_PRICE] - ref
            if d > levels:
                last = s
                if k == 0:
                    break
                k -= 1
        s = book.orders[i, s, O_NEXT]
    return last


@inline
def _kth_in_level(book, i, j, k):
    """Slot of the ``k``-th order of window level ``j`` (all background; the last one if fewer)."""
    s = book.levels[i, j, LV_HEAD]
    while k > 0 and book.orders[i, s, O_NEXT] != NO_SLOT:
        s = book.orders[i, s, O_NEXT]
        k -= 1
    return s


@kernel
def _kth_background_at(book, i, side, price, k):
    """Slot of the ``k``-th background order (in queue order) of ``side`` at ``price``.

    The last one if there are fewer; NO_SLOT if none.
    """
    last = NO_SLOT
    if in_window(book, i, price):
        s = book.levels[i, price - book.meta[i, M_BASE], LV_HEAD]
        while s != NO_SLOT:
            if book.orders[i, s, O_OWNER] == OWNER_BACKGROUND:
                last = s
                if k == 0:
                    break
                k -= 1
            s = book.orders[i, s, O_NEXT]
    else:
        s = book.meta[i, M_PARK_HEAD]
        while s != NO_SLOT:
            if book.orders[i, s, O_PRICE] == price and _is_background(book, i, s, side):
                last = s
                if k == 0:
                    break
                k -= 1
            s = book.orders[i, s, O_NEXT]
    return last


@inline
def _record(flow, i, t, event, price, qty):
    """Append one event to book ``i``'s tape while it has room."""
    k = flow.tape_len[i]
    if k < flow.tape.shape[1]:
        flow.tape[i, k, TAPE_T] = t
        flow.tape[i, k, TAPE_EVENT] = event
        flow.tape[i, k, TAPE_PRICE] = price
        flow.tape[i, k, TAPE_QTY] = qty
        flow.tape_len[i] = k + 1


@inline
def _cancel_slot(book, i, flow, t, event, slot):
    """Cancel the order in ``slot`` (if any) and record it on the tape."""
    if slot != NO_SLOT:
        price = book.orders[i, slot, O_PRICE]
        qty = book.orders[i, slot, O_QTY]
        cancel(book, i, order_id(book, i, slot))
        _record(flow, i, t, event, price, qty)


@inline
def _best_or_nan(book, i, side):
    """Best price of ``side`` as a float, NaN if the side is empty."""
    if side == _BID:
        b = book.meta[i, M_BEST_BID]
        return np.nan if b == NO_BID else float(b)
    a = book.meta[i, M_BEST_ASK]
    return np.nan if a == NO_ASK else float(a)


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


@inline
def _refresh_refs(book, i, flow):
    """Remember each side's best quote (the reference while that side is empty)."""
    if book.meta[i, M_BEST_BID] != NO_BID:
        flow.last_bid[i] = book.meta[i, M_BEST_BID]
    if book.meta[i, M_BEST_ASK] != NO_ASK:
        flow.last_ask[i] = book.meta[i, M_BEST_ASK]


# ------------------------------------------------------------------- applying and taping events
@inline
def _limit(book, i, flow, fills, t, side, price, size):
    """A background limit order of ``side`` at ``price``, counted and taped."""
    add_limit(book, i, side, price, size, OWNER_BACKGROUND, fills)
    event = EVENT_LIMIT_BID if side == _BID else EVENT_LIMIT_ASK
    flow.events[i, event] += 1
    _record(flow, i, t, event, price, size)


@inline
def _market(book, i, flow, fills, t, side, size):
    """A background market order of ``side`` (BID = a buy), counted and taped."""
    first = _best_or_nan(book, i, _ASK if side == _BID else _BID)
    done = market_order(book, i, side, size, OWNER_BACKGROUND, fills)
    event = EVENT_MARKET_BUY if side == _BID else EVENT_MARKET_SELL
    flow.events[i, event] += 1
    _record(flow, i, t, event, first, done)


@inline
def _cancel_event(book, i, flow, t, side, slot):
    """Cancel the background order in ``slot`` (of ``side``), counted and taped."""
    event = EVENT_CANCEL_BID if side == _BID else EVENT_CANCEL_ASK
    _cancel_slot(book, i, flow, t, event, slot)
    flow.events[i, event] += 1


@kernel
def _limit_call(book, i, flow, fills, t, side, price, size):
    """:func:`_limit` as a call.

    For the Hawkes and queue-reactive paths: inlining every event helper everywhere multiplied the
    compile time.
    """
    _limit(book, i, flow, fills, t, side, price, size)


@kernel
def _market_call(book, i, flow, fills, t, side, size):
    _market(book, i, flow, fills, t, side, size)


@kernel
def _cancel_call(book, i, flow, t, side, slot):
    _cancel_event(book, i, flow, t, side, slot)
