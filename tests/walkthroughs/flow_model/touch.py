"""``FLOW_TOUCH`` - a toy flow model, added by following docs/architecture.md ("A flow model of the book").

Poisson limit orders at rate ``lam`` per side one tick from the opposite best quote (inside the spread
when it is wider than a tick, else joining the best queue), and Poisson market orders at rate ``mu``
per side; no cancellations. Its two rates travel in ``FlowParams.extra`` (``X_LAM``, ``X_MU``).

tests/walkthroughs/test_walkthroughs.py copies this file into the package as
``lobgym/market/book/flow/touch.py``: it is the model's one new source file.
"""

from __future__ import annotations

import math

import numpy as np

from lobgym.market._jit import kernel
from lobgym.market.book.flow.common import (
    _ASK,
    _BID,
    FlowParams,
    _limit,
    _market,
    _placeholders,
    _rates,
    _refresh_refs,
    _size,
)
from lobgym.market.constants import STREAM_MARKET
from lobgym.market.rng import uniform

FLOW_TOUCH = 3  #: FlowParams.model of the toy touch flow
X_LAM = 0  #: offset in FlowParams.extra of the limit-order rate per side
X_MU = 1  #: offset of the market-order rate per side


class TouchParams(FlowParams):
    """:class:`FlowParams` of the touch flow (its own type: the dispatch picks the kernel by it)."""

    __slots__ = ()


def touch_params(lam: float, mu: float, size: int = 1) -> TouchParams:
    """The touch flow's parameters: ``lam`` limit orders and ``mu`` market orders per second per side."""
    extra = np.array([float(_rates("lam", lam)), float(_rates("mu", mu))])
    return TouchParams(**(_placeholders() | {"model": FLOW_TOUCH, "size": _size(size), "extra": extra}))


@kernel
def _advance_touch(book, i, flow, p, rng, fills, t_end, agent_bid, agent_ask):
    """:func:`advance_one` for FLOW_TOUCH (Gillespie next-event loop; no cancellation, so the agent's
    orders need no care)."""
    lam = p.extra[X_LAM]
    mu = p.extra[X_MU]
    total = 2.0 * (lam + mu)
    t = flow.t[i]
    applied = 0
    while total > 0.0:
        _refresh_refs(book, i, flow)
        wait = -math.log(1.0 - uniform(rng, i, STREAM_MARKET)) / total
        if t + wait >= t_end:
            break
        t += wait
        x = uniform(rng, i, STREAM_MARKET) * total
        if x < lam:
            _limit(book, i, flow, fills, t, _BID, flow.last_ask[i] - 1, p.size)
        elif x < 2.0 * lam:
            _limit(book, i, flow, fills, t, _ASK, flow.last_bid[i] + 1, p.size)
        elif x < 2.0 * lam + mu:
            _market(book, i, flow, fills, t, _BID, p.size)
        else:
            _market(book, i, flow, fills, t, _ASK, p.size)
        applied += 1
    flow.t[i] = t_end
    return applied
