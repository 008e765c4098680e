"""The informed-flow component (any model): a fundamental price and the market-order tilt towards it.

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
"""

from __future__ import annotations

import math

from lobgym.market._jit import inline
from lobgym.market.book.flow.common import FlowParams
from lobgym.market.constants import STREAM_MARKET
from lobgym.market.rng import normal


def with_informed(params: FlowParams, rate: float, jump_ticks: float, kappa: float) -> FlowParams:
    """``params`` plus the informed component.

    A fundamental jumps at ``rate`` by N(0, jump_ticks**2) and market-order direction is tilted by ``kappa`` per tick
    of ``F - mid``.
    """
    for name, value, ok in (("rate", rate, rate >= 0), ("jump_ticks", jump_ticks, jump_ticks > 0),
                            ("kappa", kappa, kappa >= 0)):
        if not (math.isfinite(value) and ok):
            raise ValueError(f"{name} = {value}: must be finite and {'> 0' if name == 'jump_ticks' else '>= 0'}")
    return params._replace(informed=True, informed_rate=float(rate), informed_jump=float(jump_ticks),
                           informed_kappa=float(kappa))


@inline
def _buy_share(p, flow, i):
    """Informed flow: share of the market-order intensity that buys, 1 / (1 + exp(-kappa (F - mid)))."""
    mid = 0.5 * (flow.last_bid[i] + flow.last_ask[i])
    return 1.0 / (1.0 + math.exp(-p.informed_kappa * (flow.fundamental[i] - mid)))


@inline
def _jump(p, flow, rng, i):
    flow.fundamental[i] += p.informed_jump * normal(rng, i, STREAM_MARKET)
    flow.jumps[i] += 1
