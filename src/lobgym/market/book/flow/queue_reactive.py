"""The queue-reactive flow of Huang, Lehalle & Rosenbaum (2015): builder and kernels.

``FLOW_QUEUE_REACTIVE`` — the queue-reactive model of Huang, Lehalle & Rosenbaum (2015),
"Simulating and analyzing order book data: the queue-reactive model" (JASA 110(509)), on the L3
book. Each side has ``K`` queues at fixed tick positions counted from that side's best quote: level
``k`` (1 = the best) of the bids is the price ``best_bid - (k-1)``, of the asks ``best_ask + (k-1)``
(an empty side counts from its last known best, never crossing the other side). With ``q`` the
queue's size in units of ``size`` (lots / size rounded up, agent lots included, capped at ``Q``):

* limit orders join level ``k`` with rate ``qr_insert[side, k-1, q]``;
* a background order of level ``k``, chosen uniformly among that queue's background orders, is
  cancelled with total rate ``qr_cancel[side, k-1, q]`` (0 if the queue has no background order);
* market orders hit the best queue only, with rate ``qr_market[side, q_best]`` (``qr_market[BID]``
  are *sell* market orders, which consume the bid queue);
* Model II's "new best inside the spread": while both sides quote and the spread is at least two
  ticks, a ``side`` limit order arrives at a price drawn uniformly strictly inside the spread with
  rate ``qr_inside[side]`` (without it a spread, once open, could never close);
* orders left beyond level ``K`` (after the price moved away) are cancelled at ``qr_far_cancel[side]``
  per background order, so the book cannot fill up with stale orders.

``qr_insert[..., 0]`` may be positive (a queue can be rebuilt from empty); the builders force
``qr_cancel[..., 0] = qr_market[..., 0] = 0``.
"""

from __future__ import annotations

import math

import numpy as np

from lobgym.market._jit import inline, kernel
from lobgym.market.book.flow.common import (
    _ASK,
    _BID,
    FlowParams,
    _cancel_call,
    _cancellable_at,
    _far_count,
    _kth_background_at,
    _limit_call,
    _market_call,
    _pick_far,
    _placeholders,
    _rates,
    _refresh_refs,
    _size,
)
from lobgym.market.book.flow.informed import _buy_share, _jump
from lobgym.market.book.lob import M_BEST_ASK, M_BEST_BID, NO_ASK, NO_BID, level_count, level_qty
from lobgym.market.constants import STREAM_MARKET
from lobgym.market.rng import uniform

FLOW_QUEUE_REACTIVE = 2  #: FlowParams.model of the Huang, Lehalle & Rosenbaum (2015) queue-reactive flow


class QueueReactiveParams(FlowParams):
    """:class:`FlowParams` of the queue-reactive flow: its own type, so that kernels compile only the model in use."""

    __slots__ = ()


def _per_side(name: str, value, rank: int) -> np.ndarray:
    """Rates given once for both sides (rank ``rank``) or per side (rank + 1, leading axis 2)."""
    a = _rates(name, value)
    if a.ndim == rank:
        a = np.stack([a, a])
    if a.ndim != rank + 1 or a.shape[0] != 2:
        raise ValueError(f"{name}: shape {a.shape}; must have rank {rank} (both sides) or {rank + 1} with a "
                         "leading axis of 2 (BID, ASK)")
    return np.ascontiguousarray(a)


def queue_reactive_params(insert, cancel, market, inside=0.0, far_cancel=0.0, size: int = 1) -> FlowParams:
    """Queue-reactive flow from tables indexed by queue size ``q = 0 .. Q``.

    Queue sizes are in units of ``size``; larger queues use column ``Q``.

    Args:
        insert: (K, Q + 1), or (2, K, Q + 1) per side: limit insertion rate at level k (1 = best).
        cancel: same shape: total cancellation rate of level k's queue (column 0 is ignored).
        market: (Q + 1,) or (2, Q + 1): rate of market orders consuming side's best queue (``[BID]``:
            sell orders). Column 0 is ignored.
        inside: rate (or (2,) per side) of a limit order strictly inside a spread of >= 2 ticks.
        far_cancel: cancel rate (or (2,)) per background order beyond level K.
        size: lots per order.
    """
    ins = _per_side("insert", insert, 2)
    can = np.array(_per_side("cancel", cancel, 2))
    mkt = np.array(_per_side("market", market, 1))
    if can.shape != ins.shape or mkt.shape != (2, ins.shape[2]):
        raise ValueError(f"cancel {can.shape[1:]} and market {mkt.shape[1:]} must match insert {ins.shape[1:]} "
                         "(levels K x queue sizes 0..Q)")
    can[:, :, 0] = 0.0  # an empty queue has nothing to cancel or to trade against
    mkt[:, 0] = 0.0
    return QueueReactiveParams(**(_placeholders() | {
        "model": FLOW_QUEUE_REACTIVE, "size": _size(size), "qr_insert": ins, "qr_cancel": can, "qr_market": mkt,
        "qr_inside": _per_side("inside", inside, 0), "qr_far_cancel": _per_side("far_cancel", far_cancel, 0)}))



# -------------------------------------------------------------------------------------- queue-reactive
@inline
def _qr_anchor(book, i, flow, side):
    """Price of level 1 of ``side``: its best quote, else its last one (kept off the other side)."""
    if side == _BID:
        if book.meta[i, M_BEST_BID] != NO_BID:
            return book.meta[i, M_BEST_BID]
        ask = book.meta[i, M_BEST_ASK]
        return min(flow.last_bid[i], ask - 1) if ask != NO_ASK else flow.last_bid[i]
    if book.meta[i, M_BEST_ASK] != NO_ASK:
        return book.meta[i, M_BEST_ASK]
    bid = book.meta[i, M_BEST_BID]
    return max(flow.last_ask[i], bid + 1) if bid != NO_BID else flow.last_ask[i]


@inline
def _qr_queue(book, i, p, side, price):
    """Queue size at ``price`` in units of ``size`` (rounded up), capped at Q."""
    lots = level_qty(book, i, side, price)
    return min((lots + p.size - 1) // p.size, p.qr_insert.shape[2] - 1)


@kernel
def _qr_far_count(book, i, side, anchor, n_levels, agent):
    """Cancellable orders of ``side`` beyond level K."""
    near = 0
    if not agent:
        for k in range(n_levels):
            near += level_count(book, i, side, anchor - k if side == _BID else anchor + k)
    ref = anchor + 1 if side == _BID else anchor - 1  # distance > K from ref <=> beyond level K
    return _far_count(book, i, side, ref, n_levels, near, agent)


@kernel
def _qr_side_rate(book, i, p, side, anchor, agent):
    """Total insertion and cancellation intensity of ``side``'s K levels, and the cancellation part."""
    rate = 0.0
    cancels = 0.0
    for k in range(p.qr_insert.shape[1]):
        price = anchor - k if side == _BID else anchor + k
        q = _qr_queue(book, i, p, side, price)
        rate += p.qr_insert[side, k, q]
        if q > 0 and _cancellable_at(book, i, side, price, agent) > 0:
            cancels += p.qr_cancel[side, k, q]
    return rate + cancels, cancels


@kernel
def _qr_side_pick(book, i, flow, p, rng, fills, t, side, anchor, agent, x):
    """Apply the insertion or cancellation of ``side``'s levels selected by ``x``.

    Returns the residual ``x`` (>= 0: not on this side) or -1.0 once an event was applied.
    """
    for k in range(p.qr_insert.shape[1]):
        price = anchor - k if side == _BID else anchor + k
        q = _qr_queue(book, i, p, side, price)
        rate = p.qr_insert[side, k, q]
        if x < rate:
            _limit_call(book, i, flow, fills, t, side, price, p.size)
            return -1.0
        x -= rate
        if q > 0:
            n = _cancellable_at(book, i, side, price, agent)
            if n > 0:
                rate = p.qr_cancel[side, k, q]
                if x < rate:
                    j = min(int(uniform(rng, i, STREAM_MARKET) * n), n - 1)
                    _cancel_call(book, i, flow, t, side, _kth_background_at(book, i, side, price, j))
                    return -1.0
                x -= rate
    return x


@kernel
def _advance_qr(book, i, flow, p, rng, fills, t_end, agent_bid, agent_ask):
    """:func:`advance_one` for FLOW_QUEUE_REACTIVE (Gillespie next-event loop)."""
    n_levels = p.qr_insert.shape[1]
    jump_rate = p.informed_rate if p.informed else 0.0
    t = flow.t[i]
    applied = 0
    while True:
        _refresh_refs(book, i, flow)
        a_bid = _qr_anchor(book, i, flow, _BID)
        a_ask = _qr_anchor(book, i, flow, _ASK)
        r_bid, c_bid = _qr_side_rate(book, i, p, _BID, a_bid, agent_bid)
        r_ask, c_ask = _qr_side_rate(book, i, p, _ASK, a_ask, agent_ask)
        m_buy = p.qr_market[_ASK, _qr_queue(book, i, p, _ASK, a_ask)]  # buy market orders eat the ask queue
        m_sell = p.qr_market[_BID, _qr_queue(book, i, p, _BID, a_bid)]
        if p.informed:
            both = m_buy + m_sell
            m_buy = both * _buy_share(p, flow, i)
            m_sell = both - m_buy
        gap = 0
        if book.meta[i, M_BEST_BID] != NO_BID and book.meta[i, M_BEST_ASK] != NO_ASK:
            gap = book.meta[i, M_BEST_ASK] - book.meta[i, M_BEST_BID] - 1  # free ticks inside the spread
        in_bid = p.qr_inside[_BID] if gap > 0 else 0.0
        in_ask = p.qr_inside[_ASK] if gap > 0 else 0.0
        far_bid = p.qr_far_cancel[_BID] * _qr_far_count(book, i, _BID, a_bid, n_levels, agent_bid)
        far_ask = p.qr_far_cancel[_ASK] * _qr_far_count(book, i, _ASK, a_ask, n_levels, agent_ask)
        c_all = c_bid + c_ask + far_bid + far_ask
        total = r_bid + r_ask + m_buy + m_sell + in_bid + in_ask + far_bid + far_ask + jump_rate
        if total <= 0.0:
            break
        wait = -math.log(1.0 - uniform(rng, i, STREAM_MARKET)) / total
        if t + wait >= t_end:
            flow.cancel_intensity[i] += (t_end - t) * c_all
            break
        flow.cancel_intensity[i] += wait * c_all
        t += wait
        x = uniform(rng, i, STREAM_MARKET) * total
        if x < r_bid:
            x = _qr_side_pick(book, i, flow, p, rng, fills, t, _BID, a_bid, agent_bid, x)
            if x >= 0.0:  # float rounding past the side's last rate: nothing happens
                continue
        elif x < r_bid + r_ask:
            x = _qr_side_pick(book, i, flow, p, rng, fills, t, _ASK, a_ask, agent_ask, x - r_bid)
            if x >= 0.0:
                continue
        else:
            x -= r_bid + r_ask
            if x < m_buy:
                _market_call(book, i, flow, fills, t, _BID, p.size)
            elif x < m_buy + m_sell:
                _market_call(book, i, flow, fills, t, _ASK, p.size)
            elif x < m_buy + m_sell + in_bid + in_ask:
                price = book.meta[i, M_BEST_BID] + 1 + min(int(uniform(rng, i, STREAM_MARKET) * gap), gap - 1)
                _limit_call(book, i, flow, fills, t, _BID if x < m_buy + m_sell + in_bid else _ASK, price, p.size)
            elif x < m_buy + m_sell + in_bid + in_ask + far_bid:
                k = int((x - (m_buy + m_sell + in_bid + in_ask)) / p.qr_far_cancel[_BID])
                _cancel_call(book, i, flow, t, _BID, _pick_far(book, i, _BID, a_bid + 1, n_levels, k, agent_bid))
            elif x < m_buy + m_sell + in_bid + in_ask + far_bid + far_ask:
                k = int((x - (m_buy + m_sell + in_bid + in_ask + far_bid)) / p.qr_far_cancel[_ASK])
                _cancel_call(book, i, flow, t, _ASK, _pick_far(book, i, _ASK, a_ask - 1, n_levels, k, agent_ask))
            else:  # the fundamental jumps (or float rounding fell past the last rate: nothing happens)
                if jump_rate > 0.0:
                    _jump(p, flow, rng, i)
                continue
        applied += 1
    flow.t[i] = t_end
    return applied
