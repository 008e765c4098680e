"""The Gymnasium environment: one market maker in one market (N = 1 of :class:`~lobgym.simulation.Simulation`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from lobgym import market_kinds
from lobgym.config import BookEnvConfig, EnvConfig, load_env_config
from lobgym.curriculum import FINAL_PROGRESS, reward_weights
from lobgym.metrics import as_dict

if TYPE_CHECKING:  # the simulations are imported by the kind that needs one (lobgym.market_kinds)
    from lobgym.book_simulation import BookSimulation
    from lobgym.simulation import Simulation


def make_simulation(cfg: EnvConfig | BookEnvConfig, n_envs: int,
                    parallel: bool | None = None) -> Simulation | BookSimulation:
    """The simulation of ``cfg``'s market kind (:mod:`lobgym.market_kinds`).

    Its reward weights are the final ones (:data:`~lobgym.curriculum.FINAL_PROGRESS`) when some term has
    a ``schedule``.
    """
    sim = market_kinds.of(cfg).load("simulation")(cfg, n_envs, parallel=parallel)
    if any(t.schedule is not None for t in cfg.reward):
        set_reward_weights(sim, cfg, FINAL_PROGRESS)
    return sim


def set_reward_weights(sim: Simulation | BookSimulation, cfg: EnvConfig | BookEnvConfig,
                       progress: float) -> np.ndarray:
    """Write ``cfg``'s reward weights at training ``progress`` in [0, 1] into ``sim.reward_spec.weights``.

    See :mod:`lobgym.curriculum`. In place: the compiled step reads that array, so the reward changes from
    the next step on, without recompiling. Returns the weights; raises ``ValueError`` naming ``progress``
    outside [0, 1].
    """
    weights = reward_weights(cfg, progress)
    sim.reward_spec.weights[:] = weights
    return weights


def build_spaces(cfg: EnvConfig | BookEnvConfig, sim: Simulation | BookSimulation) -> tuple[gym.spaces.Box,
                                                                                              gym.spaces.Box]:
    """Observation and action spaces of an env built from ``cfg``."""
    low, high = sim.observation_bounds()
    obs_space = gym.spaces.Box(low=low, high=high, dtype=np.float32)
    act_space = gym.spaces.Box(low=-1.0, high=1.0, shape=(sim.action_dim,), dtype=np.float32)
    return obs_space, act_space


class MarketMakingEnv(gym.Env):
    """One market maker's episodes as a Gymnasium env (``lobgym/MarketMaking-v0``).

    ## Description

    A market maker quotes a bid and an ask around a mid-price over a finite horizon T. Each step
    the quotes are hit by market orders with intensity ``A * exp(-k * depth)``, the inventory and
    cash change, then the mid moves (arithmetic Brownian motion with optional drift, mean reversion
    and jumps). This is the reduced-form market of Avellaneda & Stoikov (2008), Guéant et al. (2013)
    and Cartea, Jaimungal & Penalva (2015), where their closed-form quotes are optimal.

    ## Action Space

    ``Box(-1, 1, (2,), float32)``: bid depth and ask depth, each mapped linearly to
    ``[0, action.max_depth]``; with ``action.sizes`` also bid and ask sizes (``(4,)``), mapped to
    ``{0, ..., max_size}`` lots (0 withdraws the side). See :mod:`lobgym.spaces`.

    ## Observation Space

    ``Box(float32)`` with the features listed in ``observation.features`` in that order: by default
    ``[inventory / inventory_scale, time_left]``; also available ``mid_change``, ``bid_filled``,
    ``ask_filled`` (see :data:`lobgym.spaces.FEATURES`).

    ## Rewards

    The weighted sum of the terms under ``reward:`` (see :mod:`lobgym.rewards`);
    ``info["reward_terms"]`` holds each weighted term and they sum exactly to the reward.

    ## Starting State

    Mid ``S0``, no cash, inventory ``market.inventory.initial`` (a fixed integer or drawn uniformly
    from ``[low, high]``).

    ## Episode End

    Terminated when the horizon ``T = n_steps * dt`` is reached; ``info["episode_metrics"]`` then
    holds the episode metrics (:mod:`lobgym.metrics`). Truncation is left to ``max_episode_steps``.

    ## Arguments

    ``gymnasium.make("lobgym/MarketMaking-v0", config="as2008")``: ``config`` is a preset name, a
    YAML path, a dict or an :class:`~lobgym.config.EnvConfig`. Reward terms with a ``schedule`` take
    their final weights (training progress 1); :meth:`set_reward_progress` sets another progress.
    """

    metadata = {"render_modes": []}

    def __init__(self, config: str | Path | dict | EnvConfig = "as2008", render_mode: str | None = None):
        if render_mode is not None:
            raise ValueError(f"render_mode = {render_mode!r}: allowed: None (this env does not render)")
        self.render_mode = render_mode
        self.config = load_env_config(config)
        self.sim = make_simulation(self.config, 1, parallel=False)
        self.observation_space, self.action_space = build_spaces(self.config, self.sim)
        self._seeded = False
        self._needs_reset = True
        self.reward_progress = 1.0

    def set_reward_progress(self, progress: float) -> None:
        """Use the reward weights of training ``progress`` in [0, 1] from the next step on.

        See :mod:`lobgym.curriculum`; 1, the final weights, is what the env starts with.
        """
        set_reward_weights(self.sim, self.config, progress)
        self.reward_progress = float(progress)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start an episode; returns ``(observation, {})`` (Gymnasium's API).

        With ``seed`` the market is seeded with it; the first reset without one seeds it from the env's
        ``np_random``; later ones continue the market's random streams. ``options`` are ignored.
        """
        super().reset(seed=seed)
        if seed is not None:
            self.sim.seed(np.array([seed], dtype=np.uint64))
            self._seeded = True
        elif not self._seeded:
            self.sim.seed(self.np_random.integers(0, 2**63, size=1, dtype=np.uint64))
            self._seeded = True
        obs = self.sim.reset()
        self._needs_reset = False
        return obs[0].copy(), {}

    def step(self, action):
        """Apply ``action`` for one step; returns ``(obs, reward, terminated, truncated, info)`` (Gymnasium's API).

        ``info["reward_terms"]`` holds the weighted terms; at the horizon ``info["episode_metrics"]`` too.
        Raises ``RuntimeError`` before a reset or after the episode ended, ``ValueError`` for an action of
        another shape.
        """
        if self._needs_reset:
            raise RuntimeError("step() called before reset() or after the episode ended; call reset() first")
        try:
            shape = np.shape(action)
            if shape != self.action_space.shape:  # numpy would silently broadcast a scalar or a (1,) array
                raise ValueError(f"got shape {shape}")
            self.sim.actions[0] = action
        except (ValueError, TypeError) as err:
            raise ValueError(f"action = {action!r}: expected shape {self.action_space.shape} ({err})") from None
        b = self.sim.step(auto_reset=False)
        terminated = bool(b.dones[0])
        info: dict[str, Any] = {"reward_terms": dict(zip(self.sim.term_names, b.terms[0].tolist(), strict=True))}
        if terminated:
            info["episode_metrics"] = as_dict(b.metrics[0], self.sim.metric_names)
            self._needs_reset = True
        return b.obs[0].copy(), float(b.rewards[0]), terminated, False, info
