"""``lobgym study <spec.yaml>``: a grid of training runs, evaluated on common random numbers.

A study spec (``experiments/*.yaml``) declares env presets x agent presets x reward variants x
initial learning rates x seeds, one training budget and one evaluation protocol. Each trial is an
ordinary run folder (:mod:`lobgym.agents.training`) under ``<out>/runs/<trial>-<key>``, where the key
hashes the trial's fully resolved configuration (:func:`trial_record`), recorded in its
``trial.json``; every trial is evaluated on the same held-out market seeds. ``<out>/results.csv``
holds one row per trial x evaluation (learning curves included), each row with the configuration
the trial's own record says it ran, rewritten atomically whenever a trial finishes.

Re-running a command resumes: finished trials of the same configuration are skipped, an interrupted
trial resumes from its newest readable checkpoint, and a failed trial is retried; a trial whose
configuration changed (budget, preset, reward, evaluation protocol, lobgym's version, ...) is trained
anew in its own folder. ``spec.yaml`` is the spec of the last run and ``specs/`` keeps every distinct
spec ever run into the folder. A failing trial, or a finished one whose files cannot be read, is
recorded in ``failures.json`` and does not stop the others. One study at a time writes a folder
(``<out>/.lock``), and pool workers exit when the study process dies.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import hashlib
import io
import json
import math
import os
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from lobgym.config import (
    ConfigError,
    LRControlConfig,
    RewardTermConfig,
    TrainingConfig,
    load_env_config,
    load_training_config,
)
from lobgym.config_base import Strict
from lobgym.folders import exclusive, remove_leftovers
from lobgym.io import write_json_atomic, write_text_atomic
from lobgym.state_files import RunFileError, read_json


class StudyEval(Strict):
    episodes: int = Field(200, gt=0, description="evaluation episodes, the same market seeds for every trial")
    seed: int = Field(1_000_000, ge=0, description="episode j runs on market seed seed + j")
    every: int | None = Field(None, gt=0, description="timesteps between evaluations [default: the agent preset's]")
    baselines: list[str] | None = Field(None, description="baseline presets to evaluate [default: the env's]")


class Normalise(Strict):
    """Scores normalised per env: ``(x - zero) / (one - zero)``."""

    metric: Literal["return", "pnl", "sharpe"] = "return"
    zero: str = Field("random", description="a baseline preset: its score is 0")
    one: str = Field(description="an agent label: the score of its best arm (by the mean over seeds) is 1")


class StudySpec(Strict):
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
    """A study spec from a preset name (under ``experiments/``), a YAML path, a dict or a spec."""
    from lobgym.config import _load

    return _load(StudySpec, "experiments", spec)


# ------------------------------------------------------------------------------------------ trials
def with_initial_lr(cfg: TrainingConfig, lr: float) -> TrainingConfig:
    """``cfg`` starting at learning rate ``lr``.

    A fixed rate is replaced; a controller's time base is scaled so that it starts at ``lr`` (its shape,
    rules and clamps are kept).
    """
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


# ------------------------------------------------------------------------------------- trial keys
def trial_record(spec: StudySpec, trial: dict[str, Any], code: tuple[str | None, str | None] = (None, None)
                 ) -> dict[str, Any]:
    """What a trial is and will be recorded as (``runs/<folder>/trial.json``), and its key.

    The record holds the trial's grid axes, the agent preset, budget and evaluation protocol (the columns
    of its results rows).

    The key is the SHA-256 of the fully resolved configuration: the env config (reward included), the
    training config (initial learning rate and evaluation protocol included), the seed, the budget and
    lobgym's version. The trial's folder is ``<id>-<key[:12]>``, so a trial whose configuration changed
    is trained anew in a new folder and never takes the results of the old one. The git revision of
    lobgym's checkout is recorded but not keyed: commits (and uncommitted edits) happen between the
    runs of one study all the time, and retraining every trial on each would make a study impossible to
    resume while its code is being worked on; a behaviour change worth retraining for bumps the version.
    ``code`` is (lobgym's version, its git revision) as :func:`code_version` gives them.
    """
    version, revision = code
    env, agent = trial_configs(spec, trial)
    resolved = {"env": env.model_dump(mode="json"), "agent": agent.model_dump(mode="json"), "seed": trial["seed"],
                "timesteps": spec.timesteps, "lobgym": version}
    key = hashlib.sha256(json.dumps(resolved, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return {"id": trial["id"], "key": key, "folder": f"{trial['id']}-{key[:12]}", "env": trial["env"],
            "env_name": trial["env_name"], "agent": trial["agent"], "agent_preset": spec.agents[trial["agent"]],
            "reward": trial["reward"], "lr": trial["lr"], "seed": trial["seed"], "budget": spec.timesteps,
            "eval_episodes": agent.eval.episodes, "eval_seed": agent.eval.seed,
            "code": f"{version}" + ("" if revision is None else f" ({revision})"), "resolved": resolved}


def code_version() -> tuple[str | None, str | None]:
    """The installed version of lobgym and, in a checkout of lobgym, its git revision (``+dirty`` if edited)."""
    from lobgym.provenance import lobgym_version, source_revision

    revision = source_revision()
    return lobgym_version(), None if revision is None else str(revision)


def keyed_trials(spec: StudySpec) -> list[dict[str, Any]]:
    """:func:`trials` with each one's record (:func:`trial_record`) under ``record``."""
    code = code_version()
    return [t | {"record": trial_record(spec, t, code)} for t in trials(spec)]


def _trial_dir(out: Path, trial: dict[str, Any]) -> Path:
    return out / "runs" / trial["record"]["folder"]


def _finished(run_dir: Path, key: str) -> bool:
    """Whether the run folder holds a finished trial of ``key`` (a readable report.json)."""
    try:
        return read_json(run_dir / "trial.json", expect=dict).get("key") == key and \
            isinstance(read_json(run_dir / "report.json", expect=dict), dict)
    except RunFileError:
        return False  # not started, interrupted, or a report to write again: the trial is resumed


def changed_fields(old: Any, new: Any, prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """``dotted.path -> (old, new)`` for every leaf that differs between two resolved configurations."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: dict[str, tuple[Any, Any]] = {}
        for k in sorted(set(old) | set(new)):
            out |= changed_fields(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    return {} if old == new else {prefix.rstrip("."): (old, new)}


def superseded(out: Path, grid: list[dict[str, Any]]) -> dict[str, dict[str, tuple[Any, Any]]]:
    """Trial id -> the fields that changed, for the trials of ``grid`` whose configuration changed.

    Those are the trials whose id has a folder of another configuration under ``out/runs`` (the newest
    such folder is compared).
    """
    found = {}
    for trial in grid:
        record = trial["record"]
        if (out / "runs" / record["folder"]).exists():  # already (being) trained with this configuration
            continue
        others = [p for p in (out / "runs").glob(f"{glob.escape(trial['id'])}-*") if p.name != record["folder"]]
        for folder in sorted(others, key=lambda p: p.stat().st_mtime, reverse=True):
            try:
                old = read_json(folder / "trial.json", expect=dict)
            except RunFileError:
                continue
            if old.get("id") == trial["id"] and isinstance(old.get("resolved"), dict):
                found[trial["id"]] = changed_fields(old["resolved"], record["resolved"])
                break
    return found


def _describe_changes(changes: dict[str, dict[str, tuple[Any, Any]]]) -> list[str]:
    groups: dict[str, list[str]] = {}
    for trial_id, fields in changes.items():
        shown = ", ".join(f"{k}: {_short(a)} -> {_short(b)}" for k, (a, b) in list(fields.items())[:4])
        groups.setdefault(shown + (f", and {len(fields) - 4} more" if len(fields) > 4 else ""), []).append(trial_id)
    return [f"{len(ids)} trial(s) changed configuration since they last ran here ({fields}): trained anew in new "
            f"folders, the old ones kept (e.g. {ids[0]})" for fields, ids in groups.items()]


def _short(x: Any) -> str:
    text = json.dumps(x)
    return text if len(text) <= 40 else text[:37] + "..."


def run_trial(spec_data: dict, trial: dict[str, Any], out: str) -> dict[str, Any]:
    """Run (or resume) one trial in this process; returns its status."""
    from lobgym import portable_math

    portable_math.pin()  # before torch loads (Ray workers do not inherit the driver's environment)
    import torch

    from lobgym.agents import training

    torch.set_num_threads(1)
    spec = StudySpec.model_validate(spec_data)
    record = trial["record"]
    runs = Path(out) / "runs"
    run_dir = runs / record["folder"]
    try:
        if _finished(run_dir, record["key"]):
            return {"id": trial["id"], "status": "done"}
        if (run_dir / "trial.json").is_file() and read_json(run_dir / "trial.json", expect=dict).get("key") != \
                record["key"]:
            raise RunFileError(f"{run_dir / 'trial.json'}: the folder holds a trial of another configuration")
        if (run_dir / "config.yaml").is_file():
            training.resume(run_dir, progress=False, command=["lobgym", "study", "(resume)", trial["id"]])
        else:
            env, agent = trial_configs(spec, trial)
            write_json_atomic(run_dir / "trial.json", record)  # first: the folder says what it holds
            training.start(env, agent, seed=trial["seed"], timesteps=spec.timesteps, name=record["folder"],
                           runs_dir=runs, progress=False, command=["lobgym", "study", spec.name, trial["id"]])
        return {"id": trial["id"], "status": "done"}
    except Exception as err:  # noqa: BLE001 -- a failing trial is recorded, the study goes on
        return {"id": trial["id"], "status": "failed", "error": f"{type(err).__name__}: {err}",
                "traceback": traceback.format_exc()}


# ----------------------------------------------------------------------------------------- results
#: The trial (id, run folder), its configuration as its own record says it ran (grid axes, the agent
#: preset, the budget, the evaluation seeds, lobgym's version and revision), then one evaluation's
#: timesteps and metrics; ``term_<name>`` columns follow.
COLUMNS = ("trial", "run", "env", "agent", "agent_preset", "reward", "lr", "seed", "budget", "eval_episodes",
           "eval_seed", "code", "timesteps", "final", "return", "pnl", "pnl_std", "sharpe", "mean_abs_inventory",
           "fills", "lr_now")
EVALUATION_KEYS = ("timesteps", "return", "pnl", "pnl_std", "sharpe", "mean_abs_inventory", "fills", "lr")


def trial_rows(run_dir: Path) -> list[dict[str, Any]]:
    """One row per evaluation of the finished trial in ``run_dir`` (the last one flagged ``final``).

    The trial's configuration is read from its own ``trial.json``. Raises :class:`RunFileError` naming
    the file if a file is unreadable.
    """
    record = read_json(run_dir / "trial.json", expect=dict)
    history = read_json(run_dir / "evaluations.json", expect=list)
    rows = []
    for i, h in enumerate(history):
        if not isinstance(h, dict) or not set(EVALUATION_KEYS) <= set(h):
            raise RunFileError(f"{run_dir / 'evaluations.json'}: evaluation {i} lacks "
                               f"{sorted(set(EVALUATION_KEYS) - set(h)) if isinstance(h, dict) else 'everything'}")
        try:
            rows.append({"trial": record["id"], "run": run_dir.name, "env": record["env_name"],
                         "agent": record["agent"], "agent_preset": record["agent_preset"],
                         "reward": record["reward"] or "", "lr": "" if record["lr"] is None else record["lr"],
                         "seed": record["seed"], "budget": record["budget"], "eval_episodes": record["eval_episodes"],
                         "eval_seed": record["eval_seed"], "code": record["code"], "timesteps": h["timesteps"],
                         "final": int(i == len(history) - 1), "return": h["return"], "pnl": h["pnl"],
                         "pnl_std": h["pnl_std"], "sharpe": h["sharpe"], "mean_abs_inventory": h["mean_abs_inventory"],
                         "fills": h["fills"], "lr_now": h["lr"]}
                        | {f"term_{k}": v for k, v in h.get("terms", {}).items()})
        except KeyError as err:
            raise RunFileError(f"{run_dir / 'trial.json'}: lacks {err}") from None
    return rows


def write_results(out: Path, done: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Write ``results.csv`` and ``baselines.json`` from the finished trials ``done``.

    Returns the trials whose files could not be read (left out, each with its error).
    """
    rows, unreadable = [], {}
    for trial in sorted(done, key=lambda t: t["id"]):
        try:
            rows += trial_rows(_trial_dir(out, trial))
        except RunFileError as err:
            unreadable[trial["id"]] = {"id": trial["id"], "status": "unreadable", "error": str(err)}
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
    write_text_atomic(out / "results.csv", buf.getvalue())
    return unreadable


def trial_baselines(out: Path, rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Env -> baseline -> summary, from the first trial of each env that has its baselines.json.

    Every trial of an env evaluates the baselines on the same seeds.
    """
    found: dict[str, dict[str, dict[str, float]]] = {}
    for row in rows:
        path = out / "runs" / (row.get("run") or row["trial"]) / "baselines.json"
        if row["env"] not in found and path.is_file():
            found[row["env"]] = read_json(path, expect=dict)
    return found


def record_spec(out: Path, spec: StudySpec) -> Path:
    """Write ``spec.yaml`` (the spec of this run) and keep every distinct spec ever run into ``out``.

    They are kept in ``specs/<time>-<hash>.yaml`` (a ``spec.yaml`` from before this history is kept
    there first).
    """
    import yaml

    history = out / "specs"

    def keep(text: str, when: float) -> None:
        digest = hashlib.sha256(text.encode()).hexdigest()[:12]
        if not any(history.glob(f"*-{digest}.yaml")):
            stamp = datetime.fromtimestamp(when, timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
            write_text_atomic(history / f"{stamp}-{digest}.yaml", text)

    current = out / "spec.yaml"
    if current.is_file() and not history.is_dir():
        keep(current.read_text(), current.stat().st_mtime)
    text = yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)
    keep(text, time.time())
    return write_text_atomic(current, text)


#: Where trials run: ``local``, a pool of processes on this machine; ``ray``, Ray remote tasks on a local
#: Ray instance or an existing cluster (``address``).
BACKENDS = ("local", "ray")


def run_study(spec: str | Path | dict | StudySpec, out: str | Path | None = None, workers: int | None = None,
              progress: bool = True, backend: str = "local", address: str | None = None) -> Path:
    """Run every trial not finished yet (``workers`` at a time, one process each); returns the study folder.

    ``backend="local"`` runs trials in a pool of processes on this machine; ``backend="ray"`` runs each
    trial as a Ray task (one CPU each), on the cluster at ``address`` if given, else on a local Ray
    instance of ``workers`` CPUs started (and shut down) here, listening on loopback only, with token
    authentication. Trials write their run folders under ``out`` themselves: on a multi-machine cluster
    ``out`` (and any preset YAML paths of the spec) must be on a filesystem shared by every node, at the
    same path, and lobgym installed on every node.

    One study at a time writes ``out``: a second one refuses, naming the first (``out/.lock``).
    """
    if backend not in BACKENDS:
        raise ConfigError(f"backend = {backend!r}: expected one of {', '.join(map(repr, BACKENDS))}")
    if address is not None and backend != "ray":
        raise ConfigError(f"address = {address!r}: only with backend = 'ray' (backend = {backend!r})")
    if backend == "ray":
        _import_ray()  # fail before any file is written
    spec = load_study(spec)
    grid = keyed_trials(spec)
    out = Path(out) if out is not None else Path("runs") / "studies" / spec.name
    with exclusive(out, "study"):
        remove_leftovers(out, ("specs",))
        for trial in grid:
            remove_leftovers(_trial_dir(out, trial), ("checkpoints",))
        record_spec(out, spec)
        for line in _describe_changes(superseded(out, grid)):
            _notice(line)
        by_id = {t["id"]: t for t in grid}
        done = [t for t in grid if _finished(_trial_dir(out, t), t["record"]["key"])]
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
                        failures |= write_results(out, done)
                    else:
                        failures[result["id"]] = result
                    write_json_atomic(out / "failures.json", failures)
                    display.update(done=len(done), failed=len(failures), running=running)
        failures |= write_results(out, done)
        write_json_atomic(out / "failures.json", failures)
    return out


def _notice(line: str) -> None:
    from rich.console import Console

    Console(stderr=True, soft_wrap=True).print(f"[bold yellow]note:[/] {line}", highlight=False)


Results = Iterator[tuple[dict[str, Any], int]]
"""Trial results as they finish, each with the number of trials still running."""


def _local_results(spec_data: dict, todo: list[dict[str, Any]], out: Path, n_workers: int) -> Results:
    """``run_trial`` in a pool of ``n_workers`` fresh processes, which exit if this process dies."""
    with ProcessPoolExecutor(n_workers, mp_context=get_context("spawn"), initializer=exit_with_parent,
                             initargs=(os.getpid(),)) as pool:
        pending: set[Future] = {pool.submit(run_trial, spec_data, t, str(out)) for t in todo}
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                yield fut.result(), min(n_workers, len(pending))


def exit_with_parent(parent: int, interval: float = 0.5) -> None:
    """Pool initializer: end this worker as soon as ``parent`` (the study process) is gone.

    A study killed with SIGKILL cannot stop its pool, and an idle worker waits on its task queue forever
    (it holds the queue's other end itself); a busy one would train its trial to the end for nobody. A
    daemon thread watches the parent pid (a dead parent's children are reparented) and exits the process.
    """
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(70)  # EX_SOFTWARE: nobody waits for this worker's result any more

    threading.Thread(target=watch, name="lobgym-exit-with-parent", daemon=True).start()


#: The first Ray release with token authentication (``RAY_AUTH_MODE=token``).
RAY_MIN_VERSION = (2, 52)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("backend = 'ray': Ray is not installed; pip install 'lobgym[ray]'") from None
    version = tuple(int(p) if p.isdigit() else 0 for p in ray.__version__.split(".")[:2])
    if version < RAY_MIN_VERSION:
        raise ConfigError(f"backend = 'ray': Ray {ray.__version__} is installed; lobgym needs Ray >= "
                          f"{'.'.join(map(str, RAY_MIN_VERSION))} (token authentication): pip install -U 'lobgym[ray]'")
    return ray


@contextlib.contextmanager
def _local_ray_settings(ray: Any) -> Iterator[None]:
    """Settings for the local Ray instance a study starts: token authentication, listening on 127.0.0.1 only.

    Token authentication is ``RAY_AUTH_MODE=token`` (Ray generates the token); every Ray process listens
    on 127.0.0.1 only.

    On Linux Ray binds its servers to all interfaces unless it runs in its single-machine mode, which
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` selects on any platform (Ray's processes inherit it). This
    process's Ray read both settings when it was imported, so they are refreshed here too, the way Ray
    does it itself when it turns tokens on; :func:`_check_local_ray` checks the outcome.
    """
    constants, config, _ = _ray_internals()
    saved_env = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")}
    saved_cluster = constants.ENABLE_RAY_CLUSTER
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    constants.ENABLE_RAY_CLUSTER = False
    config.initialize("")
    try:
        yield
    finally:
        constants.ENABLE_RAY_CLUSTER = saved_cluster
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        config.initialize("")


def _ray_internals() -> tuple[Any, Any, Any]:
    """Ray's cluster-mode constant, its config and its token-auth check.

    These are not public API: a Ray whose internals moved is refused rather than started unchecked.
    """
    try:
        from ray._private import ray_constants
        from ray._private.authentication.authentication_utils import is_token_auth_enabled
        from ray._raylet import Config

        ray_constants.ENABLE_RAY_CLUSTER  # noqa: B018 -- present in the Ray releases lobgym knows
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"backend = 'ray': cannot make this Ray's local instance listen on loopback only with "
                          f"token authentication ({err}); start a Ray cluster yourself and pass --address") from None
    return ray_constants, Config, is_token_auth_enabled


def _check_local_ray(ray: Any, context: Any) -> None:
    """Refuse to run on a local Ray instance that listens beyond loopback or has no token authentication."""
    is_token_auth_enabled = _ray_internals()[2]
    ip, tokens = context.address_info.get("node_ip_address"), is_token_auth_enabled()
    if ip != "127.0.0.1" or not tokens:
        ray.shutdown()
        raise ConfigError(f"backend = 'ray': the local Ray instance came up on {ip} with token authentication "
                          f"{'on' if tokens else 'off'}; lobgym runs trials only on one bound to 127.0.0.1 with "
                          "token authentication (or pass --address of your own cluster)")


def _ray_results(spec_data: dict, todo: list[dict[str, Any]], out: Path, n_workers: int, address: str | None,
                 limit: int | None) -> Results:
    """``run_trial`` as Ray tasks of one CPU each, at most ``limit`` submitted at once.

    By default all of them are submitted (the cluster schedules them); on a local Ray instance of
    ``n_workers`` CPUs unless ``address``.
    """
    import logging

    ray = _import_ray()
    started = False
    local = contextlib.ExitStack()  # the local instance's settings, kept until it is shut down
    if not ray.is_initialized():  # else: the caller's own ray.init, kept as it is
        if address is not None:
            try:
                ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
            except ConnectionError as err:
                raise ConfigError(f"address = {address!r}: no Ray cluster there: {err}") from None
        else:
            with local:
                local.enter_context(_local_ray_settings(ray))
                context = ray.init(num_cpus=n_workers, include_dashboard=False, log_to_driver=False,
                                   logging_level=logging.WARNING, _node_ip_address="127.0.0.1")
                started = True
                _check_local_ray(ray, context)
                local = local.pop_all()
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
            local.close()


class _Display:
    """Progress over trials (done / running / failed and the ETA).

    A rich bar on a terminal, else plain lines on stdout, also between trial ends (trials take minutes).
    """

    def __init__(self, total: int, done: int, enabled: bool):
        from lobgym.progress import ProgressLines, bar, is_terminal

        self.enabled = enabled
        self.running = self.failed = 0
        self.lines = ProgressLines("study", total, "trials done", start=done, heartbeat=True) \
            if enabled and not is_terminal() else None
        if self.lines is not None:
            self.lines.detail = self._detail()
        self.progress = bar("trials", "running {task.fields[running]}, failed {task.fields[failed]}",
                            disable=not enabled or self.lines is not None)
        self.task = self.progress.add_task("trials", total=total, completed=done, running=0, failed=0)

    def _detail(self) -> str:
        return f"running {self.running}, failed {self.failed}"

    def __enter__(self) -> _Display:
        if self.lines is not None:
            self.lines.begin()
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()
        if self.lines is not None:
            self.lines.end(self._detail())

    def update(self, done: int | None = None, failed: int | None = None, running: int | None = None) -> None:
        fields = {k: v for k, v in (("running", running), ("failed", failed)) if v is not None}
        self.running, self.failed = fields.get("running", self.running), fields.get("failed", self.failed)
        if done is not None:
            fields["completed"] = done
        self.progress.update(self.task, **fields)
        if self.lines is not None:  # a line whenever a trial ends, else the heartbeat's
            self.lines.update(self.lines.done if done is None else done, self._detail(), force=done is not None)


#: The columns ``lobgym report`` reads.
REPORTED = ("trial", "env", "agent", "reward", "lr", "seed", "timesteps", "final", "return", "pnl", "pnl_std",
            "sharpe", "mean_abs_inventory", "fills", "lr_now")


def load_results(out: str | Path) -> list[dict[str, str]]:
    """The rows of ``out/results.csv``.

    Raises :class:`RunFileError` naming the file (and the line) if it is missing, truncated or lacks the
    columns a report reads.
    """
    path = Path(out) / "results.csv"
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in REPORTED if c not in (reader.fieldnames or [])]
            if missing:
                raise RunFileError(f"{path}: not a study's results (no column {', '.join(missing)})")
            rows = []
            for row in reader:
                if None in row or None in row.values():
                    raise RunFileError(f"{path}: line {reader.line_num}: truncated or malformed row "
                                       f"({len(reader.fieldnames)} columns expected)")
                rows.append(row)
            return rows
    except FileNotFoundError:
        raise RunFileError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise RunFileError(f"{path}: unreadable ({' '.join(str(err).split())})") from None


__all__ = ["StudySpec", "load_study", "run_study", "trials", "with_initial_lr"]
