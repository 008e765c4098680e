"""Evaluating agents on common random numbers: episode ``j`` of every agent runs on the market
seeded ``seed + j``, so all agents face the same mid-price paths and the same fill uniforms."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from lobgym.config import EnvConfig, load_env_config
from lobgym.metrics import METRICS, summarize
from lobgym.vec_env import make_vec_env

#: Episodes run side by side in one batched env; larger evaluations run in chunks of this size.
EVAL_BATCH = 1000


class Predictor(Protocol):
    """Anything with SB3's ``predict``: baselines and trained SB3 models alike."""

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]: ...


@dataclass
class Evaluation:
    """Per-episode metrics and returns of one agent, and their summary."""

    agent: str
    metrics: np.ndarray  #: (episodes, len(metric_names))
    returns: np.ndarray  #: (episodes,) sum of rewards
    metric_names: tuple[str, ...] = METRICS
    terms: np.ndarray | None = None  #: (episodes, len(term_names)) each weighted reward term summed over the episode
    term_names: tuple[str, ...] = ()
    summary: dict[str, float] = field(init=False)

    def __post_init__(self) -> None:
        self.summary = summarize(self.metrics, self.metric_names)
        self.summary["return_mean"] = float(np.mean(self.returns))
        self.summary["return_std"] = float(np.std(self.returns, ddof=1)) if len(self.returns) > 1 else 0.0
        if self.terms is not None:
            for j, name in enumerate(self.term_names):
                self.summary[f"term_{name}_mean"] = float(np.mean(self.terms[:, j]))

    def to_json(self) -> dict[str, Any]:
        return {"agent": self.agent, "summary": self.summary,
                "episodes": {name: self.metrics[:, j].tolist() for j, name in enumerate(self.metric_names)}
                | {"return": self.returns.tolist()}
                | ({f"term_{name}": self.terms[:, j].tolist() for j, name in enumerate(self.term_names)}
                   if self.terms is not None else {})}


def evaluate(agent: Predictor, env: str | Path | dict | EnvConfig, episodes: int = 1000, seed: int = 0,
             name: str = "agent", batch: int = EVAL_BATCH) -> Evaluation:
    """Run ``episodes`` deterministic episodes of ``agent``; episode ``j`` uses market seed ``seed + j``."""
    if episodes < 1:
        raise ValueError(f"episodes = {episodes}: must be >= 1")
    cfg = load_env_config(env)
    n_steps = cfg.market.n_steps
    metrics, returns, terms = [], [], []
    names, term_names = METRICS, ()
    for start in range(0, episodes, batch):
        n = min(batch, episodes - start)
        venv = make_vec_env(cfg, n_envs=n, seed=seed + start)
        names, term_names = venv.sim.metric_names, tuple(venv.sim.term_names)
        obs = venv.reset()
        total = np.zeros(n)
        term_total = np.zeros((n, len(term_names)))
        for _ in range(n_steps):
            actions, _ = agent.predict(obs, deterministic=True)
            obs, rewards, dones, _infos = venv.step(actions)
            total += venv.sim.buffers.rewards  # float64, not the float32 copy handed to SB3
            term_total += venv.sim.buffers.terms
        if not dones.all():
            raise RuntimeError("episodes did not end together at the horizon")
        metrics.append(venv.sim.buffers.metrics.copy())
        returns.append(total)
        terms.append(term_total)
    return Evaluation(name, np.concatenate(metrics), np.concatenate(returns), names, np.concatenate(terms), term_names)
