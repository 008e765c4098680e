"""lobgym's L3 book against hftbacktest's L3 (market-by-order) replay, on one message stream, in one run.

**The workload.** One instrument, tick 0.01, lot 1, prices around 100.00 (tick 10,000). A seeded numba
kernel draws ``--messages`` order messages (default 2,000,000) from a zero-intelligence process in the
style of Cont, Stoikov & Talreja (2010), matched by lobgym's own book as it goes:

- *limit order* of 1-9 lots on a random side at ``d`` ticks from the opposite best (``d`` in 1..20,
  weights ``k d^-alpha`` with CST2010's power-law fit ``k = 1.92``, ``alpha = 0.52``), so never marketable;
- *market order* of 1-29 lots on a random side, at CST2010's rate ``mu = 0.94`` per side;
- *cancel* of a uniformly chosen resting order, at ``--cancel-rate`` per resting order (sets the book's
  size: a few hundred resting orders, ~40 price levels).

The next event type is drawn with probability proportional to these rates in the current state; the gaps
between messages are i.i.d. exponential with mean ``--mean-gap-us`` (default 50 us: ~100 s of market).
Each message is recorded twice:

- **order messages** (``N_msg`` rows): add (side, price, lots, id), cancel (id), market (side, lots). This
  is what lobgym's book consumes when it does the matching itself (row ``lobgym match``).
- **MBO events** (``N_mbo`` rows), hftbacktest's L3 input: ``ADD_ORDER_EVENT``, ``CANCEL_ORDER_EVENT``,
  and for every execution of a market order against a resting order a ``FILL_EVENT`` (maker id, price,
  lots) followed by ``MODIFY_ORDER_EVENT`` (the maker's remaining lots) or ``CANCEL_ORDER_EVENT`` (if
  fully filled), the way exchange MBO feeds (and hftbacktest's Databento converter) express a trade.
  In hftbacktest's L3 model a ``FILL_EVENT`` moves no depth, only the queue of backtest orders; the depth
  follows add/modify/cancel. Rows get ``EXCH_EVENT | LOCAL_EVENT`` (zero feed latency), ``BUY_EVENT`` /
  ``SELL_EVENT`` for the resting order's side, ``exch_ts = local_ts`` in ns, ``px = tick * 0.01``,
  ``qty`` in lots, ``order_id`` = the order's sequence number.

**Measurements** (each in its own subprocess; ``--repeats`` rounds interleaved; numba compilation and a
warm-up on the first 20,000 rows excluded; book/backtester construction and data loading excluded):

- ``hbt replay``: ``HashMapMarketDepthBacktest`` on one ``BacktestAsset`` with ``l3_fifo_queue_model()``,
  ``no_partial_fill_exchange()``, zero order latency, fed the MBO event array, driven from an ``njit``
  function by ``while hbt.elapse(10**18) == 0`` (pure replay: no strategy orders). hftbacktest keeps two
  books (its local and its exchange processor each apply every event).
- ``hbt roivec ...``: the same with ``ROIVectorMarketDepthBacktest`` (price-indexed arrays over
  ``roi_lb..roi_ub`` = 80..120, which the stream never leaves), hftbacktest's other depth type.
  ``--no-roivec`` skips these rows.
- ``hbt quote``: the same, driven by ``elapse(100 ms)``; at each step the agent cancels its cancellable
  orders and posts 1 lot GTX at the best bid and at the best ask (hftbacktest's no-market-impact model:
  agent orders are queued virtually beside the feed and filled from FILL events / price crossings).
- ``lobgym mbo``: lobgym's L3 book (``lob.add_limit`` / ``lob.cancel`` / ``lob.reduce``) applying the same
  MBO rows (a FILL row is read and skipped: lobgym's depth needs only the modify/cancel that follows it),
  ``lob.keep_centered`` after every row.
- ``lobgym match``: lobgym's book consuming the order messages and matching market orders itself
  (``lob.market_order``, fills logged to a ``FillLog`` and inspected) -- the same book evolution, from the
  messages instead of their MBO transcript.
- ``... quote`` rows for lobgym: every 100 ms of message time, cancel the agent's two orders and post 1 lot
  at the best bid and ask with ``OWNER_AGENT``. In lobgym agent orders are real orders in the book: they
  can absorb market orders and be hit by a later background order priced through them, so the background
  book may drift from the recorded stream (the end-state check is reported, not required, for these rows).

Rates: ``Mmsg/s`` = ``N_msg`` / seconds (the same workload for every row), ``Mrow/s`` = input rows the
engine consumed / seconds. Ratios compare lobgym rows with the hftbacktest row of the same agent setting.

**End-state check.** The generator's book (best bid, best ask, total resting lots, number of price levels
per side) must equal every pure replay's: hftbacktest's local depth (``depth(0)``: ``best_bid_tick``,
``best_ask_tick``, ``snapshot()`` or the ROI arrays), and lobgym's book minus agent orders. The generator
matches with lobgym's book, so for ``lobgym match`` the check only confirms determinism; for hftbacktest
and ``lobgym mbo`` it checks that the MBO transcript rebuilds the same book.

**Getting hftbacktest** (not a lobgym dependency; its PyPI 2.4.4 pins numpy < 2.3, so install it beside
the environment without dependencies; it ran here with the installed numpy 2.4 and numba 0.68)::

    pip install --no-deps --target /tmp/lead_peers/hbt_site hftbacktest

Usage::

    python experiments/peers/hftbacktest_replay.py --hbt-path /tmp/lead_peers/hbt_site --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

TICK = 0.01
MID_TICK = 10_000
LEVELS, MAX_ORDERS = 512, 16_384
WARMUP_ROWS = 20_000
QUOTE_NS = 100_000_000  # the agent requotes every 100 ms

# Message kinds (order messages) and MBO row types.
MSG_LIMIT, MSG_MARKET, MSG_CANCEL = 0, 1, 2
MBO_ADD, MBO_CANCEL, MBO_MODIFY, MBO_FILL = 0, 1, 2, 3

#: name -> (engine, agent quotes?, description)
MEASUREMENTS = {
    "hbt_replay": ("hftbacktest", False, "hbt hashmap replay (MBO rows)"),
    "hbt_roi_replay": ("hftbacktest", False, "hbt roivec replay (MBO rows)"),
    "lob_mbo": ("lobgym", False, "lobgym mbo (same MBO rows)"),
    "lob_match": ("lobgym", False, "lobgym match (order messages)"),
    "hbt_quote": ("hftbacktest", True, "hbt hashmap quote"),
    "hbt_roi_quote": ("hftbacktest", True, "hbt roivec quote"),
    "lob_mbo_quote": ("lobgym", True, "lobgym mbo quote"),
    "lob_match_quote": ("lobgym", True, "lobgym match quote"),
}
#: (lobgym row, hftbacktest row) pairs whose ratio is printed: same agent setting
RATIOS = [(a, b) for a in MEASUREMENTS for b in MEASUREMENTS
          if MEASUREMENTS[a][0] == "lobgym" and MEASUREMENTS[b][0] == "hftbacktest"
          and MEASUREMENTS[a][1] == MEASUREMENTS[b][1]]
ROI_LB, ROI_UB = 80.0, 120.0  # hftbacktest ROIVectorMarketDepth price range (the stream stays well inside)


# ------------------------------------------------------------------------------------------ workload
def generate(n_msg: int, seed: int, cancel_rate: float, mean_gap_us: float) -> dict:
    """Draw the message stream (see the module docstring); returns both encodings and the end state."""
    import numba

    from lobgym.market.book import lob as B
    from lobgym.market.constants import ASK, BID

    cst_k, cst_alpha, cst_mu, max_d = 1.92, 0.52, 0.94, 20
    lam = cst_k * np.arange(1, max_d + 1, dtype=np.float64) ** -cst_alpha
    lam_cum = np.cumsum(lam)

    @numba.njit(cache=False)
    def _gen(book, fills, n_msg, rng, lam_cum, mu, theta, mean_gap_ns,
             m_kind, m_side, m_price, m_qty, m_ref, m_ts, b_type, b_side, b_price, b_qty, b_oid, b_ts):
        created = np.full(n_msg, B.NO_ORDER, dtype=np.int64)  # seq -> lobgym id
        rem = np.zeros(n_msg, dtype=np.int64)  # seq -> resting lots
        side_of = np.zeros(n_msg, dtype=np.int64)
        price_of = np.zeros(n_msg, dtype=np.int64)
        live = np.zeros(n_msg, dtype=np.int64)  # resting seqs (swap-remove list)
        pos = np.zeros(n_msg, dtype=np.int64)
        n_live = 0
        last_bid, last_ask = MID_TICK - 1, MID_TICK + 1
        lam_side = lam_cum[-1]
        t = 0
        nb = 0
        n_seq = 0
        for e in range(n_msg):
            t += 1 + np.int64(rng.exponential(mean_gap_ns))
            bb = book.meta[0, B.M_BEST_BID]
            ba = book.meta[0, B.M_BEST_ASK]
            if bb != B.NO_BID:
                last_bid = bb
            if ba != B.NO_ASK:
                last_ask = ba
            total = 2.0 * lam_side + 2.0 * mu + theta * n_live
            u = rng.random() * total
            m_ts[e] = t
            if u < 2.0 * lam_side:  # limit order at d ticks from the opposite best
                side = BID if u < lam_side else ASK
                v = (u - (0.0 if side == BID else lam_side))
                d = 1
                while d < lam_cum.shape[0] and v >= lam_cum[d - 1]:
                    d += 1
                price = last_ask - d if side == BID else last_bid + d
                qty = rng.integers(1, 10)
                seq = n_seq
                n_seq += 1
                oid = B.add_limit(book, 0, side, price, qty, B.OWNER_BACKGROUND, fills)
                created[seq] = oid
                rem[seq] = qty
                side_of[seq] = side
                price_of[seq] = price
                live[n_live] = seq
                pos[seq] = n_live
                n_live += 1
                m_kind[e], m_side[e], m_price[e], m_qty[e], m_ref[e] = MSG_LIMIT, side, price, qty, seq
                b_type[nb], b_side[nb], b_price[nb], b_qty[nb], b_oid[nb], b_ts[nb] = MBO_ADD, side, price, qty, seq, t
                nb += 1
            elif u < 2.0 * lam_side + 2.0 * mu:  # market order
                side = BID if u < 2.0 * lam_side + mu else ASK
                qty = rng.integers(1, 30)
                fills.counts[0, 0] = 0
                B.market_order(book, 0, side, qty, B.OWNER_BACKGROUND, fills)
                m_kind[e], m_side[e], m_price[e], m_qty[e], m_ref[e] = MSG_MARKET, side, 0, qty, -1
                for k in range(fills.counts[0, 0]):
                    seq = fills.records[0, k, B.F_MAKER_SEQ]
                    q = fills.records[0, k, B.F_QTY]
                    px = fills.records[0, k, B.F_PRICE]
                    rem[seq] -= q
                    ms = side_of[seq]
                    b_type[nb], b_side[nb], b_price[nb], b_qty[nb], b_oid[nb], b_ts[nb] = MBO_FILL, ms, px, q, seq, t
                    nb += 1
                    if rem[seq] > 0:
                        b_type[nb], b_side[nb], b_price[nb], b_qty[nb], b_oid[nb], b_ts[nb] = (
                            MBO_MODIFY, ms, px, rem[seq], seq, t)
                    else:
                        b_type[nb], b_side[nb], b_price[nb], b_qty[nb], b_oid[nb], b_ts[nb] = (
                            MBO_CANCEL, ms, px, 0, seq, t)
                        j = pos[seq]
                        n_live -= 1
                        live[j] = live[n_live]
                        pos[live[j]] = j
                    nb += 1
                fills.counts[0, 0] = 0
            elif n_live > 0:  # cancel a uniformly chosen resting order
                j = rng.integers(0, n_live)
                seq = live[j]
                B.cancel(book, 0, created[seq])
                rem[seq] = 0
                n_live -= 1
                live[j] = live[n_live]
                pos[live[j]] = j
                m_kind[e], m_side[e], m_price[e], m_qty[e], m_ref[e] = MSG_CANCEL, side_of[seq], price_of[seq], 0, seq
                b_type[nb], b_side[nb], b_price[nb], b_qty[nb], b_oid[nb], b_ts[nb] = (
                    MBO_CANCEL, side_of[seq], price_of[seq], 0, seq, t)
                nb += 1
            bb = book.meta[0, B.M_BEST_BID]
            ba = book.meta[0, B.M_BEST_ASK]
            if bb != B.NO_BID and ba != B.NO_ASK:
                B.keep_centered(book, 0, (bb + ba) // 2)
        return nb, n_seq

    book, fills = B.make_book(1, LEVELS, MAX_ORDERS), B.make_fill_log(1, 256)
    B.reset_book(book, 0, MID_TICK - LEVELS // 2)
    m = {k: np.zeros(n_msg, dtype=np.int64) for k in ("kind", "side", "price", "qty", "ref", "ts")}
    cap = 3 * n_msg
    b = {k: np.zeros(cap, dtype=np.int64) for k in ("type", "side", "price", "qty", "oid", "ts")}
    nb, n_seq = _gen(book, fills, n_msg, np.random.default_rng(seed), lam_cum, cst_mu, cancel_rate, mean_gap_us * 1e3,
                     m["kind"], m["side"], m["price"], m["qty"], m["ref"], m["ts"],
                     b["type"], b["side"], b["price"], b["qty"], b["oid"], b["ts"])
    if nb > cap or book.meta[0, B.M_N_REJECTED] != 0:
        raise RuntimeError("generator overflow or rejected orders; raise MAX_ORDERS")
    out = {f"msg_{k}": v for k, v in m.items()}
    out.update({f"mbo_{k}": v[:nb] for k, v in b.items()})
    out["n_seq"] = np.int64(n_seq)
    out["end"] = np.asarray(_lob_end_state(book), dtype=np.int64)
    return out


def _lob_end_state(book) -> tuple[int, int, int, int, int]:
    """(best bid, best ask, resting background lots, bid levels, ask levels) of lobgym book 0."""
    from lobgym.market.book import lob as B

    o = book.orders[0]
    alive = (o[:, B.O_STATUS] != B.FREE) & (o[:, B.O_OWNER] == B.OWNER_BACKGROUND)
    sides, prices = o[alive, B.O_SIDE], o[alive, B.O_PRICE]
    bids, asks = prices[sides == 0], prices[sides == 1]
    best_bid = int(bids.max()) if bids.size else -1
    best_ask = int(asks.min()) if asks.size else -1
    return best_bid, best_ask, int(o[alive, B.O_QTY].sum()), len(np.unique(bids)), len(np.unique(asks))


# ------------------------------------------------------------------------------------------ workers
def _lob_kernels():
    import numba

    from lobgym.market.book import lob as B
    from lobgym.market.constants import ASK, BID

    @numba.njit(cache=False)
    def _requote(book, fills, agent):
        # agent = [bid id, ask id, quotes posted, agent fills]
        if agent[0] != B.NO_ORDER:
            B.cancel(book, 0, agent[0])
        if agent[1] != B.NO_ORDER:
            B.cancel(book, 0, agent[1])
        agent[0] = B.NO_ORDER
        agent[1] = B.NO_ORDER
        bb = book.meta[0, B.M_BEST_BID]
        ba = book.meta[0, B.M_BEST_ASK]
        if bb != B.NO_BID:
            agent[0] = B.add_limit(book, 0, BID, bb, 1, B.OWNER_AGENT, fills)
        if ba != B.NO_ASK:
            agent[1] = B.add_limit(book, 0, ASK, ba, 1, B.OWNER_AGENT, fills)
        agent[2] += 1

    @numba.njit(cache=False)
    def _after(book, fills, agent):
        for k in range(fills.counts[0, 0]):
            if fills.records[0, k, B.F_MAKER_OWNER] == B.OWNER_AGENT:
                agent[3] += 1
        fills.counts[0, 0] = 0
        bb = book.meta[0, B.M_BEST_BID]
        ba = book.meta[0, B.M_BEST_ASK]
        if bb != B.NO_BID and ba != B.NO_ASK:
            B.keep_centered(book, 0, (bb + ba) // 2)

    @numba.njit(cache=False)
    def replay_mbo(book, fills, typ, side, price, qty, oid, ts, n, created, quote_ns, agent):
        next_q = quote_ns
        for e in range(n):
            while quote_ns > 0 and ts[e] >= next_q:
                _requote(book, fills, agent)
                next_q += quote_ns
            t = typ[e]
            if t == MBO_ADD:
                created[oid[e]] = B.add_limit(book, 0, side[e], price[e], qty[e], B.OWNER_BACKGROUND, fills)
            elif t == MBO_CANCEL:
                B.cancel(book, 0, created[oid[e]])
            elif t == MBO_MODIFY:
                B.reduce(book, 0, created[oid[e]], qty[e])
            # MBO_FILL: nothing to do for the depth (the modify/cancel row that follows updates it)
            _after(book, fills, agent)

    @numba.njit(cache=False)
    def replay_match(book, fills, kind, side, price, qty, ref, ts, n, created, quote_ns, agent):
        next_q = quote_ns
        for e in range(n):
            while quote_ns > 0 and ts[e] >= next_q:
                _requote(book, fills, agent)
                next_q += quote_ns
            k = kind[e]
            if k == MSG_LIMIT:
                created[ref[e]] = B.add_limit(book, 0, side[e], price[e], qty[e], B.OWNER_BACKGROUND, fills)
            elif k == MSG_MARKET:
                B.market_order(book, 0, side[e], qty[e], B.OWNER_BACKGROUND, fills)
            else:
                B.cancel(book, 0, created[ref[e]])
            _after(book, fills, agent)

    return replay_mbo, replay_match


def run_lobgym(name: str, data: dict) -> dict:
    """Time one lobgym replay (after a warm-up on the first rows); returns seconds and end state."""
    from lobgym.market.book import lob as B

    replay_mbo, replay_match = _lob_kernels()
    _, quote, _ = MEASUREMENTS[name]
    if name.startswith("lob_mbo"):
        fn, pre = replay_mbo, "mbo_"
        cols = [data[pre + c] for c in ("type", "side", "price", "qty", "oid", "ts")]
    else:
        fn, pre = replay_match, "msg_"
        cols = [data[pre + c] for c in ("kind", "side", "price", "qty", "ref", "ts")]
    n_rows = len(cols[0])
    n_seq = int(data["n_seq"])
    quote_ns = QUOTE_NS if quote else 0

    def fresh():
        book, fills = B.make_book(1, LEVELS, MAX_ORDERS), B.make_fill_log(1, 256)
        B.reset_book(book, 0, MID_TICK - LEVELS // 2)
        agent = np.array([B.NO_ORDER, B.NO_ORDER, 0, 0], dtype=np.int64)
        return book, fills, np.full(n_seq, B.NO_ORDER, dtype=np.int64), agent

    book, fills, created, agent = fresh()  # warm-up: compile and run the first rows
    fn(book, fills, *cols, min(WARMUP_ROWS, n_rows), created, quote_ns, agent)
    book, fills, created, agent = fresh()
    t0 = time.perf_counter()
    fn(book, fills, *cols, n_rows, created, quote_ns, agent)
    seconds = time.perf_counter() - t0
    if book.meta[0, B.M_N_REJECTED] != 0:
        raise RuntimeError("lobgym book rejected orders; raise MAX_ORDERS")
    for a in agent[:2]:
        if a != B.NO_ORDER:
            B.cancel(book, 0, a)
    return {"seconds": seconds, "rows": n_rows, "end": list(_lob_end_state(book)), "quotes": int(agent[2]),
            "agent_fills": int(agent[3]), "parked": int(book.meta[0, B.M_N_PARKED])}


def _hbt_events(data: dict, n: int):
    from hftbacktest import (
        ADD_ORDER_EVENT,
        BUY_EVENT,
        CANCEL_ORDER_EVENT,
        EXCH_EVENT,
        FILL_EVENT,
        LOCAL_EVENT,
        MODIFY_ORDER_EVENT,
        SELL_EVENT,
    )
    from hftbacktest.types import event_dtype

    flag = np.array([ADD_ORDER_EVENT, CANCEL_ORDER_EVENT, MODIFY_ORDER_EVENT, FILL_EVENT], dtype=np.uint64)
    ev = np.zeros(n, dtype=event_dtype)
    side = np.where(data["mbo_side"][:n] == 0, BUY_EVENT, SELL_EVENT).astype(np.uint64)
    ev["ev"] = flag[data["mbo_type"][:n]] | side | np.uint64(EXCH_EVENT | LOCAL_EVENT)
    ev["exch_ts"] = data["mbo_ts"][:n]
    ev["local_ts"] = data["mbo_ts"][:n]
    ev["px"] = data["mbo_price"][:n] * TICK
    ev["qty"] = data["mbo_qty"][:n]
    ev["order_id"] = data["mbo_oid"][:n]
    return ev


def run_hbt(name: str, data: dict) -> dict:
    """Time one hftbacktest replay (after a warm-up backtest on the first rows)."""
    import hftbacktest as H
    from numba import njit

    _, quote, _ = MEASUREMENTS[name]
    roi = "roi" in name

    def build(ev):
        asset = (H.BacktestAsset().data(ev).linear_asset(1.0).constant_order_latency(0, 0).l3_fifo_queue_model()
                 .no_partial_fill_exchange().trading_value_fee_model(0.0, 0.0).tick_size(TICK).lot_size(1.0))
        if roi:
            return H.ROIVectorMarketDepthBacktest([asset.roi_lb(ROI_LB).roi_ub(ROI_UB)])
        return H.HashMapMarketDepthBacktest([asset])

    @njit
    def replay(hbt):
        n = 0
        while hbt.elapse(10**18) == 0:
            n += 1
        return n, 0

    @njit
    def replay_quote(hbt, step):
        next_id = 1
        quotes = 0
        while hbt.elapse(step) == 0:
            hbt.clear_inactive_orders(0)
            values = hbt.orders(0).values()
            while values.has_next():
                order = values.get()
                if order.cancellable:
                    hbt.cancel(0, order.order_id, False)
            depth = hbt.depth(0)
            if depth.best_bid_tick > -(2**62):
                hbt.submit_buy_order(0, next_id, depth.best_bid, 1.0, H.GTX, H.LIMIT, False)
                next_id += 1
            if depth.best_ask_tick < 2**62:
                hbt.submit_sell_order(0, next_id, depth.best_ask, 1.0, H.GTX, H.LIMIT, False)
                next_id += 1
            quotes += 1
        return quotes, hbt.state_values(0).num_trades

    @njit
    def end_state_hashmap(hbt):
        depth = hbt.depth(0)
        snap = depth.snapshot()
        total = 0.0
        n_bid = 0
        n_ask = 0
        for k in range(len(snap)):
            total += snap[k].qty
            if snap[k].ev & H.BUY_EVENT:
                n_bid += 1
            else:
                n_ask += 1
        depth.snapshot_free(snap)
        return depth.best_bid_tick, depth.best_ask_tick, total, n_bid, n_ask

    @njit
    def end_state_roi(hbt):
        depth = hbt.depth(0)
        bids, asks = depth.bid_depth, depth.ask_depth
        total = bids.sum() + asks.sum()
        return depth.best_bid_tick, depth.best_ask_tick, total, (bids > 0).sum(), (asks > 0).sum()

    end_state = end_state_roi if roi else end_state_hashmap  # ROIVectorMarketDepth has no snapshot()

    def run(hbt):
        return replay_quote(hbt, QUOTE_NS) if quote else replay(hbt)

    n_rows = len(data["mbo_type"])
    warm = _hbt_events(data, min(WARMUP_ROWS, n_rows))
    hbt = build(warm)
    run(hbt)
    end_state(hbt)
    hbt.close()
    ev = _hbt_events(data, n_rows)
    hbt = build(ev)
    t0 = time.perf_counter()
    quotes, trades = run(hbt)
    seconds = time.perf_counter() - t0
    bb, ba, total, n_bid, n_ask = end_state(hbt)
    hbt.close()
    return {"seconds": seconds, "rows": n_rows, "end": [int(bb), int(ba), int(round(total)), int(n_bid), int(n_ask)],
            "quotes": int(quotes), "agent_fills": int(trades), "version": H.__version__}


# ------------------------------------------------------------------------------------------ driver
def _run_child(args, name: str, data_path: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", name, "--data", data_path,
           "--hbt-path", args.hbt_path]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fmt_range(vals: list[float]) -> str:
    """``median [min-max]`` of rates in millions."""
    return f"{statistics.median(vals) / 1e6:6.2f} [{min(vals) / 1e6:.2f}-{max(vals) / 1e6:.2f}]"


def main() -> None:
    """Generate the stream, run every measurement in its own process, print the table and the checks."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--messages", type=int, default=2_000_000, help="order messages in the stream")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cancel-rate", type=float, default=0.08, help="cancel rate per resting order")
    p.add_argument("--mean-gap-us", type=float, default=50.0, help="mean gap between messages (us)")
    p.add_argument("--repeats", type=int, default=3, help="processes per measurement (median reported)")
    p.add_argument("--hbt-path", default="/tmp/lead_peers/hbt_site", help="folder holding the hftbacktest package")
    p.add_argument("--only", nargs="*", choices=list(MEASUREMENTS), help="run a subset of the measurements")
    p.add_argument("--no-roivec", action="store_true", help="skip hftbacktest's ROIVectorMarketDepth rows")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.worker:
        if args.hbt_path and os.path.isdir(args.hbt_path):
            sys.path.insert(0, args.hbt_path)
        data = dict(np.load(args.data))
        engine = MEASUREMENTS[args.worker][0]
        res = run_hbt(args.worker, data) if engine == "hftbacktest" else run_lobgym(args.worker, data)
        print(json.dumps(res))
        return

    import numba

    names = args.only or [n for n in MEASUREMENTS if not (args.no_roivec and "roi" in n)]
    t0 = time.perf_counter()
    data = generate(args.messages, args.seed, args.cancel_rate, args.mean_gap_us)
    kinds = np.bincount(data["msg_kind"], minlength=3)
    types = np.bincount(data["mbo_type"], minlength=4)
    n_msg, n_mbo = len(data["msg_kind"]), len(data["mbo_type"])
    span = data["msg_ts"][-1] / 1e9
    print(f"python {platform.python_version()}, numpy {np.__version__}, numba {numba.__version__}, "
          f"{os.cpu_count()} cpus; stream generated in {time.perf_counter() - t0:.1f} s")
    print(f"workload: {n_msg:,} order messages over {span:.1f} s (limit {kinds[MSG_LIMIT]:,}, market "
          f"{kinds[MSG_MARKET]:,}, cancel {kinds[MSG_CANCEL]:,}) -> {n_mbo:,} MBO rows (add {types[MBO_ADD]:,}, "
          f"cancel {types[MBO_CANCEL]:,}, modify {types[MBO_MODIFY]:,}, fill {types[MBO_FILL]:,}); "
          f"price range {data['msg_price'][data['msg_kind'] == MSG_LIMIT].min() * TICK:.2f}-"
          f"{data['msg_price'][data['msg_kind'] == MSG_LIMIT].max() * TICK:.2f}")
    expected = [int(x) for x in data["end"]]
    print(f"generator end state: best bid {expected[0]}, best ask {expected[1]}, {expected[2]:,} resting lots, "
          f"{expected[3]} bid / {expected[4]} ask levels")

    results: dict[str, list[dict]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "stream.npz")
        np.savez(path, **data)
        for r in range(args.repeats):
            for name in names:
                res = _run_child(args, name, path)
                results[name].append(res)
                print(f"  round {r + 1}/{args.repeats} {name:16s} {n_msg / res['seconds'] / 1e6:7.2f} Mmsg/s "
                      f"({res['seconds']:.3f} s)", flush=True)

    version = next((res[0]["version"] for n, res in results.items() if "version" in res[0]), "n/a")
    print(f"\nhftbacktest {version}; median [min-max] over {args.repeats} processes; "
          f"Mmsg/s = {n_msg:,} order messages / s")
    print(f"{'measurement':32s} {'rows':>10s} {'seconds':>8s} {'Mmsg/s':>22s} {'Mrow/s':>8s} "
          f"{'quotes':>7s} {'agent fills':>11s}  end state == generator")
    med = {}
    for name in names:
        res = results[name]
        secs = [x["seconds"] for x in res]
        med[name] = statistics.median(secs)
        rows = res[0]["rows"]
        same = all(x["end"] == expected for x in res)
        note = "yes" if same else f"NO {res[0]['end']}"
        print(f"{MEASUREMENTS[name][2]:32s} {rows:>10,} {med[name]:8.3f} {fmt_range([n_msg / s for s in secs]):>22s} "
              f"{rows / med[name] / 1e6:8.2f} {res[0]['quotes']:>7,} {res[0]['agent_fills']:>11,}  {note}")
    print()
    for a, b in RATIOS:
        if a in med and b in med:
            print(f"ratio {MEASUREMENTS[a][2]} / {MEASUREMENTS[b][2]}: {med[b] / med[a]:.2f}x (messages/s)")


if __name__ == "__main__":
    main()
