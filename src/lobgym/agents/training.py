"""``lobgym train``: SB3 PPO / SAC on a batched lobgym env, in a run folder that can be watched and resumed.

``runs/<name>/`` holds::

    config.yaml     the resolved env and training configs, seed and budget (what --resume reads)
    command.txt     the command that started the run (and each resume)
    meta.json       package versions, git revision, machine, start time
    tb/             TensorBoard logs (SB3's scalars and lobgym's: episode metrics, reward terms,
                    evaluations next to the baselines, lr and controller state, gradient norms,
                    scheduled reward weights as curriculum/<term>)
    checkpoints/    the newest checkpoints (see lobgym.agents.checkpoints) and latest.json
    best/           the model with the best evaluation score so far (+ VecNormalize statistics)
    final/          the model at the end of training
    evaluations.json   every periodic evaluation (timesteps, return, PnL, Sharpe, lr, ...)
    report.json, report.md   the final and best models against the baselines on the held-out seeds

Training env ``i`` runs on market seed ``seed + i`` (its streams continue across episodes);
evaluations run episode ``j`` on seed ``eval.seed + j``, held out from training (checked).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from lobgym import market_kinds, portable_math
from lobgym.agents.callbacks import (
    CheckpointCallback,
    EpisodeMetricsCallback,
    EvalCallback,
    GradNormCallback,
    PolicyAgent,
    ProgressCallback,
    ReloadBestCallback,
    RewardCurriculumCallback,
    ScheduleFreeModes,
)
from lobgym.agents.checkpoints import (
    PICKLED,
    CheckpointFallback,
    SavedCheckpoint,
    base_vec_env,
    checkpoint_candidates,
    read_checkpoint,
    set_rng_states,
)
from lobgym.agents.losses import critic_loss
from lobgym.agents.lr_control import LRController, build_controller, make_lr_callback
from lobgym.agents.model_files import (
    load_sb3,
    restore_replay_buffer,
    restore_vecnormalize,
    vecnormalize_state,
)
from lobgym.agents.probes import SharpnessProbeCallback
from lobgym.config import (
    OPTIMIZER_PACKAGES,
    OPTIMIZERS,
    AnyEnvConfig,
    ConfigError,
    LRControlConfig,
    TrainingConfig,
    load_env_config,
    load_training_config,
    with_interface,
)
from lobgym.curriculum import has_schedule
from lobgym.evaluation import Evaluation, evaluate
from lobgym.folders import exclusive, remove_leftovers
from lobgym.io import write_json_atomic, write_text_atomic
from lobgym.provenance import provenance
from lobgym.state_files import RunFileError, read_json, read_state, write_state

PACKAGES = ("lobgym", "stable-baselines3", "torch", "gymnasium", "numpy", "numba")


@dataclass(frozen=True)
class RunConfig:
    """What a run trains: read from and written to ``config.yaml``."""

    env: AnyEnvConfig
    agent: TrainingConfig
    seed: int
    timesteps: int

    def to_dict(self) -> dict[str, Any]:
        """The run config as plain data, as written to ``config.yaml``."""
        return {"seed": self.seed, "timesteps": self.timesteps, "env": self.env.model_dump(mode="json"),
                "agent": self.agent.model_dump(mode="json")}

    @classmethod
    def read(cls, run_dir: Path) -> RunConfig:
        """The run config in ``run_dir/config.yaml``; raises ``ValueError`` if the folder is not a training run."""
        path = run_dir / "config.yaml"
        if not path.is_file():
            raise ValueError(f"{run_dir}: not a training run (no config.yaml)")
        from lobgym.presets import read_yaml

        data = read_yaml(path)
        return cls(load_env_config(data["env"]), load_training_config(data["agent"]), int(data["seed"]),
                   int(data["timesteps"]))


def algorithm_class(kind: str):
    """The SB3 algorithm class of ``kind``: ``PPO`` for ``"ppo"``, ``SAC`` for ``"sac"``."""
    from stable_baselines3 import PPO, SAC

    return {"ppo": PPO, "sac": SAC}[kind]


def default_baselines(env_cfg: AnyEnvConfig) -> list[str]:
    """Baselines evaluated next to a trained policy when the preset does not list any: its market kind's."""
    return list(market_kinds.of(env_cfg).default_baselines)


# ------------------------------------------------------------------------------------------ build
def make_controller(cfg: TrainingConfig) -> LRController | None:
    """The preset's learning-rate controller, or ``None`` when ``learning_rate`` is a fixed number."""
    return build_controller(cfg.learning_rate) if isinstance(cfg.learning_rate, LRControlConfig) else None


#: The rate of a model loaded only to predict or to read its files: no step uses it; positive because Prodigy
#: and D-Adaptation refuse 0.
PREDICT_ONLY_LR = 1e-12


def optimizer_class(name: str) -> type:
    """The optimizer class of ``optimizer.name``; a :class:`ConfigError` naming the extra if it is not installed."""
    import importlib

    module, cls = OPTIMIZERS[name][0].split(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except ImportError:
        raise ConfigError(f"optimizer.name = {name!r}: needs the package {OPTIMIZER_PACKAGES[name]}, which is not "
                          "installed; install the extra with: pip install 'lobgym[optim]'") from None


def policy_kwargs(cfg: TrainingConfig) -> dict[str, Any]:
    """SB3's ``policy_kwargs`` from the preset: networks, activation, optimizer class and its arguments."""
    import torch

    activations = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU, "elu": torch.nn.ELU,
                   "leaky_relu": torch.nn.LeakyReLU}
    kw: dict[str, Any] = {"net_arch": cfg.policy.net_arch, "activation_fn": activations[cfg.policy.activation],
                          "optimizer_class": optimizer_class(cfg.optimizer.name),
                          "optimizer_kwargs": dict(cfg.optimizer.kwargs)}
    if "betas" in kw["optimizer_kwargs"]:
        kw["optimizer_kwargs"]["betas"] = tuple(kw["optimizer_kwargs"]["betas"])
    if cfg.policy.log_std_init is not None:
        kw["log_std_init"] = cfg.policy.log_std_init
    if cfg.policy.ortho_init is not None:
        kw["ortho_init"] = cfg.policy.ortho_init
    return kw


def make_training_env(run: RunConfig):
    """The batched env of a run, wrapped in ``VecNormalize`` when the preset asks for it."""
    from lobgym.vec_env import make_vec_env

    return with_normaliser(run, make_vec_env(run.env, n_envs=run.agent.n_envs))


def normalises(run: RunConfig) -> bool:
    """Whether the run trains on ``VecNormalize``d observations or rewards (and saves its statistics)."""
    return run.agent.normalize.obs or run.agent.normalize.reward


def with_normaliser(run: RunConfig, venv: Any) -> Any:
    """``venv`` in the ``VecNormalize`` the preset asks for (``venv`` itself if it asks for none)."""
    if not normalises(run):
        return venv
    from stable_baselines3.common.vec_env import VecNormalize

    norm = run.agent.normalize
    return VecNormalize(venv, norm_obs=norm.obs, norm_reward=norm.reward, clip_obs=norm.clip_obs,
                        clip_reward=norm.clip_reward, gamma=float(run.agent.hyperparams.get("gamma", 0.99)))


def check_seeds(run: RunConfig) -> None:
    """Raise :class:`ConfigError` if the run's seed blocks overlap.

    The blocks: the training market seeds, the held-out evaluation (model-selection) seeds, the
    validation seeds (``eval.validation``) and, when the env is a task of ``lobgym score``, the task's
    test seeds, which no training decision may see.
    """
    lo, hi = run.seed, run.seed + run.agent.n_envs
    ev = run.agent.eval
    e_lo, e_hi = ev.seed, ev.seed + ev.episodes
    if lo < e_hi and e_lo < hi:
        raise ConfigError(f"seed = {run.seed}: training market seeds {lo}..{hi - 1} overlap the held-out evaluation "
                          f"seeds {e_lo}..{e_hi - 1} (eval.seed); pick a seed below {e_lo - run.agent.n_envs + 1}")
    blocks = [("training market seeds (seed)", lo, hi), ("evaluation seeds (eval.seed)", e_lo, e_hi)]
    if ev.validation is not None:
        blocks.append(("validation seeds (eval.validation.seed)", ev.validation.seed,
                       ev.validation.seed + ev.validation.episodes))
    task = task_of(run.env)
    if task is not None:
        blocks.append((f"test seeds of task {task.name!r}", task.seed, task.seed + task.episodes))
    for i, (name_a, a_lo, a_hi) in enumerate(blocks):
        for name_b, b_lo, b_hi in blocks[i + 1:]:
            if a_lo < b_hi and b_lo < a_hi:
                raise ConfigError(f"{name_a} {a_lo}..{a_hi - 1} overlap the {name_b} {b_lo}..{b_hi - 1}: "
                                  "each seed block must be disjoint from the others")


def task_of(env_cfg: AnyEnvConfig):
    """The ``lobgym score`` task whose env ``env_cfg`` is, or ``None``.

    The same name, market and reward (the agent's own action and observation sections may differ).
    """
    from lobgym.task_suite import TASKS, task_env

    task = TASKS.get(env_cfg.name)
    if task is None:
        return None
    env = task_env(task)
    return task if (env.market, env.reward) == (env_cfg.market, env_cfg.reward) else None


def watches_score(controller: LRController | None) -> bool:
    """Whether a rule of ``controller`` watches the task's normalised score (``eval_score``, ``val_score``)."""
    return controller is not None and bool(controller.signals & {"eval_score", "val_score"})


def score_refs(run_dir: Path, run: RunConfig) -> dict[str, tuple[float, float]]:
    """Mean returns (zero agent, reference agent) of the run's task on its evaluation and validation seeds.

    Computed once per run and kept in ``score_refs.json``; raises :class:`ConfigError` if the env is not a task.
    """
    path = run_dir / "score_refs.json"
    if path.is_file():
        return {k: tuple(v) for k, v in read_json(path, expect=dict).items()}
    from lobgym.agents import make_agent
    from lobgym.task_suite import task_env

    task = task_of(run.env)
    if task is None:
        raise ConfigError(f"env {run.env.name!r}: the eval_score / val_score signals need the env to be a task of "
                          "lobgym score (same name and settings)")
    ev = run.agent.eval
    blocks = {"eval": (ev.episodes, ev.seed)}
    if ev.validation is not None:
        blocks["val"] = (ev.validation.episodes, ev.validation.seed)
    out = {}
    for block, (episodes, seed) in blocks.items():
        means = []
        env = task_env(task)
        for name in (task.zero, task.reference):
            agent = make_agent(name, env)
            means.append(float(np.mean(evaluate(agent, env, episodes=episodes, seed=seed, name=name).returns)))
        out[block] = tuple(means)
    write_json_atomic(path, out)
    return out


def new_model(run: RunConfig, venv: Any, controller: LRController | None):
    """A fresh SB3 model of the run's config on ``venv``; SB3's rejections become :class:`ConfigError`."""
    cls = algorithm_class(run.agent.kind)
    lr = controller if controller is not None else float(run.agent.learning_rate)
    try:
        return cls("MlpPolicy", venv, learning_rate=lr, policy_kwargs=policy_kwargs(run.agent), seed=run.seed,
                   device="cpu", verbose=0, **run.agent.hyperparams)
    except (TypeError, ValueError, AssertionError) as err:
        raise ConfigError(f"agent {run.agent.name!r}: {run.agent.kind.upper()} rejected the preset's "
                          f"hyperparams / policy: {err}") from None


def model_template(run: RunConfig, venv: Any, learning_rate: Any = PREDICT_ONLY_LR):
    """A model of the run's config without networks.

    :func:`load_model` takes from it the SB3 save entries that follow from the config (spaces, policy
    class and arguments, schedules' settings).
    """
    import warnings

    with warnings.catch_warnings():  # PPO warns when batch_size does not divide n_steps x (the template's) n_envs
        warnings.filterwarnings("ignore", message="You have specified a mini-batch size", category=UserWarning)
        return algorithm_class(run.agent.kind)("MlpPolicy", venv, learning_rate=learning_rate,
                                               policy_kwargs=policy_kwargs(run.agent), seed=run.seed, device="cpu",
                                               verbose=0, _init_setup_model=False, **run.agent.hyperparams)


def load_model(path: Path, run: RunConfig, env: Any = None, learning_rate: Any = PREDICT_ONLY_LR,
               state: dict[str, Any] | None = None, saved: tuple[bytes, dict[str, Any]] | None = None):
    """The SB3 model saved at ``path`` by a run of ``run``'s config, read without unpickling anything.

    See :func:`lobgym.agents.model_files.load_sb3`. ``learning_rate`` replaces the saved one (for
    prediction any number does; to continue training pass the run's controller, restored from its own
    checkpoint file, and the checkpoint's ``state``).
    """
    from lobgym.vec_env import make_vec_env

    template = model_template(run, env if env is not None else make_vec_env(run.env), learning_rate)
    return load_sb3(path, algorithm_class(run.agent.kind), template, learning_rate, state=state, env=env, saved=saved)


# -------------------------------------------------------------------------------------- run files
def run_metadata(command: list[str] | None = None) -> dict[str, Any]:
    """The contents of ``meta.json``: where, when and with what the run was trained.

    lobgym's version and own git revision, package versions, machine, start time, command
    (:func:`lobgym.provenance.provenance`) and whether torch runs on processor-independent math
    (:mod:`lobgym.portable_math`: if not, the weights are reproducible on this machine only).
    """
    return provenance(command, packages=PACKAGES) | {"math": portable_math.settings()}


def _append_command(run_dir: Path, command: list[str] | None) -> None:
    command = list(command if command is not None else sys.argv)
    if command and Path(command[0]).name in ("lobgym", "__main__.py"):
        command[0] = "lobgym"  # what the user typed, not the entry point's path
    line = shlex.join(command)
    path = run_dir / "command.txt"
    previous = path.read_text() if path.is_file() else ""
    write_text_atomic(path, previous + line + "\n")


def _save_model_dir(folder: Path, model: Any, extra: dict[str, Any]) -> None:
    """``folder``/model.zip (+ vecnormalize.json/.npz, info.json), replaced as a whole."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        model.save(tmp / "model.zip")
        vecnorm = model.get_vec_normalize_env()
        if vecnorm is not None:
            write_state(tmp, "vecnormalize", vecnormalize_state(vecnorm))
        (tmp / "info.json").write_text(json.dumps(extra, indent=2) + "\n")
        tmp.chmod(0o755)  # mkdtemp makes it private
        old = folder.with_name(f".{folder.name}.old")
        shutil.rmtree(old, ignore_errors=True)  # left behind if a run was killed right after the last swap
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ------------------------------------------------------------------------------------------ train
def start(env: Any, agent: Any, seed: int = 0, timesteps: int | None = None, name: str | None = None,
          runs_dir: str | Path = "runs", progress: bool = True, command: list[str] | None = None) -> Path:
    """Start a new run; returns its folder. Raises if the folder already holds a run (resume it instead)."""
    agent_cfg = load_training_config(agent)
    env_cfg = with_interface(load_env_config(env), agent_cfg.interface, where=f"agent {agent_cfg.name!r}: interface")
    if seed < 0:
        raise ConfigError(f"seed = {seed}: must be >= 0")
    if timesteps is not None and timesteps < 1:
        raise ConfigError(f"timesteps = {timesteps}: must be >= 1")
    run = RunConfig(env_cfg, agent_cfg, seed, timesteps or agent_cfg.timesteps)
    check_seeds(run)
    run_dir = Path(runs_dir) / (name or f"{agent_cfg.name}-{env_cfg.name}-seed{seed}")
    if (run_dir / "config.yaml").exists():
        raise ConfigError(f"run folder {str(run_dir)!r} already holds a run: continue it with "
                          f"`lobgym train --resume {run_dir}` or pick another --name")
    new_model(run, make_training_env(run), make_controller(agent_cfg))  # SB3's own checks, before any file
    with exclusive(run_dir, "training run"):
        if (run_dir / "config.yaml").exists():  # started meanwhile by another process
            raise ConfigError(f"run folder {str(run_dir)!r} already holds a run: continue it with "
                              f"`lobgym train --resume {run_dir}` or pick another --name")
        write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(run.to_dict(), sort_keys=False))
        write_json_atomic(run_dir / "meta.json", run_metadata(command))
        _append_command(run_dir, command)
        return _train(run_dir, run, resume=False, progress=progress)


def resume(run_dir: str | Path, progress: bool = True, command: list[str] | None = None) -> Path:
    """Continue a run from its newest readable checkpoint; returns its folder.

    The run restarts from scratch if it was killed before the first checkpoint. What interrupted writes
    left behind is removed first.
    """
    run_dir = Path(run_dir)
    run = RunConfig.read(run_dir)
    with exclusive(run_dir, "training run"):
        remove_leftovers(run_dir, ("checkpoints",))
        _append_command(run_dir, command)
        return _train(run_dir, run, resume=True, progress=progress)


def _train(run_dir: Path, run: RunConfig, resume: bool, progress: bool) -> Path:
    import torch
    from stable_baselines3.common.callbacks import CallbackList
    from stable_baselines3.common.logger import configure
    from stable_baselines3.common.vec_env import VecNormalize

    torch.set_num_threads(run.agent.torch_threads)
    cfg = run.agent
    controller = make_controller(cfg)
    venv = make_training_env(run)
    saved = _readable_checkpoint(run_dir, run) if resume else None
    checkpoint = None if saved is None else saved.path
    state = None if saved is None else saved.state
    if saved is not None:
        if controller is not None:
            controller.load_state_dict(saved.controller)
        if isinstance(venv, VecNormalize):
            restore_vecnormalize(venv, saved.vecnormalize, str(checkpoint / "vecnormalize.npz"))
        base_vec_env(venv).set_state(state["env"], source=str(checkpoint / "state.npz"))
        lr = controller if controller is not None else float(cfg.learning_rate)
        # the saved last observation is kept: the restored env continues from it
        model = load_model(checkpoint / "model.zip", run, env=venv, learning_rate=lr, state=state["sb3"],
                           saved=saved.model)
        if cfg.kind == "sac":
            restore_replay_buffer(model.replay_buffer, saved.replay_buffer, str(checkpoint / "replay_buffer.npz"))
        set_rng_states(model, state["rng"])
    else:
        model = new_model(run, venv, controller)
    model.set_logger(configure(str(run_dir / "tb"), ["tensorboard"]))

    baselines = _baselines(run_dir, run)
    ev = cfg.eval
    metric = {"return": "return_mean", "pnl": "pnl_mean", "sharpe": "sharpe"}[ev.metric]
    evaluation = EvalCallback(run.env, ev.every, ev.episodes, ev.seed, ev.metric,
                              {k: {ev.metric: v[metric]} for k, v in baselines.items()},
                              save_best=lambda: _save_model_dir(run_dir / "best", model, {
                                  "timesteps": model.num_timesteps, "metric": ev.metric,
                                  "score": evaluation.best}),
                              controller=controller, history_path=run_dir / "evaluations.json",
                              validation=(ev.validation.episodes, ev.validation.seed) if ev.validation else None,
                              score_refs=score_refs(run_dir, run) if watches_score(controller) else None)
    episodes = EpisodeMetricsCallback()
    stateful: dict[str, Any] = {"episodes": episodes, "evaluation": evaluation}
    if cfg.probe is not None:
        stateful["probe"] = SharpnessProbeCallback(cfg.probe.every, cfg.probe.radius, cfg.probe.batch, cfg.critic_loss,
                                                   cfg.huber_delta, controller, seed=run.seed)
    callbacks: list[Any] = [episodes, GradNormCallback(controller), *([stateful["probe"]] if cfg.probe else [])]
    if has_schedule(run.env):  # first: the weights of a rollout are set before anything else looks at it
        callbacks.insert(0, RewardCurriculumCallback(run.env, run.timesteps))
    if cfg.optimizer.name == "adamw_schedulefree":  # first of all: evaluations and checkpoints see x
        callbacks.insert(0, ScheduleFreeModes())
    if controller is not None:
        lr_callback = make_lr_callback(controller)
        stateful["lr_control"] = lr_callback
        callbacks.append(lr_callback)
        if any(getattr(r, "reload_best", False) for r in controller.rules):
            stateful["reload_best"] = ReloadBestCallback(controller, run_dir / "best")
            callbacks.append(stateful["reload_best"])
    callbacks.append(evaluation)
    ckpt = CheckpointCallback(run_dir / "checkpoints", cfg.checkpoint.every, cfg.checkpoint.keep, controller, stateful)
    callbacks.append(ckpt)
    if state is not None:
        for name, cb in stateful.items():
            cb.load_state_dict(state["callbacks"][name])
        ckpt.load_state_dict(state["callbacks"]["checkpoint"])
    if progress:
        callbacks.append(ProgressCallback(run.timesteps, evaluation, run_dir.name))

    remaining = run.timesteps - model.num_timesteps
    if remaining > 0:
        with critic_loss(cfg.critic_loss, cfg.huber_delta):
            model.learn(total_timesteps=remaining if checkpoint is not None else run.timesteps,
                        callback=CallbackList(callbacks), reset_num_timesteps=checkpoint is None, log_interval=1)
    else:  # resuming a run that had finished: nothing to learn, the files below are rewritten
        CallbackList(callbacks[:-1] if progress else callbacks).init_callback(model)
    if not evaluation.history or evaluation.history[-1]["timesteps"] != model.num_timesteps:
        evaluation.run_evaluation()  # the final policy, on the same held-out seeds
        model.logger.dump(model.num_timesteps)
    if checkpoint is None or state["num_timesteps"] != model.num_timesteps:
        ckpt.save()  # so that --resume of a finished run has nothing left to do
    _save_model_dir(run_dir / "final", model, {"timesteps": model.num_timesteps})
    write_report(run_dir, run, baselines)
    return run_dir


def _baselines(run_dir: Path, run: RunConfig) -> dict[str, dict[str, float]]:
    """Summaries of the baselines on the evaluation seeds, computed once per run and kept in baselines.json."""
    path = run_dir / "baselines.json"
    if path.is_file():
        return read_json(path, expect=dict)
    from lobgym.agents import make_agent

    ev = run.agent.eval
    out = {}
    for name in ev.baselines if ev.baselines is not None else default_baselines(run.env):
        try:
            agent = make_agent(name, run.env)
        except ConfigError:
            if ev.baselines is not None:
                raise  # asked for by name: its error is the user's to see
            continue  # a default baseline this env cannot take (e.g. Cartea-Jaimungal without an inventory penalty)
        out[name] = evaluate(agent, run.env, episodes=ev.episodes, seed=ev.seed, name=name).summary
    write_json_atomic(path, out)
    return out


def _readable_checkpoint(run_dir: Path, run: RunConfig) -> SavedCheckpoint | None:
    """The newest checkpoint that reads back whole (None if the run has none yet).

    Warns about each newer one that does not; raises :class:`RunFileError` naming every file when none
    is readable.
    """
    candidates = checkpoint_candidates(run_dir / "checkpoints")
    errors: list[str] = []
    for path in candidates:
        try:
            saved = read_checkpoint(path, normalises(run), run.agent.kind == "sac", make_controller(run.agent))
        except RunFileError as err:
            errors.append(str(err))
            continue
        for error in errors:
            warnings.warn(f"{error}; resuming from the previous kept checkpoint, {path.name}", CheckpointFallback,
                          stacklevel=2)
        return saved
    if errors:
        raise RunFileError(f"{run_dir / 'checkpoints'}: no readable checkpoint ({'; '.join(errors)})")
    return None


# ----------------------------------------------------------------------------------------- report
def trained_agent(run_dir: str | Path, which: str = "best", env_cfg: Any = None) -> PolicyAgent:
    """A run's model (``best``, falling back to ``final``, or ``final``) as an evaluation agent.

    With ``env_cfg`` the agent acts on that env through its own interface: the env's market and reward
    with the run's ``action`` and ``observation`` sections (:attr:`PolicyAgent.acts_on` when they differ
    from the env's); the observations and actions must then have the shapes the model was trained on.
    Nothing in the run folder is unpickled (:mod:`lobgym.agents.model_files`).
    """
    from lobgym.vec_env import make_vec_env

    run_dir = Path(run_dir)
    run = RunConfig.read(run_dir)
    acts_on = None
    if env_cfg is not None:
        target = load_env_config(env_cfg)
        if type(target) is type(run.env):
            own = {"action": run.env.action.model_dump(mode="json"),
                   "observation": run.env.observation.model_dump(mode="json")}
            mine = with_interface(target, own, where=f"agent {str(run_dir)!r}: its interface")
            acts_on = mine if (mine.action, mine.observation) != (target.action, target.observation) else None
            target = mine
        trained, other = make_vec_env(run.env), make_vec_env(target)
        shapes = [(sp.shape, sp.dtype) for sp in (trained.observation_space, trained.action_space)]
        if shapes != [(sp.shape, sp.dtype) for sp in (other.observation_space, other.action_space)]:
            raise ConfigError(f"agent {str(run_dir)!r} was trained on env {run.env.name!r}; env "
                              f"{target.name!r} has other observations or actions "
                              f"({other.observation_space}, {other.action_space} against "
                              f"{trained.observation_space}, {trained.action_space})")
    order = ["best", "final"] if which == "best" else ["final"]
    for sub in order:
        folder = run_dir / sub
        if (folder / "model.zip").is_file():
            old = [name for name in PICKLED if (folder / name).is_file()]
            if old and not (folder / "vecnormalize.json").is_file():
                raise RunFileError(f"{folder / old[0]}: a pickle written by an older lobgym; this version stores "
                                   "normaliser statistics as npz/JSON and never unpickles run files: train the run "
                                   "again")
            venv = make_vec_env(run.env)
            model = load_model(folder / "model.zip", run)
            vecnorm = None
            if normalises(run):  # observations are normalised with the statistics saved next to the model
                vecnorm = with_normaliser(run, venv)
                restore_vecnormalize(vecnorm, read_state(folder, "vecnormalize"), str(folder / "vecnormalize.npz"),
                                     statistics_only=True)
                vecnorm.training = False
            agent = PolicyAgent(model, vecnorm)
            agent.acts_on = acts_on
            return agent
    raise ValueError(f"{run_dir}: no trained model yet (looked for {', '.join(f'{s}/model.zip' for s in order)}); "
                     f"resume it with `lobgym train --resume {run_dir}`")


def write_report(run_dir: Path, run: RunConfig, baselines: dict[str, dict[str, float]]) -> dict[str, Any]:
    """report.json and report.md: the final and best models against the baselines, on the held-out seeds."""
    ev = run.agent.eval
    rows: dict[str, dict[str, float]] = {}
    for which in ("final", "best"):
        if (run_dir / which / "model.zip").is_file():
            result: Evaluation = evaluate(trained_agent(run_dir, which), run.env, episodes=ev.episodes, seed=ev.seed,
                                          name=which)
            rows[f"{run.agent.name} ({which})"] = result.summary
    rows.update(baselines)
    report = {"run": run_dir.name, "env": run.env.name, "agent": run.agent.name, "seed": run.seed,
              "timesteps": run.timesteps, "eval_episodes": ev.episodes,
              "eval_seeds": [ev.seed, ev.seed + ev.episodes - 1],
              "agents": rows}
    write_json_atomic(run_dir / "report.json", report)
    cols = [("return", "return_mean"), ("PnL mean", "pnl_mean"), ("PnL std", "pnl_std"), ("Sharpe", "sharpe"),
            ("mean abs q", "mean_abs_inventory"), ("fills", "fills_mean")]
    lines = [f"# {run_dir.name}", "",
             f"{run.agent.kind.upper()} preset `{run.agent.name}` on env `{run.env.name}`, seed {run.seed}, "
             f"{run.timesteps:,} timesteps. Deterministic evaluation: {ev.episodes} episodes on held-out market "
             f"seeds {ev.seed}..{ev.seed + ev.episodes - 1}, the same for every row.", "",
             "| agent | " + " | ".join(c for c, _ in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, s in rows.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(s.get(k)) for _, k in cols) + " |")
    write_text_atomic(run_dir / "report.md", "\n".join(lines) + "\n")
    return report


def _fmt(x: Any) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{x:.4g}"
