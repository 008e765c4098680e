"""A slow, readable, pure-Python model of the reduced-form market: the test oracle of the engine.

It reproduces :func:`lobgym.market.reduced_form.step.step_one` / :func:`~lobgym.market.reduced_form.step.reset_one`
bit for bit from plain Python ints and floats. It shares no code with the kernels (it imports only the
engine's constants and parameter/state types, never numba or a kernel) but performs the same
floating-point operations in the same order, which is what makes exact equality possible. Tests
drive it and the engine with the same seeds and quotes and require ``==`` on every quantity. It is
never used by the engine itself (tests/test_architecture.py enforces both directions).

Semantics, in order, for one step of one env:

1. Quotes are set from the mid ``S`` at the start of the step: bid ``S - delta_b`` and ask
   ``S + delta_a``, rounded outwards to the tick grid if there is one (down for the bid, up for the
   ask, with a ``1e-9``-tick guard against representation error). A side quotes only if its size,
   capped by the room the inventory limit leaves, is positive.
2. Two uniforms are drawn from the fill stream, bid first, whether or not a side quotes.
3. Fill counts from the effective depths: the paper rule fills once if ``u < A e^{-k delta} dt``; the
   Poisson rule draws Poisson(``A e^{-k delta} dt``) by inverse CDF from the same single uniform.
   Lots filled = fills * size, capped by the inventory room.
4. Cash and inventory change at the quoted prices; fee = per_unit * lots + rate * traded value.
5. The mid moves, drawing only from the market stream: ``theta + (S - theta) e^{-kappa dt} + mu dt
   + noise_std * Z`` (Z normal by Box–Muller, or +/-1 from one uniform), then, if jumps are on, one
   uniform for the Poisson jump count and one normal per jump.
6. PnL = change of cash + q * mid (gross of fees); episode statistics accumulate.
"""

from __future__ import annotations

import math
from typing import Any

from lobgym.market.constants import (
    FILL_PAPER,
    N_STREAMS,
    NOISE_BINOMIAL,
    RNG_WORDS,
    STREAM_FILLS,
    STREAM_MARKET,
)
from lobgym.market.reduced_form.state import EpisodeStats, ReducedFormParams

MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_GRID_EPS = 1e-9  #: same guard as the engine's tick rounding (in ticks)


def splitmix64(x: int) -> tuple[int, int]:
    """One SplitMix64 step: returns ``(new_state, output)`` for a 64-bit state ``x``."""
    x = (x + _GOLDEN) & MASK64
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return x, z ^ (z >> 31)


def _rotl(x: int, k: int) -> int:
    return ((x << k) | (x >> (64 - k))) & MASK64


class Xoshiro256StarStar:
    """The xoshiro256** generator (Blackman & Vigna) on four Python ints masked to 64 bits."""

    def __init__(self, words: list[int]):
        if len(words) != RNG_WORDS:
            raise ValueError(f"words: expected {RNG_WORDS} 64-bit ints, got {len(words)}")
        self.s = [int(w) & MASK64 for w in words]

    def next_u64(self) -> int:
        """Advance the state and return 64 random bits."""
        s = self.s
        result = (_rotl((s[1] * 5) & MASK64, 7) * 9) & MASK64
        t = (s[1] << 17) & MASK64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = _rotl(s[3], 45)
        return result

    def uniform(self) -> float:
        """A float on [0, 1) from the top 53 bits."""
        return float(self.next_u64() >> 11) * (1.0 / 9007199254740992.0)

    def normal(self) -> float:
        """Standard normal by Box–Muller, cosine branch; exactly two uniforms, the first as 1 - u."""
        u1 = 1.0 - self.uniform()
        u2 = self.uniform()
        return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def seed_streams(seed: int) -> list[Xoshiro256StarStar]:
    """The ``N_STREAMS`` generators of an env seeded ``seed``.

    One SplitMix64 sequence started at the seed fills stream 0's four words, then stream 1's, and so on.
    """
    x = int(seed) & MASK64
    streams = []
    for _ in range(N_STREAMS):
        words = []
        for _ in range(RNG_WORDS):
            x, z = splitmix64(x)
            words.append(z)
        streams.append(Xoshiro256StarStar(words))
    return streams


def poisson_from_uniform(u: float, lam: float) -> int:
    """Poisson(``lam``) by inverse CDF: the smallest k with P(X <= k) > u (0 if ``lam <= 0``).

    The pmf is built by the recurrence p_k = p_{k-1} * lam / k and the CDF by summing it in order,
    stopping early if the pmf underflows to zero.
    """
    if lam <= 0.0:
        return 0
    p = math.exp(-lam)
    cdf = p
    k = 0
    while u >= cdf and p > 0.0:
        k += 1
        p *= lam / k
        cdf += p
    return k


def bid_price(mid: float, depth: float, tick: float) -> float:
    """The bid ``depth`` below ``mid``, rounded down to the tick grid when ``tick > 0``."""
    if tick > 0.0:
        return math.floor((mid - depth) / tick + _GRID_EPS) * tick
    return mid - depth


def ask_price(mid: float, depth: float, tick: float) -> float:
    """The ask ``depth`` above ``mid``, rounded up to the tick grid when ``tick > 0``."""
    if tick > 0.0:
        return math.ceil((mid + depth) / tick - _GRID_EPS) * tick
    return mid + depth


class ReferenceMarket:
    """One reduced-form market, stepped in plain Python.

    Args:
        params: the kernel parameters (e.g. from :func:`lobgym.simulation.market_params`).
        seed: the env's 64-bit seed; call :meth:`reset` before the first :meth:`step`.

    Attributes:
        step_count, mid, cash, inventory, fees: the market state (cash gross of fees).
        stats: the episode statistics, keyed by the field names of
            :class:`~lobgym.market.reduced_form.state.EpisodeStats`.
    """

    def __init__(self, params: ReducedFormParams, seed: int):
        self.p = params
        self.seed(seed)
        self.step_count = 0
        self.mid = float(params.s0)
        self.cash = 0.0
        self.inventory = 0
        self.fees = 0.0
        self.stats: dict[str, Any] = dict.fromkeys(EpisodeStats._fields, 0)

    def seed(self, seed: int) -> None:
        """Reseed both streams (as :func:`lobgym.market.rng.seed_one` does)."""
        streams = seed_streams(seed)
        self.market_rng = streams[STREAM_MARKET]
        self.fill_rng = streams[STREAM_FILLS]

    def reset(self) -> dict[str, Any]:
        """Start a new episode; returns the state (see :meth:`state`).

        The initial inventory is drawn from the market stream only when ``q0_high > q0_low``.
        """
        p = self.p
        q0 = p.q0_low
        if p.q0_high > p.q0_low:
            q0 += int(self.market_rng.uniform() * (p.q0_high - p.q0_low + 1))  # truncation, u >= 0
        self.step_count = 0
        self.mid = p.s0
        self.cash = 0.0
        self.inventory = q0
        self.fees = 0.0
        self.stats = {
            "wealth0": q0 * p.s0,
            "bid_lots": 0,
            "ask_lots": 0,
            "bid_quoted": 0,
            "ask_quoted": 0,
            "spread_sum": 0.0,
            "two_sided": 0,
            "abs_inventory_sum": 0.0,
            "max_abs_inventory": abs(q0),
            "pnl_sum": 0.0,
            "pnl_sumsq": 0.0,
        }
        return self.state()

    def state(self) -> dict[str, Any]:
        """The market state as a dict keyed like :class:`~lobgym.market.reduced_form.state.MarketState`."""
        return {"step": self.step_count, "mid": self.mid, "cash": self.cash, "inventory": self.inventory,
                "fees": self.fees}

    def _fill_count(self, u: float, depth: float) -> int:
        p = self.p
        lam = p.fill_a * math.exp(-p.fill_k * depth) * p.dt
        if p.fill_rule == FILL_PAPER:
            return 1 if u < lam else 0  # probability min(1, lam): u < 1 always
        return poisson_from_uniform(u, lam)

    def _next_mid(self, mid: float) -> float:
        p = self.p
        rng = self.market_rng
        if p.noise == NOISE_BINOMIAL:
            z = 1.0 if rng.uniform() >= 0.5 else -1.0
        else:
            z = rng.normal()
        new_mid = p.mr_theta + (mid - p.mr_theta) * p.mr_decay + p.drift * p.dt + p.noise_std * z
        if p.jump_rate > 0.0:
            n_jumps = poisson_from_uniform(rng.uniform(), p.jump_rate * p.dt)
            for _ in range(n_jumps):
                new_mid += p.jump_mean + p.jump_std * rng.normal()
        return new_mid

    def step(self, bid_depth: float, ask_depth: float, bid_size: int, ask_size: int) -> dict[str, Any]:
        """Advance one step with quotes at the given depths (>= 0) and sizes (lots, 0 = no quote).

        Returns:
            A dict with the step's outcome, keyed like :class:`~lobgym.market.reduced_form.state.StepOutcome`
            (``pnl``, ``fee``, ``inventory_before``, ``mid_before``, ``bid_lots``, ``ask_lots``, ``spread_captured``,
            ``bid_depth``/``ask_depth`` = effective depths or NaN for a side not quoted, ``done``),
            the new state (``step``, ``mid``, ``cash``, ``inventory``, ``fees``) and ``stats``, a copy
            of the episode statistics.
        """
        p = self.p
        mid = self.mid
        q = self.inventory
        cash = self.cash
        wealth_before = cash + q * mid

        buy_room = p.inventory_limit - q
        sell_room = p.inventory_limit + q
        bid_size = min(int(bid_size), buy_room)
        ask_size = min(int(ask_size), sell_room)
        bid_px = bid_price(mid, bid_depth, p.tick_size)
        ask_px = ask_price(mid, ask_depth, p.tick_size)
        u_bid = self.fill_rng.uniform()
        u_ask = self.fill_rng.uniform()
        bid_eff = mid - bid_px if p.tick_size > 0.0 else bid_depth
        ask_eff = ask_px - mid if p.tick_size > 0.0 else ask_depth

        s = self.stats
        bought = sold = 0
        out_bid_depth = out_ask_depth = math.nan
        if bid_size > 0:
            bought = min(self._fill_count(u_bid, bid_eff) * bid_size, buy_room)
            out_bid_depth = bid_eff
            s["bid_quoted"] += 1
        if ask_size > 0:
            sold = min(self._fill_count(u_ask, ask_eff) * ask_size, sell_room)
            out_ask_depth = ask_eff
            s["ask_quoted"] += 1
        if bid_size > 0 and ask_size > 0:
            s["spread_sum"] += ask_px - bid_px
            s["two_sided"] += 1

        cash += sold * ask_px - bought * bid_px
        q += bought - sold
        fee = p.fee_per_unit * (bought + sold) + p.fee_rate * (bought * bid_px + sold * ask_px)
        new_mid = self._next_mid(mid)
        pnl = (cash + q * new_mid) - wealth_before

        self.step_count += 1
        self.mid = new_mid
        self.cash = cash
        self.inventory = q
        self.fees += fee

        s["bid_lots"] += bought
        s["ask_lots"] += sold
        s["abs_inventory_sum"] += abs(q)
        s["max_abs_inventory"] = max(s["max_abs_inventory"], abs(q))
        net = pnl - fee
        s["pnl_sum"] += net
        s["pnl_sumsq"] += net * net

        return {
            "pnl": pnl,
            "fee": fee,
            "inventory_before": self.inventory - bought + sold,
            "mid_before": mid,
            "bid_lots": bought,
            "ask_lots": sold,
            "bid_depth": out_bid_depth,
            "ask_depth": out_ask_depth,
            "spread_captured": (bought * (mid - bid_px) if bought > 0 else 0.0) + (
                sold * (ask_px - mid) if sold > 0 else 0.0),
            "done": self.step_count >= p.n_steps,
            **self.state(),
            "stats": dict(s),
        }
