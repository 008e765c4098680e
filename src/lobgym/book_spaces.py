"""Action codecs and observation layout of the order-book env.

Actions are float32 vectors in ``Box(-1, 1)``; :func:`decode_book_one` turns them into the wanted
orders of every level (``state.want_px`` / ``state.want_lots``). Three codecs (``action.kind``);
below ``u(a) = (a + 1) / 2`` in [0, 1]; ``round`` rounds half away from zero in ``spread_skew`` and
``ladder``, and half to even (as ``np.round``) in ``offsets`` and for every codec's market order.

Reference ticks (``action.reference``), from what the agent last observed:

* ``mid``: the nearest ticks strictly below and above the mid of the *background* book (the agent's
  own orders left out): with best bid ``b`` and best ask ``a``, bid ``ceil((b+a)/2) - 1`` and ask
  ``floor((b+a)/2) + 1``. Offset 0 therefore improves a wide spread and joins a one-tick spread.
* ``touch``: the best bid and best ask of the background book as observed.

**offsets** (the default; one order per side):

=====  ============  =========================================================================
index  name          meaning
=====  ============  =========================================================================
0      bid_offset    round(u * max_offset) ticks: bid = reference bid tick - offset
1      ask_offset    round(u * max_offset) ticks: ask = reference ask tick + offset
2      bid_size      round(u * max_size) lots, 0 = no bid
3      ask_size      round(u * max_size) lots, 0 = no ask
4      market_order  round(a * market_order) lots, > 0 buys, < 0 sells (only if ``action.market_order``)
=====  ============  =========================================================================

An untrained Gaussian policy (mean 0) quotes half of ``max_offset`` away: it rarely trades.

**spread_skew** (one order per side, Avellaneda-Stoikov style; the zero action quotes one lot on
each side at the reference ticks, unskewed, so a fresh policy trades from its first episode):

=====  ============  =========================================================================
index  name          meaning
=====  ============  =========================================================================
0      half_spread   h = round(a * max_offset) ticks added to both sides' distance from the reference
                     (negative: inside the spread; never past the reference-mid ticks)
1      skew          s = round(a * max_skew * q / inventory_scale) ticks, q the observed inventory:
                     both quotes move down by s (a > 0 leans against the position)
2      bid_size      clip(round(1 + a * max_size), 0, max_size) lots (1 at a = 0; 0 = no bid)
3      ask_size      the same for the ask
4      market_order  as in ``offsets``
=====  ============  =========================================================================

bid = min(ref bid - h - s, mid bid), ask = max(ref ask + h - s, mid ask), with mid bid / mid ask the
``mid`` reference ticks (so the quotes never cross the background mid).

**ladder** (``action.levels`` = K orders per side, K <= 5, a tick grid of layered depth):

=====  ============  =========================================================================
index  name          meaning
=====  ============  =========================================================================
0      half_spread   as in ``spread_skew``: the first level's distance
1      skew          as in ``spread_skew``
2      spacing       g = 1 + round(u * (max_spacing - 1)) ticks between levels
3      bid_total     round(u * K * max_size) lots over the bid levels
4      ask_total     the same for the asks
5      decay         r = u: level k gets a share r**k / sum_j r**j of the total (r = 0: all at level 0)
6      market_order  as in ``offsets``
=====  ============  =========================================================================

Level k quotes bid_0 - k g and ask_0 + k g, where bid_0 / ask_0 are ``spread_skew``'s quotes; its
lots are the differences of ``round(total * cumulative share)``, so they sum exactly to the total.

Every codec: an order the agent already rests at a wanted level's price is left alone if the size is
unchanged (it keeps its queue position), reduced if only the size went down (as exchanges do, it
keeps its position), and cancelled and replaced if more lots are wanted; orders at prices no longer
wanted are cancelled (see :mod:`lobgym.market.book.step`).

Observation features (in the order listed in the config; each has a fixed width):

================  =====  =============================================================================
feature           width  definition (scale)
================  =====  =============================================================================
inventory         1      q / inventory_scale
time_left         1      (n_steps - step) / n_steps
spread            1      (best ask - best bid) in ticks / max_offset (capped at the book's window)
depth             2k     lots at the top k price levels, bids then asks, / depth_scale
imbalance         1      (bid lots - ask lots) / (bid lots + ask lots) at the best quotes (0 if none)
returns           r      the last r one-step changes of the observed mid, in ticks / return_scale (capped)
queue             2      lots ahead of the agent's best-placed bid, then ask, / depth_scale; -1 with none
quotes            2      the agent's best bid's and best ask's distance from the background mid, ticks
                         / max_offset, capped at +-2 (QUOTE_CAP); 2 with no order on that side
fills             2      lots bought, sold in the last step / max_size
trade_flow        1      (B - S) / (B + S) with B, S moving averages (half-life ``flow_halflife``
                         steps) of background market buys and sells per step; 0 before any
microprice        1      microprice minus mid at the best quotes, ticks (bounded by half the spread)
volatility        1      sqrt(moving average of squared one-step mid changes, ticks^2) / return_scale
since_fill        1      min(steps since the agent's last fill (or the episode start), 10 h) / h,
                         h = flow_halflife
================  =====  =============================================================================

Everything but ``time_left`` is observed ``latency.observation`` seconds before the step ends.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from lobgym.market._jit import inline, kernel
from lobgym.market.book.lob import NO_ASK as NO_ASK_PX
from lobgym.market.book.lob import NO_BID as NO_BID_PX
from lobgym.market.constants import ASK, BID

KIND_OFFSETS = 0
KIND_SPREAD_SKEW = 1
KIND_LADDER = 2
ACTION_KINDS = {"offsets": KIND_OFFSETS, "spread_skew": KIND_SPREAD_SKEW, "ladder": KIND_LADDER}

#: Action index names per codec (the market-order entry only with ``action.market_order``).
ACTION_NAMES = {
    "offsets": ("bid_offset", "ask_offset", "bid_size", "ask_size", "market_order"),
    "spread_skew": ("half_spread", "skew", "bid_size", "ask_size", "market_order"),
    "ladder": ("half_spread", "skew", "spacing", "bid_total", "ask_total", "decay", "market_order"),
}
BOOK_ACTION_NAMES = ACTION_NAMES["offsets"]

REF_MID = 0
REF_TOUCH = 1

#: A ladder holds at most this many orders per side.
MAX_LEVELS = 5


class BookActionCodec(NamedTuple):
    """A book env's action codec as the kernels read it (from a validated ``BookActionConfig``)."""

    kind: int  #: KIND_*
    reference: int  #: REF_MID or REF_TOUCH
    max_offset: int  #: ticks at action +1
    max_size: int  #: lots at action +1 (per level)
    market_lots: int  #: largest market order (0: no market-order dimension)
    clip: bool
    max_skew: float  #: skew ticks at action +1 and |q| = inventory_scale
    inventory_scale: float
    levels: int  #: orders per side
    max_spacing: int  #: ladder: ticks between levels at action +1


def book_action_codec(action, inventory_scale: float) -> BookActionCodec:
    """The kernel codec of a validated ``BookActionConfig``."""
    return BookActionCodec(kind=ACTION_KINDS[action.kind],
                           reference=REF_MID if action.reference == "mid" else REF_TOUCH,
                           max_offset=action.max_offset, max_size=action.max_size, market_lots=action.market_order,
                           clip=action.clip, max_skew=float(action.max_skew), inventory_scale=float(inventory_scale),
                           levels=action.levels, max_spacing=action.max_spacing)


def _base_dim(codec: BookActionCodec) -> int:
    return 6 if codec.kind == KIND_LADDER else 4


def book_action_dim(codec: BookActionCodec) -> int:
    """Entries of the codec's action: 4 (``ladder``: 6), plus 1 with a market-order dimension."""
    return _base_dim(codec) + (1 if codec.market_lots > 0 else 0)


def book_action_names(kind: str, market_order: bool) -> tuple[str, ...]:
    """The names of the action entries of codec ``kind``, with ``market_order`` last if it has one."""
    names = ACTION_NAMES[kind]
    return names if market_order else names[:-1]


def book_max_lots_per_side(codec: BookActionCodec) -> int:
    """Most lots the agent can want on one side in one step."""
    return codec.levels * codec.max_size


@inline
def _unit(a):
    return min(max((a + 1.0) * 0.5, 0.0), 1.0)


@inline
def _clip1(a):
    return min(max(np.float64(a), -1.0), 1.0)


@inline
def _round(x):
    """Round half away from zero (np.round rounds half to even)."""
    return np.int64(math.floor(x + 0.5)) if x >= 0 else -np.int64(math.floor(-x + 0.5))


@inline
def _skewed_quotes(i, actions, codec, st, ref_bid, ref_ask, mid_bid, mid_ask):
    """spread_skew / ladder: the first level's bid and ask ticks."""
    h = _round(_clip1(actions[i, 0]) * codec.max_offset)
    s = _round(_clip1(actions[i, 1]) * codec.max_skew * st.seen_inventory[i] / codec.inventory_scale)
    return min(ref_bid - h - s, mid_bid), max(ref_ask + h - s, mid_ask)


@inline
def decode_book_one(i, actions, codec, st):
    """Write env ``i``'s wanted orders into ``st.want_px`` / ``st.want_lots``; returns its market order.

    The orders (ticks, lots per side and level) follow from the env's action and the observed
    background best bid and ask; the market order is returned as signed lots.
    """
    seen_bid = st.seen_bg[i, BID]
    seen_ask = st.seen_bg[i, ASK]
    m2 = seen_bid + seen_ask
    mid_bid = (m2 + 1) // 2 - 1
    mid_ask = m2 // 2 + 1
    if codec.reference == REF_MID:
        ref_bid = mid_bid
        ref_ask = mid_ask
    else:
        ref_bid = seen_bid
        ref_ask = seen_ask
    if codec.kind == KIND_OFFSETS:
        st.want_px[i, BID, 0] = ref_bid - np.int64(np.round(_unit(np.float64(actions[i, 0])) * codec.max_offset))
        st.want_px[i, ASK, 0] = ref_ask + np.int64(np.round(_unit(np.float64(actions[i, 1])) * codec.max_offset))
        st.want_lots[i, BID, 0] = np.int64(np.round(_unit(np.float64(actions[i, 2])) * codec.max_size))
        st.want_lots[i, ASK, 0] = np.int64(np.round(_unit(np.float64(actions[i, 3])) * codec.max_size))
    elif codec.kind == KIND_SPREAD_SKEW:
        bid, ask = _skewed_quotes(i, actions, codec, st, ref_bid, ref_ask, mid_bid, mid_ask)
        st.want_px[i, BID, 0] = bid
        st.want_px[i, ASK, 0] = ask
        for side in range(2):
            lots = _round(1.0 + _clip1(actions[i, 2 + side]) * codec.max_size)
            st.want_lots[i, side, 0] = min(max(lots, 0), codec.max_size)
    else:
        bid, ask = _skewed_quotes(i, actions, codec, st, ref_bid, ref_ask, mid_bid, mid_ask)
        gap = 1 + _round(_unit(np.float64(actions[i, 2])) * (codec.max_spacing - 1))
        r = _unit(np.float64(actions[i, 5]))
        k_levels = st.want_px.shape[2]
        norm = 0.0
        w = 1.0
        for _ in range(k_levels):
            norm += w
            w *= r
        for side in range(2):
            total = _round(_unit(np.float64(actions[i, 3 + side])) * k_levels * codec.max_size)
            cum = 0.0
            w = 1.0
            given = np.int64(0)
            for k in range(k_levels):
                cum += w
                w *= r
                upto = _round(total * min(cum / norm, 1.0))
                st.want_lots[i, side, k] = upto - given
                given = upto
                st.want_px[i, side, k] = bid - k * gap if side == BID else ask + k * gap
    market = np.int64(0)
    if codec.market_lots > 0:
        market = np.int64(np.round(_clip1(actions[i, _base_dim_of(codec)]) * codec.market_lots))
    return market


@inline
def _base_dim_of(codec):
    return 6 if codec.kind == KIND_LADDER else 4


def encode_book_action(codec: BookActionCodec, bid_offset, ask_offset, bid_size, ask_size, market=0) -> np.ndarray:
    """The float32 action of the ``offsets`` codec that decodes to the given offsets, sizes and market lots.

    Offsets are in ticks. The inverse of :func:`decode_book_one`; values are clipped to what the codec
    can express.
    """
    if codec.kind != KIND_OFFSETS:
        raise ValueError("encode_book_action: the offsets codec only; use encode_quotes for any codec")
    def unit(x, top):
        return np.clip(np.asarray(x, dtype=np.float64), 0, top) / top * 2.0 - 1.0

    cols = [unit(bid_offset, codec.max_offset), unit(ask_offset, codec.max_offset),
            unit(bid_size, codec.max_size), unit(ask_size, codec.max_size)]
    if codec.market_lots > 0:
        cols.append(np.clip(np.asarray(market, dtype=np.float64), -codec.market_lots, codec.market_lots)
                    / codec.market_lots)
    cols = np.broadcast_arrays(*cols)
    return np.stack(cols, axis=-1).astype(np.float32)


def encode_quotes(codec: BookActionCodec, bid_offset, ask_offset, bid_size, ask_size, market=0) -> np.ndarray:
    """An action of any codec that quotes one order per side, unskewed, and sends the given market lots.

    The orders sit ``bid_offset`` / ``ask_offset`` ticks (>= 0) beyond the reference ticks, with the
    given sizes.

    Exact within the codec's range: offsets up to ``max_offset``; sizes up to ``max_size``
    (``ladder``: ``K * max_size``, all at the first level). ``spread_skew`` and ``ladder`` move both
    quotes together (a difference between the sides is their inventory skew), so for them
    ``bid_offset`` must equal ``ask_offset`` (a ``ValueError`` otherwise).
    """
    if codec.kind == KIND_OFFSETS:
        return encode_book_action(codec, bid_offset, ask_offset, bid_size, ask_size, market)
    bid_offset, ask_offset, bid_size, ask_size, market = np.broadcast_arrays(
        *(np.asarray(x, dtype=np.float64) for x in (bid_offset, ask_offset, bid_size, ask_size, market)))
    if not np.array_equal(bid_offset, ask_offset):
        raise ValueError("encode_quotes: spread_skew and ladder quote both sides at one distance "
                         "(their difference is an inventory skew); bid_offset must equal ask_offset")
    half = np.clip(bid_offset, -codec.max_offset, codec.max_offset) / codec.max_offset
    zero = np.zeros_like(half)
    if codec.kind == KIND_SPREAD_SKEW:
        size = [np.clip((np.clip(x, 0, codec.max_size) - 1.0) / codec.max_size, -1.0, 1.0)
                for x in (bid_size, ask_size)]
        cols = [half, zero, size[0], size[1]]
    else:
        top = codec.levels * codec.max_size
        total = [np.clip(x, 0, top) / top * 2.0 - 1.0 for x in (bid_size, ask_size)]
        cols = [half, zero, -np.ones_like(half), total[0], total[1], -np.ones_like(half)]  # decay 0: all at level 0
    if codec.market_lots > 0:
        cols.append(np.clip(market, -codec.market_lots, codec.market_lots) / codec.market_lots)
    return np.stack(cols, axis=-1).astype(np.float32)


# ----------------------------------------------------------------------------------- observations
BOBS_INVENTORY = 0
BOBS_TIME_LEFT = 1
BOBS_SPREAD = 2
BOBS_DEPTH = 3
BOBS_IMBALANCE = 4
BOBS_RETURNS = 5
BOBS_QUEUE = 6
BOBS_QUOTES = 7
BOBS_FILLS = 8
BOBS_TRADE_FLOW = 9
BOBS_MICROPRICE = 10
BOBS_VOLATILITY = 11
BOBS_SINCE_FILL = 12

#: name -> (code, definition); widths depend on the config (see :func:`feature_widths`)
BOOK_FEATURES: dict[str, tuple[int, str]] = {
    "inventory": (BOBS_INVENTORY, "q / inventory_scale"),
    "time_left": (BOBS_TIME_LEFT, "(n_steps - step) / n_steps"),
    "spread": (BOBS_SPREAD, "(best ask - best bid) ticks / max_offset"),
    "depth": (BOBS_DEPTH, "lots at the top k levels, bids then asks, / depth_scale"),
    "imbalance": (BOBS_IMBALANCE, "(bid - ask) / (bid + ask) lots at the best quotes"),
    "returns": (BOBS_RETURNS, "last r one-step changes of the observed mid, ticks / return_scale"),
    "queue": (BOBS_QUEUE, "lots ahead of the agent's best-placed bid and ask / depth_scale (-1: no order)"),
    "quotes": (BOBS_QUOTES, "the agent's best bid's and ask's distance from the background mid, ticks / max_offset "
                            "(capped at 2; 2: no order)"),
    "fills": (BOBS_FILLS, "lots bought and sold in the last step / max_size"),
    "trade_flow": (BOBS_TRADE_FLOW, "(B - S) / (B + S), B and S moving averages of background market buys and sells"),
    "microprice": (BOBS_MICROPRICE, "microprice minus mid at the best quotes, ticks"),
    "volatility": (BOBS_VOLATILITY, "root moving average of squared one-step mid changes, ticks / return_scale"),
    "since_fill": (BOBS_SINCE_FILL, "min(steps since the agent's last fill, 10 h) / h, h = flow_halflife"),
}


#: ``quotes`` reports distances up to this many max_offsets; a side without an order reads as the cap
QUOTE_CAP = 2.0
#: ``since_fill`` is capped at this many half-lives
SINCE_FILL_CAP = 10.0


class BookObservationSpec(NamedTuple):
    """A book env's observation as the kernels build it: feature codes and scales."""

    features: np.ndarray  #: (F,) int64 feature codes, in order
    inventory_scale: float
    spread_scale: float  #: max_offset
    depth_scale: float
    return_scale: float
    spread_cap: int  #: largest spread reported, ticks (the window)
    size_scale: float  #: max_size
    halflife: float  #: flow_halflife, steps


def feature_widths(depth_levels: int, returns: int) -> dict[str, int]:
    """Observation entries of each feature, given the ``depth_levels`` and ``returns`` settings."""
    return {"inventory": 1, "time_left": 1, "spread": 1, "depth": 2 * depth_levels, "imbalance": 1,
            "returns": returns, "queue": 2, "quotes": 2, "fills": 2, "trade_flow": 1, "microprice": 1,
            "volatility": 1, "since_fill": 1}


def feature_names(features: list[str], depth_levels: int, returns: int) -> list[str]:
    """One name per observation entry, e.g. ``depth.bid1`` or ``returns.t-1``."""
    names = []
    for f in features:
        if f == "depth":
            names += [f"depth.{side}{j + 1}" for side in ("bid", "ask") for j in range(depth_levels)]
        elif f == "returns":
            names += [f"returns.t-{j}" for j in range(returns)]
        elif f in ("queue", "quotes", "fills"):
            names += [f"{f}.bid", f"{f}.ask"]
        else:
            names.append(f)
    return names


def book_observation_bounds(features: list[str], spec: BookObservationSpec, depth_levels: int, returns: int,
                            inventory_bound: float, max_lots_at_level: float, max_fill_lots: float = 0.0):
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
            "quotes": (-QUOTE_CAP, QUOTE_CAP),
            "fills": (0.0, max_fill_lots / spec.size_scale),
            "trade_flow": (-1.0, 1.0),
            "microprice": (-0.5 * spec.spread_cap, 0.5 * spec.spread_cap),
            "volatility": (0.0, spec.spread_cap / spec.return_scale),
            "since_fill": (0.0, SINCE_FILL_CAP),
        }[f]
        low += [lo] * w
        high += [hi] * w
    return np.array(low, dtype=np.float32), np.array(high, dtype=np.float32)


@kernel
def write_book_obs_one(i, spec, st, p, obs):
    """Write env ``i``'s observation row from the market's delayed snapshot (``st.seen_*``).

    A kernel, not inlined: the step writes observations twice (after the step, and after an auto-reset) and
    the reset once; one compiled copy saves seconds of every cold start for a call that costs next to
    nothing beside a book step.
    """
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
        elif f == BOBS_QUEUE:
            for side in range(2):
                ahead = st.seen_queue[i, side]
                obs[i, j] = -1.0 if ahead < 0 else ahead / spec.depth_scale
                j += 1
        elif f == BOBS_QUOTES:
            m2 = st.seen_bg[i, BID] + st.seen_bg[i, ASK]
            for side in range(2):
                px = st.seen_quote[i, side]
                if side == BID:
                    far = px == NO_BID_PX
                    dist = 0.5 * (m2 - 2 * px) if not far else 0.0
                else:
                    far = px == NO_ASK_PX
                    dist = 0.5 * (2 * px - m2) if not far else 0.0
                x = QUOTE_CAP if far else dist / spec.spread_scale
                obs[i, j] = min(max(x, -QUOTE_CAP), QUOTE_CAP)
                j += 1
        elif f == BOBS_FILLS:
            for side in range(2):
                obs[i, j] = st.seen_fills[i, side] / spec.size_scale
                j += 1
        elif f == BOBS_TRADE_FLOW:
            b = st.trade_ewma[i, BID]
            a = st.trade_ewma[i, ASK]
            obs[i, j] = (b - a) / (b + a) if b + a > 0.0 else 0.0
            j += 1
        elif f == BOBS_MICROPRICE:
            qb = st.seen_qty[i, BID, 0]
            qa = st.seen_qty[i, ASK, 0]
            spread = min(max(st.seen_px[i, ASK, 0] - st.seen_px[i, BID, 0], 0), spec.spread_cap)
            obs[i, j] = 0.5 * spread * (qb - qa) / (qb + qa) if qb + qa > 0 else 0.0
            j += 1
        elif f == BOBS_VOLATILITY:
            obs[i, j] = min(math.sqrt(st.var_ewma[i]), spec.spread_cap) / spec.return_scale
            j += 1
        else:  # BOBS_SINCE_FILL
            obs[i, j] = min((st.step[i] - st.last_fill[i]) / spec.halflife, SINCE_FILL_CAP)
            j += 1
