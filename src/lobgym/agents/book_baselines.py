"""Baselines for the order-book env, with SB3's ``predict``.

* :class:`BookQuoter`: ``size`` lots on both sides, ``offset`` ticks from the reference quotes
  (``action.reference``), skewed against the inventory: with ``q`` lots held the bid moves
  ``round(skew * q)`` ticks further away and the ask that much closer (offsets floored at 0), the
  linear inventory skew of Avellaneda–Stoikov-type quoting; with ``max_inventory`` a side stops
  quoting once ``|q|`` reaches it.
* :class:`BookRandom`: uniform actions from its own generator.
"""

from __future__ import annotations

import numpy as np

from lobgym.book_spaces import BookActionCodec, book_action_codec, book_action_dim, encode_book_action, feature_names
from lobgym.config import AgentConfig, BookEnvConfig, BookQuoterParams, ConfigError, RandomParams, with_interface


def _codec(cfg: BookEnvConfig) -> BookActionCodec:
    return book_action_codec(cfg.action, cfg.inventory_scale)


class _BookAgent:
    def __init__(self, config: AgentConfig, env_config: BookEnvConfig):
        self.config = config
        self.env_config = env_config
        self.name = config.name
        self.params = config.typed_params
        self.codec = _codec(env_config)
        self.action_dim = book_action_dim(self.codec)
        o = env_config.observation
        self.names = feature_names(list(o.features), o.depth_levels, o.returns)

    def reset(self) -> None:
        return None

    def _check_obs(self, observation) -> np.ndarray:
        obs = np.asarray(observation, dtype=np.float32)
        if obs.shape[-1:] != (len(self.names),):
            raise ValueError(f"observation.shape = {obs.shape}: expected (..., {len(self.names)}) for this env")
        return obs


class BookQuoter(_BookAgent):
    """Quotes a fixed offset and size, skewed against the inventory (see the module docstring).

    It always quotes through the ``offsets`` codec: on an env whose agent uses another codec it acts on
    that env's ``offsets`` twin (:attr:`acts_on`: same market, reward, observation, reference, ranges),
    so its episodes are the same whatever codec the env was given with.
    """

    def __init__(self, config: AgentConfig, env_config: BookEnvConfig):
        self.acts_on = None
        if env_config.action.kind != "offsets":
            env_config = self.acts_on = with_interface(env_config, {"action": {"kind": "offsets", "levels": 1}},
                                                       where="book_quoter: offsets twin")
        super().__init__(config, env_config)
        if "inventory" not in self.names:
            raise ConfigError(f"observation.features = {list(env_config.observation.features)}: the book_quoter "
                              "baseline reads the 'inventory' feature; add it")
        self.p: BookQuoterParams = self.params  # type: ignore[assignment]
        self.q_index = self.names.index("inventory")
        self.inventory_scale = env_config.inventory_scale

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        """Offsets-codec actions for a batch of observations (SB3's interface; the other arguments are ignored)."""
        obs = self._check_obs(observation)
        q = np.rint(obs[..., self.q_index] * self.inventory_scale)
        shift = np.rint(self.p.skew * q)
        bid_off = np.maximum(self.p.offset + shift, 0)
        ask_off = np.maximum(self.p.offset - shift, 0)
        bid_size = np.full(q.shape, self.p.size)
        ask_size = np.full(q.shape, self.p.size)
        if self.p.max_inventory is not None:
            bid_size = np.where(q >= self.p.max_inventory, 0, bid_size)
            ask_size = np.where(q <= -self.p.max_inventory, 0, ask_size)
        return encode_book_action(self.codec, bid_off, ask_off, bid_size, ask_size), None


class BookRandom(_BookAgent):
    """Uniform actions in ``[-1, 1]^action_dim`` from ``np.random.default_rng(seed)``."""

    def __init__(self, config: AgentConfig, env_config: BookEnvConfig):
        super().__init__(config, env_config)
        p: RandomParams = self.params  # type: ignore[assignment]
        self.seed = int(p.seed)
        self.rng = np.random.default_rng(self.seed)

    def reset(self) -> None:
        """Restart the action sequence from ``params.seed``."""
        self.rng = np.random.default_rng(self.seed)

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        """Uniform random actions (SB3's interface; ``deterministic`` is ignored: random by design)."""
        obs = self._check_obs(observation)
        return self.rng.uniform(-1.0, 1.0, obs.shape[:-1] + (self.action_dim,)).astype(np.float32), None


BOOK_KINDS = {"book_quoter": BookQuoter, "random": BookRandom}
