"""``MarketMakingVectorEnv``: N envs as one Gymnasium 1.x ``VectorEnv``, advanced by one kernel call.

The same fused simulation as the SB3 :class:`~lobgym.vec_env.MarketMakingVecEnv` (without importing
stable-baselines3 or torch), behind Gymnasium's vector API, so that ``gymnasium.make_vec`` runs at
kernel speed instead of a ``SyncVectorEnv`` looping over N :class:`~lobgym.env.MarketMakingEnv`.

Autoreset: ``AutoresetMode.SAME_STEP``. The kernel starts a new episode inside the step in which one
ends (that is how the simulation, and SB3, work: no extra call, no wasted step), so on that step an
env returns the *new* episode's first observation, the *final* reward, and ``terminated`` /
``truncated`` exactly as the single env reports them (the horizon is ``terminated=True``,
``truncated=False``; with ``max_episode_steps`` the step limit is ``truncated=True``, as Gymnasium's
``TimeLimit`` reports it). The infos are what ``SyncVectorEnv(autoreset_mode=SAME_STEP)`` over single
envs builds (dicts of arrays, each key ``k`` with a boolean mask ``_k``, see
``VectorEnv._add_info``):

* every step, ``infos["reward_terms"]`` = ``{term: (N,) float64, "_term": mask}``, masked to the envs
  whose episode did not end this step (for those that did, the top-level info is the new episode's
  reset info, which is empty; the key is absent when every env ended);
* on a step where some episode ended, ``infos["final_obs"]`` is an ``(N,)`` object array holding the
  last observation of each ended env (``None`` elsewhere) and ``infos["final_info"]`` the vector form
  of the single env's last info: ``reward_terms`` of the last step and, for terminated envs,
  ``episode_metrics`` (:mod:`lobgym.metrics`); ``_final_obs`` and ``_final_info`` mark the ended envs.

Ordinary steps build no per-env Python objects, only one array per reward term. Env ``i`` reset with
``seed=s`` runs exactly like ``MarketMakingEnv`` reset with ``seed=s + i`` (and like env ``i`` of the SB3
VecEnv seeded ``s``): same observations, rewards, terms and metrics, bit for bit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from lobgym.config import BookEnvConfig, EnvConfig, load_env_config
from lobgym.env import build_spaces, make_simulation, set_reward_weights

__all__ = ["MarketMakingVectorEnv"]


def _is_int(x: Any) -> bool:
    return isinstance(x, int | np.integer) and not isinstance(x, bool | np.bool_)


class MarketMakingVectorEnv(VectorEnv):
    """``num_envs`` independent markets of one config, stepped together by one compiled kernel call.

    Env ``i`` reset with ``seed=s`` behaves exactly like a single
    :class:`~lobgym.env.MarketMakingEnv` reset with ``seed=s + i``. Autoreset mode ``SAME_STEP``: see
    the module docstring for what a step returns when an episode ends.

    Args:
        num_envs: Number of envs, an integer >= 1.
        config: The env config: a preset name (``"as2008"``), a YAML path, a dict or a config object,
            as for :class:`~lobgym.env.MarketMakingEnv`.
        render_mode: Must be ``None`` (the env does not render).
        max_episode_steps: If set, an episode that reaches this many steps is truncated (and reset in
            the same step), as ``gymnasium.make(..., max_episode_steps=...)`` does for the single env.
        parallel: Use the multi-core kernel; ``None`` decides by ``num_envs``.

    Raises:
        ValueError: For a bad ``num_envs``, ``render_mode`` or ``max_episode_steps`` (naming it), or a
            bad config (:class:`~lobgym.config.ConfigError`).
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, num_envs: int = 1, config: str | Path | dict | EnvConfig | BookEnvConfig = "as2008",
                 render_mode: str | None = None, max_episode_steps: int | None = None,
                 parallel: bool | None = None):
        if not _is_int(num_envs) or num_envs < 1:
            raise ValueError(f"num_envs = {num_envs!r}: must be an integer >= 1")
        if render_mode is not None:
            raise ValueError(f"render_mode = {render_mode!r}: allowed: None (this env does not render)")
        if max_episode_steps is not None and (not _is_int(max_episode_steps) or max_episode_steps < 1):
            raise ValueError(f"max_episode_steps = {max_episode_steps!r}: must be None or an integer >= 1")
        self.config = load_env_config(config)
        self.sim = make_simulation(self.config, int(num_envs), parallel=parallel)
        self.num_envs = n = self.sim.n_envs
        self.render_mode = None
        self.single_observation_space, self.single_action_space = build_spaces(self.config, self.sim)
        self.observation_space = batch_space(self.single_observation_space, n)
        self.action_space = batch_space(self.single_action_space, n)
        self.max_episode_steps = None if max_episode_steps is None else int(max_episode_steps)
        self.reward_progress = 1.0
        self._seeded = np.zeros(n, dtype=np.bool_)
        self._started = np.zeros(n, dtype=np.bool_)
        self._ready = False  # every env has been reset at least once
        self._elapsed = np.zeros(n, dtype=np.int64)  # steps into the episode (for max_episode_steps)

    def set_reward_progress(self, progress: float) -> np.ndarray:
        """Use the reward weights of training ``progress`` in [0, 1] (see :mod:`lobgym.curriculum`).

        Args:
            progress: Training progress; 1 (the final weights) is what the env starts with.

        Returns:
            The reward weights now in use, in every env, from the next step on.
        """
        weights = set_reward_weights(self.sim, self.config, progress)
        self.reward_progress = float(progress)
        return weights

    # ------------------------------------------------------------------------------ VectorEnv API
    def reset(self, *, seed: int | list[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start new episodes in every env (or in those of ``options["reset_mask"]``).

        Args:
            seed: ``None`` keeps each env's random stream (an env never seeded draws a random seed);
                an int ``s`` seeds env ``i`` with ``s + i``; a list gives one seed (or ``None``) per env.
            options: May hold ``"reset_mask"``, an ``(num_envs,)`` bool array: reset only those envs
                (seeds of the others are ignored). Other options are ignored, as by the single env.

        Returns:
            The ``(num_envs, obs_dim)`` float32 observations (current ones for envs not reset) and an
            empty info dict (the single env's reset info is empty).

        Raises:
            ValueError: For a bad seed or reset mask, naming it.
        """
        n = self.num_envs
        mask = self._reset_mask(options)
        if seed is None:
            given = np.zeros(n, dtype=np.bool_)
            seeds = np.zeros(n, dtype=np.uint64)
        else:
            given, seeds = self._seeds(seed)
            if _is_int(seed):
                super().reset(seed=int(seed))  # seeds self.np_random, as VectorEnv.reset does
        given &= mask
        fresh = mask & ~given & ~self._seeded  # never seeded, no seed given: a random one, as the single env
        if fresh.any():
            seeds[fresh] = self.np_random.integers(0, 2**63, size=int(fresh.sum()), dtype=np.uint64)
            given |= fresh
        if given.any():
            self.sim.seed(seeds, given)
            self._seeded |= given
        full = bool(mask.all())
        obs = self.sim.reset(None if full else mask)
        self._elapsed[mask] = 0
        self._started |= mask
        self._ready = bool(self._started.all())
        return obs.copy(), {}

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Advance every env one step; an env whose episode ends is reset in the same step.

        Args:
            actions: ``(num_envs, action_dim)`` array in [-1, 1] (see :mod:`lobgym.spaces`).

        Returns:
            ``(obs, rewards, terminated, truncated, infos)``: float32 observations (the new episode's
            first one where an episode ended), float64 rewards, bool arrays and the vector infos
            described in the module docstring.

        Raises:
            ValueError: For actions of the wrong shape (naming it and the allowed one), or NaN / out of
                range actions (:class:`~lobgym.simulation_base.ActionError`).
            RuntimeError: If called before every env was reset.
        """
        if not self._ready:
            raise RuntimeError("step() called before reset(); call reset() first")
        sim = self.sim
        try:
            # Exact shape only: a reshape or broadcast would silently accept flat or transposed actions.
            if np.shape(actions) != sim.actions.shape:
                raise ValueError
            sim.actions[...] = actions
        except (ValueError, TypeError):
            raise ValueError(f"actions.shape = {np.shape(actions)}: expected {sim.actions.shape} "
                             "(num_envs, action_dim)") from None
        b = sim.step(auto_reset=True)
        terminated = b.dones.copy()
        rewards = b.rewards.copy()
        terms = b.terms.T.copy()  # (T, N): one contiguous row per term
        if self.max_episode_steps is None:
            truncated = np.zeros(self.num_envs, dtype=np.bool_)
            if not sim.n_done:  # most steps: nothing ended
                return b.obs.copy(), rewards, terminated, truncated, self._terms_info(terms)
            ended = terminated
            final_obs = b.terminal_obs[terminated]
        else:
            self._elapsed += 1
            truncated = self._elapsed >= self.max_episode_steps
            ended = terminated | truncated
            if not ended.any():
                return b.obs.copy(), rewards, terminated, truncated, self._terms_info(terms)
            self._elapsed[ended] = 0
            final_obs = np.where(terminated[:, None], b.terminal_obs, b.obs)[ended]
            cut = truncated & ~terminated  # truncated before the horizon: the kernel did not reset it
            if cut.any():
                sim.reset(cut)
        infos = {"final_obs": self._final_obs(ended, final_obs), "_final_obs": ended.copy(),
                 "final_info": self._final_info(ended, terminated, terms, b.metrics), "_final_info": ended.copy()}
        if not ended.all():
            live = ~ended
            infos |= self._terms_info(np.where(live, terms, 0.0), live)
        return b.obs.copy(), rewards, terminated, truncated, infos

    # --------------------------------------------------------------------------------- helpers
    def _reset_mask(self, options: dict[str, Any] | None) -> np.ndarray:
        if options is None or "reset_mask" not in options:
            return np.ones(self.num_envs, dtype=np.bool_)
        mask = options["reset_mask"]
        if (not isinstance(mask, np.ndarray) or mask.dtype != np.bool_ or mask.shape != (self.num_envs,)
                or not mask.any()):
            raise ValueError(f"options['reset_mask'] = {mask!r}: expected a bool numpy array of shape "
                             f"({self.num_envs},) with at least one True")
        return mask.copy()

    def _seeds(self, seed: int | list[int | None]) -> tuple[np.ndarray, np.ndarray]:
        """(which envs get a seed, the seeds) from ``reset``'s ``seed``."""
        n = self.num_envs
        if _is_int(seed):
            per_env: list = [int(seed) + i for i in range(n)]
        elif isinstance(seed, list | tuple | np.ndarray) and len(seed) == n:
            per_env = list(seed)
        else:
            raise ValueError(f"seed = {seed!r}: allowed: None, an integer >= 0 (env i gets seed + i) "
                             f"or a list of {n} integers >= 0 or None")
        bad = [s for s in per_env if s is not None and (not _is_int(s) or not 0 <= int(s) < 2**64)]
        if bad:
            raise ValueError(f"seed = {seed!r}: env seeds must be integers in [0, 2**64) or None, got {bad[0]!r}")
        given = np.array([s is not None for s in per_env], dtype=np.bool_)
        seeds = np.array([0 if s is None else int(s) for s in per_env], dtype=np.uint64)
        return given, seeds

    def _terms_info(self, terms: np.ndarray, mask: np.ndarray | None = None) -> dict[str, Any]:
        """``{"reward_terms": {term: (N,) values, "_term": mask}, "_reward_terms": mask}`` from ``terms``.

        ``terms`` is (T, N); without a ``mask`` every env is marked.
        """
        n = self.num_envs
        info: dict[str, np.ndarray] = {}
        for name, row in zip(self.sim.term_names, terms, strict=True):
            info[name] = row
            info[f"_{name}"] = np.ones(n, dtype=np.bool_) if mask is None else mask.copy()
        return {"reward_terms": info, "_reward_terms": np.ones(n, dtype=np.bool_) if mask is None else mask.copy()}

    def _final_obs(self, ended: np.ndarray, rows: np.ndarray) -> np.ndarray:
        out = np.full(self.num_envs, None, dtype=object)
        for k, i in enumerate(np.flatnonzero(ended).tolist()):
            out[i] = rows[k]
        return out

    def _final_info(self, ended: np.ndarray, terminated: np.ndarray, terms: np.ndarray,
                    metrics: np.ndarray) -> dict[str, Any]:
        """The vector form of the single env's info on the last step of the ended episodes."""
        info: dict[str, Any] = self._terms_info(np.where(ended, terms, 0.0), ended)
        if terminated.any():  # the episode metrics are written at the horizon only
            values = np.where(terminated[:, None], metrics, 0.0).T.copy()
            info["episode_metrics"] = {}
            for name, row in zip(self.sim.metric_names, values, strict=True):
                info["episode_metrics"][name] = row
                info["episode_metrics"][f"_{name}"] = terminated.copy()
            info["_episode_metrics"] = terminated.copy()
        return info
