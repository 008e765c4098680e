"""Action codec and observation layout of the order-book env.

Actions are float32 vectors in ``Box(-1, 1)``; :func:`decode_book_one` turns them into orders.
With ``u(a) = (a + 1) / 2`` in [0, 1]:

=====  ============  =========================================================================
index  name          meaning
=====  ============  =========================================================================
0      bid_offset    round(u * max_offset) ticks: bid = reference bid tick - offset
1      ask_offset    round(u * max_offset) ticks: ask = reference ask tick + offset
2      bid_size      round(u * max_size) lots, 0 = no bid
3      ask_size      round(u * max_size) lots, 0 = no ask
4      market_order  round(a * market_order) lots, > 0 buys, < 0 sells (only if ``action.market_order``)
=====  ============  =========================================================================

Reference ticks (``action.reference``), from what the agent last observed:

* ``mid``: the nearest ticks strictly below and above the mid of the *background* book (the agent's
  own orders left out): with best bid ``b`` and best ask ``a``, bid ``ceil((b+a)/2) - 1`` and ask
  ``floor((b+a)/2) + 1``. Offset 0 therefore improves a wide spread and joins a one-tick spread.
* ``touch``: the best bid and best ask of the book as observed.

Each step the agent's order on a side is left alone if price and size are unchanged (it keeps its
queue position), reduced if only the size went down (as exchanges do, it keeps its position), and
cancelled and replaced otherwise (a price change or a size increase goes to the back of the queue).

Observation features (in the order listed in the config; each has a fixed width):

================  =====  =============================================================================
feature           width  definition
================  =====  =============================================================================
inventory         1      q / inventory_scale
time_left         1      (n_steps - step) / n_steps
spread            1      (best ask - best bid) in ticks / max_offset (capped at the book's window)
depth             2k     lots at the top k price levels, bids then asks, / depth_scale
imbalance         1      (bid lots - ask lots) / (bid lots + ask lots) at the best quotes (0 if none)
returns           r      the last r one-step changes of the observed mid, in ticks / return_scale (capped)
queue             2      lots ahead of the agent's bid, then ask, / depth_scale; -1 with no order
================  =====  =============================================================================

Everything but ``time_left`` is observed ``latency.observation`` seconds before the step ends.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lobgym.market._jit import inline
from lobgym.market.constants import ASK, BID

BOOK_ACTION_NAMES = ("bid_offset", "ask_offset", "bid_size", "ask_size", "market_order")

REF_MID = 0
REF_TOUCH = 1


class BookActionCodec(NamedTuple):
    reference: int  #: REF_MID or REF_TOUCH
    max_offset: int  #: ticks at action +1
    max_size: int  #: lots at action +1
    market_lots: int  #: largest market order (0: no market-order dimension)
    clip: bool


def book_action_dim(codec: BookActionCodec) -> int:
    return 5 if codec.market_lots > 0 else 4


@inline
def _unit(a):
    return min(max((a + 1.0) * 0.5, 0.0), 1.0)


@inline
def decode_book_one(i, actions, codec, seen_bid, seen_ask):
    """Orders of env ``i``: (bid tick, ask tick, bid lots, ask lots, signed market lots), given the
    observed background best bid and ask ticks."""
    if codec.reference == REF_MID:
        m2 = seen_bid + seen_ask
        ref_bid = (m2 + 1) // 2 - 1
        ref_ask = m2 // 2 + 1
    else:
        ref_bid = seen_bid
        ref_ask = seen_ask
    bid = ref_bid - np.int64(np.round(_unit(np.float64(actions[i, 0])) * codec.max_offset))
    ask = ref_ask + np.int64(np.round(_unit(np.float64(actions[i, 1])) * codec.max_offset))
    bid_lots = np.int64(np.round(_unit(np.float64(actions[i, 2])) * codec.max_size))
    ask_lots = np.int64(np.round(_unit(np.float64(actions[i, 3])) * codec.max_size))
    market = np.int64(0)
    if codec.market_lots > 0:
        a = min(max(np.float64(actions[i, 4]), -1.0), 1.0)
        market = np.int64(np.round(a * codec.market_lots))
    return bid, ask, bid_lots, ask_lots, market


def encode_book_action(codec: BookActionCodec, bid_offset, ask_offset, bid_size, ask_size, market=0) -> np.ndarray:
    """The float32 action that decodes to the given offsets (ticks), sizes and market lots
    (inverse of :func:`decode_book_one`; values are clipped to what the codec can express)."""
    def unit(x, top):
        return np.clip(np.asarray(x, dtype=np.float64), 0, top) / top * 2.0 - 1.0

    cols = [unit(bid_offset, codec.max_offset), unit(ask_offset, codec.max_offset),
            unit(bid_size, codec.max_size), unit(ask_size, codec.max_size)]
    if codec.market_lots > 0:
        cols.append(np.clip(np.asarray(market, dtype=np.float64), -codec.market_lots, codec.market_lots)
                    / codec.market_lots)
    cols = np.broadcast_arrays(*cols)
    return np.stack(cols, axis=-1).astype(np.float32)


# ----------------------------------------------------------------------------------- observations
BOBS_INVENTORY = 0
BOBS_TIME_LEFT = 1
BOBS_SPREAD = 2
BOBS_DEPTH = 3
BOBS_IMBALANCE = 4
BOBS_RETURNS = 5
BOBS_QUEUE = 6

#: name -> (code, definition); widths depend on the config (see :func:`feature_widths`)
BOOK_FEATURES: dict[str, tuple[int, str]] = {
    "inventory": (BOBS_INVENTORY, "q / inventory_scale"),
    "time_left": (BOBS_TIME_LEFT, "(n_steps - step) / n_steps"),
    "spread": (BOBS_SPREAD, "(best ask - best bid) ticks / max_offset"),
    "depth": (BOBS_DEPTH, "lots at the top k levels, bids then asks, / depth_scale"),
    "imbalance": (BOBS_IMBALANCE, "(bid - ask) / (bid + ask) lots at the best quotes"),
    "returns": (BOBS_RETURNS, "last r one-step changes of the observed mid, ticks / return_scale"),
    "queue": (BOBS_QUEUE, "lots ahead of the agent's bid and ask / depth_scale (-1: no order)"),
}


class BookObservationSpec(NamedTuple):
    features: np.ndarray  #: (F,) int64 feature codes, in order
    inventory_scale: float
    spread_scale: float  #: max_offset
    depth_scale: float
    return_scale: float
    spread_cap: int  #: largest spread reported, ticks (the window)


def feature_widths(depth_levels: int, returns: int) -> dict[str, int]:
    return {"inventory": 1, "time_left": 1, "spread": 1, "depth": 2 * depth_levels, "imbalance": 1,
            "returns": returns, "queue": 2}


def feature_names(features: list[str], depth_levels: int, returns: int) -> list[str]:
    """One name per observation entry, e.g. ``depth.bid1`` or ``returns.t-1``."""
    names = []
    for f in features:
        if f == "depth":
            names += [f"depth.{side}{j + 1}" for side in ("bid", "ask") for j in range(depth_levels)]
        elif f == "returns":
            names += [f"returns.t-{j}" for j in range(returns)]
        elif f == "queue":
            names += ["queue.bid", "queue.ask"]
        else:
            names.append(f)
    return names


def book_observation_bounds(features: list[str], spec: BookObservationSpec, depth_levels: int, returns: int,
                            inventory_bound: float, max_lots_at_level: float):
    """Finite float32 bounds: guaranteed limits given the book's capacity and window."""
    low, high = [], []
    depth_hi = max_lots_at_level / spec.depth_scale
    for f in features:
        w = feature_widths(depth_levels, returns)[f]
        lo, hi = {
            "inventory": (-inventory_bound / spec.inventory_scale, inventory_bound / spec.inventory_scale),
            "time_left": (0.0, 1.0),
            "spread": (0.0, spec.spread_cap / spec.spread_scale),
            "depth": (0.0, depth_hi),
            "imbalance": (-1.0, 1.0),
            "returns": (-spec.spread_cap / spec.return_scale, spec.spread_cap / spec.return_scale),
            "queue": (-1.0, depth_hi),
        }[f]
        low += [lo] * w
        high += [hi] * w
    return np.array(low, dtype=np.float32), np.array(high, dtype=np.float32)


@inline
def write_book_obs_one(i, spec, st, p, obs):
    """Write env ``i``'s observation row from the market's delayed snapshot (``st.seen_*``)."""
    j = 0
    for f in spec.features:
        if f == BOBS_INVENTORY:
            obs[i, j] = st.seen_inventory[i] / spec.inventory_scale
            j += 1
        elif f == BOBS_TIME_LEFT:
            obs[i, j] = (p.n_steps - st.step[i]) / p.n_steps
            j += 1
        elif f == BOBS_SPREAD:
            spread = min(st.seen_px[i, ASK, 0] - st.seen_px[i, BID, 0], spec.spread_cap)
            obs[i, j] = max(spread, 0) / spec.spread_scale
            j += 1
        elif f == BOBS_DEPTH:
            k = st.seen_qty.shape[2]
            for side in range(2):
                for lvl in range(k):
                    obs[i, j] = st.seen_qty[i, side, lvl] / spec.depth_scale
                    j += 1
        elif f == BOBS_IMBALANCE:
            qb = st.seen_qty[i, BID, 0]
            qa = st.seen_qty[i, ASK, 0]
            obs[i, j] = (qb - qa) / (qb + qa) if qb + qa > 0 else 0.0
            j += 1
        elif f == BOBS_RETURNS:
            h = st.seen_mid2.shape[1]
            for lag in range(h - 1):
                move = min(max(0.5 * (st.seen_mid2[i, lag] - st.seen_mid2[i, lag + 1]), -spec.spread_cap),
                           spec.spread_cap)
                obs[i, j] = move / spec.return_scale
                j += 1
        else:
            for side in range(2):
                ahead = st.seen_queue[i, side]
                obs[i, j] = -1.0 if ahead < 0 else ahead / spec.depth_scale
                j += 1
