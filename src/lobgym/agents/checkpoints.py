"""Training checkpoints: everything a run needs to continue exactly.

They are written atomically, in files that run no code when read.

A checkpoint is a folder ``checkpoints/step_<timesteps>/`` holding

* ``model.zip``: SB3's save (policy weights and every optimizer's state as torch tensors, counters),
  read back without unpickling anything (:mod:`lobgym.agents.model_files`);
* ``state.json`` + ``state.npz``: the env state (markets and RNG streams, by array name), torch / NumPy /
  Python / action-space RNG states, SB3's last observation and episode records, and the callbacks' state;
* ``vecnormalize.json`` + ``.npz``: the running observation / reward statistics, if the run normalises;
* ``replay_buffer.json`` + ``.npz``: off-policy algorithms only;
* ``controller.json``: the learning-rate controller's state, if the run has one.

It is built in a hidden temporary folder and renamed into place, then ``checkpoints/latest.json``
is replaced atomically: a run killed at any moment leaves the previous checkpoint whole. A resume
reads a whole checkpoint before using any of it, so an unreadable newest one falls back to the previous
kept one (:func:`checkpoint_candidates`).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lobgym.agents.model_files import read_sb3_zip, replay_buffer_state, sb3_state, vecnormalize_state
from lobgym.io import write_json_atomic
from lobgym.state_files import RunFileError, read_json, read_state, write_state

LATEST = "latest.json"
#: The pickles earlier lobgym versions wrote into run folders: never opened.
PICKLED = ("state.pkl", "vecnormalize.pkl", "replay_buffer.pkl")


class CheckpointFallback(UserWarning):
    """The newest checkpoint was unreadable: the run resumes from an older kept one."""


def base_vec_env(env: Any) -> Any:
    """The :class:`~lobgym.vec_env.MarketMakingVecEnv` under any SB3 ``VecEnvWrapper``s."""
    while hasattr(env, "venv"):
        env = env.venv
    return env


def rng_states(model: Any) -> dict[str, Any]:
    """Every random stream training draws from, as arrays and plain values."""
    # SB3 draws PPO minibatches and SAC replay samples from NumPy's global (legacy) generator.
    name, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    version, internal, gauss_next = random.getstate()
    return {"torch": torch.get_rng_state().numpy().copy(), "numpy": [name, keys, pos, has_gauss, cached],
            "python": [version, np.array(internal, dtype=np.uint64), gauss_next],
            "action_space": model.action_space.np_random.bit_generator.state}


def set_rng_states(model: Any, states: dict[str, Any]) -> None:
    """Restore every random stream training draws from, from :func:`rng_states` output."""
    torch.set_rng_state(torch.from_numpy(np.array(states["torch"], dtype=np.uint8)))
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), float(cached)))  # noqa: NPY002
    version, internal, gauss_next = states["python"]
    random.setstate((int(version), tuple(int(x) for x in internal), gauss_next))
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
            write_state(tmp, "replay_buffer", replay_buffer_state(model.replay_buffer))
        vecnorm = model.get_vec_normalize_env()
        if vecnorm is not None:
            write_state(tmp, "vecnormalize", vecnormalize_state(vecnorm))
        if controller is not None:
            (tmp / "controller.json").write_text(json.dumps(controller.state_dict()))
        state = {"env": base_vec_env(model.get_env()).get_state(), "rng": rng_states(model), "sb3": sb3_state(model),
                 "callbacks": callbacks, "num_timesteps": model.num_timesteps}
        write_state(tmp, "state", state)
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


def checkpoint_candidates(folder: str | Path) -> list[Path]:
    """The checkpoint ``latest.json`` points to, then the older kept ones, newest first.

    Empty if the run has none yet. Without ``latest.json`` (lost with its folder's contents) every kept one
    is a candidate.
    """
    folder = Path(folder)
    kept = sorted((p for p in folder.glob("step_*") if p.is_dir()), reverse=True)
    pointer = folder / LATEST
    if not pointer.is_file():
        return kept
    latest = read_json(pointer, expect=dict)
    path = latest.get("path")
    if not isinstance(path, str) or not path.startswith("step_") or "/" in path or "\\" in path:
        raise RunFileError(f"{pointer}: unreadable checkpoint pointer (path = {path!r})")
    return [folder / path] + [p for p in kept if p.name < path]


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The checkpoint ``latest.json`` points to (None if the run has none yet)."""
    candidates = checkpoint_candidates(folder)
    return candidates[0] if candidates else None


@dataclass
class SavedCheckpoint:
    """A checkpoint read whole (:func:`read_checkpoint`) before any of it is used."""

    path: Path
    model: tuple[bytes, dict[str, Any]]  #: :func:`~lobgym.agents.model_files.read_sb3_zip` of model.zip
    state: dict[str, Any]
    vecnormalize: Any = None
    replay_buffer: Any = None
    controller: dict[str, Any] | None = None


def read_checkpoint(path: Path, normalises: bool, off_policy: bool, controller: Any = None) -> SavedCheckpoint:
    """Read and check every file of the checkpoint at ``path``.

    ``controller`` (a fresh one of the run's config) checks the saved controller state. Raises
    :class:`RunFileError` naming the bad file.
    """
    if not path.is_dir():
        raise RunFileError(f"{path}: missing (named by {LATEST})")
    old = [name for name in PICKLED if (path / name).is_file()]
    if old and not (path / "state.json").is_file():
        raise RunFileError(f"{path / old[0]}: a pickle written by an older lobgym; this version stores run state as "
                           "npz/JSON and never unpickles run files: train the run again")
    saved = SavedCheckpoint(path, read_sb3_zip(path / "model.zip"), read_state(path, "state"))
    if not isinstance(saved.state, dict) or not {"env", "rng", "sb3", "callbacks", "num_timesteps"} <= set(saved.state):
        raise RunFileError(f"{path / 'state.json'}: not a lobgym checkpoint state")
    if normalises:
        saved.vecnormalize = read_state(path, "vecnormalize")
    if off_policy:
        saved.replay_buffer = read_state(path, "replay_buffer")
    if controller is not None:
        saved.controller = read_controller_state(path)
        try:
            controller.load_state_dict(saved.controller)
        except (ValueError, KeyError, TypeError) as err:
            raise RunFileError(f"{path / 'controller.json'}: {err}; refusing to resume at a default "
                               "learning rate") from None
    return saved


def read_controller_state(checkpoint: Path) -> dict[str, Any]:
    """The saved controller state; a missing or corrupted file is an error, never a silent default rate."""
    path = checkpoint / "controller.json"
    if not path.is_file():
        raise RunFileError(f"{path}: missing; the run trains with a learning-rate controller and will not resume "
                           "at a default learning rate")
    try:
        return read_json(path, expect=dict)
    except RunFileError as err:
        raise RunFileError(f"{err}: corrupted controller state; refusing to resume at a default "
                           "learning rate") from None
