"""Background order flow on the L3 book, simulated exactly in event time.

Three models share one kernel signature (:func:`advance_one`) and one parameter layout
(:class:`FlowParams`), each model with its own subclass of it (:class:`CSTParams`, ...): the dispatch
picks the model's kernel by that type when numba compiles the caller, so a simulation compiles only the
model it runs. Prices are in ticks, sizes in lots; every background order is ``size`` lots.

**Event types** (columns of ``FlowState.events`` and codes on the tape): ``EVENT_LIMIT_BID``,
``EVENT_LIMIT_ASK``, ``EVENT_MARKET_BUY`` (hits the asks), ``EVENT_MARKET_SELL``,
``EVENT_CANCEL_BID``, ``EVENT_CANCEL_ASK``.

**Models**, one module each (its docstring gives the exact definition), all reading the same
:class:`FlowParams` and :class:`FlowState`:

* ``FLOW_CST`` (:mod:`lobgym.market.book.flow.cst`) — the zero-intelligence flow of Cont, Stoikov &
  Talreja (2010): Poisson limit orders, market orders and per-order cancellations, with rates by
  distance from the opposite best.
* ``FLOW_HAWKES`` (:mod:`lobgym.market.book.flow.hawkes`) — a multivariate exponential-kernel Hawkes
  process over the six event types (Ogata's thinning), optionally with per-order cancellation.
* ``FLOW_QUEUE_REACTIVE`` (:mod:`lobgym.market.book.flow.queue_reactive`) — the queue-reactive model of
  Huang, Lehalle & Rosenbaum (2015): intensities of each of the first K queues depend on its size.
* **Informed flow** (:mod:`lobgym.market.book.flow.informed`; any model, ``FlowParams.informed``) — a
  latent fundamental price that jumps, towards which market-order direction is tilted.

**Layout.** :mod:`~lobgym.market.book.flow.common` holds the types, the codes and the kernel helpers
every model uses; each model's module holds its code, its parameter type, its builder and its
``_advance_<model>`` kernel; :mod:`~lobgym.market.book.flow.dispatch` holds the table of models and the
drivers (:func:`advance_one`, :func:`advance_one_ids`, :func:`advance`, :func:`seed_book`). Imports go one way:
``common <- informed <- cst, hawkes, queue_reactive <- dispatch <- this package``, which re-exports
every public name (``from lobgym.market.book import flow as F; F.cst_params(...)``).

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

from lobgym.market.book.flow.common import (
    EVENT_CANCEL_ASK,
    EVENT_CANCEL_BID,
    EVENT_LIMIT_ASK,
    EVENT_LIMIT_BID,
    EVENT_MARKET_BUY,
    EVENT_MARKET_SELL,
    N_EVENT_TYPES,
    N_TAPE_COLUMNS,
    TAPE_EVENT,
    TAPE_PRICE,
    TAPE_QTY,
    TAPE_T,
    FlowParams,
    FlowState,
    make_flow_state,
)
from lobgym.market.book.flow.cst import CST2010, FLOW_CST, CSTParams, cst_params, cst_params_from_rates
from lobgym.market.book.flow.dispatch import advance, advance_one, advance_one_ids, seed_book
from lobgym.market.book.flow.hawkes import (
    FLOW_HAWKES,
    HawkesParams,
    hawkes_mean_rates,
    hawkes_params,
    hawkes_spectral_radius,
)
from lobgym.market.book.flow.informed import with_informed
from lobgym.market.book.flow.queue_reactive import FLOW_QUEUE_REACTIVE, QueueReactiveParams, queue_reactive_params

__all__ = [
    "CST2010",
    "CSTParams",
    "EVENT_CANCEL_ASK",
    "EVENT_CANCEL_BID",
    "EVENT_LIMIT_ASK",
    "EVENT_LIMIT_BID",
    "EVENT_MARKET_BUY",
    "EVENT_MARKET_SELL",
    "FLOW_CST",
    "FLOW_HAWKES",
    "FLOW_QUEUE_REACTIVE",
    "FlowParams",
    "FlowState",
    "HawkesParams",
    "N_EVENT_TYPES",
    "N_TAPE_COLUMNS",
    "QueueReactiveParams",
    "TAPE_EVENT",
    "TAPE_PRICE",
    "TAPE_QTY",
    "TAPE_T",
    "advance",
    "advance_one",
    "advance_one_ids",
    "cst_params",
    "cst_params_from_rates",
    "hawkes_mean_rates",
    "hawkes_params",
    "hawkes_spectral_radius",
    "make_flow_state",
    "queue_reactive_params",
    "seed_book",
    "with_informed",
]
