"""N market-making envs advanced by one fused kernel call: decode actions, step the market, compute
reward terms, write observations and, at the horizon, episode metrics (and auto-reset if asked).

:class:`Simulation` owns every array; :class:`~lobgym.env.MarketMakingEnv` (N = 1) and
:class:`~lobgym.vec_env.MarketMakingVecEnv` (N envs) are thin API adapters over it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np

from lobgym.compile_notice import announce_compiles
from lobgym.config import EnvConfig
from lobgym.market import constants as C
from lobgym.market._jit import inline, kernel, parallel_kernel
from lobgym.market.rng import make_rng, seed_one
from lobgym.market.state import (
    EpisodeStats,
    MarketState,
    ReducedFormParams,
    StepOutcome,
    make_episode_stats,
    make_market_state,
    make_step_outcome,
)
from lobgym.market.step import reset_one, step_one
from lobgym.metrics import METRICS, N_METRICS, write_metrics_one
from lobgym.rewards import RewardSpec, build_reward_spec, reset_reward_state_one, reward_one
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

#: Batches at least this large use the multi-core kernel (below it, thread start-up costs more).
PARALLEL_MIN_ENVS = 4096


class Buffers(NamedTuple):
    """Caller-visible outputs of a step, preallocated once."""

    obs: np.ndarray  #: (N, F) float32
    rewards: np.ndarray  #: (N,) float64
    terms: np.ndarray  #: (N, T) float64 weighted reward terms
    dones: np.ndarray  #: (N,) bool
    terminal_obs: np.ndarray  #: (N, F) float32 last observation of an auto-reset episode
    metrics: np.ndarray  #: (N, M) float64 episode metrics, written at the horizon


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


# The parallel kernels do not inline the per-env code into their prange body: there numba silently
# drops writes made through NamedTuple attributes (``state.step[i] = ...``; numba issues #5872, #7135,
# #10338). Instead each prange iteration calls a separate kernel on a chunk of envs, which receives
# the arrays and writes them; a chunk per thread or so keeps the (costly) calls few. Nothing is written
# in the prange body itself (tests/test_architecture.py checks it): the episodes that ended are
# counted afterwards from the dones the chunks wrote.
_PARALLEL_CHUNKS = 16


@inline
def count_done(dones):
    """How many envs' episodes ended this step."""
    n_done = 0
    for i in range(dones.shape[0]):
        if dones[i]:
            n_done += 1
    return n_done


@kernel
def _step_chunk(lo, hi, state, stats, out, p, rng, actions, codec, rspec, rstate, ospec, buf, auto_reset):
    n_done = 0
    for i in range(lo, hi):
        n_done += _step_env(i, state, stats, out, p, rng, actions, codec, rspec, rstate, ospec, buf, auto_reset)
    return n_done


@kernel
def _reset_chunk(lo, hi, state, stats, out, p, rng, rstate, ospec, buf, mask):
    for i in range(lo, hi):
        if mask[i]:
            _reset_env(i, state, stats, out, p, rng, rstate, ospec, buf)


def _step_all_chunked(state, stats, out, p, rng, actions, codec, rspec, rstate, ospec, buf, auto_reset):
    bad = find_bad_action(actions, codec.clip)
    if bad >= 0:
        return -1 - bad
    n = state.mid.shape[0]
    chunks = min(n, _PARALLEL_CHUNKS)
    for c in numba.prange(chunks):
        _step_chunk(c * n // chunks, (c + 1) * n // chunks, state, stats, out, p, rng, actions, codec, rspec, rstate,
                    ospec, buf, auto_reset)
    return count_done(buf.dones)


def _reset_all_chunked(state, stats, out, p, rng, rstate, ospec, buf, mask):
    n = state.mid.shape[0]
    chunks = min(n, _PARALLEL_CHUNKS)
    for c in numba.prange(chunks):
        _reset_chunk(c * n // chunks, (c + 1) * n // chunks, state, stats, out, p, rng, rstate, ospec, buf,
                     mask)


_step_serial = kernel(_step_all)
_step_parallel = parallel_kernel(_step_all_chunked)
_reset_serial = kernel(_reset_all)
_reset_parallel = parallel_kernel(_reset_all_chunked)


@kernel
def _seed_all(rng, seeds, mask):
    for i in range(rng.shape[0]):
        if mask[i]:
            seed_one(rng, i, seeds[i])


def _bind(dispatcher, args: tuple):
    """A zero-argument callable running ``dispatcher(*args)``.

    numba's dispatcher re-derives the type of every argument on every call, which for our
    NamedTuples of arrays costs ~9 us, more than a whole single-env step. The arguments here are
    always the same objects, so we compile once through the dispatcher and then call the compiled
    entry point directly (~0.7 us). Falls back to the dispatcher if numba's internals differ.
    """
    sig = tuple(dispatcher.typeof_pyval(a) for a in args)
    dispatcher.compile(sig)
    overload = getattr(dispatcher, "overloads", {}).get(sig)
    entry = getattr(overload, "entry_point", None)
    if entry is None:
        return lambda: dispatcher(*args)
    return lambda: entry(*args)


class ActionError(ValueError):
    """An action was NaN/inf, or outside [-1, 1] without ``action.clip``."""


class Simulation:
    """Arrays and compiled kernels for ``n_envs`` copies of one env config."""

    metric_names = METRICS
    action_names = ACTION_NAMES

    def __init__(self, cfg: EnvConfig, n_envs: int, parallel: bool | None = None):
        if not isinstance(n_envs, int | np.integer) or n_envs < 1:
            raise ValueError(f"n_envs = {n_envs!r}: must be an integer >= 1")
        self.cfg = cfg
        self.n_envs = int(n_envs)
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
        self.term_names = [t.term for t in cfg.reward]
        self.reward_spec: RewardSpec
        self.reward_spec, width = build_reward_spec(
            [(t.term, t.weight, t.params) for t in cfg.reward], self.params.n_steps
        )
        n = self.n_envs
        self.state: MarketState = make_market_state(n)
        self.stats: EpisodeStats = make_episode_stats(n)
        self.outcome: StepOutcome = make_step_outcome(n)
        self.rng = make_rng(n)
        self.reward_state = np.zeros((n, width))
        f = len(self.feature_names)
        self.buffers = Buffers(
            obs=np.zeros((n, f), dtype=np.float32),
            rewards=np.zeros(n),
            terms=np.zeros((n, len(self.term_names))),
            dones=np.zeros(n, dtype=np.bool_),
            terminal_obs=np.zeros((n, f), dtype=np.float32),
            metrics=np.full((n, N_METRICS), np.nan),
        )
        self.action_dim = action_dim(self.codec)
        #: Callers write actions here, then call :meth:`step`; owning the buffer keeps the kernel's
        #: argument types fixed, which is what lets :func:`_bind` skip numba's per-call type dispatch.
        self.actions = np.zeros((n, self.action_dim), dtype=np.float32)
        use_parallel = n >= PARALLEL_MIN_ENVS if parallel is None else bool(parallel)
        self._step_kernel = _step_parallel if use_parallel else _step_serial
        self._reset_kernel = _reset_parallel if use_parallel else _reset_serial
        self._all = np.ones(n, dtype=np.bool_)
        self._bound: dict[bool, object] = {}
        self.n_done = 0  #: episodes that ended in the last step
        self.seed(np.arange(n, dtype=np.uint64))

    def observation_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Finite low and high bounds of the observation vector."""
        return observation_bounds(self.feature_names, self.cfg.market.inventory.limit, self.cfg.inventory_scale,
                                  market=self.params, spec=self.obs_spec)

    # ----------------------------------------------------------------------------------- control
    def seed(self, seeds, mask: np.ndarray | None = None) -> None:
        """Seed env ``i`` with ``seeds[i]`` (non-negative integers < 2**64) where ``mask`` is true."""
        seeds = np.asarray(seeds)
        if seeds.shape != (self.n_envs,) or (seeds.dtype.kind == "i" and (seeds < 0).any()):
            raise ValueError(f"seeds: expected {self.n_envs} non-negative integers, got {seeds!r}")
        _seed_all(self.rng, seeds.astype(np.uint64), self._all if mask is None else mask)

    def reset(self, mask: np.ndarray | None = None) -> np.ndarray:
        """Start new episodes (where ``mask`` is true); returns the observation buffer."""
        b = self.buffers
        self._reset_kernel(self.state, self.stats, self.outcome, self.params, self.rng, self.reward_state,
                           self.obs_spec, b, self._all if mask is None else mask)
        return b.obs

    def step(self, auto_reset: bool) -> Buffers:
        """Advance every env one step with the actions in :attr:`actions`; raises :class:`ActionError`.

        ``auto_reset`` starts a new episode wherever one ended (the VecEnv convention), after copying
        its last observation to ``buffers.terminal_obs``.
        """
        call = self._bound.get(auto_reset)
        if call is None:
            call = self._bound[auto_reset] = _bind(self._step_kernel, (
                self.state, self.stats, self.outcome, self.params, self.rng, self.actions, self.codec,
                self.reward_spec, self.reward_state, self.obs_spec, self.buffers, auto_reset))
        n_done = call()
        if n_done < 0:
            self._raise_bad_action(self.actions, -1 - n_done)
        self.n_done = n_done
        return self.buffers

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_bound"] = {}  # bound entry points are rebuilt on the next step
        return state

    def _raise_bad_action(self, actions: np.ndarray, flat: int) -> None:
        env, j = divmod(int(flat), self.action_dim)
        value = float(actions.reshape(-1)[flat])
        where = f"action[{j}] ({ACTION_NAMES[j]})" + (f" of env {env}" if self.n_envs > 1 else "")
        allowed = "finite values (clipped to [-1, 1] with action.clip: true)" if self.codec.clip else (
            "finite values in [-1, 1]; set action.clip: true to clip out-of-range values"
        )
        raise ActionError(f"{where} = {value!r}: allowed: {allowed}")
