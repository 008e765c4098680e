"""Advancing and resetting N reduced-form markets: the only code that mutates market state.

Within a step the agent's quotes, set from the mid at the start of the step, are filled first and
the mid then moves (the order of the Avellaneda–Stoikov simulations). ``step_one`` / ``reset_one``
advance a single env and are what the environment's fused kernel calls inside its ``prange`` loop;
``step`` / ``reset`` are the batched entry points of the engine.
"""

from __future__ import annotations

import numba
import numpy as np

from lobgym.market._jit import inline, kernel, parallel_kernel
from lobgym.market.constants import STREAM_FILLS, STREAM_MARKET
from lobgym.market.reduced_form.model import advance_mid, ask_price, bid_price, fill_events
from lobgym.market.rng import uniform


@inline
def reset_one(i, state, stats, p, rng):
    """Start a new episode in env ``i``: mid S0, no cash, inventory drawn from {q0_low..q0_high}."""
    q0 = p.q0_low
    if p.q0_high > p.q0_low:
        q0 += np.int64(uniform(rng, i, STREAM_MARKET) * (p.q0_high - p.q0_low + 1))
    state.step[i] = 0
    state.mid[i] = p.s0
    state.cash[i] = 0.0
    state.inventory[i] = q0
    state.fees[i] = 0.0
    stats.wealth0[i] = q0 * p.s0
    stats.bid_lots[i] = 0
    stats.ask_lots[i] = 0
    stats.bid_quoted[i] = 0
    stats.ask_quoted[i] = 0
    stats.spread_sum[i] = 0.0
    stats.two_sided[i] = 0
    stats.abs_inventory_sum[i] = 0.0
    stats.max_abs_inventory[i] = abs(q0)
    stats.pnl_sum[i] = 0.0
    stats.pnl_sumsq[i] = 0.0


@inline
def step_one(i, state, stats, out, p, bid_depth, ask_depth, bid_size, ask_size, rng):
    """Advance env ``i`` by one step given its quotes (depths >= 0 from the mid, sizes in lots).

    A side quotes only if its size is positive and the inventory limit leaves room; a fill never
    takes |q| past the limit.
    """
    mid = state.mid[i]
    q = state.inventory[i]
    cash = state.cash[i]
    wealth_before = cash + q * mid

    buy_room = p.inventory_limit - q
    sell_room = p.inventory_limit + q
    bid_size = min(bid_size, buy_room)
    ask_size = min(ask_size, sell_room)
    bid_px = bid_price(mid, bid_depth, p.tick_size)
    ask_px = ask_price(mid, ask_depth, p.tick_size)

    # Both uniforms are drawn whether or not a side quotes, so the fill stream stays aligned
    # across agents and across steps (common random numbers).
    u_bid = uniform(rng, i, STREAM_FILLS)
    u_ask = uniform(rng, i, STREAM_FILLS)
    bought = 0
    sold = 0
    # Effective depths: the requested ones, widened by rounding to the tick grid if there is one.
    bid_eff = mid - bid_px if p.tick_size > 0.0 else bid_depth
    ask_eff = ask_px - mid if p.tick_size > 0.0 else ask_depth
    if bid_size > 0:
        bought = min(fill_events(u_bid, bid_eff, p) * bid_size, buy_room)
        out.bid_depth[i] = bid_eff
        stats.bid_quoted[i] += 1
    else:
        out.bid_depth[i] = np.nan
    if ask_size > 0:
        sold = min(fill_events(u_ask, ask_eff, p) * ask_size, sell_room)
        out.ask_depth[i] = ask_eff
        stats.ask_quoted[i] += 1
    else:
        out.ask_depth[i] = np.nan
    if bid_size > 0 and ask_size > 0:
        stats.spread_sum[i] += ask_px - bid_px
        stats.two_sided[i] += 1

    cash += sold * ask_px - bought * bid_px
    q += bought - sold
    fee = p.fee_per_unit * (bought + sold) + p.fee_rate * (bought * bid_px + sold * ask_px)
    new_mid = advance_mid(mid, p, rng, i)
    pnl = (cash + q * new_mid) - wealth_before

    state.step[i] += 1
    state.mid[i] = new_mid
    state.cash[i] = cash
    state.inventory[i] = q
    state.fees[i] += fee

    out.pnl[i] = pnl
    out.fee[i] = fee
    out.inventory_before[i] = q - bought + sold
    out.mid_before[i] = mid
    out.bid_lots[i] = bought
    out.ask_lots[i] = sold
    out.spread_captured[i] = (bought * (mid - bid_px) if bought > 0 else 0.0) + (
        sold * (ask_px - mid) if sold > 0 else 0.0)
    out.done[i] = state.step[i] >= p.n_steps

    stats.bid_lots[i] += bought
    stats.ask_lots[i] += sold
    stats.abs_inventory_sum[i] += abs(q)
    stats.max_abs_inventory[i] = max(stats.max_abs_inventory[i], abs(q))
    net = pnl - fee
    stats.pnl_sum[i] += net
    stats.pnl_sumsq[i] += net * net


@kernel
def _step_range(lo, hi, state, stats, out, p, bid_depth, ask_depth, bid_size, ask_size, rng):
    for i in range(np.uint64(lo), np.uint64(hi)):  # unsigned: no negative-index wraparound per access
        step_one(i, state, stats, out, p, bid_depth[i], ask_depth[i], bid_size[i], ask_size[i], rng)


def _step(state, stats, out, p, bid_depth, ask_depth, bid_size, ask_size, rng):
    _step_range(0, state.mid.shape[0], state, stats, out, p, bid_depth, ask_depth, bid_size, ask_size, rng)


# numba's parallel backend silently drops writes made through NamedTuple attributes inside a prange
# body (see lobgym.simulation), so the prange runs over chunks and each chunk calls the (not inlined)
# range kernel, which receives the arrays and writes them.
_MAX_CHUNKS = 256


def _step_prange(state, stats, out, p, bid_depth, ask_depth, bid_size, ask_size, rng):
    n = state.mid.shape[0]
    chunks = min(n, _MAX_CHUNKS)
    for c in numba.prange(chunks):
        _step_range(c * n // chunks, (c + 1) * n // chunks, state, stats, out, p, bid_depth, ask_depth,
                    bid_size, ask_size, rng)


def _reset(state, stats, p, rng, mask):
    for i in range(state.mid.shape[0]):
        if mask[i]:
            reset_one(i, state, stats, p, rng)


#: Advance every env one step: ``step(state, stats, out, params, bid_depth, ask_depth, bid_size,
#: ask_size, rng)`` with per-env depth (float64) and size (int64) arrays; writes ``out``.
step = kernel(_step)
#: Same as :data:`step`, with the env loop spread over all cores (worth it from a few hundred envs).
step_parallel = parallel_kernel(_step_prange)
#: Reset the envs where ``mask`` is true: ``reset(state, stats, params, rng, mask)``.
reset = kernel(_reset)
