"""The standard task suite, and the normalised score of any agent on it (``lobgym tasks``, ``lobgym score``).

One task per shipped env preset, each with a fixed evaluation protocol and two reference agents.

**Protocol.** Task ``i`` (in the order of :data:`TASKS`) runs episode ``j`` on market seed
``5,000,000 + 100,000 i + j`` for ``j < episodes``: a block of held-out seeds far from the training
seeds (training env ``i`` of a run seeded ``s`` uses market seed ``s + i``: 0, 1, 2, ...), from the
evaluation seeds of training (``eval.seed`` = 1,000,000 + j by default) and from the book quoters'
tuning seeds (0..199), and disjoint between tasks (blocks of 100,000; a protocol uses at most
:data:`MAX_EPISODES`). Every agent runs the same episodes (common random numbers,
:func:`lobgym.evaluation.evaluate`).

**Score.** With ``R`` the mean episode return (the env's own reward) over the protocol's episodes,
``score(X) = (R_X - R_random) / (R_ref - R_random)``: the ``random`` agent scores 0 and the task's
reference agent scores 1. Both references are evaluated again in every scoring run, on the same
seeds as the scored agent (nothing is cached), so the score is a ratio of paired means.

**Interval.** 95% interval of the score from :func:`lobgym.stats.paired_ratio_ci`: the paired BCa
bootstrap over episodes (episode indices resampled together for the three agents, the ratio
recomputed; 9,999 resamples, fixed seed) from 200 episodes, and below that the delta-method t
interval; zero-width when every resample gives the same score (``random`` itself, the reference).

**References (score 1).** Reduced-form tasks: the best shipped baseline preset by mean return on the
task's protocol (measured, see :data:`TASKS` and README "Task suite and scores"). Book tasks: the
``book_quoter`` with parameters tuned on training seeds 0..199 (:func:`tune_book_quoter`, run by
``experiments/tasks/tune_book_quoter.py``), shipped as ``agents/book_quoter_<env>.yaml``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lobgym import market_kinds, presets
from lobgym.config import AgentConfig, BookEnvConfig, ConfigError, EnvConfig, load_agent_config
from lobgym.stats import CI, paired_ratio_ci
from lobgym.task_suite import (  # noqa: F401  (the suite's definitions, re-exported)
    KINDS,
    MAX_EPISODES,
    SEED_BASE,
    SEED_STRIDE,
    TASKS,
    ZERO_AGENT,
    Task,
    get_task,
    market_kind,
    task_env,
)


# ------------------------------------------------------------------------------------------ agents
def is_run(spec: str) -> bool:
    """Whether ``spec`` is a trained run folder (it holds ``config.yaml``), as ``lobgym evaluate`` decides."""
    return (Path(spec) / "config.yaml").is_file()


@dataclass(frozen=True)
class AgentSpec:
    """What ``--agent`` names, resolved once: a baseline config or a trained run folder.

    Attributes:
        spec: the text given.
        name: the agent's name (the preset's or inline ``name``, or the run folder's name).
        kinds: the market kinds it runs on.
        config: the baseline's config (None for a run).
        run_env: a trained run's own env config (None for a baseline).
    """

    spec: str
    name: str
    kinds: tuple[str, ...]
    config: AgentConfig | None = None
    run_env: EnvConfig | BookEnvConfig | None = None

    @property
    def is_run(self) -> bool:
        """Whether the agent is a trained run (else a baseline preset)."""
        return self.run_env is not None


def resolve_agent(spec: str) -> AgentSpec:
    """Read ``--agent`` as ``lobgym evaluate`` does.

    It is a trained run folder, an inline YAML mapping (``{name: ..., kind: ..., params: ...}``), a
    preset name or a YAML path.

    Raises:
        ConfigError: unreadable or invalid configs; a training preset (nothing trained to score).
    """
    if is_run(spec):
        from lobgym.agents.training import RunConfig

        env = RunConfig.read(Path(spec)).env
        return AgentSpec(spec, Path(spec).name, (market_kind(env),), run_env=env)
    inline = spec.lstrip().startswith("{")
    cfg = load_agent_config(presets.load_yaml(spec, source="--agent") if inline else spec)
    if not isinstance(cfg, AgentConfig):
        raise ConfigError(f"--agent {spec!r}: a {cfg.kind.upper()} training preset, not a trained agent; train it "
                          "with `lobgym train` and score the run folder (runs/<name>)")
    kinds = tuple(market_kinds.offering(cfg.kind))  # the market kinds whose baselines include it
    return AgentSpec(spec, cfg.name, kinds, config=cfg)


def build_agent(agent: AgentSpec, task: Task) -> tuple[Any, EnvConfig | BookEnvConfig]:
    """The agent ready to run on ``task`` and the env config it runs on.

    The env config is the task's preset, or for a trained run the task's market and reward with the
    run's action and observation.
    """
    if task.kind not in agent.kinds:
        raise ValueError(f"--task {task.name!r}: agent {agent.name!r} runs on {' and '.join(agent.kinds)} markets, "
                         f"{task.name} is a {task.kind} task; allowed tasks for this agent: "
                         f"{', '.join(applicable_tasks(agent)) or 'none'}")
    if agent.is_run:
        from lobgym.agents.training import trained_agent

        env = task_env(task, agent.run_env)
        _check_interface(agent, env)
        return trained_agent(agent.spec), env
    from lobgym.agents import make_agent

    env = task_env(task)
    return make_agent(agent.config, env), env


def _check_interface(agent: AgentSpec, env: EnvConfig | BookEnvConfig) -> None:
    """Check that a trained run fits a task's market.

    It needs the same observation and action shapes, and the same inventory scale (the limit of the
    task's market, if it has one, divides the inventory feature). The spaces' bounds may differ: they
    follow the market (horizon, inventory limit), not the interface.
    """
    from lobgym.vec_env import make_vec_env

    trained, here = make_vec_env(agent.run_env), make_vec_env(env)
    for what in ("observation_space", "action_space"):
        a, b = getattr(trained, what), getattr(here, what)
        if (a.shape, a.dtype) != (b.shape, b.dtype):
            raise ValueError(f"agent {agent.name!r} on task {env.name!r}: its {what} {a.shape} differs from the "
                             f"task's {b.shape} with the run's action and observation sections")
    if env.inventory_scale != agent.run_env.inventory_scale:
        raise ValueError(f"agent {agent.name!r} on task {env.name!r}: the inventory feature is q / "
                         f"{env.inventory_scale:g} on the task's market (market.inventory.limit) and q / "
                         f"{agent.run_env.inventory_scale:g} on the run's env {agent.run_env.name!r}; the policy "
                         "would read a different inventory")


def applicable_tasks(agent: AgentSpec) -> list[str]:
    """The tasks whose market kind the agent runs on."""
    return [name for name, t in TASKS.items() if t.kind in agent.kinds]


# ------------------------------------------------------------------------------------------- score
@dataclass
class TaskScore:
    """One agent's normalised score on one task, with the raw mean returns behind it.

    Attributes:
        task: the task's name.
        agent: the scored agent's name.
        episodes: episodes run (the protocol's, or the override).
        seed: episode ``j`` ran on market seed ``seed + j``, for all three agents.
        overridden: whether ``episodes`` overrides the protocol.
        score: the normalised score and its interval (``score.mean``, ``.low``, ``.high``, ``.method``).
        returns: mean episode return of ``agent``, ``random`` and ``reference`` (keys ``agent``,
            ``zero``, ``reference``) with their standard errors under ``returns_se``.
        zero, reference: the agents that score 0 and 1.
        interface: for a trained run, a note that its own action and observation sections were used.
    """

    task: str
    agent: str
    episodes: int
    seed: int
    overridden: bool
    score: CI
    returns: dict[str, float]
    returns_se: dict[str, float]
    zero: str
    reference: str
    interface: str = ""
    episode_returns: dict[str, list[float]] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict[str, Any]:
        """The result as plain JSON data: score and interval, seeds, mean returns, references, episodes."""
        s = self.score
        return {"task": self.task, "agent": self.agent, "episodes": self.episodes, "seed": self.seed,
                "seeds": [self.seed, self.seed + self.episodes - 1], "protocol_overridden": self.overridden,
                "score": s.mean, "score_ci": [s.low, s.high], "score_se": s.se, "score_method": s.label("episodes"),
                "return_mean": dict(self.returns), "return_se": dict(self.returns_se),
                "zero_agent": self.zero, "reference_agent": self.reference, "interface": self.interface,
                "episode_returns": self.episode_returns}


def _returns(agent: Any, env: Any, task: Task, episodes: int, name: str) -> np.ndarray:
    from lobgym.evaluation import evaluate

    return evaluate(agent, env, episodes=episodes, seed=task.seed, name=name).returns


def check_episodes(episodes: int | None) -> None:
    """``--episodes``: at least 2 (an interval needs two), at most :data:`MAX_EPISODES` (one seed block)."""
    if episodes is not None and not 2 <= episodes <= MAX_EPISODES:
        raise ValueError(f"--episodes {episodes}: must be between 2 and {MAX_EPISODES:,} (a score's interval needs "
                         "at least 2 episodes; a task's seed block holds 100,000)")


def score(agent: str | AgentSpec, task: str | Task, episodes: int | None = None, level: float = 0.95,
          built: tuple[Any, EnvConfig | BookEnvConfig] | None = None) -> TaskScore:
    """Normalised score of ``agent`` on ``task`` (module docstring).

    The references run in the same call, on the same seeds.

    Args:
        agent: anything ``lobgym evaluate --agent`` takes, or a resolved :class:`AgentSpec`.
        task: a task name or :class:`Task`.
        episodes: override the protocol's number of episodes (the seed block stays the task's).
        level: confidence level of the score's interval.
        built: ``build_agent(agent, task)``, when already made.

    Raises:
        ValueError: an unknown task, an agent of another market kind, a bad episode count, or a
            reference and zero agent with the same mean return.
        ConfigError: agent configs that do not build on the task's env.
    """
    spec = agent if isinstance(agent, AgentSpec) else resolve_agent(agent)
    t = task if isinstance(task, Task) else get_task(task)
    check_episodes(episodes)
    n = t.episodes if episodes is None else episodes
    x, x_env = build_agent(spec, t) if built is None else built
    from lobgym.agents import make_agent

    env = task_env(t)
    rx = _returns(x, x_env, t, n, spec.name)
    r0 = _returns(make_agent(t.zero, env), env, t, n, t.zero)
    r1 = _returns(make_agent(t.reference, env), env, t, n, t.reference)
    try:
        ci = paired_ratio_ci(rx, r0, r1, level)
    except ValueError as err:
        raise ValueError(f"task {t.name}: {err}") from None
    se = {k: float(np.std(v, ddof=1)) / math.sqrt(n) for k, v in (("agent", rx), ("zero", r0), ("reference", r1))}
    note = ""
    if spec.is_run:
        note = (f"trained run: the task's market and reward with the run's own action and observation sections "
                f"(from its env {spec.run_env.name!r})")
    return TaskScore(t.name, spec.name, n, t.seed, episodes is not None and episodes != t.episodes, ci,
                     {"agent": float(rx.mean()), "zero": float(r0.mean()), "reference": float(r1.mean())}, se,
                     t.zero, t.reference, note,
                     {"agent": rx.tolist(), "zero": r0.tolist(), "reference": r1.tolist()})


# ------------------------------------------------------------------------------- book quoter tuning
#: The grid the book quoters were tuned over (192 points; every value within the book presets'
#: ``action.max_offset`` 5 and ``action.max_size`` 3).
TUNING_GRID: dict[str, tuple] = {
    "offset": (0, 1, 2, 3),
    "size": (1, 2, 3),
    "skew": (0.0, 0.25, 0.5, 1.0),
    "max_inventory": (5, 10, 15, None),
}
#: Further grids, run after :data:`TUNING_GRID` (in order) where the best point so far lay on edges of
#: the grid that the action space lets us go past, so that the reference is not weakened by the grid's
#: bounds. hawkes: the base grid's best (offset 3, size 1, skew 1; max_inventory never bound) lay on
#: the offset and skew edges, the first extension's (offset 3, skew 3, max_inventory 2) on the skew and
#: max_inventory edges, so a second one goes to max_inventory 1 (the smallest allowed) and skew 5
#: (beyond that the quotes at |q| = 1 no longer change: offsets are floored at 0 and clipped at
#: action.max_offset). queue_reactive: the base grid's best (offset 0, size 3, skew 0, max_inventory 5)
#: lay on the max_inventory edge (offset 0, size 3 and skew 0 are bounds of the action space or of
#: the parameter). cst2010's best (offset 0, size 3, skew 0.25, max_inventory 10) is interior or at
#: those bounds: no extension.
TUNING_EXTENSIONS: dict[str, tuple[dict[str, tuple], ...]] = {
    "hawkes": ({"offset": (3, 4, 5), "size": (1,), "skew": (1.0, 1.5, 2.0, 3.0), "max_inventory": (2, 5, None)},
               {"offset": (3, 4, 5), "size": (1,), "skew": (3.0, 4.0, 5.0), "max_inventory": (1, 2)}),
    "queue_reactive": ({"offset": (0,), "size": (3,), "skew": (0.0, 0.25), "max_inventory": (1, 2, 3, 4, 5)},),
}
#: Tuning episodes run on market seeds ``TUNING_SEED .. TUNING_SEED + TUNING_EPISODES - 1`` (training
#: seeds, far from every task's seed block).
TUNING_SEED = 0
TUNING_EPISODES = 200


def grid_points(grid: dict[str, Sequence] = TUNING_GRID) -> list[dict[str, Any]]:
    """Every combination of ``grid``'s values, in the order of its keys (the last varies fastest)."""
    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


def tuning_grids(task: str) -> list[dict[str, tuple]]:
    """The grids ``task``'s book quoter is tuned over, in order: :data:`TUNING_GRID`, then its extensions."""
    return [TUNING_GRID, *TUNING_EXTENSIONS.get(task, ())]


def tune_book_quoter(task: str | Task, grids: Sequence[dict[str, Sequence]] | None = None,
                     episodes: int = TUNING_EPISODES, seed: int = TUNING_SEED,
                     progress: Callable[[int, int, dict[str, Any]], None] | None = None,
                     known: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """Tune ``book_quoter`` on a book task by exhaustive search over grids, on training seeds.

    Every point runs the same ``episodes`` episodes on market seeds ``seed..seed + episodes - 1``
    (common random numbers); the best point is the one with the highest mean return over all grids
    (the first in order on ties). Never run on the task's own seed block.

    Args:
        task: a book task (name or :class:`Task`).
        grids: parameter name -> values, one mapping per stage [default: :func:`tuning_grids`]; points
            outside the env's ``action.max_offset`` / ``max_size`` are an error; a point already in an
            earlier stage is not run again.
        episodes: tuning episodes per point.
        seed: first tuning seed.
        progress: called with (done, total, row) after each point.
        known: rows of an earlier call with the same task, episodes and seed; their points are taken
            from there instead of being run again (evaluation is deterministic, so the rows are the
            same).

    Returns:
        ``{"task", "env", "grids", "episodes", "seeds", "rows": [{params, stage, return_mean, return_se,
        pnl_mean}], "best": row}``.

    Raises:
        ValueError: not a book task, a point the env's action space cannot express, or seeds that
            reach into a task's seed block.
    """
    from lobgym.agents import make_agent
    from lobgym.evaluation import evaluate

    t = task if isinstance(task, Task) else get_task(task)
    if t.kind != "book":
        raise ValueError(f"task {t.name!r}: book_quoter tuning needs a book task; allowed: "
                         f"{', '.join(n for n, x in TASKS.items() if x.kind == 'book')}")
    if seed + episodes > SEED_BASE:
        raise ValueError(f"tuning seeds {seed}..{seed + episodes - 1} reach the task seed blocks (from {SEED_BASE})")
    grids = tuning_grids(t.name) if grids is None else list(grids)
    env = task_env(t)
    points: list[tuple[int, dict[str, Any]]] = []
    for stage, grid in enumerate(grids):
        for p in grid_points(grid):
            if p.get("offset", 0) > env.action.max_offset or p.get("size", 1) > env.action.max_size:
                raise ValueError(f"grid point {p}: {t.name} allows offset <= action.max_offset = "
                                 f"{env.action.max_offset} and size <= action.max_size = {env.action.max_size}")
            if all(p != q for _, q in points):
                points.append((stage, p))
    done = {_key(r["params"]): r for r in known}
    rows = []
    for i, (stage, p) in enumerate(points):
        if _key(p) in done:
            row = {k: v for k, v in done[_key(p)].items() if k != "stage"}
        else:
            cfg = AgentConfig(name="book_quoter", kind="book_quoter", params=p)
            r = evaluate(make_agent(cfg, env), env, episodes=episodes, seed=seed, name="book_quoter")
            row = {"params": p, "return_mean": float(r.returns.mean()),
                   "return_se": float(np.std(r.returns, ddof=1) / math.sqrt(episodes)),
                   "pnl_mean": r.summary["pnl_mean"]}
        rows.append({"params": row["params"], "stage": stage} | {k: v for k, v in row.items() if k != "params"})
        if progress is not None:
            progress(i + 1, len(points), rows[-1])
    best = max(rows, key=lambda row: row["return_mean"])  # max keeps the first of equal values
    return {"task": t.name, "env": t.env, "grids": [{k: list(v) for k, v in g.items()} for g in grids],
            "episodes": episodes, "seeds": [seed, seed + episodes - 1], "rows": rows, "best": best}


def _key(params: dict[str, Any]) -> tuple:
    return tuple(sorted((k, "none" if v is None else float(v)) for k, v in params.items()))


def _grid_text(grid: dict[str, Sequence]) -> str:
    return "; ".join(f"{k} in {{{', '.join('none' if v is None else f'{v:g}' for v in vs)}}}" for k, vs in grid.items())


def tuned_preset_yaml(result: dict[str, Any]) -> str:
    """The agent preset ``agents/book_quoter_<env>.yaml`` for a :func:`tune_book_quoter` result."""
    b, grids = result["best"], result["grids"]
    first, last = result["seeds"]
    where = f"the grid {_grid_text(grids[0])}"
    if len(grids) > 1:
        where += "".join(f", then the extension {_grid_text(g)}" for g in grids[1:])
    lines = [f"description: >-\n  book_quoter for {result['env']}, tuned on seeds {first}..{last} over {where} "
             f"({len(result['rows'])} points, {result['episodes']} episodes each, best mean return): "
             f"mean return {b['return_mean']:.4f} ± {b['return_se']:.4f} (se) on the tuning seeds "
             "(experiments/tasks/tune_book_quoter.py)",
             "kind: book_quoter", "params:"]
    for k, v in b["params"].items():
        lines.append(f"  {k}: {'null' if v is None else v}")
    return "\n".join(lines) + "\n"
