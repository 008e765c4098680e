"""The Cont–Stoikov–Talreja (2010) zero-intelligence flow: calibration, builders and kernel.

``FLOW_CST`` — zero-intelligence flow of Cont, Stoikov & Talreja (2010), "A stochastic model for
order book dynamics" (Operations Research 58(3)). Distances are counted from the *opposite* best
quote: a buy limit order at distance ``d`` is placed at ``best_ask - d`` and a sell limit order at
``best_bid + d`` (``d = 1 .. D``). Independently:

* buy (sell) limit orders arrive at distance ``d`` with rate ``lam[BID, d-1]`` (``lam[ASK, d-1]``);
* buy (sell) market orders arrive with rate ``mu[BID]`` (``mu[ASK]``) and walk the opposite side;
* every resting background order at distance ``d <= D`` is cancelled with rate ``theta[side, d-1]``,
  and every one further out with rate ``theta[side, D]``.
"""

from __future__ import annotations

import math

import numpy as np

from lobgym.market._jit import inline, kernel
from lobgym.market.book.flow.common import (
    _ASK,
    _BID,
    FlowParams,
    _cancel_event,
    _cancel_rate,
    _far_prices,
    _kth_background_at,
    _limit,
    _market,
    _pick_cancel,
    _pick_distance,
    _pick_parked_far,
    _placeholders,
    _profiles,
    _rates,
    _refresh_refs,
    _size,
)
from lobgym.market.book.flow.informed import _buy_share, _jump
from lobgym.market.book.lob import (
    LV_COUNT,
    M_BASE,
    M_RESTING,
    NO_ORDER,
    NO_SLOT,
    O_PRICE,
    O_SIDE,
    level_count,
    order_slot,
)
from lobgym.market.constants import STREAM_MARKET
from lobgym.market.rng import uniform

FLOW_CST = 0  #: FlowParams.model of the Cont, Stoikov & Talreja (2010) zero-intelligence flow


class CSTParams(FlowParams):
    """:class:`FlowParams` of the CST (2010) flow: its own type, so that kernels compile only the model in use."""

    __slots__ = ()

#: The calibration of Cont, Stoikov & Talreja (2010), Table 2: limit arrival rates at distance
#: 1..5 from the opposite best, k / d**alpha beyond; cancellation rates per order at 1..5 (the
#: last one used further out); market order rate. Rates per second, orders of one unit.
CST2010 = {"lam_table": (1.85, 1.51, 1.09, 0.88, 0.77), "theta_table": (0.71, 0.81, 0.68, 0.56, 0.47),
           "mu": 0.94, "k": 1.92, "alpha": 0.52}


def cst_params_from_rates(lam, theta, mu, size: int = 1) -> FlowParams:
    """CST flow from per-side arrays: ``lam (2, D)``, ``theta (2, D + 1)``, ``mu (2,)`` (BID = buyers)."""
    lam = _rates("lam", lam)
    if lam.ndim != 2 or lam.shape[0] != 2 or lam.shape[1] < 1:
        raise ValueError(f"lam: shape {lam.shape}; must be (2, D) with D >= 1")
    theta = _rates("theta", theta, (2, lam.shape[1] + 1))
    return CSTParams(**(_placeholders() | {
        "model": FLOW_CST, "size": _size(size), "lam": lam, "lam_cum": np.ascontiguousarray(np.cumsum(lam, axis=1)),
        "theta": theta, "mu": _rates("mu", mu, (2,))}))


def cst_params(lam_table, theta_table, mu: float, levels: int, k: float | None = None, alpha: float | None = None,
               size: int = 1, theta_beyond: float | None = None) -> FlowParams:
    """Symmetric CST rates for ``levels`` distances.

    ``lam_table`` for the first distances and ``k / d**alpha`` beyond it; ``theta_table`` for the first distances,
    then its last value (or ``theta_beyond``) for every distance further out.
    """
    lam, theta = _profiles(lam_table, theta_table, levels, k, alpha, theta_beyond)
    return cst_params_from_rates(np.stack([lam, lam]), np.stack([theta, theta]), [mu, mu], size)


# Known agent orders. The env knows the ids of the agent's orders that may rest on a side (at most
# two: the current one and an old one whose cancel is still on its way), so instead of walking the
# queues to skip them, the CST path counts every order from the level arrays and subtracts the
# agent's: the same counts, so the same intensities and choices bit for bit.
_NOWHERE = np.iinfo(np.int64).min  #: price of an agent order that does not rest on the side


@inline
def _agent_price(book, i, oid, side):
    """Price of the agent's order ``oid`` if it rests on ``side`` (window or parked), else _NOWHERE."""
    slot = order_slot(book, i, oid)
    if slot == NO_SLOT or book.orders[i, slot, O_SIDE] != side:
        return _NOWHERE
    return book.orders[i, slot, O_PRICE]


@inline
def _agent_prices(book, i, side, a0, a1):
    """Prices of the agent's orders ``a0``, ``a1`` resting on ``side``, and how many of them rest.

    _NOWHERE: none; ``a1`` is ignored if it is ``a0``.
    """
    p0 = _agent_price(book, i, a0, side)
    p1 = _agent_price(book, i, a1, side) if a1 != a0 else _NOWHERE
    return p0, p1, np.int64(p0 != _NOWHERE) + np.int64(p1 != _NOWHERE)


@kernel
def _cancel_rate_ids(book, i, theta, side, ref, a0, a1):
    """:func:`_cancel_rate` when the agent's orders on ``side`` are among the ids ``a0``, ``a1``.

    Every order of ``side`` lies at a distance >= 1 from ``ref`` but the agent's (which the flow
    never cancels), so the background orders beyond D are all resting ones but the agent's and the
    near ones, as in the fast path.
    """
    levels = theta.shape[1] - 1
    j = ref - book.meta[i, M_BASE]
    lo = j - levels if side == _BID else j + 1
    window = lo >= 0 and lo + levels <= book.levels.shape[1]
    p0, p1, n_agent = _agent_prices(book, i, side, a0, a1)
    rate = 0.0
    near = 0
    for d in range(1, levels + 1):
        price = ref - d if side == _BID else ref + d
        if window:  # every price strictly on side's side of the opposite best holds orders of side only
            n = book.levels[i, j - d if side == _BID else j + d, LV_COUNT]
        else:
            n = level_count(book, i, side, price)
        n -= np.int64(price == p0) + np.int64(price == p1)
        near += n
        rate += theta[side, d - 1] * n
    far = book.meta[i, M_RESTING + side] - n_agent - near
    return rate + theta[side, levels] * far


@kernel
def _pick_cancel_ids(book, i, theta, side, ref, x, a0, a1):
    """:func:`_pick_cancel` when the agent's orders on ``side`` are among the ids ``a0``, ``a1``."""
    levels = theta.shape[1] - 1
    p0, p1, _ = _agent_prices(book, i, side, a0, a1)
    for d in range(1, levels + 1):
        price = ref - d if side == _BID else ref + d
        w = theta[side, d - 1]
        if w <= 0.0:
            continue
        n = level_count(book, i, side, price) - np.int64(price == p0) - np.int64(price == p1)
        if x < w * n:
            return _kth_background_at(book, i, side, price, int(x / w))
        x -= w * n
    w = theta[side, levels]
    k = int(x / w) if w > 0.0 else 0
    lo, hi = _far_prices(book, i, side, ref, levels)
    if side == _BID:
        for price in range(hi, lo - 1, -1):
            n = level_count(book, i, side, price) - np.int64(price == p0) - np.int64(price == p1)
            if k < n:
                return _kth_background_at(book, i, side, price, k)
            k -= n
    else:
        for price in range(lo, hi + 1):
            n = level_count(book, i, side, price) - np.int64(price == p0) - np.int64(price == p1)
            if k < n:
                return _kth_background_at(book, i, side, price, k)
            k -= n
    return _pick_parked_far(book, i, side, ref, levels, k)



# ------------------------------------------------------------------------------------------------- CST
@kernel
def _advance_cst(book, i, flow, p, rng, fills, t_end, agent_bid, agent_ask, bid0, bid1, ask0, ask1):
    """:func:`advance_one` for FLOW_CST (Gillespie next-event loop).

    ``agent_*`` are booleans (the agent may have any orders on that side: walk the queues); else the agent's orders on
    a side are among the ids ``bid0, bid1`` / ``ask0, ask1`` (NO_ORDER: none).
    """
    n_levels = p.lam.shape[1]
    lam_bid = p.lam_cum[_BID, n_levels - 1]
    lam_ask = p.lam_cum[_ASK, n_levels - 1]
    informed = p.informed
    jump_rate = p.informed_rate if informed else 0.0
    ids_bid = not agent_bid and (bid0 != NO_ORDER or bid1 != NO_ORDER)
    ids_ask = not agent_ask and (ask0 != NO_ORDER or ask1 != NO_ORDER)
    t = flow.t[i]
    applied = 0
    # A side's cancellation intensity changes only when its order count or its reference (the
    # opposite best) does: an event adds orders to one side or removes them from one side, and
    # partial fills change no count. Recompute only then (same values, bit for bit).
    c_bid = 0.0
    c_ask = 0.0
    seen_bid = np.int64(-1)  # resting bids when c_bid was computed
    seen_ask = np.int64(-1)
    seen_ref_ask = np.int64(0)
    seen_ref_bid = np.int64(0)
    while True:
        _refresh_refs(book, i, flow)
        ref_ask = flow.last_ask[i]  # bids are placed and cancelled relative to the best ask
        ref_bid = flow.last_bid[i]
        if book.meta[i, M_RESTING + _BID] != seen_bid or ref_ask != seen_ref_ask:
            if ids_bid:
                c_bid = _cancel_rate_ids(book, i, p.theta, _BID, ref_ask, bid0, bid1)
            else:
                c_bid = _cancel_rate(book, i, p.theta, _BID, ref_ask, agent_bid)
            seen_bid = book.meta[i, M_RESTING + _BID]
            seen_ref_ask = ref_ask
        if book.meta[i, M_RESTING + _ASK] != seen_ask or ref_bid != seen_ref_bid:
            if ids_ask:
                c_ask = _cancel_rate_ids(book, i, p.theta, _ASK, ref_bid, ask0, ask1)
            else:
                c_ask = _cancel_rate(book, i, p.theta, _ASK, ref_bid, agent_ask)
            seen_ask = book.meta[i, M_RESTING + _ASK]
            seen_ref_bid = ref_bid
        if informed:
            mu_all = p.mu[_BID] + p.mu[_ASK]
            mu_buy = mu_all * _buy_share(p, flow, i)
            mu_sell = mu_all - mu_buy
        else:
            mu_buy = p.mu[_BID]
            mu_sell = p.mu[_ASK]
        book_total = lam_bid + lam_ask + mu_buy + mu_sell + c_bid + c_ask
        total = book_total + jump_rate
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
            _limit(book, i, flow, fills, t, _BID, ref_ask - _pick_distance(p, _BID, x), p.size)
        elif x < lam_bid + lam_ask:
            _limit(book, i, flow, fills, t, _ASK, ref_bid + _pick_distance(p, _ASK, x - lam_bid), p.size)
        elif x < lam_bid + lam_ask + mu_buy:
            _market(book, i, flow, fills, t, _BID, p.size)
        elif x < lam_bid + lam_ask + mu_buy + mu_sell:
            _market(book, i, flow, fills, t, _ASK, p.size)
        elif x < lam_bid + lam_ask + mu_buy + mu_sell + c_bid:
            x -= lam_bid + lam_ask + mu_buy + mu_sell
            if ids_bid:
                slot = _pick_cancel_ids(book, i, p.theta, _BID, ref_ask, x, bid0, bid1)
            else:
                slot = _pick_cancel(book, i, p.theta, _BID, ref_ask, x, agent_bid)
            _cancel_event(book, i, flow, t, _BID, slot)
        elif not informed or x < book_total:
            x -= lam_bid + lam_ask + mu_buy + mu_sell + c_bid
            if ids_ask:
                slot = _pick_cancel_ids(book, i, p.theta, _ASK, ref_bid, x, ask0, ask1)
            else:
                slot = _pick_cancel(book, i, p.theta, _ASK, ref_bid, x, agent_ask)
            _cancel_event(book, i, flow, t, _ASK, slot)
        else:
            _jump(p, flow, rng, i)
            continue
        applied += 1
    flow.t[i] = t_end
    return applied
