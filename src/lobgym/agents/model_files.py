"""Reading SB3 models, normaliser statistics and replay buffers from a run folder.

Nothing is read in a way that runs code stored in the folder.

An SB3 ``model.zip`` holds torch tensors (``*.pth``, which SB3 reads with ``torch.load(weights_only=True)``)
and a ``data`` JSON whose non-JSON entries (spaces, policy class, schedules, last observation, ...) are
cloudpickled; SB3 unpickles every such entry unless the caller supplies it in ``custom_objects``.
:func:`load_sb3` supplies every entry lobgym knows: the ones that follow from the run's config are taken
from a model built from that config (:data:`FROM_CONFIG`), the ones that evolve while training from
lobgym's own checkpoint state (:data:`FROM_STATE`); any other pickled entry is refused, naming it and the
file. ``VecNormalize`` statistics and replay buffers are stored as arrays (:mod:`lobgym.state_files`),
never as SB3's pickles.
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
import zlib
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from lobgym.state_files import RunFileError

#: ``data`` entries rebuilt from the run's config: a model built from it (without networks) holds them.
FROM_CONFIG = ("policy_class", "policy_kwargs", "observation_space", "action_space", "clip_range", "clip_range_vf",
               "rollout_buffer_class", "rollout_buffer_kwargs", "replay_buffer_class", "replay_buffer_kwargs",
               "train_freq", "action_noise")
#: ``data`` entries that evolve while training: lobgym keeps them in its checkpoint state (:func:`sb3_state`);
#: a model loaded for prediction starts them empty.
FROM_STATE = ("_last_obs", "_last_episode_starts", "_last_original_obs", "ep_info_buffer", "ep_success_buffer")
#: Supplied by the caller: the learning rate (a number, or the run's controller) and the schedule SB3
#: rebuilds from it.
FROM_CALLER = ("learning_rate", "lr_schedule")


def read_sb3_zip(path: str | Path) -> tuple[bytes, dict[str, Any]]:
    """The bytes of an SB3 save and its ``data`` JSON (pickled entries left encoded).

    Every member's checksum is checked first; raises :class:`RunFileError` naming the file if it is
    truncated or corrupted.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            bad = archive.testzip()
            if bad is not None:
                raise ValueError(f"member {bad!r} fails its checksum")
            names = set(archive.namelist())
            if "data" not in names or "policy.pth" not in names:
                raise ValueError(f"not an SB3 save (members: {sorted(names)})")
            data = json.loads(archive.read("data").decode("utf-8"))
    except FileNotFoundError:
        raise RunFileError(f"{path}: missing") from None
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, UnicodeDecodeError, zlib.error) as err:
        raise RunFileError(f"{path}: unreadable model ({' '.join(str(err).split())})") from None
    if not isinstance(data, dict):
        raise RunFileError(f"{path}: unreadable model (its data entry is not a JSON object)")
    return raw, data


def load_sb3(path: str | Path, cls: Any, template: Any, learning_rate: Any, state: dict[str, Any] | None = None,
             env: Any = None, saved: tuple[bytes, dict[str, Any]] | None = None) -> Any:
    """Load the SB3 model saved at ``path`` without unpickling any of it.

    Args:
        path: the ``model.zip``.
        cls: the algorithm class (``PPO``, ``SAC``).
        template: a model of the run's config built with ``_init_setup_model=False``: the source of
            :data:`FROM_CONFIG`.
        learning_rate: a number, or the run's controller restored from its own ``controller.json``.
        state: :func:`sb3_state` of the checkpoint to continue from; None for a model used to predict.
        env: the env to train on (None to predict).
        saved: :func:`read_sb3_zip` of ``path`` if already read.

    Raises:
        RunFileError: the file is unreadable, holds a pickled entry lobgym does not rebuild, or its
            tensors do not fit the run's networks.
    """
    path = Path(path)
    raw, data = saved if saved is not None else read_sb3_zip(path)
    custom = {key: getattr(template, key) for key in FROM_CONFIG if hasattr(template, key)}
    custom |= {"learning_rate": learning_rate, "lr_schedule": None}
    custom |= _state_objects(state, template)
    refused = sorted(k for k, v in data.items() if isinstance(v, dict) and ":serialized:" in v and k not in custom)
    if refused:
        raise RunFileError(f"{path}: data entry {refused[0]!r} is a pickled object lobgym does not rebuild from the "
                           "run's config; refusing to unpickle it (lobgym never runs code from a run folder)")
    try:
        return cls.load(io.BytesIO(raw), env=env, device="cpu", custom_objects=custom, force_reset=state is None)
    except (RuntimeError, ValueError, KeyError, TypeError, AssertionError, pickle.UnpicklingError) as err:
        raise RunFileError(f"{path}: does not fit this run's model ({type(err).__name__}: "
                           f"{' '.join(str(err).split())[:300]})") from None


def load_parameters(model: Any, path: str | Path) -> None:
    """Put the weights and optimizer states of the SB3 save at ``path`` into ``model``.

    Only its torch tensors are read, with ``weights_only=True``.
    """
    raw, _ = read_sb3_zip(path)
    try:
        model.set_parameters(io.BytesIO(raw), exact_match=True, device=model.device)
    except (RuntimeError, ValueError, KeyError, pickle.UnpicklingError) as err:
        raise RunFileError(f"{path}: does not fit this run's model ({' '.join(str(err).split())[:300]})") from None


# ------------------------------------------------------------------------------ SB3's evolving state
def sb3_state(model: Any) -> dict[str, Any]:
    """The :data:`FROM_STATE` entries of ``model`` as a state tree (arrays, lists of episode records)."""
    return {"_last_obs": model._last_obs, "_last_episode_starts": model._last_episode_starts,
            "_last_original_obs": model._last_original_obs,
            "ep_info_buffer": None if model.ep_info_buffer is None else list(model.ep_info_buffer),
            "ep_success_buffer": None if model.ep_success_buffer is None else list(model.ep_success_buffer)}


def _state_objects(state: dict[str, Any] | None, template: Any) -> dict[str, Any]:
    if state is None:
        return dict.fromkeys(FROM_STATE)
    window = template._stats_window_size
    out = {key: state[key] for key in ("_last_obs", "_last_episode_starts", "_last_original_obs")}
    for key in ("ep_info_buffer", "ep_success_buffer"):
        out[key] = None if state[key] is None else deque(state[key], maxlen=window)
    return out


# ------------------------------------------------------------------------------------- VecNormalize
def vecnormalize_state(vecnorm: Any) -> dict[str, Any]:
    """The statistics of a ``VecNormalize`` that change while training (its settings follow from the config)."""
    def rms(r: Any) -> dict[str, np.ndarray]:
        return {"mean": np.asarray(r.mean, dtype=np.float64), "var": np.asarray(r.var, dtype=np.float64),
                "count": np.array(r.count, dtype=np.float64)}

    return {"obs_rms": rms(vecnorm.obs_rms) if vecnorm.norm_obs else None, "ret_rms": rms(vecnorm.ret_rms),
            "returns": vecnorm.returns, "old_obs": getattr(vecnorm, "old_obs", None), "old_reward": vecnorm.old_reward}


def restore_vecnormalize(vecnorm: Any, state: Any, source: str, statistics_only: bool = False) -> None:
    """Put :func:`vecnormalize_state` output back into ``vecnorm`` (built from the run's config).

    With ``statistics_only``, only the running statistics (to normalise observations for prediction, on
    any number of envs). Raises ``RunFileError`` naming ``source`` when it does not fit.
    """
    try:
        if vecnorm.norm_obs:
            _restore_rms(vecnorm.obs_rms, state["obs_rms"], "obs_rms")
        _restore_rms(vecnorm.ret_rms, state["ret_rms"], "ret_rms")
        if statistics_only:
            return
        vecnorm.returns = _array(state["returns"], "returns", vecnorm.returns.shape, vecnorm.returns.dtype)
        if state["old_obs"] is not None:
            vecnorm.old_obs = _array(state["old_obs"], "old_obs")
        vecnorm.old_reward = _array(state["old_reward"], "old_reward")
    except (KeyError, TypeError, ValueError) as err:
        raise RunFileError(f"{source}: not this run's normaliser statistics ({err})") from None


def _restore_rms(rms: Any, state: Any, name: str) -> None:
    rms.mean = _array(state["mean"], f"{name}.mean", np.shape(rms.mean), np.float64)
    rms.var = _array(state["var"], f"{name}.var", np.shape(rms.var), np.float64)
    rms.count = float(_array(state["count"], f"{name}.count", (), np.float64))


def _array(value: Any, name: str, shape: tuple | None = None, dtype: Any = None) -> np.ndarray:
    """A copy of the saved array ``value``, checked against ``shape`` and ``dtype`` when given."""
    if not isinstance(value, np.ndarray):
        raise ValueError(f"{name}: expected an array, got {type(value).__name__}")
    if shape is not None and (value.shape != tuple(shape) or value.dtype != np.dtype(dtype)):
        raise ValueError(f"{name} is {value.dtype}{list(value.shape)}, expected {np.dtype(dtype)}{list(shape)}")
    return value.copy()


# ------------------------------------------------------------------------------------ replay buffer
REPLAY_ARRAYS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def replay_buffer_state(buffer: Any) -> dict[str, Any]:
    """An SB3 ``ReplayBuffer``'s contents and write position."""
    return {"pos": int(buffer.pos), "full": bool(buffer.full)} | {
        name: getattr(buffer, name) for name in REPLAY_ARRAYS if getattr(buffer, name, None) is not None}


def restore_replay_buffer(buffer: Any, state: Any, source: str) -> None:
    """Copy :func:`replay_buffer_state` output into ``buffer`` (the model's own, built from the run's config)."""
    try:
        arrays = {name: _array(state[name], name, getattr(buffer, name).shape, getattr(buffer, name).dtype)
                  for name in REPLAY_ARRAYS if getattr(buffer, name, None) is not None}
        pos, full = state["pos"], state["full"]
        if not isinstance(pos, int) or not 0 <= pos < buffer.buffer_size or not isinstance(full, bool):
            raise ValueError(f"pos = {pos!r}, full = {full!r}: expected 0 <= pos < {buffer.buffer_size}, a boolean")
    except (KeyError, TypeError, ValueError) as err:
        raise RunFileError(f"{source}: not this run's replay buffer ({err})") from None
    for name, value in arrays.items():
        getattr(buffer, name)[...] = value
    buffer.pos, buffer.full = pos, full
