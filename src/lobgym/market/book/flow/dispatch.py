"""The drivers of the flow: one kernel signature for every model, chosen by the type of its parameters.

:func:`advance_one` runs one book's flow until a time (:func:`advance_one_ids` when the caller knows
the agent's order ids), :func:`advance` runs every book without an agent, and :func:`seed_book`
starts a book and resets its flow state. Each model's parameters have their own type (a subclass of
``FlowParams``), and :data:`MODELS` maps it to the model's kernel when numba types the call, so a
simulation compiles only the model it runs (not every model behind a runtime branch). A new model adds
its line to :data:`MODELS`.
"""

from __future__ import annotations

import numpy as np
from numba.extending import overload

from lobgym.market._jit import inline, kernel
from lobgym.market.book.flow.common import _ASK, _BID, _NO_ORDER
from lobgym.market.book.flow.cst import CSTParams, _advance_cst
from lobgym.market.book.flow.hawkes import HawkesParams, _advance_hawkes
from lobgym.market.book.flow.queue_reactive import QueueReactiveParams, _advance_qr
from lobgym.market.book.lob import (
    M_BEST_ASK,
    M_BEST_BID,
    NO_ORDER,
    OWNER_BACKGROUND,
    add_limit,
    keep_centered,
    reset_book,
)

# A boolean global, not the literal False: numba would build _advance_cst (and all it calls) once more for it.
_NO = np.bool_(False)


@inline
def _advance_cst_walk(book, i, flow, p, rng, fills, t_end, agent_bid, agent_ask):
    return _advance_cst(book, i, flow, p, rng, fills, t_end, agent_bid, agent_ask, _NO_ORDER, _NO_ORDER, _NO_ORDER,
                        _NO_ORDER)


#: Each model's parameter type -> its kernel ``(book, i, flow, p, rng, fills, t_end, agent_bid, agent_ask)``,
#: ``agent_*`` booleans: whether the agent may have orders resting on that side.
MODELS = {CSTParams: _advance_cst_walk, HawkesParams: _advance_hawkes, QueueReactiveParams: _advance_qr}


def _advance_model(book, i, flow, p, rng, fills, t_end, agent_bid, agent_ask):
    """The kernel of ``p``'s model (:data:`MODELS`), chosen when numba types the call; compiled code only."""
    raise NotImplementedError("only callable from compiled code")


@overload(_advance_model, inline="always")
def _advance_model_typed(book, i, flow, p, rng, fills, t_end, agent_bid, agent_ask):
    advance_model = MODELS.get(getattr(p, "instance_class", None))
    if advance_model is None:
        return None  # not a flow model's parameters: numba reports the call as untypable

    def impl(book, i, flow, p, rng, fills, t_end, agent_bid, agent_ask):
        return advance_model(book, i, flow, p, rng, fills, t_end, agent_bid, agent_ask)

    return impl


def _advance_ids(book, i, flow, p, rng, fills, t_end, bid0, bid1, ask0, ask1):
    """:func:`advance_one_ids`'s body, chosen when numba types the call; compiled code only."""
    raise NotImplementedError("only callable from compiled code")


@overload(_advance_ids, inline="always")
def _advance_ids_typed(book, i, flow, p, rng, fills, t_end, bid0, bid1, ask0, ask1):
    if getattr(p, "instance_class", None) is CSTParams:
        def cst(book, i, flow, p, rng, fills, t_end, bid0, bid1, ask0, ask1):
            return _advance_cst(book, i, flow, p, rng, fills, t_end, _NO, _NO, bid0, bid1, ask0, ask1)

        return cst

    def other(book, i, flow, p, rng, fills, t_end, bid0, bid1, ask0, ask1):
        bid = np.int64(bid0 != NO_ORDER or bid1 != NO_ORDER)
        ask = np.int64(ask0 != NO_ORDER or ask1 != NO_ORDER)
        return advance_one(book, i, flow, p, rng, fills, t_end, bid, ask)

    return other


# ------------------------------------------------------------------------------------------- drivers
@kernel
def advance_one(book, i, flow, p, rng, fills, t_end, agent_bid_lots, agent_ask_lots):
    """Run book ``i``'s flow from ``flow.t[i]`` until ``t_end``; returns the number of events applied.

    ``agent_*_lots`` say whether the agent may have orders resting on each side (0 = none), which
    selects the fast path that counts cancellable orders straight from the level arrays.
    """
    return _advance_model(book, i, flow, p, rng, fills, t_end, agent_bid_lots > 0, agent_ask_lots > 0)


@kernel
def advance_one_ids(book, i, flow, p, rng, fills, t_end, bid0, bid1, ask0, ask1):
    """:func:`advance_one` for a caller that knows the agent's orders.

    On each side they are among the ids ``bid0, bid1`` / ``ask0, ask1`` (NO_ORDER: none). Same result, but the CST
    flow counts the background orders from the level arrays instead of walking the queues.
    """
    return _advance_ids(book, i, flow, p, rng, fills, t_end, bid0, bid1, ask0, ask1)


@kernel
def advance(book, flow, p, rng, fills, t_end):
    """Advance every book's background flow to ``t_end`` (no agent orders); returns the number of events.

    Recentres the windows first where needed.
    """
    total = 0
    for i in range(book.meta.shape[0]):
        keep_centered(book, i, (flow.last_bid[i] + flow.last_ask[i]) // 2)
        total += advance_one(book, i, flow, p, rng, fills, t_end, np.int64(0), np.int64(0))  # int64: one build
        fills.counts[i, 0] = 0  # nobody reads background-only fills here
    return total


@kernel
def seed_book(book, flow, fills, i, mid_tick, depth, per_level, size):
    """Empty book ``i`` and start it around ``mid_tick``.

    ``per_level`` background orders of ``size`` lots at each of ``depth`` ticks on both sides of a one-tick spread,
    window centred on the mid. Resets every piece of flow state of book ``i`` (clock, counters, tape, Hawkes
    excitation; the fundamental price starts at the book's mid).
    """
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
