"""The reduced-form market of the market-making literature, as per-env scalar kernels.

The market of Avellaneda & Stoikov (2008), Guéant, Lehalle & Fernandez-Tapia (2013) and Cartea,
Jaimungal & Penalva (2015).

Mid-price over one step of length dt::

    S' = theta + (S - theta) * exp(-kappa dt) + mu dt + noise_std * Z + sum_{j <= J} Y_j

with Z ~ N(0,1) (or +/-1 for the binomial walk of the 2008 paper), noise_std = sigma sqrt(dt)
(exact OU variance sigma^2 (1 - e^{-2 kappa dt}) / (2 kappa) when kappa > 0), J ~ Poisson(rate dt)
and Y_j ~ N(jump_mean, jump_std^2). A quote at depth delta from the mid is hit with intensity
lambda(delta) = A exp(-k delta); see :data:`~lobgym.market.constants.FILL_PAPER` and
:data:`~lobgym.market.constants.FILL_POISSON` for the two discretisations.
"""

from __future__ import annotations

import math

from lobgym.market._jit import inline
from lobgym.market.constants import FILL_PAPER, NOISE_BINOMIAL, STREAM_MARKET
from lobgym.market.rng import normal, poisson_from_uniform, uniform

# Prices within this many ticks of a grid point count as on it (guards floor/ceil against
# representation error such as 99.99 / 0.01 = 9998.999...).
_GRID_EPS = 1e-9


@inline
def advance_mid(mid, p, rng, i):
    """Return the mid one step later; draws only from the env's market stream."""
    if p.noise == NOISE_BINOMIAL:
        z = 1.0 if uniform(rng, i, STREAM_MARKET) >= 0.5 else -1.0
    else:
        z = normal(rng, i, STREAM_MARKET)
    new_mid = p.mr_theta + (mid - p.mr_theta) * p.mr_decay + p.drift * p.dt + p.noise_std * z
    if p.jump_rate > 0.0:
        n_jumps = poisson_from_uniform(uniform(rng, i, STREAM_MARKET), p.jump_rate * p.dt)
        for _ in range(n_jumps):
            new_mid += p.jump_mean + p.jump_std * normal(rng, i, STREAM_MARKET)
    return new_mid


@inline
def bid_price(mid, depth, tick):
    """Price of a bid quoted ``depth`` below the mid, rounded down to the tick grid if any."""
    if tick > 0.0:
        return math.floor((mid - depth) / tick + _GRID_EPS) * tick
    return mid - depth


@inline
def ask_price(mid, depth, tick):
    """Price of an ask quoted ``depth`` above the mid, rounded up to the tick grid if any."""
    if tick > 0.0:
        return math.ceil((mid + depth) / tick - _GRID_EPS) * tick
    return mid + depth


@inline
def fill_intensity(depth, p):
    """Expected number of market orders reaching a quote at ``depth`` within one step: A e^{-k delta} dt."""
    return p.fill_a * math.exp(-p.fill_k * depth) * p.dt


@inline
def fill_events(u, depth, p):
    """Number of fills of a quote at ``depth`` this step, from one uniform ``u``."""
    lam = fill_intensity(depth, p)
    if p.fill_rule == FILL_PAPER:
        return 1 if u < lam else 0  # u < min(1, lam) since u < 1
    return poisson_from_uniform(u, lam)
