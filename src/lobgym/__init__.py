"""lobgym: a numba-accelerated market-making simulator exposed as Gymnasium environments.

``import lobgym`` registers ``lobgym/MarketMaking-v0`` with Gymnasium: ``gymnasium.make`` builds one
:class:`~lobgym.env.MarketMakingEnv`, ``gymnasium.make_vec(..., num_envs=N)`` one
:class:`~lobgym.gym_vector.MarketMakingVectorEnv` (N envs, one kernel call per step). The SB3 ``VecEnv``
is imported lazily so that making a single env never imports torch.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import gymnasium

from lobgym.config import ConfigError, load_agent_config, load_env_config
from lobgym.env import MarketMakingEnv

try:
    __version__ = version("lobgym")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"

ENV_ID = "lobgym/MarketMaking-v0"
if ENV_ID not in gymnasium.registry:
    # make_vec builds the fused VectorEnv (one kernel call per step), not a SyncVectorEnv of N single envs
    gymnasium.register(id=ENV_ID, entry_point="lobgym.env:MarketMakingEnv",
                       vector_entry_point="lobgym.gym_vector:MarketMakingVectorEnv")

__all__ = [
    "ENV_ID",
    "ConfigError",
    "MarketMakingEnv",
    "MarketMakingVecEnv",
    "load_agent_config",
    "load_env_config",
    "make_vec_env",
]


def __getattr__(name: str):
    if name in ("MarketMakingVecEnv", "make_vec_env"):
        from lobgym import vec_env

        return getattr(vec_env, name)
    raise AttributeError(f"module 'lobgym' has no attribute {name!r}")
