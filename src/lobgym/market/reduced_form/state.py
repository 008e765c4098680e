"""State of N independent markets as NamedTuples of preallocated arrays with a leading env axis.

Everything a kernel reads or writes lives here or in the caller's output buffers; nothing is
allocated per step. NamedTuples (not jitclasses) so that every kernel is cached on disk.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class ReducedFormParams(NamedTuple):
    """Scalar parameters of the reduced-form market (floats in price units, ints in lots/steps)."""

    s0: float  #: initial mid-price
    sigma: float  #: volatility of the mid's Brownian part, price units per sqrt(time)
    drift: float  #: drift mu, price units per unit time
    mr_kappa: float  #: Ornstein–Uhlenbeck mean-reversion speed (0 = none)
    mr_theta: float  #: OU long-run level
    mr_decay: float  #: exp(-kappa * dt), precomputed
    noise_std: float  #: std of the Brownian increment over dt (exact for OU)
    noise: int  #: NOISE_NORMAL or NOISE_BINOMIAL
    jump_rate: float  #: compound-Poisson jump intensity per unit time (0 = none)
    jump_mean: float  #: mean jump size
    jump_std: float  #: std of jump size
    dt: float  #: step length
    n_steps: int  #: steps per episode (horizon / dt)
    fill_rule: int  #: FILL_PAPER or FILL_POISSON
    fill_a: float  #: A in lambda(delta) = A * exp(-k * delta)
    fill_k: float  #: k in lambda(delta)
    tick_size: float  #: quote grid (0 = continuous prices)
    fee_per_unit: float  #: maker fee per filled lot (negative = rebate)
    fee_rate: float  #: maker fee as a fraction of traded value (negative = rebate)
    inventory_limit: int  #: |q| bound; a side stops quoting at it (NO_INVENTORY_LIMIT = none)
    q0_low: int  #: initial inventory drawn uniformly from {q0_low, ..., q0_high}
    q0_high: int


class MarketState(NamedTuple):
    """Dynamic state of each env."""

    step: np.ndarray  #: (N,) int64 steps taken this episode
    mid: np.ndarray  #: (N,) float64 mid-price
    cash: np.ndarray  #: (N,) float64 cash from trading, gross of fees
    inventory: np.ndarray  #: (N,) int64 lots held
    fees: np.ndarray  #: (N,) float64 fees paid this episode (negative = rebates earned)


class EpisodeStats(NamedTuple):
    """Running per-episode accumulators; :mod:`lobgym.metrics` turns them into metrics."""

    wealth0: np.ndarray  #: (N,) float64 mark-to-market value at reset
    bid_lots: np.ndarray  #: (N,) int64 lots bought
    ask_lots: np.ndarray  #: (N,) int64 lots sold
    bid_quoted: np.ndarray  #: (N,) int64 steps with a live bid
    ask_quoted: np.ndarray  #: (N,) int64 steps with a live ask
    spread_sum: np.ndarray  #: (N,) float64 sum of quoted spreads over two-sided steps
    two_sided: np.ndarray  #: (N,) int64 steps quoted on both sides
    abs_inventory_sum: np.ndarray  #: (N,) float64 sum over steps of |q| after the step
    max_abs_inventory: np.ndarray  #: (N,) int64
    pnl_sum: np.ndarray  #: (N,) float64 sum of per-step net PnL
    pnl_sumsq: np.ndarray  #: (N,) float64 sum of squared per-step net PnL


class StepOutcome(NamedTuple):
    """What happened in the last step of each env: written by the step, read by rewards and observations."""

    pnl: np.ndarray  #: (N,) float64 change of cash + q * mid (gross of fees)
    fee: np.ndarray  #: (N,) float64 fees paid this step
    inventory_before: np.ndarray  #: (N,) int64
    mid_before: np.ndarray  #: (N,) float64
    bid_lots: np.ndarray  #: (N,) int64 lots bought this step
    ask_lots: np.ndarray  #: (N,) int64 lots sold this step
    bid_depth: np.ndarray  #: (N,) float64 effective bid depth after tick rounding (NaN if no bid)
    ask_depth: np.ndarray  #: (N,) float64 effective ask depth (NaN if no ask)
    spread_captured: np.ndarray  #: (N,) float64 bought * (mid - bid) + sold * (ask - mid), at the step's mid
    done: np.ndarray  #: (N,) bool: the step reached the horizon


def _zeros(cls, n: int, dtypes: dict[str, type]) -> NamedTuple:
    return cls(**{name: np.zeros(n, dtype=dtypes.get(name, np.float64)) for name in cls._fields})


def make_market_state(n_envs: int) -> MarketState:
    """Allocate a zeroed :class:`MarketState` for ``n_envs`` envs."""
    return _zeros(MarketState, n_envs, {"step": np.int64, "inventory": np.int64})


def make_episode_stats(n_envs: int) -> EpisodeStats:
    """Allocate zeroed :class:`EpisodeStats` for ``n_envs`` envs."""
    ints = ("bid_lots", "ask_lots", "bid_quoted", "ask_quoted", "two_sided", "max_abs_inventory")
    return _zeros(EpisodeStats, n_envs, dict.fromkeys(ints, np.int64))


def make_step_outcome(n_envs: int) -> StepOutcome:
    """Allocate a zeroed :class:`StepOutcome` for ``n_envs`` envs."""
    ints = ("inventory_before", "bid_lots", "ask_lots")
    return _zeros(StepOutcome, n_envs, {**dict.fromkeys(ints, np.int64), "done": np.bool_})
