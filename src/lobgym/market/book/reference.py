"""A slow, readable, pure-Python L3 order book: the test oracle of :mod:`lobgym.market.book.lob`.

It implements the semantics in the docstring of :mod:`lobgym.market.book.lob` (price-time priority,
sequence numbers, execution at the makers' prices, reduce keeps priority, never crossed, capacity,
counters, fills) for an *ideal unbounded* book: a dict from price to a FIFO queue per side, with no
price window, no slots and no parked list. The numba book's window is an implementation device that
must be invisible in behaviour, so :meth:`ReferenceBook.recenter` does nothing here, and tests
require the two books to agree event by event.

Orders are named by their sequence number ``seq`` (the numba book's id is ``seq * max_orders +
slot``; ``id // max_orders`` recovers ``seq``). It imports no numba and no kernel (enforced by
tests/test_architecture.py), so the few integer codes it shares with ``book.py`` are copied below
and tests check that they are equal.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from lobgym.market.constants import ASK, BID

# Copies of lobgym.market.book.lob's codes (importing book.py would pull in its numba kernels).
OWNER_BACKGROUND = 0
OWNER_AGENT = 1
NO_ORDER = -1
NO_BID = -(2**63)  #: int64 min, the best bid of a book without bids
NO_ASK = 2**63 - 1  #: int64 max, the best ask of a book without asks
EV_LIMIT = 0
EV_MARKET = 1
EV_CANCEL = 2
EV_REDUCE = 3
EV_RECENTER = 4

COUNTERS = ("n_limit", "n_market", "n_cancel", "n_reduce", "n_executions", "n_rejected")

#: One execution: (maker_seq, maker_owner, taker_owner, taker_side, price, qty).
Fill = tuple[int, int, int, int, int, int]


@dataclass
class RefOrder:
    """A resting order (``qty`` is what is left of it)."""

    seq: int
    side: int
    price: int
    qty: int
    owner: int


class ReferenceBook:
    """One unbounded price-time-priority book holding at most ``max_orders`` resting orders.

    Args:
        max_orders: capacity; a limit order that would rest in a full book is rejected (after its
            executions) and counted in ``counters["n_rejected"]``.
    """

    def __init__(self, max_orders: int) -> None:
        self.max_orders = max_orders
        # side -> price -> queue of orders, oldest first; empty levels are deleted.
        self.levels: dict[int, dict[int, deque[RefOrder]]] = {BID: {}, ASK: {}}
        self.orders: dict[int, RefOrder] = {}  # seq -> live order
        self.next_seq = 0
        self.fills: list[Fill] = []
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)

    # ------------------------------------------------------------------------------- queries
    @property
    def best_bid(self) -> int:
        """Highest bid price, or NO_BID."""
        return max(self.levels[BID], default=NO_BID)

    @property
    def best_ask(self) -> int:
        """Lowest ask price, or NO_ASK."""
        return min(self.levels[ASK], default=NO_ASK)

    def queue_ahead(self, seq: int) -> int:
        """Lots of older orders at the same side and price as live order ``seq``; -1 if not resting."""
        order = self.orders.get(seq)
        if order is None:
            return -1
        ahead = 0
        for other in self.levels[order.side][order.price]:
            if other.seq == seq:
                return ahead
            ahead += other.qty
        raise AssertionError("a live order is missing from its level")  # pragma: no cover

    def snapshot(self, k: int) -> tuple[list[int], list[int], list[int], list[int]]:
        """Top ``k`` levels per side: ``(bid_px, bid_qty, ask_px, ask_qty)``, best first.

        Past the last level quantities are 0 and prices continue a tick apart (starting at 0 if a
        side is empty), as in :func:`lobgym.market.book.lob.snapshot`.
        """
        out = []
        for side, step in ((BID, -1), (ASK, 1)):
            prices = sorted(self.levels[side], reverse=side == BID)[:k]
            px = list(prices)
            qty = [sum(o.qty for o in self.levels[side][p]) for p in prices]
            while len(px) < k:
                px.append(px[-1] + step if px else 0)
                qty.append(0)
            out += [px, qty]
        return out[0], out[1], out[2], out[3]

    def dump(self) -> dict:
        """The canonical view of :func:`lobgym.market.book.lob.dump_book` (orders as (seq, qty, owner))."""
        def side_levels(side: int) -> list[tuple[int, list[tuple[int, int, int]]]]:
            return [(p, [(o.seq, o.qty, o.owner) for o in self.levels[side][p]])
                    for p in sorted(self.levels[side], reverse=side == BID)]

        return {"bids": side_levels(BID), "asks": side_levels(ASK), "best_bid": self.best_bid,
                "best_ask": self.best_ask, "counters": dict(self.counters)}

    # ---------------------------------------------------------------------------- operations
    def _execute(self, side: int, limit: int | None, qty: int, owner: int) -> int:
        """Trade an aggressor of ``side`` against the other side; returns the lots executed.

        At prices no worse than ``limit`` (None: any price), best price first and FIFO within a price.
        """
        maker_side = ASK if side == BID else BID
        book = self.levels[maker_side]
        done = 0
        while done < qty and book:
            price = min(book) if side == BID else max(book)
            if limit is not None and (price > limit if side == BID else price < limit):
                break
            queue = book[price]
            maker = queue[0]
            take = min(qty - done, maker.qty)
            self.fills.append((maker.seq, maker.owner, owner, side, price, take))
            self.counters["n_executions"] += 1
            done += take
            maker.qty -= take
            if maker.qty == 0:
                queue.popleft()
                del self.orders[maker.seq]
                if not queue:
                    del book[price]
        return done

    def add_limit(self, side: int, price: int, qty: int, owner: int) -> int | None:
        """Submit a limit order; returns its seq if some of it rests, else None (filled or rejected)."""
        seq = self.next_seq
        self.next_seq += 1
        self.counters["n_limit"] += 1
        left = qty - self._execute(side, price, qty, owner)
        if left <= 0:
            return None
        if len(self.orders) >= self.max_orders:
            self.counters["n_rejected"] += 1
            return None
        order = RefOrder(seq, side, price, left, owner)
        self.orders[seq] = order
        self.levels[side].setdefault(price, deque()).append(order)
        return seq

    def market_order(self, side: int, qty: int, owner: int) -> int:
        """Execute up to ``qty`` lots against the side opposite ``side``; returns the lots executed."""
        self.counters["n_market"] += 1
        return self._execute(side, None, qty, owner)

    def cancel(self, seq: int) -> bool:
        """Remove live order ``seq``; returns whether it was resting."""
        order = self.orders.pop(seq, None)
        if order is None:
            return False
        queue = self.levels[order.side][order.price]
        queue.remove(order)
        if not queue:
            del self.levels[order.side][order.price]
        self.counters["n_cancel"] += 1
        return True

    def reduce(self, seq: int, new_qty: int) -> bool:
        """Lower live order ``seq`` to ``0 < new_qty < qty`` in place (keeps priority); whether applied."""
        order = self.orders.get(seq)
        if order is None or not 0 < new_qty < order.qty:
            return False
        order.qty = new_qty
        self.counters["n_reduce"] += 1
        return True

    def recenter(self, base_tick: int) -> None:
        """No-op: an unbounded book has no window (the numba book's recenter must not change behaviour)."""


def apply_events(ref: ReferenceBook, events_row: Sequence[Sequence[int]]) -> list[int]:
    """Apply one book's events (rows ``[kind, side, price, qty, ref]``, see EV_* in book.py) in order.

    Returns each event's result like :func:`lobgym.market.book.lob.apply_events`, except that an
    EV_LIMIT gives the new order's *seq* (not ``seq * max_orders + slot``) or NO_ORDER. Cancels and
    reduces name the order created by the ``k``-th EV_LIMIT of this call (``k`` = last field); a
    ``k`` with no such EV_LIMIT yet gives 0.
    """
    created: list[int | None] = []
    results = []
    for kind, side, price, qty, k in (tuple(int(x) for x in row) for row in events_row):
        if kind == EV_LIMIT:
            seq = ref.add_limit(side, price, qty, k)
            created.append(seq)
            r = NO_ORDER if seq is None else seq
        elif kind == EV_MARKET:
            r = ref.market_order(side, qty, k)
        elif kind in (EV_CANCEL, EV_REDUCE):
            if k < len(created) and created[k] is not None:
                seq = created[k]
                r = int(ref.cancel(seq) if kind == EV_CANCEL else ref.reduce(seq, qty))
            else:
                r = 0
        else:
            ref.recenter(price)
            r = 0
        results.append(r)
    return results
