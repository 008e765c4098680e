"""Tests of the L3 order book (src/lobgym/market/book/lob.py) against its pure-Python oracle
(src/lobgym/market/book/reference.py).

* Hand-written priority rules, run on both books through one API: FIFO within a level, price
  priority across levels, reduce keeps the queue position while cancel + re-add loses it, parked
  orders trade in price-time order, recenter merges parked orders into their queues by seq, and
  rejection when full.
* Property-based differential tests (hypothesis): random event sequences (passive and far-away
  limit orders that get parked, marketable limits walking several levels, market orders, cancels
  and reduces of earlier orders, live or not, recenters to random bases) through the numba book
  with a small price window and a small capacity, and through the unbounded reference book. Results,
  fills, canonical dumps, L2 snapshots and queue positions must be identical, and the numba book's
  internal structure (levels, links, free slots, parked list) must stay consistent. A batch of books
  in one call must equal one book at a time.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lobgym.market.book import lob as B
from lobgym.market.book import reference as R
from lobgym.market.book.reference import ReferenceBook
from lobgym.market.constants import ASK, BID

# On a failure hypothesis's pytest plugin imports libcst (to print the example as a patch), which
# raises a DeprecationWarning that the repo's filterwarnings=error turns into an INTERNALERROR hiding
# the report. Import it once here, warnings silenced, so a failing property reports normally.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import hypothesis.extra._patching  # noqa: F401
    except ImportError:  # libcst not installed: the plugin then skips the patch
        pass

SNAP_K = 6  #: depth of the compared L2 snapshots
PAD_K = 1 << 40  #: a cancel of this k names no order: a no-op event used to pad batches


# -------------------------------------------------------------------------------- numba adapter
def _ev(kind: int, side: int = 0, price: int = 0, qty: int = 0, ref: int = 0) -> list[int]:
    return [kind, side, price, qty, ref]


class NumbaOneBook:
    """Book 0 of a numba :class:`~lobgym.market.book.lob.BookState` behind the ReferenceBook API (orders named
    by seq); its internal structure is checked after every operation."""

    def __init__(self, max_orders: int, n_levels: int = 16, base: int = 100) -> None:
        self.max_orders = max_orders
        self.book = B.make_book(1, n_levels, max_orders)
        B.reset_book(self.book, 0, base)
        self.log = B.make_fill_log(1, 256)
        self.ids: dict[int, int] = {}  # seq -> id

    def _event(self, *event: int) -> int:
        res = np.zeros((1, 1), np.int64)
        events = np.array([[_ev(*event)]], np.int64)
        B.apply_events(self.book, self.log, events, res, np.zeros((1, 1), np.int64))
        check_structure(self.book, 0)
        return int(res[0, 0])

    def add_limit(self, side: int, price: int, qty: int, owner: int) -> int | None:
        seq = int(self.book.next_seq[0])
        order_id = self._event(B.EV_LIMIT, side, price, qty, owner)
        if order_id == B.NO_ORDER:
            return None
        assert order_id // self.max_orders == seq
        self.ids[seq] = order_id
        return seq

    def market_order(self, side: int, qty: int, owner: int) -> int:
        return self._event(B.EV_MARKET, side, 0, qty, owner)

    def cancel(self, seq: int) -> bool:
        done = bool(B.cancel(self.book, 0, self.ids.get(seq, B.NO_ORDER)))
        check_structure(self.book, 0)
        return done

    def reduce(self, seq: int, new_qty: int) -> bool:
        done = bool(B.reduce(self.book, 0, self.ids.get(seq, B.NO_ORDER), new_qty))
        check_structure(self.book, 0)
        return done

    def recenter(self, base_tick: int) -> None:
        self._event(B.EV_RECENTER, 0, base_tick)

    def queue_ahead(self, seq: int) -> int:
        out = np.zeros((1, 1), np.int64)
        B.queue_positions(self.book, np.array([[self.ids.get(seq, B.NO_ORDER)]], np.int64), out)
        return int(out[0, 0])

    @property
    def best_bid(self) -> int:
        return int(self.book.best_bid[0])

    @property
    def best_ask(self) -> int:
        return int(self.book.best_ask[0])

    @property
    def fills(self) -> list[tuple[int, ...]]:
        return fills_of(self.log, 0)

    @property
    def counters(self) -> dict[str, int]:
        return B.dump_book(self.book, 0)["counters"]

    def dump(self) -> dict:
        return B.dump_book(self.book, 0)


def fills_of(log: B.FillLog, i: int) -> list[tuple[int, ...]]:
    """Book ``i``'s logged executions as ReferenceBook.fills tuples."""
    assert log.overflow[i] == 0, "fill log too small for the test"
    n = int(log.count[i])
    cols = (log.maker_seq, log.maker_owner, log.taker_owner, log.taker_side, log.price, log.qty)
    return [tuple(int(c[i, f]) for c in cols) for f in range(n)]


@pytest.fixture(params=["reference", "numba"])
def make(request):
    """Factory ``make(max_orders, n_levels=16, base=100)`` of either book."""
    if request.param == "reference":
        return lambda max_orders, n_levels=16, base=100: ReferenceBook(max_orders)
    return NumbaOneBook


# -------------------------------------------------------------------------------- constants
def test_reference_constants_equal_the_book():
    for name in ("OWNER_BACKGROUND", "OWNER_AGENT", "NO_ORDER", "NO_BID", "NO_ASK",
                 "EV_LIMIT", "EV_MARKET", "EV_CANCEL", "EV_REDUCE", "EV_RECENTER"):
        assert getattr(R, name) == getattr(B, name), name
    assert R.NO_BID == np.iinfo(np.int64).min and R.NO_ASK == np.iinfo(np.int64).max
    assert R.COUNTERS == tuple(B.dump_book(B.make_book(1, 4, 2), 0)["counters"])


# -------------------------------------------------------------------------- priority rules
@pytest.mark.slow
def test_fifo_within_a_level(make):
    bk = make(8)
    assert [bk.add_limit(ASK, 101, q, owner) for q, owner in ((2, 0), (3, 1), (4, 0))] == [0, 1, 2]
    assert bk.market_order(BID, 4, 1) == 4
    # The oldest ask fills completely first, then the next one partially; each at the maker's price.
    assert bk.fills == [(0, 0, 1, BID, 101, 2), (1, 1, 1, BID, 101, 2)]
    assert bk.dump()["asks"] == [(101, [(1, 1, 1), (2, 4, 0)])]
    assert bk.queue_ahead(2) == 1 and bk.queue_ahead(1) == 0 and bk.queue_ahead(0) == -1
    assert bk.counters["n_executions"] == 2 and bk.counters["n_market"] == 1


def test_price_priority_across_levels(make):
    bk = make(8)
    bk.add_limit(ASK, 103, 5, 0)  # seq 0: worst price, oldest
    bk.add_limit(ASK, 101, 2, 0)  # seq 1: best price
    bk.add_limit(ASK, 102, 3, 0)  # seq 2
    bk.add_limit(BID, 98, 1, 0)  # seq 3: not touched
    # A buy limit at 102 walks 101 then 102, stops before 103 and rests its remainder at 102.
    assert bk.add_limit(BID, 102, 10, 1) == 4
    assert bk.fills == [(1, 0, 1, BID, 101, 2), (2, 0, 1, BID, 102, 3)]
    assert (bk.best_bid, bk.best_ask) == (102, 103)
    dump = bk.dump()
    assert dump["bids"] == [(102, [(4, 5, 1)]), (98, [(3, 1, 0)])]
    assert dump["asks"] == [(103, [(0, 5, 0)])]
    # A sell limit below the best bid trades best bid first and rests nothing when filled.
    assert bk.add_limit(ASK, 90, 6, 0) is None
    assert bk.fills[2:] == [(4, 1, 0, ASK, 102, 5), (3, 0, 0, ASK, 98, 1)]
    assert bk.best_bid == B.NO_BID


def test_reduce_keeps_position_but_cancel_and_readd_loses_it(make):
    bk = make(8)
    bk.add_limit(BID, 99, 5, 1)  # seq 0
    bk.add_limit(BID, 99, 3, 0)  # seq 1
    assert bk.reduce(0, 2)
    assert bk.queue_ahead(1) == 2  # still behind seq 0, which now has 2 lots
    assert not bk.reduce(0, 2) and not bk.reduce(0, 7) and not bk.reduce(0, 0)  # only decreases apply
    assert bk.market_order(ASK, 2, 0) == 2
    assert bk.fills == [(0, 1, 0, ASK, 99, 2)]  # the reduced order kept the front of the queue

    bk = make(8)
    bk.add_limit(BID, 99, 5, 1)  # seq 0
    bk.add_limit(BID, 99, 3, 0)  # seq 1
    assert bk.cancel(0) and not bk.cancel(0)
    assert bk.add_limit(BID, 99, 2, 1) == 2  # the "same" order re-added: new seq, back of the queue
    assert bk.queue_ahead(2) == 3 and bk.queue_ahead(1) == 0
    bk.market_order(ASK, 2, 0)
    assert bk.fills == [(1, 0, 0, ASK, 99, 2)]
    assert bk.counters == {"n_limit": 3, "n_market": 1, "n_cancel": 1, "n_reduce": 0, "n_executions": 1,
                           "n_rejected": 0}


def test_parked_orders_trade_in_price_time_order(make):
    bk = make(16, n_levels=16, base=100)  # window [100, 116)
    bk.add_limit(ASK, 130, 1, 0)  # seq 0, parked
    bk.add_limit(ASK, 130, 2, 1)  # seq 1, parked behind seq 0
    bk.add_limit(ASK, 125, 3, 0)  # seq 2, parked, better price
    bk.add_limit(ASK, 110, 4, 0)  # seq 3, in the window, best
    bk.add_limit(BID, 60, 5, 0)  # seq 4, parked below
    bk.add_limit(BID, 70, 6, 1)  # seq 5, parked, best bid
    if isinstance(bk, NumbaOneBook):
        assert bk.book.n_parked[0] == 5
    assert (bk.best_bid, bk.best_ask) == (70, 110)
    assert bk.queue_ahead(1) == 1 and bk.queue_ahead(0) == 0
    assert bk.market_order(BID, 9, 0) == 9
    assert bk.fills == [(3, 0, 0, BID, 110, 4), (2, 0, 0, BID, 125, 3), (0, 0, 0, BID, 130, 1),
                        (1, 1, 0, BID, 130, 1)]
    assert bk.best_ask == 130 and bk.queue_ahead(1) == 0
    # A marketable sell limit trades through the parked bids best first and rests below the window.
    assert bk.add_limit(ASK, 50, 20, 0) == 6
    assert bk.fills[4:] == [(5, 1, 0, ASK, 70, 6), (4, 0, 0, ASK, 60, 5)]
    assert (bk.best_bid, bk.best_ask) == (B.NO_BID, 50)
    assert bk.dump()["asks"] == [(50, [(6, 9, 0)]), (130, [(1, 1, 1)])]


def test_recenter_merges_parked_orders_by_seq(make):
    bk = make(16, n_levels=16, base=110)  # window [110, 126)
    bk.add_limit(ASK, 120, 1, 0)  # seq 0, in the window
    bk.add_limit(ASK, 120, 2, 0)  # seq 1, in the window
    bk.add_limit(ASK, 112, 7, 0)  # seq 2, in the window
    bk.recenter(90)  # window [90, 106): all three parked
    bk.add_limit(ASK, 120, 3, 1)  # seq 3, parked on arrival
    bk.add_limit(ASK, 121, 9, 0)  # seq 4, another price
    bk.add_limit(ASK, 120, 4, 0)  # seq 5
    if isinstance(bk, NumbaOneBook):
        assert bk.book.n_parked[0] == 6
    bk.recenter(105)  # window [105, 121): 120 and 112 come back, 121 stays parked
    if isinstance(bk, NumbaOneBook):
        assert bk.book.n_parked[0] == 1
        j = 120 - 105
        assert bk.book.lvl_count[0, j] == 4 and bk.book.lvl_qty[0, j] == 1 + 2 + 3 + 4
    assert [bk.queue_ahead(s) for s in (0, 1, 3, 5)] == [0, 1, 3, 6]
    assert bk.add_limit(ASK, 120, 5, 0) == 6  # a new order joins behind all of them
    assert bk.queue_ahead(6) == 10
    bk.recenter(300)  # everything parked again; priority must not change
    assert [bk.queue_ahead(s) for s in (0, 1, 3, 5, 6)] == [0, 1, 3, 6, 10]
    bk.market_order(BID, 7 + 1 + 2 + 3 + 4 + 5 + 2, 1)
    assert [f[0] for f in bk.fills] == [2, 0, 1, 3, 5, 6, 4]
    assert bk.dump()["asks"] == [(121, [(4, 7, 0)])]
    # Moving the window down brings the parked ask at 121 in; a new order queues behind it.
    bk.recenter(110)  # window [110, 126)
    assert bk.add_limit(ASK, 121, 1, 1) == 7
    assert bk.queue_ahead(7) == 7 and bk.queue_ahead(4) == 0
    if isinstance(bk, NumbaOneBook):
        assert bk.book.n_parked[0] == 0 and bk.book.lvl_count[0, 121 - 110] == 2


def test_recenter_keeps_every_order_and_its_place(make):
    bk = make(16, n_levels=16, base=95)  # window [95, 111)
    for price, qty in ((100, 1), (101, 2), (100, 3), (98, 4), (103, 5)):
        bk.add_limit(BID, price, qty, 0)  # seqs 0..4
    for price, qty in ((105, 6), (106, 7), (105, 8)):
        bk.add_limit(ASK, price, qty, 1)  # seqs 5..7
    before = bk.dump()
    queues = [bk.queue_ahead(s) for s in range(8)]
    # Shifts up and down by less than the window (levels move), by more (all parked), and back.
    for base in (98, 92, 97, 140, 60, 99):
        bk.recenter(base)
        assert bk.dump() == before, base
        assert [bk.queue_ahead(s) for s in range(8)] == queues == [0, 0, 1, 0, 0, 0, 0, 6]
    assert bk.market_order(ASK, 8, 0) == 8
    assert [(f[0], f[4], f[5]) for f in bk.fills] == [(4, 103, 5), (1, 101, 2), (0, 100, 1)]


def test_rejection_when_full(make):
    bk = make(2)
    assert bk.add_limit(BID, 100, 5, 0) == 0
    assert bk.add_limit(BID, 99, 5, 0) == 1
    assert bk.add_limit(BID, 98, 1, 1) is None  # full: rejected, its seq (2) is used up
    assert bk.counters["n_rejected"] == 1 and bk.counters["n_limit"] == 3
    # A marketable order frees a slot by filling a maker, so its remainder can rest (seq 3).
    assert bk.add_limit(ASK, 100, 7, 1) == 3
    assert bk.fills == [(0, 0, 1, ASK, 100, 5)]
    assert bk.dump()["asks"] == [(100, [(3, 2, 1)])]
    assert bk.add_limit(ASK, 101, 1, 1) is None and bk.counters["n_rejected"] == 2
    assert bk.cancel(1) and bk.add_limit(ASK, 101, 1, 1) == 5
    assert bk.counters["n_rejected"] == 2


def test_reference_apply_events_names_orders_by_limit_index():
    ref = ReferenceBook(1)
    results = R.apply_events(ref, [
        _ev(R.EV_LIMIT, BID, 99, 2, 0),  # k=0 -> seq 0
        _ev(R.EV_LIMIT, BID, 98, 2, 0),  # k=1: rejected (full)
        _ev(R.EV_CANCEL, 0, 0, 0, 1),  # names the rejected order: 0
        _ev(R.EV_CANCEL, 0, 0, 0, 5),  # no such limit yet: 0
        _ev(R.EV_REDUCE, 0, 0, 1, 0),  # 1
        _ev(R.EV_MARKET, ASK, 0, 3, 1),  # executes the 1 lot left
        _ev(R.EV_RECENTER, 0, 500, 0, 0),
        _ev(R.EV_CANCEL, 0, 0, 0, 0),  # already filled: 0
    ])
    assert results == [0, R.NO_ORDER, 0, 0, 1, 1, 0, 0]


# ------------------------------------------------------------------------ random scenarios
class Scenario(NamedTuple):
    n_levels: int
    max_orders: int
    base: int
    events: np.ndarray  # (E, 5) int64


#: One raw event, in four draws (hypothesis draws ranges up to 256 about uniformly; wider ones lean
#: heavily towards small values): (kind selector 0..99 * 2 + side, a, b, owner * 5 + drift + 2).
RAW_EVENT = st.tuples(st.integers(0, 199), st.integers(0, 255), st.integers(0, 255), st.integers(0, 9))


def decode(raw: tuple[int, int, int, int]) -> tuple[int, ...]:
    """(op, side, a, b, owner, drift of the centre price in -2..2) of a raw event."""
    op_side, a, b, owner_drift = raw
    return op_side // 2, op_side % 2, a, b, owner_drift // 5, owner_drift % 5 - 2


def build_events(raw: list[tuple[int, int, int, int]], base: int, n_levels: int) -> np.ndarray:
    """Turn raw draws into book events around a centre price that drifts (a deterministic map, so
    hypothesis shrinks the raw integers)."""
    centre = base + n_levels // 2
    n_limits = 0
    events = []
    for op, side, a, b, owner, drift in map(decode, raw):
        centre += drift
        outside = 1 if side == BID else -1  # direction away from the other side
        if op < 35:  # passive limit near the centre
            off = a % 8
            price = centre - 1 - off if side == BID else centre + off
            events.append(_ev(B.EV_LIMIT, side, price, 1 + b % 9, owner))
        elif op < 45:  # passive limit possibly far away (parked)
            off = a % (3 * n_levels)
            price = centre - 1 - off if side == BID else centre + off
            events.append(_ev(B.EV_LIMIT, side, price, 1 + b % 9, owner))
        elif op < 55:  # marketable limit that may walk several levels
            price = centre + outside * (a % 10) - (side == ASK)
            events.append(_ev(B.EV_LIMIT, side, price, 1 + b % 25, owner))
        elif op < 63:
            events.append(_ev(B.EV_MARKET, side, 0, 1 + b % 25, owner))
        elif op < 87:  # cancel / reduce any earlier limit (or one past the last: names nothing)
            k = a % (n_limits + 1)
            if op < 75:
                events.append(_ev(B.EV_CANCEL, 0, 0, 0, k))
            else:
                events.append(_ev(B.EV_REDUCE, 0, 0, b % 8, k))
        else:
            new_base = centre - n_levels // 2 + a % (2 * n_levels + 1) - n_levels
            if b % 8 == 0:
                new_base += (5 if b % 16 else -5) * n_levels
            events.append(_ev(B.EV_RECENTER, 0, new_base))
        n_limits += events[-1][0] == B.EV_LIMIT
    return np.array(events, dtype=np.int64).reshape(-1, 5)


def raw_events(max_events: int) -> st.SearchStrategy:
    """1..max_events raw events, lengths spread evenly (plain st.lists would mostly draw short lists)."""
    return st.integers(1, max_events).flatmap(lambda n: st.lists(RAW_EVENT, min_size=n, max_size=n))


@st.composite
def scenarios(draw, max_events: int = 40) -> Scenario:
    n_levels = draw(st.integers(16, 40))
    max_orders = draw(st.integers(3, 24))
    base = draw(st.integers(50, 1000))
    return Scenario(n_levels, max_orders, base, build_events(draw(raw_events(max_events)), base, n_levels))


@st.composite
def batches(draw, max_events: int = 40) -> list[Scenario]:
    """2..4 scenarios sharing a book shape (one BookState holds them all)."""
    n_levels = draw(st.integers(16, 40))
    max_orders = draw(st.integers(3, 24))
    out = []
    for _ in range(draw(st.integers(2, 4))):
        base = draw(st.integers(50, 1000))
        events = build_events(draw(raw_events(max_events)), base, n_levels)
        out.append(Scenario(n_levels, max_orders, base, events))
    return out


def _fresh(sc: Scenario, n_books: int = 1, fill_capacity: int = 0) -> tuple[B.BookState, B.FillLog]:
    bk = B.make_book(n_books, sc.n_levels, sc.max_orders)
    for i in range(n_books):
        B.reset_book(bk, i, sc.base)
    # Each event hits at most max_orders makers.
    return bk, B.make_fill_log(n_books, fill_capacity or len(sc.events) * sc.max_orders + 1)


def as_ref_results(results: np.ndarray, events: np.ndarray, max_orders: int) -> list[int]:
    """Book results with EV_LIMIT ids turned into seqs (the k-th limit of a fresh book has seq k)."""
    out = []
    k = 0
    for r, ev in zip(results.tolist(), events.tolist(), strict=True):
        if ev[0] == B.EV_LIMIT:
            if r != B.NO_ORDER:
                assert r // max_orders == k and 0 <= r % max_orders < max_orders
                r = r // max_orders
            k += 1
        out.append(r)
    return out


# ---------------------------------------------------------------------------------- checks
def check_structure(bk: B.BookState, i: int) -> None:
    """The numba book's internal arrays describe a consistent book (independently of the oracle)."""
    n_levels, m = bk.lvl_head.shape[1], bk.o_seq.shape[1]
    base = int(bk.base_tick[i])
    status = bk.o_status[i].tolist()
    live = [s for s in range(m) if status[s] != B.FREE]
    # Free-slot accounting: the free stack holds exactly the free slots, once each.
    free = bk.free_stack[i, : bk.free_top[i]].tolist()
    assert sorted(free) == [s for s in range(m) if status[s] == B.FREE]
    assert int(bk.free_top[i]) + len(live) == m
    seq, side, price, qty = (a[i].tolist() for a in (bk.o_seq, bk.o_side, bk.o_price, bk.o_qty))
    prev, nxt = bk.o_prev[i].tolist(), bk.o_next[i].tolist()
    assert all(qty[s] > 0 for s in live)
    assert len({seq[s] for s in live}) == len(live)
    # Levels: a doubly linked FIFO of one side, seqs increasing, totals matching.
    seen = []
    for j in range(n_levels):
        s, last, orders = int(bk.lvl_head[i, j]), B.NO_SLOT, []
        while s != B.NO_SLOT:
            assert status[s] == B.RESTING and price[s] == base + j and prev[s] == last
            orders.append(s)
            last, s = s, nxt[s]
        assert int(bk.lvl_tail[i, j]) == last
        assert [seq[s] for s in orders] == sorted(seq[s] for s in orders), "FIFO broken"
        assert len({side[s] for s in orders}) <= 1
        assert int(bk.lvl_qty[i, j]) == sum(qty[s] for s in orders)
        assert int(bk.lvl_count[i, j]) == len(orders)
        seen += orders
    # Parked list: exactly the live orders priced outside the window.
    s, last, parked = int(bk.park_head[i]), B.NO_SLOT, []
    while s != B.NO_SLOT:
        assert status[s] == B.PARKED and prev[s] == last
        parked.append(s)
        last, s = s, nxt[s]
    assert int(bk.n_parked[i]) == len(parked)
    outside = {s for s in live if not base <= price[s] < base + n_levels}
    assert set(parked) == outside and len(parked) == len(outside)
    assert sorted(seen + parked) == live
    # Best prices and never crossed.
    bids = [price[s] for s in live if side[s] == BID]
    asks = [price[s] for s in live if side[s] == ASK]
    assert int(bk.n_resting[i, BID]) == len(bids) and int(bk.n_resting[i, ASK]) == len(asks)
    assert int(bk.best_bid[i]) == max(bids, default=B.NO_BID)
    assert int(bk.best_ask[i]) == min(asks, default=B.NO_ASK)
    if bids and asks:
        assert max(bids) < min(asks)


def check_views(bk: B.BookState, i: int, ref: ReferenceBook, ids: list[int]) -> None:
    """Dump, snapshot and queue positions of every order ever created agree with the oracle."""
    assert B.dump_book(bk, i) == ref.dump()
    n = bk.base_tick.shape[0]
    bid_px, bid_qty, ask_px, ask_qty = (np.full((n, SNAP_K), -7, np.int64) for _ in range(4))
    B.snapshot(bk, SNAP_K, bid_px, bid_qty, ask_px, ask_qty)
    expected = ref.snapshot(SNAP_K)
    got = [bid_px[i].tolist(), bid_qty[i].tolist(), ask_px[i].tolist(), ask_qty[i].tolist()]
    assert got == list(expected)
    if ids:
        order_ids = np.full((n, len(ids)), B.NO_ORDER, np.int64)
        order_ids[i] = ids
        out = np.zeros_like(order_ids)
        B.queue_positions(bk, order_ids, out)
        # The k-th limit order has seq k; a filled, cancelled or rejected one gives -1.
        assert out[i].tolist() == [ref.queue_ahead(k) for k in range(len(ids))]


# ------------------------------------------------------------------------------ properties
def run_whole_sequence(sc: Scenario) -> None:
    """All events in one apply_events call, then compare everything with the oracle."""
    bk, log = _fresh(sc)
    n_events = len(sc.events)
    results = np.zeros((1, n_events), np.int64)
    created = np.zeros((1, n_events), np.int64)
    B.apply_events(bk, log, sc.events[None], results, created)
    ref = ReferenceBook(sc.max_orders)
    assert as_ref_results(results[0], sc.events, sc.max_orders) == R.apply_events(ref, sc.events)
    assert fills_of(log, 0) == ref.fills
    n_limits = int((sc.events[:, 0] == B.EV_LIMIT).sum())
    check_structure(bk, 0)
    check_views(bk, 0, ref, created[0, :n_limits].tolist())


def run_event_by_event(sc: Scenario) -> None:
    """One event per call (cancel/reduce by id), comparing and checking invariants after each."""
    bk, log = _fresh(sc, fill_capacity=sc.max_orders + 1)
    ref = ReferenceBook(sc.max_orders)
    one, res, scratch = np.zeros((1, 1, 5), np.int64), np.zeros((1, 1), np.int64), np.zeros((1, 1), np.int64)
    ids: list[int] = []  # numba id of the k-th limit order (or NO_ORDER)
    live_qty: dict[int, int] = {}  # seq -> lots resting, from the numba book's dump before the event
    added = maker_executed = cancelled = reduced = 0
    for kind, side, price, qty, k in sc.events.tolist():
        log.count[0] = 0  # the caller clears the log
        rejected_before = int(bk.n_rejected[0])
        if kind in (B.EV_CANCEL, B.EV_REDUCE):
            order_id = ids[k] if k < len(ids) else B.NO_ORDER
            if kind == B.EV_CANCEL:
                got = int(B.cancel(bk, 0, order_id))
                want = int(k < ref.next_seq and ref.cancel(k))
                if got:
                    cancelled += live_qty[k]
            else:
                got = int(B.reduce(bk, 0, order_id, qty))
                want = int(k < ref.next_seq and ref.reduce(k, qty))
                if got:
                    reduced += live_qty[k] - qty
        else:
            one[0, 0] = [kind, side, price, qty, k]
            B.apply_events(bk, log, one, res, scratch)
            got = int(res[0, 0])
            if kind == B.EV_LIMIT:
                seq = ref.add_limit(side, price, qty, k)
                want = B.NO_ORDER if seq is None else seq
                ids.append(got)
                if got != B.NO_ORDER:
                    assert got // sc.max_orders == len(ids) - 1
                    got //= sc.max_orders
            elif kind == B.EV_MARKET:
                want = ref.market_order(side, qty, k)
            else:
                ref.recenter(price)
                want = 0
        assert got == want, (kind, side, price, qty, k)
        fills = fills_of(log, 0)
        assert fills == ref.fills[len(ref.fills) - len(fills):]
        taken = sum(f[5] for f in fills)
        maker_executed += taken
        if kind == B.EV_LIMIT:
            assert all(f[2] == k and f[3] == side for f in fills)  # the new order is the taker
            if got != B.NO_ORDER:
                added += qty - taken
            else:  # nothing rests: fully executed, or rejected (and counted)
                assert taken == qty or bk.n_rejected[0] == rejected_before + 1
        elif kind == B.EV_MARKET:
            assert taken == got
        else:
            assert not fills
        check_structure(bk, 0)
        check_views(bk, 0, ref, ids)
        dump = B.dump_book(bk, 0)
        live_qty = {s: q for _, orders in dump["bids"] + dump["asks"] for s, q, _ in orders}
        # Conservation of lots: every lot that rested is still resting, was executed against,
        # was cancelled or was reduced away.
        assert added == sum(live_qty.values()) + maker_executed + cancelled + reduced


def run_batch(scs: list[Scenario]) -> None:
    """Several books in one apply_events call equal the same books one at a time."""
    n_books, width = len(scs), max(len(sc.events) for sc in scs)
    events = np.empty((n_books, width, 5), np.int64)
    events[:] = _ev(B.EV_CANCEL, 0, 0, 0, PAD_K)
    for i, sc in enumerate(scs):
        events[i, : len(sc.events)] = sc.events
    bk = B.make_book(n_books, scs[0].n_levels, scs[0].max_orders)
    for i, sc in enumerate(scs):
        B.reset_book(bk, i, sc.base)
    log = B.make_fill_log(n_books, width * scs[0].max_orders + 1)
    results, created = np.zeros((n_books, width), np.int64), np.zeros((n_books, width), np.int64)
    B.apply_events(bk, log, events, results, created)
    for i, sc in enumerate(scs):
        one, one_log = _fresh(sc)
        r1 = np.zeros((1, len(sc.events)), np.int64)
        B.apply_events(one, one_log, sc.events[None], r1, np.zeros_like(r1))
        assert results[i, : len(sc.events)].tolist() == r1[0].tolist()
        assert not results[i, len(sc.events):].any()
        assert fills_of(log, i) == fills_of(one_log, 0)
        assert B.dump_book(bk, i) == B.dump_book(one, 0)
        for name in B.BookState._fields:  # bit-identical state, not only the same canonical view
            assert getattr(bk, name)[i].tolist() == getattr(one, name)[0].tolist(), name
        check_structure(bk, i)


FAST = settings(max_examples=1500, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SLOW = settings(FAST, max_examples=3000)


@pytest.mark.slow
@FAST
@given(scenarios())
def test_differential_whole_sequence(sc):
    run_whole_sequence(sc)


@pytest.mark.slow
@settings(FAST, max_examples=800)
@given(scenarios())
def test_differential_event_by_event(sc):
    run_event_by_event(sc)


@pytest.mark.slow
@settings(FAST, max_examples=300)
@given(batches())
def test_batch_equals_one_book_at_a_time(scs):
    run_batch(scs)


@pytest.mark.slow
def test_scenarios_exercise_parking_rejection_and_walks():
    """The generator reaches the interesting paths (else the properties above would prove little)."""
    seen = {"parked": 0, "rejected": 0, "walk": 0, "recentered_in": 0}

    @settings(FAST, max_examples=200)
    @given(scenarios())
    def probe(sc):
        bk, log = _fresh(sc)
        res, scratch = np.zeros((1, 1), np.int64), np.zeros((1, 1), np.int64)
        for e in range(len(sc.events)):
            parked_before = int(bk.n_parked[0])
            count_before = int(log.count[0])
            # (contiguous copies: a strided view would compile another kernel signature)
            B.apply_events(bk, log, np.ascontiguousarray(sc.events[None, e: e + 1]), res, scratch)
            kind = sc.events[e, 0]
            seen["parked"] += kind == B.EV_LIMIT and bk.n_parked[0] > parked_before
            seen["recentered_in"] += kind == B.EV_RECENTER and bk.n_parked[0] < parked_before
            prices = set(log.price[0, count_before: log.count[0]].tolist())
            seen["walk"] += len(prices) >= 2
        seen["rejected"] += bool(bk.n_rejected[0])

    probe()
    assert all(v >= 20 for v in seen.values()), seen


@pytest.mark.soak
@SLOW
@given(scenarios(max_events=300))
def test_differential_whole_sequence_long(sc):
    run_whole_sequence(sc)


@pytest.mark.soak
@settings(FAST, max_examples=3000)
@given(scenarios(max_events=150))
def test_differential_event_by_event_long(sc):
    run_event_by_event(sc)


@pytest.mark.soak
@settings(FAST, max_examples=2000)
@given(batches(max_events=150))
def test_batch_equals_one_book_at_a_time_long(scs):
    run_batch(scs)
