"""Background order flow on the L3 book, simulated exactly in event time.

Three models share one kernel signature (:func:`advance_one`) and one parameter type
(:class:`FlowParams`); ``FlowParams.model`` (an int, chosen once when the env is built) selects the
branch. Prices are in ticks, sizes in lots; every background order is ``size`` lots.

**Event types** (columns of ``FlowState.events`` and codes on the tape): ``EVENT_LIMIT_BID``,
``EVENT_LIMIT_ASK``, ``EVENT_MARKET_BUY`` (hits the asks), ``EVENT_MARKET_SELL``,
``EVENT_CANCEL_BID``, ``EVENT_CANCEL_ASK``.

``FLOW_CST`` — zero-intelligence flow of Cont, Stoikov & Talreja (2010), "A stochastic model for
order book dynamics" (Operations Research 58(3)). Distances are counted from the *opposite* best
quote: a buy limit order at distance ``d`` is placed at ``best_ask - d`` and a sell limit order at
``best_bid + d`` (``d = 1 .. D``). Independently:

* buy (sell) limit orders arrive at distance ``d`` with rate ``lam[BID, d-1]`` (``lam[ASK, d-1]``);
* buy (sell) market orders arrive with rate ``mu[BID]`` (``mu[ASK]``) and walk the opposite side;
* every resting background order at distance ``d <= D`` is cancelled with rate ``theta[side, d-1]``,
  and every one further out with rate ``theta[side, D]``.

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

**Informed flow** (adverse selection, any model; ``FlowParams.informed``). A latent fundamental
price ``F`` (ticks, float; ``FlowState.fundamental``), set to the mid of the book by
:func:`seed_book`, jumps by ``N(0, informed_jump**2)`` at the events of a Poisson process of rate
``informed_rate`` — one more event type in the same next-event loop (counted in
``FlowState.jumps``, not on the tape). Market-order *direction* is tilted towards ``F``: with
``mu_total`` the model's total market-order intensity at that instant, buys arrive with rate
``mu_total * s`` and sells with ``mu_total * (1 - s)``, ``s = 1 / (1 + exp(-informed_kappa * (F -
mid)))`` and ``mid = (best bid + best ask) / 2`` (last known quotes for an empty side). The total
market-order rate is unchanged and the price is pulled towards ``F``; ``informed_kappa = 0`` gives
equal buy and sell rates.

**Exactness.** Between events every intensity is constant (CST, queue-reactive, informed) or
decays deterministically (Hawkes), so :func:`advance_one` runs the next-event algorithm until the
next event would fall after ``t_end``; discarding that residual waiting time and drawing afresh at
the next call is exact (exponential waiting times are memoryless; Hawkes thinning restarts from the
decayed excitation). The flow reacts to the book and so to the agent's orders, which sit in the
same queues and are cancelled by nobody but the agent. When a side is empty, distances on the other
side are counted from that side's last best quote.

**Tape.** ``FlowState.tape (N, C, 4)`` receives one row per applied event (columns ``TAPE_*``)
while ``tape_len < C``: time, event code, price (limit price; the cancelled order's price; for a
market order the best opposite price at arrival, i.e. its first execution price, NaN if that side
was empty) and lots (the limit order's size; the cancelled order's remaining lots; the lots a
market order executed). ``C = 0`` records nothing. :func:`seed_book` clears it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from lobgym.market._jit import inline, kernel
from lobgym.market.book import (
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
    keep_centered,
    level_count,
    level_qty,
    market_order,
    order_id,
    order_slot,
    reset_book,
)
from lobgym.market.constants import ASK, BID, STREAM_MARKET
from lobgym.market.rng import normal, uniform

# Sides as int64 values for the kernels: numba types a plain int global passed to a compiled
# function as a literal, and compiles that function once per literal (twice or thrice as long).
_BID = np.int64(BID)
_ASK = np.int64(ASK)
_NO_ORDER = np.int64(NO_ORDER)

# Flow models (FlowParams.model).
FLOW_CST = 0  #: Cont, Stoikov & Talreja (2010) zero-intelligence flow
FLOW_HAWKES = 1  #: multivariate exponential-kernel Hawkes flow
FLOW_QUEUE_REACTIVE = 2  #: Huang, Lehalle & Rosenbaum (2015) queue-reactive flow

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


#: The calibration of Cont, Stoikov & Talreja (2010), Table 2: limit arrival rates at distance
#: 1..5 from the opposite best, k / d**alpha beyond; cancellation rates per order at 1..5 (the
#: last one used further out); market order rate. Rates per second, orders of one unit.
CST2010 = {"lam_table": (1.85, 1.51, 1.09, 0.88, 0.77), "theta_table": (0.71, 0.81, 0.68, 0.56, 0.47),
           "mu": 0.94, "k": 1.92, "alpha": 0.52}


class FlowParams(NamedTuple):
    """Parameters of every flow model; ``model`` says which fields are read (the others are tiny
    placeholders of fixed rank, so that one compiled kernel serves all models)."""

    model: int  #: FLOW_CST, FLOW_HAWKES or FLOW_QUEUE_REACTIVE
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
            "informed_kappa": 0.0}


def _profiles(lam_table, theta_table, levels: int, k: float | None, alpha: float | None,
              theta_beyond: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-distance arrays (levels,) and (levels + 1,): ``lam_table`` then ``k / d**alpha``;
    ``theta_table`` then its last value (or ``theta_beyond``)."""
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


def cst_params_from_rates(lam, theta, mu, size: int = 1) -> FlowParams:
    """CST flow from per-side arrays: ``lam (2, D)``, ``theta (2, D + 1)``, ``mu (2,)`` (BID = buyers)."""
    lam = _rates("lam", lam)
    if lam.ndim != 2 or lam.shape[0] != 2 or lam.shape[1] < 1:
        raise ValueError(f"lam: shape {lam.shape}; must be (2, D) with D >= 1")
    theta = _rates("theta", theta, (2, lam.shape[1] + 1))
    return FlowParams(**(_placeholders() | {
        "model": FLOW_CST, "size": _size(size), "lam": lam, "lam_cum": np.ascontiguousarray(np.cumsum(lam, axis=1)),
        "theta": theta, "mu": _rates("mu", mu, (2,))}))


def cst_params(lam_table, theta_table, mu: float, levels: int, k: float | None = None, alpha: float | None = None,
               size: int = 1, theta_beyond: float | None = None) -> FlowParams:
    """Symmetric CST rates for ``levels`` distances: ``lam_table`` for the first distances and
    ``k / d**alpha`` beyond it; ``theta_table`` for the first distances, then its last value (or
    ``theta_beyond``) for every distance further out."""
    lam, theta = _profiles(lam_table, theta_table, levels, k, alpha, theta_beyond)
    return cst_params_from_rates(np.stack([lam, lam]), np.stack([theta, theta]), [mu, mu], size)


make_cst_params = cst_params  #: the historical name


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
        lam_table, k, lam_alpha, levels: relative weights of a limit order's distance 1..levels
            from the opposite best (the table, then ``k / d**lam_alpha``), as in :func:`cst_params`.
        theta_table, theta_beyond: relative weights of the order a cancel event removes, by distance.
        size: lots per order.
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
    return FlowParams(**(_placeholders() | {
        "model": FLOW_HAWKES, "size": _size(size), "lam": lam2,
        "lam_cum": np.ascontiguousarray(np.cumsum(lam2, axis=1)), "theta": np.stack([theta, theta]),
        "hawkes_baseline": base, "hawkes_alpha": a,
        "hawkes_beta": np.ascontiguousarray(b), "hawkes_order_cancel": float(order_cancel)}))


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
    """Queue-reactive flow from tables indexed by queue size ``q = 0 .. Q`` (in units of ``size``;
    larger queues use column ``Q``).

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
    return FlowParams(**(_placeholders() | {
        "model": FLOW_QUEUE_REACTIVE, "size": _size(size), "qr_insert": ins, "qr_cancel": can, "qr_market": mkt,
        "qr_inside": _per_side("inside", inside, 0), "qr_far_cancel": _per_side("far_cancel", far_cancel, 0)}))


def with_informed(params: FlowParams, rate: float, jump_ticks: float, kappa: float) -> FlowParams:
    """``params`` plus the informed component: a fundamental jumping at ``rate`` by N(0, jump_ticks**2)
    and market-order direction tilted by ``kappa`` per tick of ``F - mid``."""
    for name, value, ok in (("rate", rate, rate >= 0), ("jump_ticks", jump_ticks, jump_ticks > 0),
                            ("kappa", kappa, kappa >= 0)):
        if not (math.isfinite(value) and ok):
            raise ValueError(f"{name} = {value}: must be finite and {'> 0' if name == 'jump_ticks' else '>= 0'}")
    return params._replace(informed=True, informed_rate=float(rate), informed_jump=float(jump_ticks),
                           informed_kappa=float(kappa))


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
    """Total cancellation intensity of ``side``'s background orders under the per-order rates
    ``theta`` (2, D + 1) by distance from ``ref``, the opposite best."""
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
    """Slot of the background order selected by ``x`` in [0, cancellation intensity of ``side``)
    (NO_SLOT if none) under the per-order rates ``theta`` (2, D + 1); the caller cancels it."""
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
    """Slot of the ``k``-th cancellable order of ``side`` further than ``levels`` ticks from ``ref``:
    window levels outward first, then the parked ones in list order (the last one if ``k`` is past
    the end, which float rounding can cause; NO_SLOT if there is none)."""
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
    """Prices of the agent's orders ``a0``, ``a1`` resting on ``side`` (_NOWHERE: none; ``a1`` is
    ignored if it is ``a0``) and how many of them rest."""
    p0 = _agent_price(book, i, a0, side)
    p1 = _agent_price(book, i, a1, side) if a1 != a0 else _NOWHERE
    return p0, p1, np.int64(p0 != _NOWHERE) + np.int64(p1 != _NOWHERE)


@kernel
def _cancel_rate_ids(book, i, theta, side, ref, a0, a1):
    """:func:`_cancel_rate` when the agent's orders on ``side`` are among the ids ``a0``, ``a1``.

    Every order of ``side`` lies at a distance >= 1 from ``ref`` but the agent's (which the flow
    never cancels), so the background orders beyond D are all resting ones but the agent's and the
    near ones, as in the fast path."""
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
    """Slot of the ``k``-th background order (in queue order) of ``side`` at ``price`` (the last one
    if there are fewer; NO_SLOT if none)."""
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


@inline
def _buy_share(p, flow, i):
    """Informed flow: share of the market-order intensity that buys, 1 / (1 + exp(-kappa (F - mid)))."""
    mid = 0.5 * (flow.last_bid[i] + flow.last_ask[i])
    return 1.0 / (1.0 + math.exp(-p.informed_kappa * (flow.fundamental[i] - mid)))


@inline
def _jump(p, flow, rng, i):
    flow.fundamental[i] += p.informed_jump * normal(rng, i, STREAM_MARKET)
    flow.jumps[i] += 1


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
    """:func:`_limit` as a call (the Hawkes and queue-reactive paths: inlining every event helper
    everywhere multiplied the compile time)."""
    _limit(book, i, flow, fills, t, side, price, size)


@kernel
def _market_call(book, i, flow, fills, t, side, size):
    _market(book, i, flow, fills, t, side, size)


@kernel
def _cancel_call(book, i, flow, t, side, slot):
    _cancel_event(book, i, flow, t, side, slot)


# ------------------------------------------------------------------------------------------------- CST
@kernel
def _advance_cst(book, i, flow, p, rng, fills, t_end, agent_bid, agent_ask, bid0, bid1, ask0, ask1):
    """:func:`advance_one` for FLOW_CST (Gillespie next-event loop); ``agent_*`` are booleans (the agent
    may have any orders on that side: walk the queues); else the agent's orders on a side are among
    the ids ``bid0, bid1`` / ``ask0, ask1`` (NO_ORDER: none)."""
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
    """A Hawkes cancel event of ``side``: one background order chosen with weights theta; returns
    whether one was cancelled (else the event is counted in ``skipped``)."""
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
    """Apply the insertion or cancellation of ``side``'s levels selected by ``x``; returns the
    residual ``x`` (>= 0: not on this side) or -1.0 once an event was applied."""
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


# ------------------------------------------------------------------------------------------- drivers
@kernel
def advance_one(book, i, flow, p, rng, fills, t_end, agent_bid_lots, agent_ask_lots):
    """Run book ``i``'s flow from ``flow.t[i]`` until ``t_end``; returns the number of events applied.

    ``agent_*_lots`` say whether the agent may have orders resting on each side (0 = none), which
    selects the fast path that counts cancellable orders straight from the level arrays.
    """
    if p.model == FLOW_HAWKES:
        return _advance_hawkes(book, i, flow, p, rng, fills, t_end, agent_bid_lots > 0, agent_ask_lots > 0)
    if p.model == FLOW_QUEUE_REACTIVE:
        return _advance_qr(book, i, flow, p, rng, fills, t_end, agent_bid_lots > 0, agent_ask_lots > 0)
    return _advance_cst(book, i, flow, p, rng, fills, t_end, agent_bid_lots > 0, agent_ask_lots > 0, _NO_ORDER,
                        _NO_ORDER, _NO_ORDER, _NO_ORDER)


@kernel
def advance_one_ids(book, i, flow, p, rng, fills, t_end, bid0, bid1, ask0, ask1):
    """:func:`advance_one` for a caller that knows the agent's orders: on each side they are among
    the ids ``bid0, bid1`` / ``ask0, ask1`` (NO_ORDER: none). Same result, but the CST flow counts
    the background orders from the level arrays instead of walking the queues."""
    if p.model == FLOW_CST:
        return _advance_cst(book, i, flow, p, rng, fills, t_end, False, False, bid0, bid1, ask0, ask1)
    bid = np.int64(bid0 != NO_ORDER or bid1 != NO_ORDER)
    ask = np.int64(ask0 != NO_ORDER or ask1 != NO_ORDER)
    return advance_one(book, i, flow, p, rng, fills, t_end, bid, ask)


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
    lots at each of ``depth`` ticks on both sides of a one-tick spread, window centred on the mid.
    Resets every piece of flow state of book ``i`` (clock, counters, tape, Hawkes excitation; the
    fundamental price starts at the book's mid)."""
    reset_book(book, i, mid_tick - book.levels.shape[1] // 2)
    for d in range(depth):
        for _ in range(per_level):
            add_limit(book, i, _BID, mid_tick - 1 - d, size, OWNER_BACKGROUND, fills)
            add_limit(book, i, _ASK, mid_tick + d, size, OWNER_BACKGROUND, fills)
    flow.events[i, :] = 0
    flow.skipped[i, :] = 0
    flow.excite[i, :] = 0.0
    flow.cancel_intensity[i] = 0.0
    flow.tape_len[i] = 0
    flow.jumps[i] = 0
    if depth > 0 and per_level > 0:
        flow.last_bid[i] = book.meta[i, M_BEST_BID]
        flow.last_ask[i] = book.meta[i, M_BEST_ASK]
    else:
        flow.last_bid[i] = mid_tick - 1
        flow.last_ask[i] = mid_tick
    flow.fundamental[i] = 0.5 * (flow.last_bid[i] + flow.last_ask[i])
    flow.t[i] = 0.0
