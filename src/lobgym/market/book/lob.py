"""An L3 limit-order book with price-time priority, on integer ticks and lots, for N books at once.

Semantics (the slow oracle in :mod:`lobgym.market.book.reference` implements exactly these):

* **Orders** have a side (BID or ASK), a limit price in ticks, a quantity in lots (> 0) and an
  owner (OWNER_BACKGROUND or OWNER_AGENT). Every limit order submitted to book ``i`` gets the next
  sequence number ``seq`` of that book (0, 1, 2, ..., whether it rests or not); ``seq`` is its time
  priority. Its id is ``seq * max_orders + slot``, unique within the book; cancel/reduce by id.
* **Limit orders** first execute against the opposite side while they are marketable (a bid at
  or above the best ask, an ask at or below the best bid), best price first and, within a price,
  oldest first (FIFO); each execution trades at the resting order's price. What is left rests at
  its limit price at the back of that level's queue. A fully executed limit order does not rest.
* **Market orders** execute like a limit order with no price limit; what the opposite side cannot
  fill is dropped (the executed quantity is returned).
* **Cancel** removes a resting order. **Reduce** lowers a resting order's quantity and keeps its
  queue position (as exchanges do for size decreases); a new quantity >= the current one, or <= 0,
  is rejected (cancel or replace instead). A price change is a cancel plus a new order: it loses
  priority. Both return whether the order was resting (and the change applied).
* **Never crossed**: after every operation best bid < best ask whenever both exist.
* **The price window.** Each book keeps ``n_levels`` FIFO levels for the ticks
  ``[base_tick, base_tick + n_levels)``. Orders priced outside it are *parked*, not dropped: they
  keep their price and priority, are executed in the same price-time order when the book trades
  through their price, and move into the window when :func:`recenter` brings their price inside.
  Parked orders are slower to reach (a scan of the parked list), which is why the env recentres
  the window around the mid.
* **Capacity.** A book holds at most ``max_orders`` resting orders. A limit order that would rest
  in a full book is rejected and counted in ``n_rejected``, for callers to check (never dropped
  silently). Only an order that executed nothing can be rejected: one that filled a resting
  order in full freed that order's slot.
* **Counters** per book: limit orders added, cancels, reduces, market orders, executions (one per
  maker order hit), and rejections.
* **Fills** of every execution are appended to a :class:`FillLog` (per book: maker seq and owner,
  taker owner, taker side, price, quantity); the log is cleared by the caller.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lobgym.market._jit import inline, kernel
from lobgym.market.constants import ASK as _ASK_CODE
from lobgym.market.constants import BID as _BID_CODE

# Sides as int64 values: numba types a plain int global passed to a compiled function as a literal and
# compiles that function once per side (lobgym warmup / cold starts pay for every copy).
BID = np.int64(_BID_CODE)
ASK = np.int64(_ASK_CODE)

OWNER_BACKGROUND = np.int64(0)  #: an order of the simulated market (int64, like the sides: one build per kernel)
OWNER_AGENT = np.int64(1)  #: an order of the agent

NO_ORDER = -1  #: id returned when nothing rests (fully executed or rejected)
NO_SLOT = -1  #: end of a linked list
NO_BID = np.iinfo(np.int64).min  #: best bid of a book with no bids
NO_ASK = np.iinfo(np.int64).max  #: best ask of a book with no asks

# Order status in its slot.
FREE = 0
RESTING = 1  #: in a level queue inside the window
PARKED = 2  #: outside the window, in the book's parked list

# Event kinds of :func:`apply_events` (the batched driver used by tests and benchmarks).
EV_LIMIT = 0  #: [kind, side, price_tick, qty, owner] -> id, or NO_ORDER
EV_MARKET = 1  #: [kind, side (of the aggressor), 0, qty, owner] -> executed qty
EV_CANCEL = 2  #: [kind, 0, 0, 0, k] cancel the order created by this book's k-th EV_LIMIT -> 1/0
EV_REDUCE = 3  #: [kind, 0, 0, new_qty, k] -> 1/0
EV_RECENTER = 4  #: [kind, 0, base_tick, 0, 0] -> 0

# Layout. A book is four int64 arrays: per-book scalars ``meta (N, N_META)``, price levels
# ``levels (N, L, 4)`` and order records ``orders (N, M, 8)`` (one 64-byte cache line each), plus
# the free-slot stack. Few arrays keep calls between the (not inlined) book functions cheap: numba
# passes every array of a NamedTuple as separate arguments.
M_BASE = 0  #: price tick of level 0
M_BEST_BID = 1  #: NO_BID if none
M_BEST_ASK = 2  #: NO_ASK if none
M_NEXT_SEQ = 3  #: sequence number of the next limit order
M_FREE_TOP = 4  #: number of free slots on the stack
M_PARK_HEAD = 5  #: first parked slot (NO_SLOT if none)
M_N_PARKED = 6
M_RESTING = 7  #: resting orders per side: M_RESTING + BID, M_RESTING + ASK
M_N_LIMIT = 9  #: counters
M_N_MARKET = 10
M_N_CANCEL = 11
M_N_REDUCE = 12
M_N_EXECUTIONS = 13
M_N_REJECTED = 14
N_META = 15

LV_HEAD = 0  #: oldest order's slot, NO_SLOT if empty
LV_TAIL = 1  #: newest order's slot
LV_QTY = 2  #: total lots
LV_COUNT = 3  #: number of orders

O_SEQ = 0
O_SIDE = 1
O_PRICE = 2  #: ticks
O_QTY = 3  #: lots left
O_OWNER = 4
O_STATUS = 5  #: FREE / RESTING / PARKED
O_PREV = 6  #: towards the front of the queue (or of the parked list)
O_NEXT = 7  #: towards the back

F_MAKER_SEQ = 0
F_MAKER_OWNER = 1
F_TAKER_OWNER = 2
F_TAKER_SIDE = 3  #: BID = a buy hit the asks
F_PRICE = 4
F_QTY = 5

_META_NAMES = {"base_tick": M_BASE, "best_bid": M_BEST_BID, "best_ask": M_BEST_ASK, "next_seq": M_NEXT_SEQ,
               "free_top": M_FREE_TOP, "park_head": M_PARK_HEAD, "n_parked": M_N_PARKED, "n_limit": M_N_LIMIT,
               "n_market": M_N_MARKET, "n_cancel": M_N_CANCEL, "n_reduce": M_N_REDUCE,
               "n_executions": M_N_EXECUTIONS, "n_rejected": M_N_REJECTED}
_LEVEL_NAMES = {"lvl_head": LV_HEAD, "lvl_tail": LV_TAIL, "lvl_qty": LV_QTY, "lvl_count": LV_COUNT}
_ORDER_NAMES = {"o_seq": O_SEQ, "o_side": O_SIDE, "o_price": O_PRICE, "o_qty": O_QTY, "o_owner": O_OWNER,
                "o_status": O_STATUS, "o_prev": O_PREV, "o_next": O_NEXT}


class BookState(NamedTuple):
    """N books, as four int64 arrays (see the layout above).

    In Python, named views are available as attributes, e.g. ``book.best_bid`` (N,), ``book.lvl_qty``
    (N, L), ``book.o_status`` (N, M), ``book.n_resting`` (N, 2).
    """

    meta: np.ndarray  #: (N, N_META) per-book scalars (M_*)
    levels: np.ndarray  #: (N, L, 4) per-level records (LV_*)
    orders: np.ndarray  #: (N, M, 8) per-slot order records (O_*)
    free_stack: np.ndarray  #: (N, M) free slot indices

    def __getattr__(self, name: str) -> np.ndarray:
        if name in _META_NAMES:
            return self.meta[:, _META_NAMES[name]]
        if name in _LEVEL_NAMES:
            return self.levels[:, :, _LEVEL_NAMES[name]]
        if name in _ORDER_NAMES:
            return self.orders[:, :, _ORDER_NAMES[name]]
        if name == "n_resting":
            return self.meta[:, M_RESTING:M_RESTING + 2]
        raise AttributeError(name)


class FillLog(NamedTuple):
    """Executions since the caller last cleared the count (capacity F per book; overflow counted).

    Python views: ``count``, ``overflow`` (N,) and ``maker_seq``, ``maker_owner``, ``taker_owner``,
    ``taker_side``, ``price``, ``qty`` (N, F).
    """

    counts: np.ndarray  #: (N, 3): entries used, executions that did not fit, agent-only flag
    records: np.ndarray  #: (N, F, 6) F_* columns

    @property
    def count(self) -> np.ndarray:  # shadows tuple.count on purpose: the log's entry counts
        """Entries used per book, (N,)."""
        return self.counts[:, 0]

    def __getattr__(self, name: str) -> np.ndarray:
        cols = {"maker_seq": F_MAKER_SEQ, "maker_owner": F_MAKER_OWNER, "taker_owner": F_TAKER_OWNER,
                "taker_side": F_TAKER_SIDE, "price": F_PRICE, "qty": F_QTY}
        if name in cols:
            return self.records[:, :, cols[name]]
        if name == "overflow":
            return self.counts[:, 1]
        raise AttributeError(name)


def make_book(n_books: int, n_levels: int, max_orders: int) -> BookState:
    """Allocate ``n_books`` empty books (window at tick 0; :func:`reset_book` moves it)."""
    book = BookState(meta=np.zeros((n_books, N_META), dtype=np.int64),
                     levels=np.zeros((n_books, n_levels, 4), dtype=np.int64),
                     orders=np.zeros((n_books, max_orders, 8), dtype=np.int64),
                     free_stack=np.zeros((n_books, max_orders), dtype=np.int64))
    for i in range(n_books):
        reset_book(book, i, 0)
    return book


def make_fill_log(n_books: int, capacity: int, agent_only: bool = False) -> FillLog:
    """Allocate an empty fill log with room for ``capacity`` executions per book.

    With ``agent_only`` it records only executions with the agent on one side.
    """
    counts = np.zeros((n_books, 3), dtype=np.int64)
    counts[:, 2] = int(agent_only)
    return FillLog(counts=counts, records=np.zeros((n_books, capacity, 6), dtype=np.int64))


@kernel
def reset_book(book, i, base_tick):
    """Empty book ``i`` and place its window at ``[base_tick, base_tick + n_levels)``."""
    meta = book.meta
    for k in range(meta.shape[1]):
        meta[i, k] = 0
    meta[i, M_BASE] = base_tick
    meta[i, M_BEST_BID] = NO_BID
    meta[i, M_BEST_ASK] = NO_ASK
    meta[i, M_PARK_HEAD] = NO_SLOT
    m = book.orders.shape[1]
    meta[i, M_FREE_TOP] = m
    for s in range(m):
        book.free_stack[i, s] = m - 1 - s  # slot 0 is handed out first
        book.orders[i, s, O_STATUS] = FREE
    for j in range(book.levels.shape[1]):
        book.levels[i, j, LV_HEAD] = NO_SLOT
        book.levels[i, j, LV_TAIL] = NO_SLOT
        book.levels[i, j, LV_QTY] = 0
        book.levels[i, j, LV_COUNT] = 0


# ------------------------------------------------------------------------------------ small helpers
@inline
def in_window(book, i, price):
    """Whether ``price`` (ticks) lies in book ``i``'s window of levels."""
    j = price - book.meta[i, M_BASE]
    return 0 <= j < book.levels.shape[1]


@inline
def order_slot(book, i, order_id):
    """Slot of a live order id, or NO_SLOT if the id is stale, unknown or not resting."""
    m = book.orders.shape[1]
    if order_id < 0:
        return NO_SLOT
    slot = order_id % m
    if book.orders[i, slot, O_STATUS] == FREE or book.orders[i, slot, O_SEQ] != order_id // m:
        return NO_SLOT
    return slot


@inline
def order_id(book, i, slot):
    """The id of the order in ``slot`` of book ``i``: ``seq * max_orders + slot``."""
    return book.orders[i, slot, O_SEQ] * book.orders.shape[1] + slot


@inline
def _park(book, i, slot):
    """Push ``slot`` on the parked list (its order does not matter: seq carries priority)."""
    o = book.orders
    head = book.meta[i, M_PARK_HEAD]
    o[i, slot, O_PREV] = NO_SLOT
    o[i, slot, O_NEXT] = head
    if head != NO_SLOT:
        o[i, head, O_PREV] = slot
    book.meta[i, M_PARK_HEAD] = slot
    book.meta[i, M_N_PARKED] += 1
    o[i, slot, O_STATUS] = PARKED


@inline
def _link_back(book, i, slot):
    """Append ``slot`` at the back of its price level (window) or to the parked list."""
    o = book.orders
    price = o[i, slot, O_PRICE]
    if not in_window(book, i, price):
        _park(book, i, slot)
        return
    j = price - book.meta[i, M_BASE]
    tail = book.levels[i, j, LV_TAIL]
    o[i, slot, O_NEXT] = NO_SLOT
    o[i, slot, O_PREV] = tail
    if tail == NO_SLOT:
        book.levels[i, j, LV_HEAD] = slot
    else:
        o[i, tail, O_NEXT] = slot
    book.levels[i, j, LV_TAIL] = slot
    book.levels[i, j, LV_QTY] += o[i, slot, O_QTY]
    book.levels[i, j, LV_COUNT] += 1
    o[i, slot, O_STATUS] = RESTING


@inline
def _unlink(book, i, slot):
    """Take ``slot`` out of its level queue or the parked list (the slot stays allocated)."""
    o = book.orders
    prev = o[i, slot, O_PREV]
    nxt = o[i, slot, O_NEXT]
    if o[i, slot, O_STATUS] == RESTING:
        j = o[i, slot, O_PRICE] - book.meta[i, M_BASE]
        if prev == NO_SLOT:
            book.levels[i, j, LV_HEAD] = nxt
        else:
            o[i, prev, O_NEXT] = nxt
        if nxt == NO_SLOT:
            book.levels[i, j, LV_TAIL] = prev
        else:
            o[i, nxt, O_PREV] = prev
        book.levels[i, j, LV_QTY] -= o[i, slot, O_QTY]
        book.levels[i, j, LV_COUNT] -= 1
    else:
        if prev == NO_SLOT:
            book.meta[i, M_PARK_HEAD] = nxt
        else:
            o[i, prev, O_NEXT] = nxt
        if nxt != NO_SLOT:
            o[i, nxt, O_PREV] = prev
        book.meta[i, M_N_PARKED] -= 1


@inline
def _free(book, i, slot):
    book.meta[i, M_RESTING + book.orders[i, slot, O_SIDE]] -= 1
    book.orders[i, slot, O_STATUS] = FREE
    book.free_stack[i, book.meta[i, M_FREE_TOP]] = slot
    book.meta[i, M_FREE_TOP] += 1


@inline
def front(book, i, side, price):
    """Oldest order of ``side`` at ``price`` (NO_SLOT if none)."""
    if in_window(book, i, price):
        head = book.levels[i, price - book.meta[i, M_BASE], LV_HEAD]
        if head == NO_SLOT or book.orders[i, head, O_SIDE] != side:
            return NO_SLOT
        return head
    o = book.orders
    best = NO_SLOT
    s = book.meta[i, M_PARK_HEAD]
    while s != NO_SLOT:
        if o[i, s, O_PRICE] == price and o[i, s, O_SIDE] == side:
            if best == NO_SLOT or o[i, s, O_SEQ] < o[i, best, O_SEQ]:
                best = s
        s = o[i, s, O_NEXT]
    return best


@inline
def _level_total(book, i, side, price, column):
    """Level ``column`` (LV_QTY: lots, LV_COUNT: orders) of ``side`` at ``price``, window or parked."""
    if in_window(book, i, price):
        j = price - book.meta[i, M_BASE]
        head = book.levels[i, j, LV_HEAD]
        if head == NO_SLOT or book.orders[i, head, O_SIDE] != side:
            return 0
        return book.levels[i, j, column]
    o = book.orders
    total = 0
    s = book.meta[i, M_PARK_HEAD]
    while s != NO_SLOT:
        if o[i, s, O_PRICE] == price and o[i, s, O_SIDE] == side:
            total += o[i, s, O_QTY] if column == LV_QTY else 1
        s = o[i, s, O_NEXT]
    return total


@inline
def level_qty(book, i, side, price):
    """Lots resting on ``side`` at ``price`` (window or parked)."""
    return _level_total(book, i, side, price, LV_QTY)


@inline
def level_count(book, i, side, price):
    """Orders resting on ``side`` at ``price`` (window or parked)."""
    return _level_total(book, i, side, price, LV_COUNT)


@kernel
def next_bid(book, i, below):
    """Best bid price strictly below ``below`` (NO_BID if none)."""
    o = book.orders
    best = NO_BID
    s = book.meta[i, M_PARK_HEAD]
    while s != NO_SLOT:
        if o[i, s, O_SIDE] == BID and o[i, s, O_PRICE] < below and o[i, s, O_PRICE] > best:
            best = o[i, s, O_PRICE]
        s = o[i, s, O_NEXT]
    base = book.meta[i, M_BASE]
    top = min(below - base - 1, book.levels.shape[1] - 1)
    for j in range(top, -1, -1):
        if base + j <= best:
            break
        head = book.levels[i, j, LV_HEAD]
        if head != NO_SLOT and o[i, head, O_SIDE] == BID:
            return base + j
    return best


@kernel
def next_ask(book, i, above):
    """Best ask price strictly above ``above`` (NO_ASK if none)."""
    o = book.orders
    best = NO_ASK
    s = book.meta[i, M_PARK_HEAD]
    while s != NO_SLOT:
        if o[i, s, O_SIDE] == ASK and o[i, s, O_PRICE] > above and o[i, s, O_PRICE] < best:
            best = o[i, s, O_PRICE]
        s = o[i, s, O_NEXT]
    base = book.meta[i, M_BASE]
    for j in range(max(above - base + 1, 0), book.levels.shape[1]):
        if base + j >= best:
            break
        head = book.levels[i, j, LV_HEAD]
        if head != NO_SLOT and o[i, head, O_SIDE] == ASK:
            return base + j
    return best


@inline
def _log_fill(fills, i, maker_seq, maker_owner, taker_owner, taker_side, price, qty):
    if fills.counts[i, 2] != 0 and maker_owner == OWNER_BACKGROUND and taker_owner == OWNER_BACKGROUND:
        return  # an agent-only log
    k = fills.counts[i, 0]
    if k < fills.records.shape[1]:
        r = fills.records
        r[i, k, F_MAKER_SEQ] = maker_seq
        r[i, k, F_MAKER_OWNER] = maker_owner
        r[i, k, F_TAKER_OWNER] = taker_owner
        r[i, k, F_TAKER_SIDE] = taker_side
        r[i, k, F_PRICE] = price
        r[i, k, F_QTY] = qty
        fills.counts[i, 0] = k + 1
    else:
        fills.counts[i, 1] += 1


@inline
def _refresh_best(book, i, side, price):
    """After ``side`` lost orders at ``price``: move its best quote on if that level emptied."""
    if side == ASK:
        if price == book.meta[i, M_BEST_ASK] and level_qty(book, i, ASK, price) == 0:
            book.meta[i, M_BEST_ASK] = next_ask(book, i, price)
    elif price == book.meta[i, M_BEST_BID] and level_qty(book, i, BID, price) == 0:
        book.meta[i, M_BEST_BID] = next_bid(book, i, price)


@kernel
def _execute(book, i, side, limit, qty, owner, fills):
    """Trade an aggressor of ``side`` for up to ``qty`` lots at prices no worse than ``limit``.

    Returns the lots executed. Best price first, FIFO within a price, at the makers' prices.
    """
    o = book.orders
    done = 0
    while done < qty:
        if side == BID:
            price = book.meta[i, M_BEST_ASK]
            if price == NO_ASK or price > limit:
                break
            maker_side = ASK
        else:
            price = book.meta[i, M_BEST_BID]
            if price == NO_BID or price < limit:
                break
            maker_side = BID
        slot = front(book, i, maker_side, price)
        take = min(qty - done, o[i, slot, O_QTY])
        _log_fill(fills, i, o[i, slot, O_SEQ], o[i, slot, O_OWNER], owner, side, price, take)
        book.meta[i, M_N_EXECUTIONS] += 1
        done += take
        if take == o[i, slot, O_QTY]:
            _unlink(book, i, slot)
            _free(book, i, slot)
            _refresh_best(book, i, maker_side, price)
        else:
            o[i, slot, O_QTY] -= take
            if o[i, slot, O_STATUS] == RESTING:
                book.levels[i, price - book.meta[i, M_BASE], LV_QTY] -= take
    return done


# ------------------------------------------------------------------------------------ operations
@kernel
def add_limit(book, i, side, price, qty, owner, fills):
    """Submit a limit order; returns its id if some of it rests, else NO_ORDER."""
    meta = book.meta
    seq = meta[i, M_NEXT_SEQ]
    meta[i, M_NEXT_SEQ] = seq + 1
    meta[i, M_N_LIMIT] += 1
    left = qty
    if price >= meta[i, M_BEST_ASK] if side == BID else price <= meta[i, M_BEST_BID]:  # marketable (skip the call)
        left -= _execute(book, i, side, price, qty, owner, fills)
    if left <= 0:
        return NO_ORDER
    if meta[i, M_FREE_TOP] == 0:
        meta[i, M_N_REJECTED] += 1
        return NO_ORDER
    meta[i, M_FREE_TOP] -= 1
    slot = book.free_stack[i, meta[i, M_FREE_TOP]]
    o = book.orders
    o[i, slot, O_SEQ] = seq
    o[i, slot, O_SIDE] = side
    o[i, slot, O_PRICE] = price
    o[i, slot, O_QTY] = left
    o[i, slot, O_OWNER] = owner
    _link_back(book, i, slot)
    meta[i, M_RESTING + side] += 1
    if side == BID:
        if price > meta[i, M_BEST_BID]:
            meta[i, M_BEST_BID] = price
    elif price < meta[i, M_BEST_ASK]:
        meta[i, M_BEST_ASK] = price
    return seq * o.shape[1] + slot


@kernel
def market_order(book, i, side, qty, owner, fills):
    """Execute up to ``qty`` lots against the side opposite ``side``; returns the lots executed."""
    book.meta[i, M_N_MARKET] += 1
    limit = NO_ASK if side == BID else NO_BID
    return _execute(book, i, side, limit, qty, owner, fills)


@kernel
def cancel(book, i, oid):
    """Remove a resting order; returns whether it was resting."""
    slot = order_slot(book, i, oid)
    if slot == NO_SLOT:
        return False
    side = book.orders[i, slot, O_SIDE]
    price = book.orders[i, slot, O_PRICE]
    _unlink(book, i, slot)
    _free(book, i, slot)
    book.meta[i, M_N_CANCEL] += 1
    _refresh_best(book, i, side, price)
    return True


@kernel
def reduce(book, i, oid, new_qty):
    """Lower a resting order's size in place (keeps priority); returns whether it applied."""
    slot = order_slot(book, i, oid)
    o = book.orders
    if slot == NO_SLOT or new_qty <= 0 or new_qty >= o[i, slot, O_QTY]:
        return False
    if o[i, slot, O_STATUS] == RESTING:
        book.levels[i, o[i, slot, O_PRICE] - book.meta[i, M_BASE], LV_QTY] -= o[i, slot, O_QTY] - new_qty
    o[i, slot, O_QTY] = new_qty
    book.meta[i, M_N_REDUCE] += 1
    return True


@kernel
def queue_ahead(book, i, oid):
    """Lots ahead of a resting order at its price (same side, older); -1 if it is not resting."""
    slot = order_slot(book, i, oid)
    if slot == NO_SLOT:
        return -1
    o = book.orders
    ahead = 0
    if o[i, slot, O_STATUS] == RESTING:
        s = o[i, slot, O_PREV]
        while s != NO_SLOT:
            ahead += o[i, s, O_QTY]
            s = o[i, s, O_PREV]
        return ahead
    s = book.meta[i, M_PARK_HEAD]
    while s != NO_SLOT:
        if (o[i, s, O_PRICE] == o[i, slot, O_PRICE] and o[i, s, O_SIDE] == o[i, slot, O_SIDE]
                and o[i, s, O_SEQ] < o[i, slot, O_SEQ]):
            ahead += o[i, s, O_QTY]
        s = o[i, s, O_NEXT]
    return ahead


@kernel
def recenter(book, i, base_tick):
    """Move book ``i``'s window to ``[base_tick, base_tick + n_levels)``.

    Orders leaving it are parked; parked orders entering it join their level's queue in priority (seq)
    order.
    """
    n_levels = book.levels.shape[1]
    old = book.meta[i, M_BASE]
    if base_tick == old:
        return
    o = book.orders
    lv = book.levels
    # 1. Park every order on a level that leaves the window.
    for j in range(n_levels):
        price = old + j
        if base_tick <= price < base_tick + n_levels:
            continue
        s = lv[i, j, LV_HEAD]
        while s != NO_SLOT:
            nxt = o[i, s, O_NEXT]
            _park(book, i, s)
            s = nxt
        lv[i, j, LV_HEAD] = NO_SLOT
        lv[i, j, LV_TAIL] = NO_SLOT
        lv[i, j, LV_QTY] = 0
        lv[i, j, LV_COUNT] = 0
    # 2. Shift the levels that stay (in the direction that never overwrites a source).
    shift = base_tick - old
    if shift > 0:
        for j in range(n_levels):
            _move_level(lv, i, j + shift, j, n_levels)
    else:
        for j in range(n_levels - 1, -1, -1):
            _move_level(lv, i, j + shift, j, n_levels)
    book.meta[i, M_BASE] = base_tick
    # 3. Bring parked orders whose price is now inside into their queues, by priority.
    s = book.meta[i, M_PARK_HEAD]
    while s != NO_SLOT:
        nxt = o[i, s, O_NEXT]
        if in_window(book, i, o[i, s, O_PRICE]):
            _unlink(book, i, s)  # status PARKED: leaves the parked list
            _insert_by_seq(book, i, s)
        s = nxt


@kernel
def keep_centered(book, i, ref_tick):
    """Recentre book ``i``'s window on ``ref_tick`` once a best quote comes within a quarter of the window of its edge.

    This happens rarely: each recentring moves every level.
    """
    n_levels = book.levels.shape[1]
    lo = book.meta[i, M_BASE] + n_levels // 4
    hi = book.meta[i, M_BASE] + n_levels - 1 - n_levels // 4
    bid = book.meta[i, M_BEST_BID]
    ask = book.meta[i, M_BEST_ASK]
    if (bid != NO_BID and (bid < lo or bid > hi)) or (ask != NO_ASK and (ask < lo or ask > hi)):
        recenter(book, i, ref_tick - n_levels // 2)


@inline
def _move_level(lv, i, src, dst, n_levels):
    if 0 <= src < n_levels:
        for c in range(4):
            lv[i, dst, c] = lv[i, src, c]
    else:
        lv[i, dst, LV_HEAD] = NO_SLOT
        lv[i, dst, LV_TAIL] = NO_SLOT
        lv[i, dst, LV_QTY] = 0
        lv[i, dst, LV_COUNT] = 0


@kernel
def _insert_by_seq(book, i, slot):
    """Insert ``slot`` into its (in-window) level so the queue stays ordered by seq."""
    o = book.orders
    lv = book.levels
    j = o[i, slot, O_PRICE] - book.meta[i, M_BASE]
    after = lv[i, j, LV_TAIL]
    while after != NO_SLOT and o[i, after, O_SEQ] > o[i, slot, O_SEQ]:
        after = o[i, after, O_PREV]
    before = lv[i, j, LV_HEAD] if after == NO_SLOT else o[i, after, O_NEXT]
    o[i, slot, O_PREV] = after
    o[i, slot, O_NEXT] = before
    if after == NO_SLOT:
        lv[i, j, LV_HEAD] = slot
    else:
        o[i, after, O_NEXT] = slot
    if before == NO_SLOT:
        lv[i, j, LV_TAIL] = slot
    else:
        o[i, before, O_PREV] = slot
    lv[i, j, LV_QTY] += o[i, slot, O_QTY]
    lv[i, j, LV_COUNT] += 1
    o[i, slot, O_STATUS] = RESTING


@kernel
def snapshot_one(book, i, k, bid_px, bid_qty, ask_px, ask_qty):
    """Top ``k`` price levels of each side into rows ``i`` of the (N, k) outputs.

    Past the last level the rows hold 0 lots, with prices continuing a tick apart.
    """
    price = book.meta[i, M_BEST_BID]
    for lvl in range(k):
        if price == NO_BID:
            bid_px[i, lvl] = bid_px[i, lvl - 1] - 1 if lvl > 0 else 0
            bid_qty[i, lvl] = 0
            continue
        bid_px[i, lvl] = price
        bid_qty[i, lvl] = level_qty(book, i, BID, price)
        price = next_bid(book, i, price)
    price = book.meta[i, M_BEST_ASK]
    for lvl in range(k):
        if price == NO_ASK:
            ask_px[i, lvl] = ask_px[i, lvl - 1] + 1 if lvl > 0 else 0
            ask_qty[i, lvl] = 0
            continue
        ask_px[i, lvl] = price
        ask_qty[i, lvl] = level_qty(book, i, ASK, price)
        price = next_ask(book, i, price)


# ----------------------------------------------------------------------------- batched drivers
@kernel
def apply_events(book, fills, events, results, created):
    """Apply ``events[i]`` (E x 5, see EV_*) to book ``i`` in order, for every book.

    ``results[i, e]`` gets each event's result; ``created`` (N, E) is scratch that maps the k-th
    EV_LIMIT of a book to the id it returned, so that cancels and reduces can name orders by k.
    """
    for i in range(events.shape[0]):
        n_created = 0
        for e in range(events.shape[1]):
            kind = events[i, e, 0]
            side = events[i, e, 1]
            price = events[i, e, 2]
            qty = events[i, e, 3]
            ref = events[i, e, 4]
            if kind == EV_LIMIT:
                r = add_limit(book, i, side, price, qty, ref, fills)
                created[i, n_created] = r
                n_created += 1
            elif kind == EV_MARKET:
                r = market_order(book, i, side, qty, ref, fills)
            elif kind == EV_CANCEL:
                r = np.int64(cancel(book, i, created[i, ref])) if ref < n_created else 0
            elif kind == EV_REDUCE:
                r = np.int64(reduce(book, i, created[i, ref], qty)) if ref < n_created else 0
            else:
                recenter(book, i, price)
                r = 0
            results[i, e] = r


@kernel
def snapshot(book, k, bid_px, bid_qty, ask_px, ask_qty):
    """Top-``k`` L2 snapshot of every book into preallocated (N, k) arrays."""
    for i in range(book.meta.shape[0]):
        snapshot_one(book, i, k, bid_px, bid_qty, ask_px, ask_qty)


@kernel
def queue_positions(book, order_ids, out):
    """``out[i, j]`` = lots ahead of order ``order_ids[i, j]`` (-1 if not resting)."""
    for i in range(order_ids.shape[0]):
        for j in range(order_ids.shape[1]):
            out[i, j] = queue_ahead(book, i, order_ids[i, j])


def dump_book(book: BookState, i: int) -> dict:
    """Canonical, implementation-independent view of book ``i`` (Python; for tests and debugging).

    ``{"bids": [(price, [(seq, qty, owner), ...]), ...] best first, "asks": [...], "best_bid",
    "best_ask", "counters": {...}}`` with each level's orders in priority order; parked orders
    appear at their price like any other.
    """
    o = book.orders[i]
    levels: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
    for s in range(o.shape[0]):
        if o[s, O_STATUS] != FREE:
            key = (int(o[s, O_SIDE]), int(o[s, O_PRICE]))
            levels.setdefault(key, []).append((int(o[s, O_SEQ]), int(o[s, O_QTY]), int(o[s, O_OWNER])))
    for orders in levels.values():
        orders.sort()
    bids = sorted(((p, q) for (side, p), q in levels.items() if side == BID), reverse=True)
    asks = sorted((p, q) for (side, p), q in levels.items() if side == ASK)
    counters = {name: int(book.meta[i, col]) for name, col in _META_NAMES.items() if name.startswith("n_")
                and name != "n_parked"}
    return {"bids": bids, "asks": asks, "best_bid": int(book.meta[i, M_BEST_BID]),
            "best_ask": int(book.meta[i, M_BEST_ASK]), "counters": counters}
