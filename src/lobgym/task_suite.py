"""The task suite's definitions: each task's env preset, seed block, episodes and reference agents.

The protocol and the score are described in :mod:`lobgym.tasks`, which scores agents on these tasks. The
definitions live apart from the scoring so that training (below the tasks in the layers) can keep its
seed blocks off a task's test seeds and compute a task's normalised score as a learning-rate signal.
"""

from __future__ import annotations

from dataclasses import dataclass

from lobgym import market_kinds
from lobgym.config import BookEnvConfig, EnvConfig, load_env_config

#: First market seed of task 0's block; task ``i`` starts at ``SEED_BASE + SEED_STRIDE * i``.
SEED_BASE = 5_000_000
#: Seeds per task block; a protocol (or an ``--episodes`` override) uses at most this many.
SEED_STRIDE = 100_000
MAX_EPISODES = SEED_STRIDE
#: The agent that scores 0 on every task.
ZERO_AGENT = "random"
#: Market kinds, as ``market.kind`` names them (:mod:`lobgym.market_kinds`).
KINDS = tuple(market_kinds.KINDS)


@dataclass(frozen=True)
class Task:
    """A benchmark task: an env preset with its evaluation protocol and the agents that score 0 and 1.

    Attributes:
        name: the task's name, the env preset's name.
        kind: the market kind, ``"reduced_form"`` or ``"book"``.
        seed: episode ``j`` runs on market seed ``seed + j``.
        episodes: episodes of the protocol.
        reference: agent preset that scores 1.
        zero: agent preset that scores 0.
        why: how the reference was chosen.
    """

    name: str
    kind: str
    seed: int
    episodes: int
    reference: str
    zero: str = ZERO_AGENT
    why: str = ""

    @property
    def env(self) -> str:
        """The env preset the task runs."""
        return self.name

    @property
    def seeds(self) -> str:
        """The protocol's seed block as text, ``"5000000..5000999"``."""
        return f"{self.seed}..{self.seed + self.episodes - 1}"


def _task(index: int, name: str, kind: str, episodes: int, reference: str, why: str) -> Task:
    return Task(name, kind, SEED_BASE + SEED_STRIDE * index, episodes, reference, why=why)


#: The standard tasks, in order (the order fixes each task's seed block: do not reorder, append).
TASKS: dict[str, Task] = {t.name: t for t in (
    _task(0, "as2008", "reduced_form", 1000, "avellaneda_stoikov_symmetric",
          "best shipped baseline by mean return on the protocol (the reward is plain PnL, so the "
          "risk-neutral symmetric spread beats the inventory-averse AS strategy)"),
    _task(1, "as2008_paper", "reduced_form", 1000, "avellaneda_stoikov_symmetric",
          "best shipped baseline by mean return on the protocol (plain-PnL reward, as on as2008)"),
    _task(2, "cj2015", "reduced_form", 1000, "cartea_jaimungal",
          "the exact optimal control of this market and reward; also the best by mean return"),
    _task(3, "cst2010", "book", 1000, "book_quoter_cst2010",
          "book_quoter tuned on training seeds 0..199 (experiments/tasks/tune_book_quoter.py)"),
    _task(4, "hawkes", "book", 1000, "book_quoter_hawkes",
          "book_quoter tuned on training seeds 0..199 (experiments/tasks/tune_book_quoter.py)"),
    _task(5, "queue_reactive", "book", 1000, "book_quoter_queue_reactive",
          "book_quoter tuned on training seeds 0..199 (experiments/tasks/tune_book_quoter.py)"),
)}



def get_task(name: str) -> Task:
    """The task called ``name``; a ValueError naming the allowed tasks otherwise."""
    if name not in TASKS:
        raise ValueError(f"--task {name!r}: unknown task; allowed: {', '.join(TASKS)}")
    return TASKS[name]


def market_kind(env_cfg: EnvConfig | BookEnvConfig) -> str:
    """Its ``market.kind`` (:mod:`lobgym.market_kinds`): ``"reduced_form"`` or ``"book"``."""
    return env_cfg.market.kind


def task_env(task: Task, interface: EnvConfig | BookEnvConfig | None = None) -> EnvConfig | BookEnvConfig:
    """The task's env config, or with ``interface`` that of a trained run on the task's market.

    With ``interface`` (a trained run's env): the task's market and reward with the run's ``action`` and
    ``observation`` sections (same market kind only).
    """
    env = load_env_config(task.env)
    if interface is None:
        return env
    if market_kind(interface) != task.kind:
        raise ValueError(f"--task {task.name!r} is a {task.kind} task; the agent was trained on the "
                         f"{market_kind(interface)} env {interface.name!r}")
    return env.model_copy(update={"action": interface.action, "observation": interface.observation})
