"""The multivariate exponential-kernel Hawkes flow: stationarity checks, builder and kernel.

``FLOW_HAWKES`` — a multivariate Hawkes process with exponential kernels over the six event types:
``lambda_e(t) = hawkes_baseline[e] + sum_{t_k < t} hawkes_alpha[e, e_k] * exp(-hawkes_beta[e] * (t - t_k))``
(one decay per *row*, i.e. per excited type; give all rows the same for a single beta). The
branching matrix ``alpha[e, j] / beta[e]`` must have spectral radius < 1 (checked by
:func:`hawkes_params`); the mean rates are then ``(I - alpha / beta)^-1 baseline``. The process is
simulated exactly by Ogata's thinning (the intensities only decay between events, so their current
sum bounds them until the next event). Where the orders go: a limit order's distance ``d`` from the
opposite best is drawn from the normalised profile ``lam[side]``; a cancel event removes one
background order of its side chosen with weights ``theta`` (by distance from the opposite best, as
in CST); market orders walk the opposite side. The Hawkes process is the process of *attempts*:
every Hawkes event excites the intensities, and a cancel event on a side with no cancellable
background order changes nothing in the book and is counted in ``FlowState.skipped`` instead of
``events`` (and not taped). On its own, that makes the depth a random walk reflected at zero, so
optionally (``hawkes_order_cancel > 0``, on in the config defaults) every background order is
*also* cancelled at rate ``hawkes_order_cancel * theta(d)``, as in the Hawkes books of Abergel &
Jedidi (2015): these cancellations are book events but not Hawkes events (they excite nothing).
``cancel_intensity`` integrates both cancel intensities (Hawkes attempts and per-order). At
``t_end`` the excitation is decayed to ``t_end`` and stored in ``FlowState.excite``, so the next
call restarts exactly.
"""

from __future__ import annotations

import math

import numpy as np

from lobgym.market._jit import inline, kernel
from lobgym.market.book.flow.common import (
    _ASK,
    _BID,
    EVENT_CANCEL_ASK,
    EVENT_CANCEL_BID,
    EVENT_LIMIT_ASK,
    EVENT_LIMIT_BID,
    EVENT_MARKET_BUY,
    EVENT_MARKET_SELL,
    N_EVENT_TYPES,
    FlowParams,
    _cancel_call,
    _cancel_rate_walk,
    _limit_call,
    _market_call,
    _pick_cancel_walk,
    _pick_distance,
    _placeholders,
    _profiles,
    _rates,
    _refresh_refs,
    _size,
)
from lobgym.market.book.flow.informed import _buy_share, _jump
from lobgym.market.book.lob import NO_SLOT
from lobgym.market.constants import STREAM_MARKET
from lobgym.market.rng import uniform

FLOW_HAWKES = 1  #: FlowParams.model of the multivariate exponential-kernel Hawkes flow


class HawkesParams(FlowParams):
    """:class:`FlowParams` of the Hawkes flow: its own type, so that kernels compile only the model in use."""

    __slots__ = ()


def hawkes_spectral_radius(alpha, beta) -> float:
    """Spectral radius of the branching matrix ``alpha[e, j] / beta[e]`` (``beta`` scalar or (6,))."""
    a = np.asarray(alpha, dtype=np.float64)
    b = np.broadcast_to(np.asarray(beta, dtype=np.float64), (a.shape[0],))
    return float(np.max(np.abs(np.linalg.eigvals(a / b[:, None]))))


def hawkes_mean_rates(baseline, alpha, beta) -> np.ndarray:
    """Stationary mean intensity per event type, ``(I - alpha / beta)^-1 baseline``."""
    a = np.asarray(alpha, dtype=np.float64)
    b = np.broadcast_to(np.asarray(beta, dtype=np.float64), (a.shape[0],))
    return np.linalg.solve(np.eye(a.shape[0]) - a / b[:, None], np.asarray(baseline, dtype=np.float64))


def hawkes_params(baseline, alpha, beta, lam_table, theta_table, levels: int, k: float | None = None,
                  lam_alpha: float | None = None, size: int = 1, theta_beyond: float | None = None,
                  order_cancel: float = 0.0) -> FlowParams:
    """Hawkes flow over the six EVENT_* types.

    Args:
        baseline: (6,) baseline intensities, EVENT_* order.
        alpha: (6, 6) ``alpha[e, j]``, the jump of ``lambda_e`` at an event of type ``j``.
        beta: decay rate, one for all rows or (6,) one per excited type ``e``.
        lam_table: relative weights of a limit order's distance 1, 2, ... from the opposite best, as in
            :func:`cst_params`.
        theta_table: relative weights of the order a cancel event removes, by distance.
        levels: distances 1..levels where limit orders arrive.
        k: with ``lam_alpha``, weights ``k / d**lam_alpha`` beyond ``lam_table``.
        lam_alpha: the exponent of that tail.
        size: lots per order.
        theta_beyond: the weight of every distance past ``theta_table`` (default: its last entry).
        order_cancel: besides the Hawkes cancel events, every background order at distance ``d`` is
            cancelled at rate ``order_cancel * theta(d)`` (0: pure Hawkes). This keeps the depth
            mean-reverting, as in Abergel & Jedidi (2015); without it the depth is a random walk
            reflected at zero (limit inflow minus Hawkes cancel and market outflow).

    Raises:
        ValueError: naming the field, e.g. when the spectral radius of ``alpha / beta`` is >= 1.
    """
    base = _rates("baseline", baseline, (N_EVENT_TYPES,))
    a = _rates("alpha", alpha, (N_EVENT_TYPES, N_EVENT_TYPES))
    b = np.array(np.broadcast_to(np.asarray(beta, dtype=np.float64), (N_EVENT_TYPES,)))
    if not np.isfinite(b).all() or (b <= 0).any():
        raise ValueError(f"beta = {np.asarray(beta).tolist()}: decay rates must be finite and > 0")
    radius = hawkes_spectral_radius(a, b)
    if radius >= 1.0:
        raise ValueError(f"alpha: the branching matrix alpha / beta has spectral radius {radius:.4g}; it must be < 1 "
                         "for a stationary Hawkes process (lower alpha or raise beta)")
    if not (math.isfinite(order_cancel) and order_cancel >= 0):
        raise ValueError(f"order_cancel = {order_cancel}: must be finite and >= 0")
    lam, theta = _profiles(lam_table, theta_table, levels, k, lam_alpha, theta_beyond)
    if lam.sum() <= 0:
        raise ValueError(f"lam = {lam.tolist()}: the distance profile needs a positive weight")
    lam2 = np.stack([lam, lam])
    return HawkesParams(**(_placeholders() | {
        "model": FLOW_HAWKES, "size": _size(size), "lam": lam2,
        "lam_cum": np.ascontiguousarray(np.cumsum(lam2, axis=1)), "theta": np.stack([theta, theta]),
        "hawkes_baseline": base, "hawkes_alpha": a,
        "hawkes_beta": np.ascontiguousarray(b), "hawkes_order_cancel": float(order_cancel)}))



# ---------------------------------------------------------------------------------------------- Hawkes
# (Not the hot path: calls instead of the inlined fast paths, which give the same values, to keep
# the compile time down.)
@inline
def _hawkes_decay(flow, i, p, dt):
    """Decay book ``i``'s excitation by ``dt`` and add the cancel intensities' integral over it."""
    integral = 0.0
    for e in range(N_EVENT_TYPES):
        x = flow.excite[i, e]
        if x != 0.0:
            decayed = x * math.exp(-p.hawkes_beta[e] * dt)
            if e == EVENT_CANCEL_BID or e == EVENT_CANCEL_ASK:
                integral += (x - decayed) / p.hawkes_beta[e]
            flow.excite[i, e] = decayed
    flow.cancel_intensity[i] += integral + dt * (p.hawkes_baseline[EVENT_CANCEL_BID]
                                                 + p.hawkes_baseline[EVENT_CANCEL_ASK])


@kernel
def _hawkes_cancel(book, i, flow, theta, rng, t, side, agent):
    """A Hawkes cancel event of ``side``: one background order chosen with weights theta.

    Returns whether one was cancelled (else the event is counted in ``skipped``).
    """
    ref = flow.last_ask[i] if side == _BID else flow.last_bid[i]
    c = _cancel_rate_walk(book, i, theta, side, ref, agent)
    slot = NO_SLOT
    if c > 0.0:
        slot = _pick_cancel_walk(book, i, theta, side, ref, uniform(rng, i, STREAM_MARKET) * c, agent)
    if slot == NO_SLOT:
        flow.skipped[i, EVENT_CANCEL_BID if side == _BID else EVENT_CANCEL_ASK] += 1
        return False
    _cancel_call(book, i, flow, t, side, slot)
    return True


@kernel
def _advance_hawkes(book, i, flow, p, rng, fills, t_end, agent_bid, agent_ask):
    """:func:`advance_one` for FLOW_HAWKES (Ogata thinning)."""
    n_levels = p.lam.shape[1]
    jump_rate = p.informed_rate if p.informed else 0.0
    per_order = p.hawkes_order_cancel
    base_total = 0.0
    for e in range(N_EVENT_TYPES):
        base_total += p.hawkes_baseline[e]
    t = flow.t[i]
    applied = 0
    while True:
        _refresh_refs(book, i, flow)
        o_bid = 0.0  # per-order cancellation intensities (constant until the next event)
        o_ask = 0.0
        if per_order > 0.0:
            o_bid = per_order * _cancel_rate_walk(book, i, p.theta, _BID, flow.last_ask[i], agent_bid)
            o_ask = per_order * _cancel_rate_walk(book, i, p.theta, _ASK, flow.last_bid[i], agent_ask)
        # Hawkes intensities only decay until the next event: their current sum bounds them (thinning).
        bound = base_total + o_bid + o_ask + jump_rate
        for e in range(N_EVENT_TYPES):
            bound += flow.excite[i, e]
        if bound <= 0.0:
            break
        wait = -math.log(1.0 - uniform(rng, i, STREAM_MARKET)) / bound
        if t + wait >= t_end:
            _hawkes_decay(flow, i, p, t_end - t)
            flow.cancel_intensity[i] += (t_end - t) * (o_bid + o_ask)
            break
        _hawkes_decay(flow, i, p, wait)
        flow.cancel_intensity[i] += wait * (o_bid + o_ask)
        t += wait
        x = uniform(rng, i, STREAM_MARKET) * bound
        # Intensities at t in EVENT_* order; with informed flow the two market orders share their sum.
        l_mb = p.hawkes_baseline[EVENT_MARKET_BUY] + flow.excite[i, EVENT_MARKET_BUY]
        l_ms = p.hawkes_baseline[EVENT_MARKET_SELL] + flow.excite[i, EVENT_MARKET_SELL]
        if p.informed:
            both = l_mb + l_ms
            l_mb = both * _buy_share(p, flow, i)
            l_ms = both - l_mb
        event = -1
        for e in range(N_EVENT_TYPES):
            if e == EVENT_MARKET_BUY:
                rate = l_mb
            elif e == EVENT_MARKET_SELL:
                rate = l_ms
            else:
                rate = p.hawkes_baseline[e] + flow.excite[i, e]
            if x < rate:
                event = e
                break
            x -= rate
        if event < 0:  # not a Hawkes event: a per-order cancellation, a jump of F, or rejected
            if x < o_bid:
                _cancel_call(book, i, flow, t, _BID, _pick_cancel_walk(book, i, p.theta, _BID, flow.last_ask[i],
                                                                  x / per_order, agent_bid))
            elif x < o_bid + o_ask:
                _cancel_call(book, i, flow, t, _ASK, _pick_cancel_walk(book, i, p.theta, _ASK, flow.last_bid[i],
                                                                  (x - o_bid) / per_order, agent_ask))
            else:
                if x < o_bid + o_ask + jump_rate:
                    _jump(p, flow, rng, i)
                continue
            applied += 1
            continue
        for e in range(N_EVENT_TYPES):
            flow.excite[i, e] += p.hawkes_alpha[e, event]
        if event == EVENT_LIMIT_BID:
            d = _pick_distance(p, _BID, uniform(rng, i, STREAM_MARKET) * p.lam_cum[_BID, n_levels - 1])
            _limit_call(book, i, flow, fills, t, _BID, flow.last_ask[i] - d, p.size)
        elif event == EVENT_LIMIT_ASK:
            d = _pick_distance(p, _ASK, uniform(rng, i, STREAM_MARKET) * p.lam_cum[_ASK, n_levels - 1])
            _limit_call(book, i, flow, fills, t, _ASK, flow.last_bid[i] + d, p.size)
        elif event == EVENT_MARKET_BUY:
            _market_call(book, i, flow, fills, t, _BID, p.size)
        elif event == EVENT_MARKET_SELL:
            _market_call(book, i, flow, fills, t, _ASK, p.size)
        elif event == EVENT_CANCEL_BID:
            if not _hawkes_cancel(book, i, flow, p.theta, rng, t, _BID, agent_bid):
                continue
        elif not _hawkes_cancel(book, i, flow, p.theta, rng, t, _ASK, agent_ask):
            continue
        applied += 1
    flow.t[i] = t_end
    return applied
