"""Analytic market makers of the reduced-form literature, with SB3's ``predict`` interface.

Every baseline is built for one env config by :func:`make_agent` and maps observations to actions
in a vectorised way: ``predict(obs)`` with ``obs`` of shape ``(F,)`` gives an action of shape
``(action_dim,)``, with ``(N, F)`` it gives ``(N, action_dim)``, float32 in ``[-1, 1]``.

The strategies read the integer inventory ``q`` and the steps left ``n`` from the observation
(features ``inventory`` and ``time_left``), with remaining time ``tau = n * dt``, and quote depths
from the mid (:meth:`BaselineAgent.quotes`, unclipped, ``np.inf`` for a side that is withdrawn):

* :class:`AvellanedaStoikov` (2008): reservation price ``s - q gamma sigma^2 tau`` and total spread
  ``gamma sigma^2 tau + (2/gamma) ln(1 + gamma/k)``, so
  ``bid = spread/2 + q gamma sigma^2 tau``, ``ask = spread/2 - q gamma sigma^2 tau``; with
  ``symmetric`` the paper's benchmark: a constant spread, the inventory strategy's average over the
  episode, centred on the mid.
* :class:`Gueant` (Guéant, Lehalle & Fernandez-Tapia 2013), closed-form asymptotic quotes with
  ``c = sqrt(sigma^2 gamma / (2 k A) (1 + gamma/k)^(1 + k/gamma))``:
  ``bid = (1/gamma) ln(1 + gamma/k) + (2q + 1)/2 c``, ``ask = (1/gamma) ln(1 + gamma/k) - (2q - 1)/2 c``.
* :class:`CarteaJaimungal` (Cartea, Jaimungal & Penalva 2015, ch. 10): the exact finite-horizon
  optimum with running inventory penalty ``phi`` and terminal penalty ``alpha``, from a matrix
  exponential over the inventory grid, tabulated for every step.
* :class:`FixedSpread`: both sides at ``half_spread``; :class:`RandomAgent`: uniform actions.

Turning depths into actions (:func:`lobgym.spaces.encode_depths`) clips them to
``[action.min_depth, action.max_depth]``: with the default ``min_depth`` 0 a negative depth
(Avellaneda–Stoikov asks for one when the inventory is large) quotes at the mid; set a negative
``min_depth`` to let it quote through the mid as in the paper. A depth beyond ``max_depth`` quotes
at ``max_depth``. A withdrawn side
gets size 0 when the env's actions carry sizes (``action.sizes``); otherwise the action cannot
withdraw a side and the agent quotes it at ``max_depth``, which still fills with probability
``A e^{-k max_depth} dt`` per step. Set ``market.inventory.limit`` in the env to enforce an inventory
bound exactly: the engine then stops quoting a side at the limit whatever the action.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from lobgym import market_kinds
from lobgym.config import (
    AgentConfig,
    AvellanedaStoikovParams,
    BookEnvConfig,
    CarteaJaimungalParams,
    ConfigError,
    EnvConfig,
    FixedSpreadParams,
    GueantParams,
    RandomParams,
    load_agent_config,
    load_env_config,
)
from lobgym.spaces import FEATURES, ActionCodec, ObservationReader, ObservationSpec, action_codec, encode_depths

__all__ = [
    "AvellanedaStoikov",
    "BaselineAgent",
    "CarteaJaimungal",
    "FixedSpread",
    "Gueant",
    "RandomAgent",
    "make_agent",
]


def _codec(cfg: EnvConfig) -> ActionCodec:
    """The env's action codec (the same one :class:`~lobgym.simulation.Simulation` builds)."""
    return action_codec(cfg.action)


def _reader(cfg: EnvConfig) -> ObservationReader:
    names = list(cfg.observation.features)
    # Only inventory_scale matters for reading q and steps left; the other scales are not read back.
    spec = ObservationSpec(
        features=np.array([FEATURES[f][0] for f in names], dtype=np.int64),
        inventory_scale=cfg.inventory_scale,
        mid_scale=1.0,
        size_scale=1.0,
    )
    return ObservationReader(names, spec, cfg.market.n_steps)


class BaselineAgent(ABC):
    """Base class: an analytic strategy bound to one env config, with SB3's ``predict``.

    Args:
        config: the agent's config (``kind`` and ``params``).
        env_config: the env the agent will act in.

    Subclasses implement :meth:`quotes` and list the observation features they read in
    ``required_features``.
    """

    required_features: tuple[str, ...] = ()

    def __init__(self, config: AgentConfig, env_config: EnvConfig):
        self.config = config
        self.env_config = env_config
        self.name = config.name
        self.params = config.typed_params
        self.codec = _codec(env_config)
        self.action_dim = 4 if self.codec.has_sizes else 2
        self.n_features = len(env_config.observation.features)
        self.n_steps = env_config.market.n_steps
        self.dt = float(env_config.market.dt)
        features = list(env_config.observation.features)
        for feature in self.required_features:
            if feature not in features:
                raise ConfigError(
                    f"observation.features = {features}: the {config.kind} baseline reads the {feature!r} "
                    f"feature; add it to observation.features (it needs {list(self.required_features)})"
                )
        self.reader = _reader(env_config)

    @abstractmethod
    def quotes(self, q: np.ndarray, steps_left: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bid and ask depths from the mid for inventories ``q`` with ``steps_left`` steps to go.

        Args:
            q: integer inventories (any shape).
            steps_left: steps left in the episode, broadcastable with ``q``.

        Returns:
            ``(bid_depth, ask_depth)`` float64 arrays, unclipped, ``np.inf`` for a withdrawn side.
        """

    def reset(self) -> None:
        """Restart any internal randomness (a no-op for the deterministic strategies)."""
        return None

    def _check_obs(self, observation: Any) -> np.ndarray:
        obs = np.asarray(observation)
        if obs.ndim not in (1, 2) or obs.shape[-1] != self.n_features:
            raise ValueError(
                f"observation.shape = {obs.shape}: expected ({self.n_features},) or "
                f"(n_envs, {self.n_features}) for features {list(self.env_config.observation.features)}"
            )
        return obs

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, None]:
        """Actions for a batch of observations (SB3's policy interface).

        Args:
            observation: ``(F,)`` or ``(N, F)`` observations of the env.
            state: accepted and ignored (no recurrent state).
            episode_start: accepted and ignored.
            deterministic: accepted and ignored.

        Returns:
            ``(actions, None)`` with float32 actions of shape ``(action_dim,)`` or ``(N, action_dim)``.
        """
        obs = self._check_obs(observation)
        absent = np.zeros(obs.shape[:-1], np.int64)  # features a strategy does not read may be missing
        q = self.reader.inventory(obs) if "inventory" in self.reader.index else absent
        n = self.reader.steps_left(obs) if "time_left" in self.reader.index else absent
        bid, ask = self.quotes(q, n)
        return self._encode(bid, ask), None

    def _encode(self, bid: np.ndarray, ask: np.ndarray) -> np.ndarray:
        bid_live, ask_live = np.isfinite(bid), np.isfinite(ask)
        if self.codec.has_sizes:
            # Withdrawn sides: size 0 (the depth, clipped to max_depth, is then irrelevant).
            return encode_depths(bid, ask, self.codec, bid_size=bid_live.astype(np.int64),
                                 ask_size=ask_live.astype(np.int64))
        # No sizes: a withdrawn side (depth inf) is clipped to max_depth by the codec.
        return encode_depths(bid, ask, self.codec)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, params={self.params!r})"


class AvellanedaStoikov(BaselineAgent):
    """Avellaneda & Stoikov (2008): quotes around the reservation price ``s - q gamma sigma^2 tau``.

    ``sigma`` is the env's ``market.sigma`` and ``k`` its ``market.fill.k``. With ``symmetric: true``
    the paper's "symmetric strategy" benchmark: both depths are half of the inventory strategy's
    average spread over the episode's decision times (``tau = n dt`` for ``n = N .. 1``, mean
    ``(N + 1) dt / 2``), a constant, so the benchmark quotes the same average spread without the
    inventory skew or its shrinking towards the horizon.
    """

    required_features = ("inventory", "time_left")

    def __init__(self, config: AgentConfig, env_config: EnvConfig):
        super().__init__(config, env_config)
        p: AvellanedaStoikovParams = self.params  # type: ignore[assignment]
        self.gamma = float(p.gamma)
        self.symmetric = bool(p.symmetric)
        self.sigma = float(env_config.market.sigma)
        self.k = float(env_config.market.fill.k)
        self._risk = self.gamma * self.sigma**2 * self.dt  # gamma sigma^2 per step left
        self._half_base = math.log1p(self.gamma / self.k) / self.gamma  # (1/gamma) ln(1 + gamma/k)

    def quotes(self, q, steps_left):
        """Depths around the reservation price, or the constant symmetric ones (see the class docstring)."""
        q = np.asarray(q, dtype=np.float64)
        steps_left = np.asarray(steps_left, dtype=np.float64)
        if self.symmetric:
            mean_risk = self._risk * 0.5 * (self.n_steps + 1)  # gamma sigma^2 tau averaged over the decisions
            half = np.full(np.broadcast_shapes(q.shape, steps_left.shape), 0.5 * mean_risk + self._half_base)
            return half, half.copy()
        risk = self._risk * steps_left  # gamma sigma^2 tau
        half = 0.5 * risk + self._half_base
        skew = q * risk
        return half + skew, half - skew


class Gueant(BaselineAgent):
    """Guéant, Lehalle & Fernandez-Tapia (2013) closed-form asymptotic quotes (unit lots).

    With ``inventory_bound`` Q the bid is withdrawn at ``q >= Q`` and the ask at ``q <= -Q``.
    """

    required_features = ("inventory",)

    def __init__(self, config: AgentConfig, env_config: EnvConfig):
        super().__init__(config, env_config)
        p: GueantParams = self.params  # type: ignore[assignment]
        m = env_config.market
        self.gamma = float(p.gamma)
        self.inventory_bound = p.inventory_bound
        self.sigma, self.k, self.A = float(m.sigma), float(m.fill.k), float(m.fill.A)
        g, k = self.gamma, self.k
        self.base = math.log1p(g / k) / g
        self.c = math.sqrt(self.sigma**2 * g / (2.0 * k * self.A) * (1.0 + g / k) ** (1.0 + k / g))

    def quotes(self, q, steps_left):
        """The closed-form asymptotic depths, which do not depend on ``steps_left``."""
        q = np.asarray(q, dtype=np.float64)
        q = np.broadcast_to(q, np.broadcast_shapes(q.shape, np.shape(steps_left)))
        bid = self.base + (2.0 * q + 1.0) * 0.5 * self.c
        ask = self.base - (2.0 * q - 1.0) * 0.5 * self.c
        if self.inventory_bound is not None:
            bid = np.where(q >= self.inventory_bound, np.inf, bid)
            ask = np.where(q <= -self.inventory_bound, np.inf, ask)
        return bid, ask


class CarteaJaimungal(BaselineAgent):
    """Cartea, Jaimungal & Penalva (2015, ch. 10): optimal depths with a running inventory penalty.

    On the grid ``q in [-Q, Q]`` (``Q = inventory_bound``), with ``kappa = k`` and ``lambda = A`` of
    the env's fills, ``omega(tau) = expm(G tau) z`` where ``z_q = exp(-kappa alpha q^2)`` and ``G`` has
    ``G[q, q] = -kappa phi q^2`` and ``lambda e^{-1}`` on both off-diagonals (inside the grid). Then::

        ask = 1/kappa - (1/kappa) ln(omega(tau, q-1) / omega(tau, q))   (q > -Q, else withdrawn)
        bid = 1/kappa - (1/kappa) ln(omega(tau, q+1) / omega(tau, q))   (q <  Q, else withdrawn)

    The depths are tabulated at construction for every ``steps_left`` in ``0..n_steps`` by stepping
    ``omega`` back from ``z`` with ``expm(G dt)`` (exact). Inventories outside the grid are clamped
    to its bound. ``phi`` and ``alpha`` default to the env's reward: ``weight * phi`` of its
    ``running_inventory_penalty`` terms and ``weight * alpha`` of its ``terminal_inventory_penalty``
    terms (0 if there is none). The solution assumes a martingale mid, so the env must have no
    drift, mean reversion or mean jump.
    """

    required_features = ("inventory", "time_left")

    def __init__(self, config: AgentConfig, env_config: EnvConfig):
        super().__init__(config, env_config)
        p: CarteaJaimungalParams = self.params  # type: ignore[assignment]
        m = env_config.market
        if m.kind != "reduced_form":
            raise ConfigError(f"market.kind = {m.kind!r}: the cartea_jaimungal baseline needs 'reduced_form'")
        if m.drift != 0.0:
            raise ConfigError(f"market.drift = {m.drift}: the cartea_jaimungal baseline assumes drift 0")
        if m.mean_reversion is not None:
            raise ConfigError("market.mean_reversion is set: the cartea_jaimungal baseline assumes a "
                              "martingale mid (no mean reversion)")
        if m.jumps is not None and m.jumps.rate > 0 and m.jumps.mean != 0.0:
            raise ConfigError(f"market.jumps.mean = {m.jumps.mean}: the cartea_jaimungal baseline assumes "
                              "a martingale mid (jump mean 0)")
        self.kappa, self.lam = float(m.fill.k), float(m.fill.A)
        self.inventory_bound = int(p.inventory_bound)
        self.phi = float(p.phi) if p.phi is not None else (
            self._reward_param("running_inventory_penalty", "phi"))
        self.alpha = float(p.alpha) if p.alpha is not None else (
            self._reward_param("terminal_inventory_penalty", "alpha", default=0.0))
        self.bid_table, self.ask_table = self._solve()

    def _reward_param(self, term: str, key: str, default: float | None = None) -> float:
        found = [t for t in self.env_config.reward if t.term == term]
        if not found:
            if default is None:
                raise ConfigError(
                    f"params.{key} = None: the env's reward has no {term!r} term to take it from; "
                    f"set params.{key} (>= 0) in the agent config"
                )
            return default
        return float(sum(t.weight_at(1.0) * float(t.params[key]) for t in found))  # the final weight of a curriculum

    def _solve(self) -> tuple[np.ndarray, np.ndarray]:
        import scipy.linalg  # here, not at the top: importing it costs ~0.2 s that most agents never need

        big_q, kappa = self.inventory_bound, self.kappa
        grid = np.arange(-big_q, big_q + 1, dtype=np.float64)
        size = grid.size
        rate = self.lam * math.exp(-1.0)
        gen = np.diag(-kappa * self.phi * grid**2)
        gen += np.diag(np.full(size - 1, rate), 1) + np.diag(np.full(size - 1, rate), -1)
        step = scipy.linalg.expm(gen * self.dt)
        omega = np.exp(-kappa * self.alpha * grid**2)
        log_omega = np.empty((self.n_steps + 1, size))
        for n in range(self.n_steps + 1):
            if n > 0:
                omega = step @ omega
                omega /= omega.max()  # the ratios are all that matter; rescaling avoids underflow
            if not np.all(np.isfinite(omega)) or omega.min() <= 0.0:
                raise ConfigError(
                    f"params.phi = {self.phi}, params.alpha = {self.alpha}, "
                    f"params.inventory_bound = {big_q}: the Cartea–Jaimungal solution underflows in float64; "
                    "use a smaller bound or penalties"
                )
            log_omega[n] = np.log(omega)
        bid = np.full_like(log_omega, np.inf)
        ask = np.full_like(log_omega, np.inf)
        bid[:, :-1] = (1.0 - (log_omega[:, 1:] - log_omega[:, :-1])) / kappa
        ask[:, 1:] = (1.0 - (log_omega[:, :-1] - log_omega[:, 1:])) / kappa
        return bid, ask

    def quotes(self, q, steps_left):
        """The tabulated depths at ``steps_left`` (clamped to ``0..n_steps``), ``q`` clamped to the grid."""
        q = np.asarray(q)
        i = np.clip(q, -self.inventory_bound, self.inventory_bound).astype(np.int64) + self.inventory_bound
        n = np.clip(np.asarray(steps_left), 0, self.n_steps).astype(np.int64)
        return self.bid_table[n, i], self.ask_table[n, i]


class FixedSpread(BaselineAgent):
    """Both sides at ``half_spread`` from the mid, whatever the state."""

    def __init__(self, config: AgentConfig, env_config: EnvConfig):
        super().__init__(config, env_config)
        p: FixedSpreadParams = self.params  # type: ignore[assignment]
        self.half_spread = float(p.half_spread)

    def quotes(self, q, steps_left):
        """``half_spread`` on both sides, in the broadcast shape of ``q`` and ``steps_left``."""
        shape = np.broadcast_shapes(np.shape(q), np.shape(steps_left))
        return np.full(shape, self.half_spread), np.full(shape, self.half_spread)


class RandomAgent(BaselineAgent):
    """Uniform actions in ``[-1, 1]^action_dim`` from its own ``np.random.default_rng(seed)``.

    The draws are not coupled to the env's random streams (no common random numbers across agents):
    the same agent seed gives the same action sequence, whatever the market does.
    """

    def __init__(self, config: AgentConfig, env_config: EnvConfig):
        super().__init__(config, env_config)
        p: RandomParams = self.params  # type: ignore[assignment]
        self.seed = int(p.seed)
        self.rng = np.random.default_rng(self.seed)

    def reset(self) -> None:
        """Restart the action sequence from ``params.seed``."""
        self.rng = np.random.default_rng(self.seed)

    def quotes(self, q, steps_left):
        """Random depths uniform in ``[0, max_depth]`` (the depths of :meth:`predict`'s actions)."""
        shape = np.broadcast_shapes(np.shape(q), np.shape(steps_left))
        d = self.codec.max_depth
        return self.rng.uniform(0.0, d, shape), self.rng.uniform(0.0, d, shape)

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        """Uniform random actions (``deterministic`` is ignored: this agent is random by design)."""
        obs = self._check_obs(observation)
        actions = self.rng.uniform(-1.0, 1.0, obs.shape[:-1] + (self.action_dim,)).astype(np.float32)
        return actions, None


#: The analytic agents of the reduced-form market, by agent ``kind`` (named by :mod:`lobgym.market_kinds`).
REDUCED_FORM_BASELINES: dict[str, type[BaselineAgent]] = {
    "avellaneda_stoikov": AvellanedaStoikov,
    "gueant": Gueant,
    "cartea_jaimungal": CarteaJaimungal,
    "fixed_spread": FixedSpread,
    "random": RandomAgent,
}


def make_agent(agent: str | Path | dict | AgentConfig,
               env_cfg: str | Path | dict | EnvConfig | BookEnvConfig) -> Any:
    """Build the baseline described by ``agent`` for the env ``env_cfg``.

    Args:
        agent: an :class:`~lobgym.config.AgentConfig`, a preset name (``"avellaneda_stoikov"``), a YAML
            path or a dict (anything :func:`~lobgym.config.load_agent_config` accepts).
        env_cfg: an :class:`~lobgym.config.EnvConfig` or anything :func:`~lobgym.config.load_env_config`
            accepts; the agent takes market parameters (sigma, k, A, dt, ...) and the action and
            observation layout from it.

    Returns:
        The agent, with ``predict(obs) -> (actions, None)``.

    Raises:
        ConfigError: the configs are invalid or the env lacks what the agent needs.
    """
    agent_cfg = load_agent_config(agent)
    env = load_env_config(env_cfg)
    market = market_kinds.of(env)
    builders = market.load("baselines")
    if agent_cfg.kind not in builders:
        elsewhere = [k for k in market_kinds.offering(agent_cfg.kind) if k != market.name]
        needs = f"it runs on market.kind = {', '.join(elsewhere)}; " if elsewhere else ""
        raise ConfigError(f"agent kind = {agent_cfg.kind!r}: not available on the {market.name} env {env.name!r}; "
                          f"{needs}allowed there: {', '.join(builders)}")
    return builders[agent_cfg.kind](agent_cfg, env)
