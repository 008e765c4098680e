"""Evaluating agents on common random numbers.

Episode ``j`` of every agent runs on the market seeded ``seed + j``, so all agents face the same
mid-price paths and the same fill uniforms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from lobgym.config import EnvConfig, load_env_config
from lobgym.env import make_simulation
from lobgym.metrics import METRICS, summarize
from lobgym.stats import CI, paired_diff

#: Episodes run side by side in one batched env; larger evaluations run in chunks of this size.
EVAL_BATCH = 1000


class Predictor(Protocol):
    """Anything with SB3's ``predict``: baselines and trained SB3 models alike."""

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        """``(actions, state)`` for a batch of observations, as SB3's ``predict``."""
        ...

# A predictor may also carry ``acts_on``: the env config it acts through when that differs from the
# evaluated one in the action codec only (same market, reward and observation), e.g. the book quoter
# on an env whose agent uses the spread_skew codec; its episodes still run on the same market seeds.


@dataclass
class Evaluation:
    """Per-episode metrics and returns of one agent, and their summary."""

    agent: str
    metrics: np.ndarray  #: (episodes, len(metric_names))
    returns: np.ndarray  #: (episodes,) sum of rewards
    metric_names: tuple[str, ...] = METRICS
    terms: np.ndarray | None = None  #: (episodes, len(term_names)) each weighted reward term summed over the episode
    term_names: tuple[str, ...] = ()
    seed: int | None = None  #: episode j ran on market seed ``seed + j`` (None: not recorded)
    #: (episodes,) largest fall of the episode's marked-to-market PnL from its running peak (>= 0; the
    #: peak starts at 0, the PnL before the first step), sampled after every step; None: not measured
    drawdowns: np.ndarray | None = None
    summary: dict[str, float] = field(init=False)

    def __post_init__(self) -> None:
        self.summary = summarize(self.metrics, self.metric_names)
        self.summary["return_mean"] = float(np.mean(self.returns))
        self.summary["return_std"] = float(np.std(self.returns, ddof=1)) if len(self.returns) > 1 else 0.0
        if self.terms is not None:
            for j, name in enumerate(self.term_names):
                self.summary[f"term_{name}_mean"] = float(np.mean(self.terms[:, j]))
        if self.drawdowns is not None:
            self.summary["max_drawdown_mean"] = float(np.mean(self.drawdowns))
            self.summary["max_drawdown_worst"] = float(np.max(self.drawdowns))

    def episode_values(self, name: str) -> np.ndarray:
        """One value per episode of ``name``: ``"return"`` or one of :attr:`metric_names`."""
        if name == "return":
            return self.returns
        if name == "max_drawdown" and self.drawdowns is not None:
            return self.drawdowns
        if name not in self.metric_names:
            raise ValueError(f"metric {name!r}: not measured by this evaluation; measured: return, "
                             + ", ".join(self.metric_names))
        return self.metrics[:, self.metric_names.index(name)]

    def to_json(self) -> dict[str, Any]:
        """The agent, its summary and its per-episode values (metrics, return, reward terms) as JSON data."""
        return {"agent": self.agent, "summary": self.summary,
                "episodes": {name: self.metrics[:, j].tolist() for j, name in enumerate(self.metric_names)}
                | {"return": self.returns.tolist()}
                | ({"max_drawdown": self.drawdowns.tolist()} if self.drawdowns is not None else {})
                | ({f"term_{name}": self.terms[:, j].tolist() for j, name in enumerate(self.term_names)}
                   if self.terms is not None else {})}


def evaluate(agent: Predictor, env: str | Path | dict | EnvConfig, episodes: int = 1000, seed: int = 0,
             name: str = "agent", batch: int = EVAL_BATCH) -> Evaluation:
    """Run ``episodes`` deterministic episodes of ``agent``; episode ``j`` uses market seed ``seed + j``."""
    if episodes < 1:
        raise ValueError(f"episodes = {episodes}: must be >= 1")
    cfg = load_env_config(env)
    acts_on = getattr(agent, "acts_on", None)  # an agent that quotes through another codec of this env
    if acts_on is not None:
        if acts_on.market != cfg.market or acts_on.reward != cfg.reward:
            raise ValueError(f"agent {name!r} acts on env {acts_on.name!r}, whose market or reward differs from the "
                             f"evaluated env {cfg.name!r}")
        cfg = acts_on
    n_steps = cfg.market.n_steps
    metrics, returns, terms, drawdowns = [], [], [], []
    names, term_names = METRICS, ()
    for start in range(0, episodes, batch):
        n = min(batch, episodes - start)
        sim = make_simulation(cfg, n)  # stepped directly: evaluating an analytic agent needs no SB3 or torch
        sim.seed(np.arange(seed + start, seed + start + n, dtype=np.uint64))  # env i: market seed seed + start + i
        names, term_names = sim.metric_names, tuple(sim.term_names)
        obs = sim.reset().copy()
        total = np.zeros(n)
        term_total = np.zeros((n, len(term_names)))
        peak, drawdown = np.zeros(n), np.zeros(n)
        for t in range(n_steps):
            actions, _ = agent.predict(obs, deterministic=True)
            if np.shape(actions) != sim.actions.shape:
                raise ValueError(f"agent {name!r}: actions.shape = {np.shape(actions)}, expected {sim.actions.shape} "
                                 "(episodes, action_dim)")
            sim.actions[...] = actions
            b = sim.step(auto_reset=True)
            obs = b.obs.copy()
            total += b.rewards
            term_total += b.terms
            # after the last step the envs have reset: the episode's final PnL is its metric
            pnl = b.metrics[:, names.index("pnl")] if t == n_steps - 1 else marked_pnl(sim)
            np.maximum(peak, pnl, out=peak)
            np.maximum(drawdown, peak - pnl, out=drawdown)
        if not b.dones.all():
            raise RuntimeError("episodes did not end together at the horizon")
        metrics.append(b.metrics.copy())
        returns.append(total)
        terms.append(term_total)
        drawdowns.append(drawdown)
    return Evaluation(name, np.concatenate(metrics), np.concatenate(returns), names, np.concatenate(terms), term_names,
                      seed=seed, drawdowns=np.concatenate(drawdowns))


def marked_pnl(sim: Any) -> np.ndarray:
    """Each env's PnL so far, marked to the mid: cash + inventory x mid - starting wealth - fees.

    The ``pnl`` episode metric of both market kinds, taken mid-episode.
    """
    st = sim.state
    return st.cash + st.inventory * st.mid - sim.stats.wealth0 - st.fees


#: Per-episode quantities compared on common random numbers: the return and every metric defined in
#: every episode. ``mean_spread`` and ``fill_ratio`` are left out: they are NaN in episodes without a
#: two-sided quote or without orders, so they do not pair up episode by episode.
PAIRED_METRICS = ("return", "pnl", "spread_pnl", "inventory_pnl", "fees", "final_inventory", "mean_abs_inventory",
                  "fills", "quote_uptime")


@dataclass(frozen=True)
class PairedComparison:
    """An agent against the reference agent, episode by episode on the same market seeds.

    Attributes:
        agent: the compared agent's name.
        reference: the reference agent's name.
        diffs: metric -> interval of the mean of (agent - reference) over the common episodes.
    """

    agent: str
    reference: str
    diffs: dict[str, CI]

    def to_json(self) -> dict[str, Any]:
        """The JSON keys ``lobgym evaluate`` writes under the agent.

        ``paired_diff``, ``paired_se``, ``paired_ci`` (``[low, high]``) per metric, and ``paired_method``
        naming the interval.
        """
        return {"paired_reference": self.reference,
                "paired_diff": {m: c.mean for m, c in self.diffs.items()},
                "paired_se": {m: c.se for m, c in self.diffs.items()},
                "paired_ci": {m: [c.low, c.high] for m, c in self.diffs.items()},
                "paired_method": {m: c.label("episodes") for m, c in self.diffs.items()}}


def paired_differences(results: Sequence[Evaluation], reference: str | None = None, level: float = 0.95,
                       metrics: Sequence[str] = PAIRED_METRICS) -> list[PairedComparison]:
    """Every agent against the reference on common random numbers (:func:`lobgym.stats.paired_diff`).

    Episode ``j`` of every evaluation ran on market seed ``seed + j``, so agent and reference pair up
    by episode and the market noise they share cancels in the difference.

    Args:
        results: evaluations of the agents, all with the same episodes and seed.
        reference: the name of the agent to compare against [default: the first].
        level: confidence level of the intervals.
        metrics: per-episode quantities to compare; those an evaluation did not measure are skipped.

    Returns:
        One comparison per agent other than the reference, in the order of ``results``.

    Raises:
        ValueError: no results, an unknown reference, or evaluations not on the same episodes.
    """
    if not results:
        raise ValueError("paired_differences needs at least one evaluation")
    names = [r.agent for r in results]
    if reference is None:
        reference = names[0]
    if reference not in names:
        raise ValueError(f"reference = {reference!r}: not one of the evaluated agents ({', '.join(names)})")
    ref = results[names.index(reference)]
    for r in results:
        if len(r.returns) != len(ref.returns) or (r.seed is not None and ref.seed is not None and r.seed != ref.seed):
            raise ValueError(f"agent {r.agent!r} ran {len(r.returns)} episodes from seed {r.seed}, the reference "
                             f"{reference!r} {len(ref.returns)} from seed {ref.seed}: paired differences need the "
                             "same episodes (same --episodes and --seed)")
    shared = [m for m in metrics if all(m == "return" or m in r.metric_names for r in results)]
    out = []
    for r in results:
        if r is ref:
            continue
        diffs = {}
        for m in shared:
            try:
                diffs[m] = paired_diff(r.episode_values(m), ref.episode_values(m), level)
            except ValueError as err:
                raise ValueError(f"{r.agent} - {reference}, metric {m}: {err}") from None
        out.append(PairedComparison(r.agent, reference, diffs))
    return out
