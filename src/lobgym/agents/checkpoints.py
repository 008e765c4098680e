"""Training checkpoints: everything a run needs to continue exactly, written atomically.

A checkpoint is a folder ``checkpoints/step_<timesteps>/`` holding

* ``model.zip``: SB3's save (policy weights, every optimizer's state, counters, last observation);
* ``replay_buffer.pkl``: off-policy algorithms only;
* ``vecnormalize.pkl``: the running observation / reward statistics, if the run normalises;
* ``controller.json``: the learning-rate controller's state, if the run has one;
* ``state.pkl``: the env state (markets and RNG streams), torch / NumPy / Python / action-space RNG
  states, ``VecNormalize``'s running returns (which its own save leaves out), and the callbacks' state.

It is built in a hidden temporary folder and renamed into place, then ``checkpoints/latest.json``
is replaced atomically: a run killed at any moment leaves the previous checkpoint whole.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lobgym.io import write_json_atomic

LATEST = "latest.json"


def base_vec_env(env: Any) -> Any:
    """The :class:`~lobgym.vec_env.MarketMakingVecEnv` under any SB3 ``VecEnvWrapper``s."""
    while hasattr(env, "venv"):
        env = env.venv
    return env


def rng_states(model: Any) -> dict[str, Any]:
    # SB3 draws PPO minibatches and SAC replay samples from NumPy's global (legacy) generator.
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),  # noqa: NPY002
            "action_space": model.action_space.np_random.bit_generator.state}


def set_rng_states(model: Any, states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])  # noqa: NPY002
    random.setstate(states["python"])
    model.action_space.np_random.bit_generator.state = states["action_space"]


def save_checkpoint(folder: str | Path, model: Any, controller: Any, callbacks: dict[str, Any], keep: int) -> Path:
    """Write a checkpoint of ``model`` at its current timestep under ``folder``; keep the newest ``keep``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"step_{model.num_timesteps:012d}"
    tmp = Path(tempfile.mkdtemp(dir=folder, prefix=f".{name}."))
    try:
        model.save(tmp / "model.zip")
        if getattr(model, "replay_buffer", None) is not None:
            model.save_replay_buffer(tmp / "replay_buffer.pkl")
        vecnorm = model.get_vec_normalize_env()
        if vecnorm is not None:
            vecnorm.save(tmp / "vecnormalize.pkl")
        if controller is not None:
            (tmp / "controller.json").write_text(json.dumps(controller.state_dict()))
        state = {"env": base_vec_env(model.get_env()).get_state(), "rng": rng_states(model), "callbacks": callbacks,
                 "num_timesteps": model.num_timesteps,
                 # VecNormalize does not pickle its running discounted returns (reward scaling needs them)
                 "vecnormalize_returns": None if vecnorm is None else vecnorm.returns.copy()}
        with open(tmp / "state.pkl", "wb") as fh:
            pickle.dump(state, fh, protocol=pickle.HIGHEST_PROTOCOL)
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        final = folder / name
        if final.exists():  # a resumed run reaching a step it had saved before the interruption
            shutil.rmtree(final)
        tmp.chmod(0o755)  # mkdtemp makes it private
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_json_atomic(folder / LATEST, {"step": model.num_timesteps, "path": name})
    for old in sorted(p for p in folder.glob("step_*") if p.is_dir())[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The newest complete checkpoint under ``folder``, or None if there is none yet."""
    folder = Path(folder)
    pointer = folder / LATEST
    if not pointer.is_file():
        return None
    try:
        path = folder / json.loads(pointer.read_text())["path"]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{pointer}: unreadable checkpoint pointer ({err})") from None
    if not (path / "model.zip").is_file() or not (path / "state.pkl").is_file():
        raise ValueError(f"{pointer} points to {path.name}, which is incomplete (model.zip or state.pkl missing)")
    return path


def read_controller_state(checkpoint: Path) -> dict[str, Any]:
    """The saved controller state; a missing or corrupted file is an error, never a silent default rate."""
    path = checkpoint / "controller.json"
    if not path.is_file():
        raise ValueError(f"{path}: missing; the run trains with a learning-rate controller and will not resume "
                         "at a default learning rate")
    try:
        state = json.loads(path.read_text())
        if not isinstance(state, dict):
            raise ValueError(f"expected a JSON object, got {type(state).__name__}")
        return state
    except ValueError as err:
        raise ValueError(f"{path}: corrupted controller state ({err}); refusing to resume at a default "
                         "learning rate") from None


def read_state(checkpoint: Path) -> dict[str, Any]:
    with open(checkpoint / "state.pkl", "rb") as fh:
        return pickle.load(fh)  # noqa: S301 -- our own checkpoint file
