"""Observation layout and action codec.

Actions are float32 vectors in ``Box(-1, 1)``; :func:`decode_one` maps them to quotes:

=====  ===========  ==========================================================
index  name         meaning
=====  ===========  ==========================================================
0      bid_depth    min_depth + (a + 1) / 2 * (max_depth - min_depth), distance of the bid below the mid
1      ask_depth    min_depth + (a + 1) / 2 * (max_depth - min_depth), distance of the ask above the mid
2      bid_size     round((a + 1) / 2 * max_size) lots, 0 = no bid (only if ``action.sizes``)
3      ask_size     round((a + 1) / 2 * max_size) lots, 0 = no ask (only if ``action.sizes``)
=====  ===========  ==========================================================

Without ``action.sizes`` both sides quote one lot every step. ``min_depth`` is 0 unless the config
sets it; a negative one lets quotes sit through the mid (a negative depth: a bid above the mid, an
ask below it), which the fill law ``A exp(-k depth)`` covers as it stands (the paper rule caps the
per-step fill probability at 1).

Observations are float32 vectors whose entries are the configured features, in the order given
in the config (see :data:`FEATURES` for each feature's definition and bounds).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from lobgym.market._jit import inline, kernel
from lobgym.market.constants import FILL_PAPER, NOISE_BINOMIAL

# ---------------------------------------------------------------------------------------- actions
ACTION_NAMES = ("bid_depth", "ask_depth", "bid_size", "ask_size")


class ActionCodec(NamedTuple):
    """How a ``Box(-1, 1)`` action maps to quotes."""

    max_depth: float
    max_size: int  #: largest quoted size in lots (1 when sizes are not controlled)
    has_sizes: bool  #: the action carries sizes (4 dims) or not (2 dims)
    clip: bool  #: clip out-of-range actions instead of rejecting them
    min_depth: float = 0.0  #: depth at action -1 (negative: through the mid)


def action_codec(action) -> ActionCodec:
    """The codec of an env config's ``action`` section."""
    size = action.sizes.max_size if action.sizes else 1
    return ActionCodec(float(action.max_depth), int(size), action.sizes is not None, bool(action.clip),
                       float(action.min_depth))


def action_dim(codec: ActionCodec) -> int:
    """Entries of the codec's action: 2 depths, plus 2 sizes when it has sizes."""
    return 4 if codec.has_sizes else 2


@kernel
def find_bad_action(actions, clip):
    """Flat index of the first non-finite action (or out of [-1, 1] when not clipping); -1 if none.

    ``actions`` is C-contiguous (the simulation's own buffer). Every step checks all of them, so the
    common case is a branch-free count over the flat array, which LLVM vectorises (~0.2 us for 2,000
    actions against ~1.3 us for the early-exit loop); only a batch that holds a bad action is searched.
    """
    flat = actions.reshape(actions.size)
    good = 0
    if clip:
        for k in range(flat.shape[0]):
            good += (flat[k] > -np.inf) & (flat[k] < np.inf)  # false for NaN and +-inf
    else:
        for k in range(flat.shape[0]):
            good += (flat[k] >= -1.0) & (flat[k] <= 1.0)  # false for NaN
    if good == flat.shape[0]:
        return -1
    for i in range(actions.shape[0]):
        for j in range(actions.shape[1]):
            a = actions[i, j]
            if not np.isfinite(a) or (not clip and (a < -1.0 or a > 1.0)):
                return i * actions.shape[1] + j
    return -1


@inline
def _unit(a):
    """Map a in [-1, 1] to [0, 1], clipping (validation already rejected what must not be clipped)."""
    return min(max((a + 1.0) * 0.5, 0.0), 1.0)


@inline
def decode_one(i, actions, codec):
    """Quotes of env ``i``: (bid_depth, ask_depth, bid_size, ask_size)."""
    span = codec.max_depth - codec.min_depth  # with min_depth 0: max_depth exactly, and 0 + x is x
    bid_depth = codec.min_depth + _unit(np.float64(actions[i, 0])) * span
    ask_depth = codec.min_depth + _unit(np.float64(actions[i, 1])) * span
    if codec.has_sizes:
        bid_size = np.int64(np.round(_unit(np.float64(actions[i, 2])) * codec.max_size))
        ask_size = np.int64(np.round(_unit(np.float64(actions[i, 3])) * codec.max_size))
    else:
        bid_size = np.int64(codec.max_size)
        ask_size = np.int64(codec.max_size)
    return bid_depth, ask_depth, bid_size, ask_size


def encode_depths(bid_depth, ask_depth, codec: ActionCodec, bid_size=None, ask_size=None) -> np.ndarray:
    """Inverse of :func:`decode_one` for (arrays of) depths and sizes: the float32 action that quotes them.

    Depths are clipped to [min_depth, max_depth]. Used by the analytic baselines.
    """
    bid_depth = np.asarray(bid_depth, dtype=np.float64)
    ask_depth = np.asarray(ask_depth, dtype=np.float64)
    lo, span = codec.min_depth, codec.max_depth - codec.min_depth
    cols = [
        (np.clip(bid_depth, lo, codec.max_depth) - lo) / span * 2.0 - 1.0,
        (np.clip(ask_depth, lo, codec.max_depth) - lo) / span * 2.0 - 1.0,
    ]
    if codec.has_sizes:
        for size in (bid_size, ask_size):
            size = np.broadcast_to(np.asarray(1 if size is None else size, dtype=np.float64), bid_depth.shape)
            cols.append(np.clip(size, 0, codec.max_size) / codec.max_size * 2.0 - 1.0)
    return np.stack(cols, axis=-1).astype(np.float32)


# ----------------------------------------------------------------------------------- observations
OBS_INVENTORY = 0
OBS_TIME_LEFT = 1
OBS_MID_CHANGE = 2
OBS_BID_FILLED = 3
OBS_ASK_FILLED = 4

#: name -> (code, low, high, definition)
FEATURES: dict[str, tuple[int, float, float, str]] = {
    "inventory": (OBS_INVENTORY, -np.inf, np.inf, "q / inventory_scale (inventory_scale = the inventory limit if set)"),
    "time_left": (OBS_TIME_LEFT, 0.0, 1.0, "(T - t) / T, exactly (n_steps - step) / n_steps"),
    "mid_change": (OBS_MID_CHANGE, -np.inf, np.inf, "(S_t - S_{t-dt}) / (sigma sqrt(dt)); 0 after reset"),
    "bid_filled": (OBS_BID_FILLED, 0.0, np.inf, "lots bought in the last step / max_size; 0 after reset"),
    "ask_filled": (OBS_ASK_FILLED, 0.0, np.inf, "lots sold in the last step / max_size; 0 after reset"),
}


class ObservationSpec(NamedTuple):
    """Which features are observed, in order, and their scales."""

    features: np.ndarray  #: (F,) int64 feature codes
    inventory_scale: float
    mid_scale: float
    size_scale: float


# Largest |Z| the generators can produce: Box-Muller's radius sqrt(-2 ln u1) with u1 >= 2**-53.
_MAX_ABS_NORMAL = math.sqrt(-2.0 * math.log(2.0**-53))


def max_poisson_events(lam: float) -> int:
    """An upper bound on what :func:`~lobgym.market.rng.poisson_from_uniform` can return for mean ``lam``.

    Its inverse-CDF loop always stops once the probability term underflows to 0, so the number of
    terms until that underflow (plus one for last-bit differences between Python's and numba's
    ``exp``) bounds the count whatever the uniform.
    """
    if lam <= 0.0:
        return 0
    p = math.exp(-lam)
    k = 0
    while p > 0.0:
        k += 1
        p *= lam / k
    return k + 1


def observation_bounds(names: list[str], inventory_limit: int | None, inventory_scale: float,
                       market=None, spec: ObservationSpec | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Low and high float32 bounds of the observation vector.

    Without ``market`` the unbounded features get infinite bounds. Given the market's
    :class:`~lobgym.market.reduced_form.state.ReducedFormParams` and the observation ``spec``, every bound is
    finite: a guaranteed (loose) bound on what an episode can reach, since the horizon is finite
    and each step's fills and price move are bounded by the generators' 53-bit uniforms. Finite
    bounds are what Gymnasium's env checker asks for.
    """
    low = np.array([FEATURES[n][1] for n in names], dtype=np.float32)
    high = np.array([FEATURES[n][2] for n in names], dtype=np.float32)
    inv_bound = None if inventory_limit is None else float(inventory_limit)
    if market is not None:
        if spec is None:
            raise ValueError("observation_bounds: spec is required with market")
        p = market
        fill_events = 1 if p.fill_rule == FILL_PAPER else max_poisson_events(p.fill_a * p.dt)
        lots = float(fill_events) * spec.size_scale  # most lots one side can fill in one step
        reach = max(abs(p.q0_low), abs(p.q0_high)) + p.n_steps * lots
        if inventory_limit is not None:
            lots = min(lots, 2.0 * inventory_limit)
            reach = min(reach, float(inventory_limit))
        inv_bound = reach
        z_max = 1.0 if p.noise == NOISE_BINOMIAL else _MAX_ABS_NORMAL
        jumps = max_poisson_events(p.jump_rate * p.dt) * (abs(p.jump_mean) + p.jump_std * _MAX_ABS_NORMAL)
        move = abs(p.drift) * p.dt + p.noise_std * z_max + jumps  # largest move of the mid, without reversion
        deviation = abs(p.s0 - p.mr_theta) + p.n_steps * move  # largest |S - theta| within an episode
        move += deviation * (1.0 - p.mr_decay)
        move += 1e-9 * (abs(p.s0) + abs(p.mr_theta) + deviation + 1.0)  # float rounding of S_t - S_{t-dt}
        extra = {"mid_change": (-move / spec.mid_scale, move / spec.mid_scale),
                 "bid_filled": (0.0, lots / spec.size_scale), "ask_filled": (0.0, lots / spec.size_scale)}
        for j, name in enumerate(names):
            if name in extra:
                low[j], high[j] = extra[name]
    if inv_bound is not None and "inventory" in names:
        j = names.index("inventory")
        low[j], high[j] = -inv_bound / inventory_scale, inv_bound / inventory_scale
    return low, high


@inline
def write_obs_one(i, spec, state, out, p, obs, fresh):
    """Write env ``i``'s observation row; ``fresh`` right after a reset (no last step to report)."""
    for j in range(spec.features.shape[0]):
        f = spec.features[j]
        if f == OBS_INVENTORY:
            v = state.inventory[i] / spec.inventory_scale
        elif f == OBS_TIME_LEFT:
            v = (p.n_steps - state.step[i]) / p.n_steps
        elif f == OBS_MID_CHANGE:
            v = 0.0 if fresh else (state.mid[i] - out.mid_before[i]) / spec.mid_scale
        elif f == OBS_BID_FILLED:
            v = 0.0 if fresh else out.bid_lots[i] / spec.size_scale
        else:
            v = 0.0 if fresh else out.ask_lots[i] / spec.size_scale
        obs[i, j] = v


class ObservationReader:
    """Reads named quantities back out of observation arrays (for baselines and analysis)."""

    def __init__(self, names: list[str], spec: ObservationSpec, n_steps: int):
        self.index = {n: j for j, n in enumerate(names)}
        self.spec = spec
        self.n_steps = n_steps

    def inventory(self, obs: np.ndarray) -> np.ndarray:
        """Integer inventory q (requires the ``inventory`` feature)."""
        return np.rint(np.asarray(obs)[..., self.index["inventory"]] * self.spec.inventory_scale).astype(np.int64)

    def steps_left(self, obs: np.ndarray) -> np.ndarray:
        """Integer number of steps left in the episode (requires ``time_left``)."""
        return np.rint(np.asarray(obs)[..., self.index["time_left"]] * self.n_steps).astype(np.int64)
