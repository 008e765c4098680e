"""Named integer codes used inside the kernels.

Kernels never see strings: configs are mapped to these codes once, when an environment is built.
"""

from __future__ import annotations

import numpy as np

# Sides.
BID = 0  #: the agent's buy quote
ASK = 1  #: the agent's sell quote

# Fill discretisations of the intensity lambda(delta) = A * exp(-k * delta) over one step dt.
FILL_PAPER = 0  #: at most one fill per side and step, with probability min(1, lambda * dt) (AS 2008)
FILL_POISSON = 1  #: Poisson(lambda * dt) fills per side and step

# Increments of the mid-price's Brownian part.
NOISE_NORMAL = 0  #: sigma * sqrt(dt) * Z with Z ~ N(0, 1)
NOISE_BINOMIAL = 1  #: +/- sigma * sqrt(dt) with probability 1/2 each (the AS 2008 simulations)

# Random streams kept per env. The market stream drives the mid-price and the initial inventory and
# never depends on the agent's actions, so every agent evaluated with the same seeds sees the same
# price paths (common random numbers). The fill stream draws a fixed two uniforms per step.
STREAM_MARKET = 0
STREAM_FILLS = 1
N_STREAMS = 2
RNG_WORDS = 4  #: xoshiro256** keeps four 64-bit words of state

# Sentinel for "no inventory limit": large enough never to bind, small enough that limit +/- q
# cannot overflow int64.
NO_INVENTORY_LIMIT = np.int64(1) << np.int64(62)
