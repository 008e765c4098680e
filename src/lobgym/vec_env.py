"""``MarketMakingVecEnv``: N envs as one stable-baselines3 ``VecEnv``, advanced by one kernel call.

Infos are built lazily: a step returns a :class:`StepInfos` sequence whose dicts are made only when
read, from arrays copied at that step, so stepping 10,000 envs does not build 10,000 dicts.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from lobgym.config import EnvConfig, load_env_config
from lobgym.env import build_spaces, make_simulation
from lobgym.metrics import as_dict


class StepInfos(Sequence):
    """The per-env info dicts of one step, built on first access and then kept."""

    __slots__ = ("_names", "_terms", "_done_idx", "_terminal_obs", "_metrics", "_metric_names", "_episodes", "_built")

    def __init__(self, term_names: list[str], terms: np.ndarray, done_idx: np.ndarray,
                 terminal_obs: np.ndarray, metrics: np.ndarray, metric_names: tuple[str, ...],
                 episodes: list[dict] | None = None):
        self._names = term_names
        self._episodes = episodes
        self._metric_names = metric_names
        self._terms = terms
        self._done_idx = done_idx  # sorted env indices whose episode ended, rows of terminal_obs/metrics
        self._terminal_obs = terminal_obs
        self._metrics = metrics
        self._built: dict[int, dict] = {}

    def __len__(self) -> int:
        return len(self._terms)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self._terms)
        if not -n <= i < n:
            raise IndexError(f"info index {i} out of range for {n} envs")
        i = int(i) % n
        info = self._built.get(i)
        if info is None:
            info = {"reward_terms": dict(zip(self._names, self._terms[i].tolist(), strict=True))}
            k = int(np.searchsorted(self._done_idx, i))
            if k < len(self._done_idx) and self._done_idx[k] == i:
                info["terminal_observation"] = self._terminal_obs[k]
                info["episode_metrics"] = as_dict(self._metrics[k], self._metric_names)
                if self._episodes is not None:
                    info["episode"] = self._episodes[k]
                info["TimeLimit.truncated"] = False
            self._built[i] = info
        return info


class MarketMakingVecEnv(VecEnv):
    """``n_envs`` independent markets of one config; env ``i`` seeded ``seed + i`` behaves exactly
    like a single :class:`~lobgym.env.MarketMakingEnv` reset with that seed. Auto-resets at the
    horizon and puts the last observation in ``info["terminal_observation"]``, as SB3 expects, and
    the episode's return, length and wall time in ``info["episode"]`` as SB3's ``Monitor`` does (so
    SB3 logs ``rollout/ep_rew_mean``)."""

    def __init__(self, config: str | Path | dict | EnvConfig = "as2008", n_envs: int = 1,
                 seed: int | None = None, parallel: bool | None = None):
        self.config = load_env_config(config)
        self.sim = make_simulation(self.config, n_envs, parallel=parallel)
        obs_space, act_space = build_spaces(self.config, self.sim)
        self.render_mode = None
        super().__init__(self.sim.n_envs, obs_space, act_space)
        self._seeded = False
        self._no_envs = np.zeros(0, dtype=np.int64)
        self._no_obs = self.sim.buffers.terminal_obs[:0]
        self._no_metrics = self.sim.buffers.metrics[:0]
        self._ep_return = np.zeros(self.num_envs)
        self._t_start = time.time()
        if seed is not None:
            self.seed(seed)

    # --------------------------------------------------------------------------------- VecEnv API
    def reset(self) -> np.ndarray:
        seeds = self._seeds
        if any(s is not None for s in seeds):
            if any(s is None for s in seeds):
                raise ValueError("seed: either seed every env or none")
            self.sim.seed(np.array(seeds, dtype=np.uint64))
            self._seeded = True
        elif not self._seeded:
            entropy = np.random.SeedSequence().generate_state(1, dtype=np.uint64)[0]
            self.sim.seed(np.arange(self.num_envs, dtype=np.uint64) + entropy)
            self._seeded = True
        self._reset_seeds()
        self._reset_options()
        self._ep_return[:] = 0.0
        return self.sim.reset().copy()

    def step_async(self, actions: np.ndarray) -> None:
        try:
            # Exact shape only: a reshape would silently accept flat or transposed actions.
            if np.shape(actions) != self.sim.actions.shape:
                raise ValueError
            self.sim.actions[...] = actions
        except (ValueError, TypeError):
            raise ValueError(
                f"actions.shape = {np.shape(actions)}: expected {self.sim.actions.shape} (n_envs, action_dim)"
            ) from None

    def step_wait(self):
        b = self.sim.step(auto_reset=True)
        self._ep_return += b.rewards
        if self.sim.n_done:
            done_idx = np.flatnonzero(b.dones)
            elapsed = round(time.time() - self._t_start, 6)
            length = self.config.market.n_steps
            episodes = [{"r": r, "l": length, "t": elapsed} for r in self._ep_return[done_idx].tolist()]
            self._ep_return[done_idx] = 0.0
            infos = StepInfos(self.sim.term_names, b.terms.copy(), done_idx,
                              b.terminal_obs[done_idx], b.metrics[done_idx], self.sim.metric_names, episodes)
        else:  # most steps: nothing ended, nothing to copy but the terms
            infos = StepInfos(self.sim.term_names, b.terms.copy(), self._no_envs, self._no_obs, self._no_metrics,
                              self.sim.metric_names)
        return b.obs.copy(), b.rewards.astype(np.float32), b.dones.copy(), infos

    def close(self) -> None:
        pass

    def get_state(self) -> dict[str, Any]:
        """Everything that evolves while stepping (markets, RNG streams, running returns), picklable;
        :meth:`set_state` on a vec env of the same config continues bit-identically."""
        return {"sim": self.sim, "ep_return": self._ep_return.copy(), "seeded": self._seeded}

    def set_state(self, state: dict[str, Any]) -> None:
        sim = state["sim"]
        if sim.n_envs != self.num_envs or type(sim) is not type(self.sim):
            raise ValueError(f"saved env state holds {sim.n_envs} {type(sim).__name__} envs; "
                             f"this vec env has {self.num_envs} {type(self.sim).__name__} envs")
        self.sim = sim
        self._ep_return = np.asarray(state["ep_return"], dtype=np.float64).copy()
        self._seeded = bool(state["seeded"])
        self._no_obs = self.sim.buffers.terminal_obs[:0]
        self._no_metrics = self.sim.buffers.metrics[:0]

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        return [getattr(self, attr_name)] * len(self._get_indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        raise AttributeError(f"set_attr({attr_name!r}): the envs of a MarketMakingVecEnv share one config")

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        raise AttributeError(f"env_method({method_name!r}): MarketMakingVecEnv has no per-env objects")

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False] * len(self._get_indices(indices))


def make_vec_env(config: str | Path | dict | EnvConfig = "as2008", n_envs: int = 1, seed: int | None = None,
                 parallel: bool | None = None) -> MarketMakingVecEnv:
    """``n_envs`` envs of ``config`` stepped together; env ``i`` is seeded ``seed + i``."""
    return MarketMakingVecEnv(config, n_envs=n_envs, seed=seed, parallel=parallel)
