"""What the simulation of every market kind shares: N envs of one config advanced by one compiled call.

A market kind's simulation (:class:`~lobgym.simulation.Simulation`,
:class:`~lobgym.book_simulation.BookSimulation`) subclasses :class:`SimulationBase` and supplies its
arrays and kernels; the base owns the frame around them: the argument checks, the reward (checked
against the step-outcome contract before anything compiles), the output :class:`Buffers` and the
action buffer, seeding, binding the compiled step once, the bad-action error, and pickling. The env,
VecEnv and Gymnasium VectorEnv adapters use only this interface: ``actions``, ``buffers``, ``seed``,
``reset``, ``step``, ``n_done``, ``term_names``, ``metric_names``, ``feature_names``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, NamedTuple

import numpy as np

from lobgym.market._jit import inline, kernel
from lobgym.market.rng import seed_one
from lobgym.rewards import RewardSpec, build_reward_spec, check_reward_fields, contract_fields

# The parallel kernels do not inline the per-env code into their prange body: there numba silently
# drops writes made through NamedTuple fields (numba #10338). Instead each prange iteration calls a
# separate kernel on a chunk of envs, which receives the arrays and writes them; a chunk per thread or
# so keeps the (costly) calls few. Nothing is written in the prange body itself
# (tests/test_kernel_rules.py checks it): the episodes that ended are counted afterwards from the dones
# the chunks wrote.
PARALLEL_CHUNKS = 16


class Buffers(NamedTuple):
    """Caller-visible outputs of a step, preallocated once."""

    obs: np.ndarray  #: (N, F) float32
    rewards: np.ndarray  #: (N,) float64
    terms: np.ndarray  #: (N, T) float64 weighted reward terms
    dones: np.ndarray  #: (N,) bool
    terminal_obs: np.ndarray  #: (N, F) float32 last observation of an auto-reset episode
    metrics: np.ndarray  #: (N, M) float64 episode metrics, written at the horizon


class ActionError(ValueError):
    """An action was NaN/inf, or outside [-1, 1] without ``action.clip``."""


@inline
def count_done(dones):
    """How many envs' episodes ended this step."""
    n_done = 0
    for i in range(dones.shape[0]):
        if dones[i]:
            n_done += 1
    return n_done


@kernel
def _seed_all(rng, seeds, mask):
    for i in range(rng.shape[0]):
        if mask[i]:
            seed_one(rng, i, seeds[i])


def bind_entry_point(dispatcher, args: tuple):
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


class SimulationBase(ABC):
    """The frame every market kind's simulation fills in (see the module docstring).

    A subclass sets the class attributes, and in its ``__init__`` calls :meth:`_begin`, builds its
    state and codec, then :meth:`_finish`; it implements :meth:`reset`, :meth:`observation_bounds`
    and :meth:`_step_call`.
    """

    #: ``market.kind`` of the configs it simulates (:mod:`lobgym.market_kinds`).
    kind: str
    #: Episode metrics written at the horizon, in ``buffers.metrics`` column order.
    metric_names: tuple[str, ...]
    #: The structs the step hands to the reward terms (:data:`lobgym.rewards.STEP_FIELDS`).
    step_structs: dict[str, type]
    #: Batches at least this large use the multi-core kernels unless ``parallel`` says otherwise.
    parallel_min_envs: int

    cfg: Any
    n_envs: int
    parallel: bool
    term_names: list[str]
    reward_spec: RewardSpec
    reward_state: np.ndarray
    rng: np.ndarray
    action_names: tuple[str, ...] | list[str]
    action_dim: int
    codec: Any
    buffers: Buffers
    actions: np.ndarray
    n_done: int  #: episodes that ended in the last step

    def _begin(self, cfg: Any, n_envs: int, parallel: bool | None) -> int:
        """Check ``n_envs``, keep the config, decide serial or parallel; returns N."""
        if not isinstance(n_envs, int | np.integer) or n_envs < 1:
            raise ValueError(f"n_envs = {n_envs!r}: must be an integer >= 1")
        self.cfg = cfg
        self.n_envs = n = int(n_envs)
        self.parallel = n >= self.parallel_min_envs if parallel is None else bool(parallel)
        return n

    def _build_reward(self, n_steps: int) -> None:
        """Build the config's reward as kernel arrays.

        First checks that its terms read only what this market's step provides (a term that did not would fail the
        compile with a numba typing error).
        """
        self.term_names = [t.term for t in self.cfg.reward]
        check_reward_fields(self.term_names, contract_fields(self.step_structs), self.kind)
        self.reward_spec, width = build_reward_spec([(t.term, t.weight, t.params) for t in self.cfg.reward], n_steps)
        self.reward_state = np.zeros((self.n_envs, width))

    def _finish(self, n_features: int, action_dim: int) -> None:
        """Allocate the output and action buffers and seed env ``i`` with ``i``."""
        n = self.n_envs
        self.buffers = Buffers(
            obs=np.zeros((n, n_features), dtype=np.float32), rewards=np.zeros(n),
            terms=np.zeros((n, len(self.term_names))), dones=np.zeros(n, dtype=np.bool_),
            terminal_obs=np.zeros((n, n_features), dtype=np.float32),
            metrics=np.full((n, len(self.metric_names)), np.nan))
        self.action_dim = action_dim
        #: Callers write actions here, then call :meth:`step`; owning the buffer keeps the kernel's
        #: argument types fixed, which is what lets :func:`bind_entry_point` skip numba's per-call dispatch.
        self.actions = np.zeros((n, action_dim), dtype=np.float32)
        self._all = np.ones(n, dtype=np.bool_)
        self._bound: dict[bool, Any] = {}
        self.n_done = 0
        self.seed(np.arange(n, dtype=np.uint64))

    # ----------------------------------------------------------------------------------- control
    def seed(self, seeds, mask: np.ndarray | None = None) -> None:
        """Seed env ``i`` with ``seeds[i]`` (non-negative integers < 2**64) where ``mask`` is true."""
        seeds = np.asarray(seeds)
        if seeds.shape != (self.n_envs,) or (seeds.dtype.kind == "i" and (seeds < 0).any()):
            raise ValueError(f"seeds: expected {self.n_envs} non-negative integers, got {seeds!r}")
        _seed_all(self.rng, seeds.astype(np.uint64), self._all if mask is None else mask)

    @abstractmethod
    def reset(self, mask: np.ndarray | None = None) -> np.ndarray:
        """Start new episodes (where ``mask`` is true); returns the observation buffer."""

    @abstractmethod
    def observation_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Finite low and high bounds of the observation vector."""

    @abstractmethod
    def _step_call(self, auto_reset: bool) -> tuple[Any, tuple]:
        """The compiled step (serial or parallel) and the arguments it always takes."""

    def step(self, auto_reset: bool) -> Buffers:
        """Advance every env one step with the actions in :attr:`actions`; raises :class:`ActionError`.

        ``auto_reset`` starts a new episode wherever one ended (the VecEnv convention), after copying
        its last observation to ``buffers.terminal_obs``.
        """
        call = self._bound.get(auto_reset)
        if call is None:
            call = self._bound[auto_reset] = bind_entry_point(*self._step_call(auto_reset))
        n_done = call()
        if n_done < 0:
            self._raise_bad_action(-1 - n_done)
        self.n_done = n_done
        return self.buffers

    def _raise_bad_action(self, flat: int) -> None:
        env, j = divmod(int(flat), self.action_dim)
        value = float(self.actions[env, j])
        where = f"action[{j}] ({self.action_names[j]})" + (f" of env {env}" if self.n_envs > 1 else "")
        allowed = "finite values (clipped to [-1, 1] with action.clip: true)" if self.codec.clip else (
            "finite values in [-1, 1]; set action.clip: true to clip out-of-range values")
        raise ActionError(f"{where} = {value!r}: allowed: {allowed}")

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_bound"] = {}  # bound entry points are rebuilt on the next step
        return state
