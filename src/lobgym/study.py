"""``lobgym study <spec.yaml>``: a grid of training runs, evaluated on common random numbers.

A study spec (``experiments/*.yaml``) declares env presets x agent presets x reward variants x
initial learning rates x seeds, one training budget and one evaluation protocol. Each trial is an
ordinary run folder (:mod:`lobgym.agents.training`) under ``<out>/runs/<trial>``; every trial is
evaluated on the same held-out market seeds. ``<out>/results.csv`` holds one row per trial x
evaluation (learning curves included), rewritten atomically whenever a trial finishes.

Re-running the same command resumes: finished trials (``report.json`` present) are skipped, an
interrupted trial resumes from its newest checkpoint, and a failed trial is retried. A failing
trial is recorded in ``failures.json`` and does not stop the others.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import traceback
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from lobgym.config import (
    ConfigError,
    LRControlConfig,
    RewardTermConfig,
    TrainingConfig,
    _Strict,
    load_env_config,
    load_training_config,
)
from lobgym.io import write_json_atomic, write_text_atomic


class StudyEval(_Strict):
    episodes: int = Field(200, gt=0, description="evaluation episodes, the same market seeds for every trial")
    seed: int = Field(1_000_000, ge=0, description="episode j runs on market seed seed + j")
    every: int | None = Field(None, gt=0, description="timesteps between evaluations [default: the agent preset's]")
    baselines: list[str] | None = Field(None, description="baseline presets to evaluate [default: the env's]")


class Normalise(_Strict):
    """Scores normalised per env: ``(x - zero) / (one - zero)``."""

    metric: Literal["return", "pnl", "sharpe"] = "return"
    zero: str = Field("random", description="a baseline preset: its score is 0")
    one: str = Field(description="an agent label: the score of its best arm (by the mean over seeds) is 1")


class StudySpec(_Strict):
    """A grid of trials: envs x agents x rewards x learning rates x seeds."""

    name: str = "study"
    description: str = ""
    envs: list[str] = Field(min_length=1, description="env preset names or YAML paths")
    agents: dict[str, str] = Field(min_length=1, description="label -> training preset name or YAML path")
    rewards: dict[str, list[RewardTermConfig] | dict[str, list[RewardTermConfig]]] | None = Field(
        None, description="label -> a reward: list replacing each env's reward, or {env name: reward list} "
                          "when the envs need their own scales [default: the env's own]")
    learning_rates: list[float] | None = Field(
        None, description="initial learning rates: a fixed rate is replaced, a controller's base is rescaled")
    seeds: list[int] = Field(min_length=1)
    timesteps: int = Field(gt=0, description="training budget of every trial")
    eval: StudyEval = Field(default_factory=StudyEval)
    workers: int | None = Field(None, gt=0, description="parallel trials [default: the machine's cores]")
    normalise: Normalise | None = Field(None, description="report scores on a 0 (zero) .. 1 (one) scale")

    @field_validator("learning_rates")
    @classmethod
    def _positive(cls, v):
        if v is not None and any(not x > 0 for x in v):
            raise ValueError(f"{v}: every learning rate must be > 0")
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v):
        if len(set(v)) != len(v) or any(s < 0 for s in v):
            raise ValueError(f"{v}: seeds must be distinct and >= 0")
        return v

    @model_validator(mode="after")
    def _check(self) -> StudySpec:
        for label, preset in self.agents.items():
            try:
                load_training_config(preset)
            except ConfigError as err:
                raise ValueError(f"agents.{label} = {preset!r}: {err}") from None
        names = []
        for env in self.envs:
            try:
                names.append(load_env_config(env).name)
            except ConfigError as err:
                raise ValueError(f"envs: {env!r}: {err}") from None
        for label, variant in (self.rewards or {}).items():
            if isinstance(variant, dict) and set(variant) != set(names):
                raise ValueError(f"rewards.{label}: per-env rewards for {sorted(variant)}; the envs are {names}: "
                                 "give one reward list per env")
        return self


def load_study(spec: str | Path | dict | StudySpec) -> StudySpec:
    from lobgym.config import _load

    return _load(StudySpec, "experiments", spec)


# ------------------------------------------------------------------------------------------ trials
def with_initial_lr(cfg: TrainingConfig, lr: float) -> TrainingConfig:
    """``cfg`` starting at learning rate ``lr``: a fixed rate is replaced; a controller's time base is
    scaled so that it starts at ``lr`` (its shape, rules and clamps are kept)."""
    if not isinstance(cfg.learning_rate, LRControlConfig):
        return cfg.model_copy(update={"learning_rate": float(lr)})
    from lobgym.agents.lr_control import build_controller

    start = build_controller(cfg.learning_rate).base(1.0)
    if start <= 0:  # a cosine base that warms up from 0: scale its peak instead
        start = cfg.learning_rate.base.peak
    scale = lr / start
    base = cfg.learning_rate.base
    fields = {k: v * scale for k, v in base.model_dump().items() if k in ("lr", "start", "end", "peak", "low", "high")}
    new_base = base.model_copy(update=fields)
    return cfg.model_copy(update={"learning_rate": cfg.learning_rate.model_copy(update={"base": new_base})})


def trials(spec: StudySpec) -> list[dict[str, Any]]:
    """Every trial of the grid: its id and the axes' values."""
    out = []
    rewards = list(spec.rewards) if spec.rewards else [None]
    lrs = spec.learning_rates or [None]
    for env in spec.envs:
        env_name = load_env_config(env).name
        for agent in spec.agents:
            for reward in rewards:
                for lr in lrs:
                    for seed in spec.seeds:
                        parts = [env_name, agent] + ([reward] if reward else []) + (
                            [f"lr{lr:g}"] if lr is not None else []) + [f"seed{seed}"]
                        out.append({"id": "__".join(parts), "env": env, "env_name": env_name, "agent": agent,
                                    "reward": reward, "lr": lr, "seed": seed})
    return out


def trial_configs(spec: StudySpec, trial: dict[str, Any]) -> tuple[Any, TrainingConfig]:
    env = load_env_config(trial["env"])
    if trial["reward"] is not None:
        variant = spec.rewards[trial["reward"]]
        terms = variant[env.name] if isinstance(variant, dict) else variant
        env = type(env).model_validate(env.model_dump() | {"reward": [t.model_dump() for t in terms]})
    agent = load_training_config(spec.agents[trial["agent"]])
    if trial["lr"] is not None:
        agent = with_initial_lr(agent, trial["lr"])
    ev = spec.eval
    agent = agent.model_copy(update={"eval": agent.eval.model_copy(update={
        "episodes": ev.episodes, "seed": ev.seed, "baselines": ev.baselines,
        "every": ev.every or agent.eval.every})})
    return env, agent


def run_trial(spec_data: dict, trial: dict[str, Any], out: str) -> dict[str, Any]:
    """Run (or resume) one trial in this process; returns its status."""
    import torch

    from lobgym.agents import training

    torch.set_num_threads(1)
    spec = StudySpec.model_validate(spec_data)
    runs = Path(out) / "runs"
    run_dir = runs / trial["id"]
    try:
        if (run_dir / "report.json").is_file():
            return {"id": trial["id"], "status": "done"}
        if (run_dir / "config.yaml").is_file():
            training.resume(run_dir, progress=False, command=["lobgym", "study", "(resume)", trial["id"]])
        else:
            env, agent = trial_configs(spec, trial)
            training.start(env, agent, seed=trial["seed"], timesteps=spec.timesteps, name=trial["id"],
                           runs_dir=runs, progress=False, command=["lobgym", "study", spec.name, trial["id"]])
        return {"id": trial["id"], "status": "done"}
    except Exception as err:  # noqa: BLE001 -- a failing trial is recorded, the study goes on
        return {"id": trial["id"], "status": "failed", "error": f"{type(err).__name__}: {err}",
                "traceback": traceback.format_exc()}


# ----------------------------------------------------------------------------------------- results
#: The trial's configuration (grid axes, the agent preset, the budget, the evaluation seeds), then one
#: evaluation's timesteps and metrics; ``term_<name>`` columns follow.
COLUMNS = ("trial", "env", "agent", "agent_preset", "reward", "lr", "seed", "budget", "eval_episodes", "eval_seed",
           "timesteps", "final", "return", "pnl", "pnl_std", "sharpe", "mean_abs_inventory", "fills", "lr_now")


def trial_rows(out: Path, trial: dict[str, Any], spec: StudySpec) -> list[dict[str, Any]]:
    """One row per evaluation of a finished trial (the last one flagged ``final``)."""
    history = json.loads((out / "runs" / trial["id"] / "evaluations.json").read_text())
    rows = []
    for i, h in enumerate(history):
        rows.append({"trial": trial["id"], "env": trial["env_name"], "agent": trial["agent"],
                     "agent_preset": spec.agents[trial["agent"]],
                     "reward": trial["reward"] or "", "lr": "" if trial["lr"] is None else trial["lr"],
                     "seed": trial["seed"], "budget": spec.timesteps, "eval_episodes": spec.eval.episodes,
                     "eval_seed": spec.eval.seed, "timesteps": h["timesteps"], "final": int(i == len(history) - 1),
                     "return": h["return"], "pnl": h["pnl"], "pnl_std": h["pnl_std"], "sharpe": h["sharpe"],
                     "mean_abs_inventory": h["mean_abs_inventory"], "fills": h["fills"], "lr_now": h["lr"]}
                    | {f"term_{k}": v for k, v in h.get("terms", {}).items()})
    return rows


def write_results(out: Path, done: list[dict[str, Any]], spec: StudySpec) -> Path:
    rows = [row for trial in sorted(done, key=lambda t: t["id"]) for row in trial_rows(out, trial, spec)]
    # each reward term's episode sum gets a column (term_<name>); blank where a trial's reward lacks it
    terms = sorted({k for row in rows for k in row if k.startswith("term_")})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[*COLUMNS, *terms], lineterminator="\n", restval="")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.10g}" if isinstance(v, float) and math.isfinite(v) else v)
                         for k, v in row.items()})
    # so that results.csv, baselines.json and spec.yaml alone are enough for `lobgym report`
    write_json_atomic(out / "baselines.json", trial_baselines(out, rows))
    return write_text_atomic(out / "results.csv", buf.getvalue())


def trial_baselines(out: Path, rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """env -> baseline -> summary, from the first trial of each env that has its baselines.json (every
    trial of an env evaluates the baselines on the same seeds)."""
    found: dict[str, dict[str, dict[str, float]]] = {}
    for row in rows:
        path = out / "runs" / row["trial"] / "baselines.json"
        if row["env"] not in found and path.is_file():
            found[row["env"]] = json.loads(path.read_text())
    return found


#: Where trials run: ``local``, a pool of processes on this machine; ``ray``, Ray remote tasks on a local
#: Ray instance or an existing cluster (``address``).
BACKENDS = ("local", "ray")


def run_study(spec: str | Path | dict | StudySpec, out: str | Path | None = None, workers: int | None = None,
              progress: bool = True, backend: str = "local", address: str | None = None) -> Path:
    """Run every trial not finished yet (``workers`` at a time, one process each); returns the study folder.

    ``backend="local"`` runs trials in a pool of processes on this machine; ``backend="ray"`` runs each
    trial as a Ray task (one CPU each), on the cluster at ``address`` if given, else on a local Ray
    instance of ``workers`` CPUs started (and shut down) here. Trials write their run folders under
    ``out`` themselves: on a multi-machine cluster ``out`` (and any preset YAML paths of the spec) must
    be on a filesystem shared by every node, at the same path, and lobgym installed on every node.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"backend = {backend!r}: expected one of {', '.join(map(repr, BACKENDS))}")
    if address is not None and backend != "ray":
        raise ConfigError(f"address = {address!r}: only with backend = 'ray' (backend = {backend!r})")
    if backend == "ray":
        _import_ray()  # fail before any file is written
    spec = load_study(spec)
    out = Path(out) if out is not None else Path("runs") / "studies" / spec.name
    out.mkdir(parents=True, exist_ok=True)
    import yaml

    write_text_atomic(out / "spec.yaml", yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    grid = trials(spec)
    by_id = {t["id"]: t for t in grid}
    done = [t for t in grid if (out / "runs" / t["id"] / "report.json").is_file()]
    todo = [t for t in grid if t not in done]
    failures: dict[str, Any] = {}
    n_workers = max(1, min(workers or spec.workers or os.cpu_count() or 1, len(todo) or 1))
    display = _Display(len(grid), len(done), progress)
    if todo:
        spec_data = spec.model_dump(mode="json")
        if backend == "ray":
            results = _ray_results(spec_data, todo, out, n_workers, address, workers or spec.workers)
        else:
            results = _local_results(spec_data, todo, out, n_workers)
        with display, contextlib.closing(results):
            display.update(running=min(n_workers, len(todo)))
            for result, running in results:
                if result["status"] == "done":
                    done.append(by_id[result["id"]])
                    failures.pop(result["id"], None)
                    write_results(out, done, spec)
                else:
                    failures[result["id"]] = result
                    write_json_atomic(out / "failures.json", failures)
                display.update(done=len(done), failed=len(failures), running=running)
    write_results(out, done, spec)
    write_json_atomic(out / "failures.json", failures)
    return out


Results = Iterator[tuple[dict[str, Any], int]]
"""Trial results as they finish, each with the number of trials still running."""


def _local_results(spec_data: dict, todo: list[dict[str, Any]], out: Path, n_workers: int) -> Results:
    """``run_trial`` in a pool of ``n_workers`` fresh processes."""
    with ProcessPoolExecutor(n_workers, mp_context=get_context("spawn")) as pool:
        pending: set[Future] = {pool.submit(run_trial, spec_data, t, str(out)) for t in todo}
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                yield fut.result(), min(n_workers, len(pending))


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("backend = 'ray': Ray is not installed; pip install 'lobgym[ray]'") from None
    return ray


def _ray_results(spec_data: dict, todo: list[dict[str, Any]], out: Path, n_workers: int, address: str | None,
                 limit: int | None) -> Results:
    """``run_trial`` as Ray tasks of one CPU each, at most ``limit`` submitted at once (default: all of
    them, the cluster schedules them); a local Ray instance of ``n_workers`` CPUs unless ``address``."""
    import logging

    ray = _import_ray()
    started = False
    if not ray.is_initialized():  # else: the caller's own ray.init, kept as it is
        if address is not None:
            try:
                ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
            except ConnectionError as err:
                raise ConfigError(f"address = {address!r}: no Ray cluster there: {err}") from None
        else:
            ray.init(num_cpus=n_workers, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING)
            started = True
    pending: dict[Any, str] = {}
    try:
        task = ray.remote(num_cpus=1)(run_trial)
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        queue = list(todo)
        folder = str(out.resolve())  # Ray workers may start elsewhere
        while queue or pending:
            while queue and len(pending) < (limit or len(todo)):
                trial = queue.pop(0)
                pending[task.remote(spec_data, trial, folder)] = trial["id"]
            finished, _ = ray.wait(list(pending), num_returns=1)
            for ref in finished:
                trial_id = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as err:  # the worker died, the node was lost, ...
                    result = {"id": trial_id, "status": "failed", "error": f"{type(err).__name__}: {err}",
                              "traceback": str(err)}
                yield result, min(cpus, limit or cpus, len(pending) + len(queue))
    finally:
        for ref in pending:  # interrupted: stop the trials still running on the cluster
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()


class _Display:
    """A rich progress bar over trials: done / running / failed and the ETA."""

    def __init__(self, total: int, done: int, enabled: bool):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.enabled = enabled
        self.progress = Progress(TextColumn("[bold]trials"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("running {task.fields[running]}, failed {task.fields[failed]}"),
                                 TimeElapsedColumn(), TimeRemainingColumn(), disable=not enabled)
        self.task = self.progress.add_task("trials", total=total, completed=done, running=0, failed=0)

    def __enter__(self) -> _Display:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def update(self, done: int | None = None, failed: int | None = None, running: int | None = None) -> None:
        fields = {k: v for k, v in (("running", running), ("failed", failed)) if v is not None}
        if done is not None:
            fields["completed"] = done
        self.progress.update(self.task, **fields)


def load_results(out: str | Path) -> list[dict[str, str]]:
    with open(Path(out) / "results.csv", newline="") as fh:
        return list(csv.DictReader(fh))


__all__ = ["StudySpec", "load_study", "run_study", "trials", "with_initial_lr"]
