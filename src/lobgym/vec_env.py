"""``MarketMakingVecEnv``: N envs as one stable-baselines3 ``VecEnv``, advanced by one kernel call.

Infos are built lazily: a step returns a :class:`StepInfos` sequence whose infos are made only when
read, from arrays copied at that step, so stepping 10,000 envs does not build 10,000 dicts, and
reading them the way SB3 does (``info.get("episode")`` for every env) builds none for the envs whose
episode did not end.
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping, Sequence
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from lobgym.config import EnvConfig, load_env_config
from lobgym.env import build_spaces, make_simulation, set_reward_weights
from lobgym.metrics import as_dict


class StepInfos(Sequence):
    """The per-env infos of one step, made on first access and then kept (``infos[i] is infos[i]``).

    SB3 reads every info of every step (``info.get("episode")`` in its info buffer), so the common
    case -- an env whose episode did not end -- must cost next to nothing: it is an :class:`EnvInfo`
    that builds its ``reward_terms`` dict only when that is read. Envs whose episode ended get a
    plain dict with ``terminal_observation``, ``episode_metrics``, ``episode`` and ``reward_terms``.
    """

    __slots__ = ("_names", "_terms", "_done_idx", "_terminal_obs", "_metrics", "_metric_names", "_episodes",
                 "_items")

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
        self._items: list | None = None

    def __len__(self) -> int:
        return len(self._terms)

    def _all(self) -> list:
        if self._items is None:
            n = len(self._terms)
            items = list(map(EnvInfo, repeat(self, n), range(n)))
            for k, i in enumerate(self._done_idx.tolist()):
                info = {"reward_terms": self.reward_terms(i), "terminal_observation": self._terminal_obs[k],
                        "episode_metrics": as_dict(self._metrics[k], self._metric_names)}
                if self._episodes is not None:
                    info["episode"] = self._episodes[k]
                info["TimeLimit.truncated"] = False
                items[i] = info
            self._items = items
        return self._items

    def __iter__(self):
        return iter(self._all())

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self._all()[i]
        n = len(self._terms)
        if not -n <= i < n:
            raise IndexError(f"info index {i} out of range for {n} envs")
        return self._all()[i]

    def reward_terms(self, i: int) -> dict[str, float]:
        """``{term: weighted value}`` of env ``i`` at this step."""
        return dict(zip(self._names, self._terms[i].tolist(), strict=True))


class EnvInfo(MutableMapping):
    """The info of an env whose episode did not end this step: ``{"reward_terms": {...}}``.

    It is built on first read of its contents (asking for a key it does not have costs nothing).
    Writable like a dict (SB3 wrappers may add keys); ``dict(info)`` or ``info.copy()`` gives a plain
    dict.
    """

    __slots__ = ("_step", "_i", "_d")

    def __init__(self, step: StepInfos, i: int):
        self._step = step
        self._i = i
        self._d: dict | None = None

    def _dict(self) -> dict:
        if self._d is None:
            self._d = {"reward_terms": self._step.reward_terms(self._i)}
        return self._d

    def get(self, key, default=None):
        """``info[key]``, or ``default`` if absent (without building the dict for keys it cannot have)."""
        if self._d is None and key != "reward_terms":
            return default
        return self._dict().get(key, default)

    def __contains__(self, key) -> bool:
        return key == "reward_terms" if self._d is None else key in self._d

    def __getitem__(self, key):
        return self._dict()[key]

    def __setitem__(self, key, value) -> None:
        self._dict()[key] = value

    def __delitem__(self, key) -> None:
        del self._dict()[key]

    def __iter__(self):
        return iter(self._dict())

    def __len__(self) -> int:
        return len(self._dict())

    def copy(self) -> dict:
        """A plain dict with the info's contents."""
        return dict(self._dict())

    def __repr__(self) -> str:
        return repr(self._dict())


class MarketMakingVecEnv(VecEnv):
    """``n_envs`` independent markets of one config, as one SB3 ``VecEnv``.

    Env ``i`` seeded ``seed + i`` behaves exactly like a single :class:`~lobgym.env.MarketMakingEnv`
    reset with that seed. Auto-resets at the horizon and puts the last observation in
    ``info["terminal_observation"]``, as SB3 expects, and the episode's return, length and wall time in
    ``info["episode"]`` as SB3's ``Monitor`` does (so SB3 logs ``rollout/ep_rew_mean``). Reward terms
    with a ``schedule`` take their final weights (training progress 1) until
    :meth:`set_reward_progress` sets another progress.
    """

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
        self.reward_progress = 1.0
        if seed is not None:
            self.seed(seed)

    def set_reward_progress(self, progress: float) -> np.ndarray:
        """Use the reward weights of training ``progress`` in [0, 1] from the next step on; returns them.

        They apply in every env (see :mod:`lobgym.curriculum`). Training calls it at each rollout start.
        The weights are not part of :meth:`get_state`: they follow from the config and the progress.
        """
        weights = set_reward_weights(self.sim, self.config, progress)
        self.reward_progress = float(progress)
        return weights

    # --------------------------------------------------------------------------------- VecEnv API
    def reset(self) -> np.ndarray:
        """Reset every env and return the first observations.

        The envs are seeded first with the seeds :meth:`seed` set, if any; on the first reset of an
        unseeded vec env, with fresh entropy.
        """
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
        """Take the ``(n_envs, action_dim)`` actions of the next step (exact shape; raises ``ValueError``)."""
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
        """Step every env once: ``(obs, rewards, dones, infos)``, auto-resetting the envs whose episode ended."""
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
        """Nothing to release: the envs live in this process's arrays."""
        pass

    def get_state(self) -> dict[str, np.ndarray]:
        """Everything that evolves while stepping, as named arrays (copies).

        The simulation's state, statistics, step outcome, RNG streams, reward state, buffers and actions
        (``state.mid``, ``state.book.price``, ``rng``, ...), the episodes that ended in the last step, the
        running returns and whether the envs were seeded. Everything else in the simulation follows from
        the config, so :meth:`set_state` on a vec env of the same config continues bit-identically.
        """
        from lobgym.state_files import named_arrays

        sim = self.sim
        arrays = {name: a.copy() for part in ("state", "stats", "outcome", "buffers")
                  for name, a in named_arrays(part, getattr(sim, part))}
        arrays |= {"rng": sim.rng.copy(), "reward_state": sim.reward_state.copy(), "actions": sim.actions.copy(),
                   "n_done": np.array(sim.n_done, dtype=np.int64), "ep_return": self._ep_return.copy(),
                   "seeded": np.array(self._seeded)}
        return arrays

    def set_state(self, state: dict[str, np.ndarray], source: str = "env state") -> None:
        """Copy ``state`` (from :meth:`get_state`) into this env's own arrays, in place.

        In place, so the compiled step keeps pointing at them. Raises ``ValueError`` naming ``source`` and
        the array if the names, shapes or dtypes are not this env's; nothing is changed then.
        """
        from lobgym.state_files import named_arrays

        sim = self.sim
        targets = {name: a for part in ("state", "stats", "outcome", "buffers")
                   for name, a in named_arrays(part, getattr(sim, part))}
        targets |= {"rng": sim.rng, "reward_state": sim.reward_state, "actions": sim.actions,
                    "ep_return": self._ep_return}
        wanted = {name: (a.shape, a.dtype) for name, a in targets.items()}
        wanted |= {"n_done": ((), np.dtype(np.int64)), "seeded": ((), np.dtype(np.bool_))}
        this_env = f"this env ({self.num_envs} {type(sim).__name__} envs of {self.config.name!r})"
        missing, extra = sorted(set(wanted) - set(state)), sorted(set(state) - set(wanted))
        if missing or extra:
            def names(x: list[str]) -> str:
                return ", ".join(x[:5]) + (f" and {len(x) - 5} more" if len(x) > 5 else "")

            raise ValueError(f"{source}: not the state of {this_env}: "
                             + "; ".join(([f"missing arrays {names(missing)}"] if missing else [])
                                         + ([f"unknown arrays {names(extra)}"] if extra else [])))
        for name, (shape, dtype) in wanted.items():
            value = np.asarray(state[name])
            if value.shape != shape or value.dtype != dtype:
                raise ValueError(f"{source}: env array {name!r} is {value.dtype}{list(value.shape)}; "
                                 f"{this_env} needs {dtype}{list(shape)}")
        for name, target in targets.items():
            target[...] = state[name]
        sim.n_done = int(state["n_done"])
        self._seeded = bool(state["seeded"])

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        """The vec env's own attribute ``attr_name``, once per env in ``indices`` (the envs share it)."""
        return [getattr(self, attr_name)] * len(self._get_indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        """Not supported: raises ``AttributeError`` (the envs share one config)."""
        raise AttributeError(f"set_attr({attr_name!r}): the envs of a MarketMakingVecEnv share one config")

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        """Not supported: raises ``AttributeError`` (there are no per-env objects to call)."""
        raise AttributeError(f"env_method({method_name!r}): MarketMakingVecEnv has no per-env objects")

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        """``False`` for every env in ``indices``: no env is wrapped."""
        return [False] * len(self._get_indices(indices))


def make_vec_env(config: str | Path | dict | EnvConfig = "as2008", n_envs: int = 1, seed: int | None = None,
                 parallel: bool | None = None) -> MarketMakingVecEnv:
    """``n_envs`` envs of ``config`` stepped together; env ``i`` is seeded ``seed + i``."""
    return MarketMakingVecEnv(config, n_envs=n_envs, seed=seed, parallel=parallel)
