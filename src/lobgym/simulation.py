"""N reduced-form market-making envs advanced by one fused kernel call.

Each step decodes the actions, steps the market, computes reward terms, write observations and, at the horizon,
episode metrics (and auto-reset if asked).

:class:`Simulation` owns every array; :class:`~lobgym.env.MarketMakingEnv` (N = 1) and
:class:`~lobgym.vec_env.MarketMakingVecEnv` (N envs) are thin API adapters over it.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from lobgym.compile_notice import announce_compiles
from lobgym.config import EnvConfig
from lobgym.market import constants as C
from lobgym.market._jit import inline, kernel, parallel_kernel
from lobgym.market.reduced_form.state import (
    EpisodeStats,
    MarketState,
    ReducedFormParams,
    StepOutcome,
    make_episode_stats,
    make_market_state,
    make_step_outcome,
)
from lobgym.market.reduced_form.step import reset_one, step_one
from lobgym.market.rng import make_rng
from lobgym.metrics import METRICS, write_metrics_one
from lobgym.rewards import reset_reward_state_one, reward_one
from lobgym.simulation_base import PARALLEL_CHUNKS, SimulationBase, count_done
from lobgym.spaces import (
    ACTION_NAMES,
    FEATURES,
    ObservationSpec,
    action_codec,
    action_dim,
    decode_one,
    find_bad_action,
    observation_bounds,
    write_obs_one,
)

announce_compiles()  # a cold numba cache says so instead of compiling for a silent minute

#: Batches at least this large use the multi-core kernel (below it, handing the envs to the threads
#: costs more than it saves): measured on 2 cores, 0.97x at 512 envs, 1.02x at 640, 1.06x at 768,
#: 1.30x at 896 (lobgym bench --crossover; docs/performance.md).
PARALLEL_MIN_ENVS = 768


def market_params(cfg: EnvConfig) -> ReducedFormParams:
    """Kernel parameters for a validated config."""
    m = cfg.market
    mr, jumps = m.mean_reversion, m.jumps
    if mr is not None:
        decay = math.exp(-mr.kappa * m.dt)
        noise_std = m.sigma * math.sqrt((1.0 - math.exp(-2.0 * mr.kappa * m.dt)) / (2.0 * mr.kappa))
    else:
        decay, noise_std = 1.0, m.sigma * math.sqrt(m.dt)
    low, high = m.inventory.bounds
    return ReducedFormParams(
        s0=float(m.s0),
        sigma=float(m.sigma),
        drift=float(m.drift),
        mr_kappa=float(mr.kappa) if mr else 0.0,
        mr_theta=float(mr.theta) if mr else 0.0,  # theta = 0 with decay 1 leaves the mid bit-exact
        mr_decay=decay,
        noise_std=noise_std,
        noise=C.NOISE_BINOMIAL if m.noise == "binomial" else C.NOISE_NORMAL,
        jump_rate=float(jumps.rate) if jumps else 0.0,
        jump_mean=float(jumps.mean) if jumps else 0.0,
        jump_std=float(jumps.std) if jumps else 0.0,
        dt=float(m.dt),
        n_steps=m.n_steps,
        fill_rule=C.FILL_PAPER if m.fill.rule == "paper" else C.FILL_POISSON,
        fill_a=float(m.fill.A),
        fill_k=float(m.fill.k),
        tick_size=float(m.tick_size or 0.0),
        fee_per_unit=float(m.fees.per_unit),
        fee_rate=float(m.fees.rate),
        inventory_limit=int(m.inventory.limit) if m.inventory.limit is not None else int(C.NO_INVENTORY_LIMIT),
        q0_low=int(low),
        q0_high=int(high),
    )


@inline
def _step_env(i, state, stats, out, p, rng, actions, codec, rspec, rstate, ospec, buf, auto_reset):
    bid_depth, ask_depth, bid_size, ask_size = decode_one(i, actions, codec)
    step_one(i, state, stats, out, p, bid_depth, ask_depth, bid_size, ask_size, rng)
    buf.rewards[i] = reward_one(i, rspec, out, state, stats, p, rstate, buf.terms)
    done = out.done[i]
    buf.dones[i] = done
    write_obs_one(i, ospec, state, out, p, buf.obs, False)
    if not done:
        return 0
    write_metrics_one(i, state, stats, buf.metrics)
    if auto_reset:
        for j in range(buf.obs.shape[1]):
            buf.terminal_obs[i, j] = buf.obs[i, j]
        reset_one(i, state, stats, p, rng)
        reset_reward_state_one(i, rstate)
        write_obs_one(i, ospec, state, out, p, buf.obs, True)
    return 1


@inline
def _reset_env(i, state, stats, out, p, rng, rstate, ospec, buf):
    reset_one(i, state, stats, p, rng)
    reset_reward_state_one(i, rstate)
    write_obs_one(i, ospec, state, out, p, buf.obs, True)


def _step_all(state, stats, out, p, rng, actions, codec, rspec, rstate, ospec, buf, auto_reset):
    bad = find_bad_action(actions, codec.clip)
    if bad >= 0:
        return -1 - bad
    n_done = 0
    for i in range(state.mid.shape[0]):
        n_done += _step_env(i, state, stats, out, p, rng, actions, codec, rspec, rstate, ospec, buf, auto_reset)
    return n_done


def _reset_all(state, stats, out, p, rng, rstate, ospec, buf, mask):
    for i in range(state.mid.shape[0]):
        if mask[i]:
            _reset_env(i, state, stats, out, p, rng, rstate, ospec, buf)


# The chunk kernels count envs with an unsigned index: numba wraps negative indices around, so with a
# signed index of unknown sign every array access carries a check (~6 ns per env-step, 15% of the step).
@kernel
def _step_chunk(lo, hi, state, stats, out, p, rng, actions, codec, rspec, rstate, ospec, buf, auto_reset):
    n_done = 0
    for i in range(np.uint64(lo), np.uint64(hi)):
        n_done += _step_env(i, state, stats, out, p, rng, actions, codec, rspec, rstate, ospec, buf, auto_reset)
    return n_done


@kernel
def _reset_chunk(lo, hi, state, stats, out, p, rng, rstate, ospec, buf, mask):
    for i in range(np.uint64(lo), np.uint64(hi)):
        if mask[i]:
            _reset_env(i, state, stats, out, p, rng, rstate, ospec, buf)


def _step_all_chunked(state, stats, out, p, rng, actions, codec, rspec, rstate, ospec, buf, auto_reset):
    bad = find_bad_action(actions, codec.clip)
    if bad >= 0:
        return -1 - bad
    n = state.mid.shape[0]
    chunks = min(n, PARALLEL_CHUNKS)
    for c in numba.prange(chunks):
        _step_chunk(c * n // chunks, (c + 1) * n // chunks, state, stats, out, p, rng, actions, codec, rspec, rstate,
                    ospec, buf, auto_reset)
    return count_done(buf.dones)


def _reset_all_chunked(state, stats, out, p, rng, rstate, ospec, buf, mask):
    n = state.mid.shape[0]
    chunks = min(n, PARALLEL_CHUNKS)
    for c in numba.prange(chunks):
        _reset_chunk(c * n // chunks, (c + 1) * n // chunks, state, stats, out, p, rng, rstate, ospec, buf,
                     mask)


_step_serial = kernel(_step_all)
_step_parallel = parallel_kernel(_step_all_chunked)
_reset_serial = kernel(_reset_all)
_reset_parallel = parallel_kernel(_reset_all_chunked)


class Simulation(SimulationBase):
    """Arrays and compiled kernels for ``n_envs`` copies of one reduced-form env config."""

    kind = "reduced_form"
    metric_names = METRICS
    action_names = ACTION_NAMES
    step_structs = {"out": StepOutcome, "state": MarketState, "stats": EpisodeStats, "p": ReducedFormParams}
    parallel_min_envs = PARALLEL_MIN_ENVS

    def __init__(self, cfg: EnvConfig, n_envs: int, parallel: bool | None = None):
        n = self._begin(cfg, n_envs, parallel)
        self.params = market_params(cfg)
        size = cfg.action.sizes.max_size if cfg.action.sizes else 1
        self.codec = action_codec(cfg.action)
        self.feature_names = list(cfg.observation.features)
        self.obs_spec = ObservationSpec(
            features=np.array([FEATURES[f][0] for f in self.feature_names], dtype=np.int64),
            inventory_scale=cfg.inventory_scale,
            mid_scale=self.params.noise_std if self.params.noise_std > 0 else 1.0,
            size_scale=float(size),
        )
        self._build_reward(self.params.n_steps)
        self.state: MarketState = make_market_state(n)
        self.stats: EpisodeStats = make_episode_stats(n)
        self.outcome: StepOutcome = make_step_outcome(n)
        self.rng = make_rng(n)
        self._step_kernel = _step_parallel if self.parallel else _step_serial
        self._reset_kernel = _reset_parallel if self.parallel else _reset_serial
        self._finish(len(self.feature_names), action_dim(self.codec))

    def observation_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Finite low and high bounds of the observation vector."""
        return observation_bounds(self.feature_names, self.cfg.market.inventory.limit, self.cfg.inventory_scale,
                                  market=self.params, spec=self.obs_spec)

    def reset(self, mask: np.ndarray | None = None) -> np.ndarray:
        """Start new episodes (where ``mask`` is true); returns the observation buffer."""
        b = self.buffers
        self._reset_kernel(self.state, self.stats, self.outcome, self.params, self.rng, self.reward_state,
                           self.obs_spec, b, self._all if mask is None else mask)
        return b.obs

    def _step_call(self, auto_reset: bool) -> tuple:
        return self._step_kernel, (self.state, self.stats, self.outcome, self.params, self.rng, self.actions,
                                   self.codec, self.reward_spec, self.reward_state, self.obs_spec, self.buffers,
                                   auto_reset)
