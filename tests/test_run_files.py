"""Run-folder files that run no code when read (:mod:`lobgym.state_files`): the env state saved by array
name and restored in place, bit-identically; errors that name the file and the array; and the folder
lock and leftover cleanup of :mod:`lobgym.folders`."""

from __future__ import annotations

import json
import math
import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import short_env

import lobgym
from lobgym.config import load_env_config
from lobgym.folders import FolderBusy, exclusive, remove_leftovers
from lobgym.state_files import RunFileError, named_arrays, read_json, read_state, write_state


def _steps(venv, actions: np.ndarray) -> list[dict]:
    out = []
    for a in actions:
        obs, rewards, dones, infos = venv.step(a)
        out.append({"obs": obs, "rewards": rewards, "dones": dones, "ep_return": venv._ep_return.copy(),
                    "terminal": [infos[i].get("terminal_observation") for i in np.flatnonzero(dones)],
                    "metrics": venv.sim.buffers.metrics.copy()})
    return out


@pytest.mark.parametrize("preset", ["cj2015", "cst2010"])
def test_an_env_state_saved_to_files_continues_bit_identically_in_a_fresh_env(preset, tmp_path):
    cfg = load_env_config(short_env(preset, 25, small_book=False))  # episodes end within a few dozen steps
    rng = np.random.default_rng(0)
    original = lobgym.make_vec_env(cfg, n_envs=3, seed=11)
    original.reset()
    shape = (3, original.action_space.shape[0])
    _steps(original, rng.uniform(-1, 1, (40, *shape)).astype(np.float32))
    write_state(tmp_path, "env", original.get_state())
    assert not any(isinstance(v, np.ndarray) and v.dtype == object for v in np.load(tmp_path / "env.npz").values())

    restored = lobgym.make_vec_env(cfg, n_envs=3, seed=999)  # other seeds, other history: all overwritten
    restored.reset()
    _steps(restored, rng.uniform(-1, 1, (7, *shape)).astype(np.float32))
    kernel_arrays = [a for _, a in named_arrays("state", restored.sim.state)]
    restored.set_state(read_state(tmp_path, "env"), source=str(tmp_path / "env.npz"))
    assert all(a is b for a, b in zip(kernel_arrays, (a for _, a in named_arrays("state", restored.sim.state)),
                                      strict=True))  # in place: the compiled step keeps its arrays

    actions = rng.uniform(-1, 1, (60, *shape)).astype(np.float32)
    expected, got = _steps(original, actions), _steps(restored, actions)
    assert sum(int(s["dones"].sum()) for s in expected) >= 6  # episodes ended on the way
    for t, (e, g) in enumerate(zip(expected, got, strict=True)):
        for key in e:
            np.testing.assert_array_equal(np.asarray(e[key]), np.asarray(g[key]), err_msg=f"step {t}: {key}")


#: Simulation attributes that follow from the config (everything else that holds arrays must be saved).
DERIVED = {"params", "codec", "obs_spec", "reward_spec", "_all"}
SAVED = {"state", "stats", "outcome", "rng", "reward_state", "buffers", "actions"}


@pytest.mark.parametrize("preset", ["cj2015", "cst2010"])
def test_every_array_a_simulation_holds_is_saved_or_follows_from_the_config(preset):
    venv = lobgym.make_vec_env(preset, n_envs=2, seed=0)
    holding = {name for name, value in vars(venv.sim).items()
               if isinstance(value, np.ndarray) or list(named_arrays(name, value))}
    assert holding - DERIVED == SAVED, "a new simulation array: save it in MarketMakingVecEnv.get_state"
    saved = venv.get_state()
    for part in ("state", "stats", "outcome", "buffers"):
        assert {n for n, _ in named_arrays(part, getattr(venv.sim, part))} <= set(saved)


def test_restoring_an_env_state_that_does_not_fit_names_the_file_and_the_array(tmp_path):
    venv = lobgym.make_vec_env("cj2015", n_envs=2, seed=0)
    source = str(tmp_path / "state.npz")
    state = venv.get_state()
    before = {k: v.copy() for k, v in venv.get_state().items()}
    wrong_shape = dict(state, **{"state.mid": np.zeros(3)})
    with pytest.raises(ValueError, match=rf"^{source}: env array 'state.mid' is float64\[3\]; this env \(2 Simulation "
                                         r"envs of 'cj2015'\) needs float64\[2\]$"):
        venv.set_state(wrong_shape, source=source)
    wrong_dtype = dict(state, rng=state["rng"].astype(np.int64))
    with pytest.raises(ValueError, match=rf"^{source}: env array 'rng' is int64\[2, "):
        venv.set_state(wrong_dtype, source=source)
    book = lobgym.make_vec_env("cst2010", n_envs=2, seed=0).get_state()
    with pytest.raises(ValueError, match=rf"^{source}: not the state of this env \(2 Simulation envs of 'cj2015'\): "
                                         r"missing arrays .+; unknown arrays .+ and \d+ more$"):
        venv.set_state(book, source=source)
    for key, value in venv.get_state().items():  # nothing was changed by the refused states
        np.testing.assert_array_equal(value, before[key], err_msg=key)


class _Planted:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def test_state_files_round_trip_exactly_and_never_unpickle(tmp_path):
    tree = {"floats": [math.nan, math.inf, -0.0, 0.1 + 0.2], "big": 2**127 + 3, "none": None, "flag": True,
            "nested": {"a": np.arange(6, dtype=np.uint64).reshape(2, 3), "b": (np.float32(1.5), "text")},
            "scalar": np.float64(2.5), "empty": np.zeros((0, 4), dtype=np.float32)}
    write_state(tmp_path, "s", tree)
    back = read_state(tmp_path, "s")
    assert math.isnan(back["floats"][0]) and back["floats"][1:] == [math.inf, -0.0, 0.1 + 0.2]
    assert math.copysign(1.0, back["floats"][2]) == -1.0
    assert back["big"] == 2**127 + 3 and back["none"] is None and back["flag"] is True and back["scalar"] == 2.5
    assert back["nested"]["b"] == [1.5, "text"]
    np.testing.assert_array_equal(back["nested"]["a"], tree["nested"]["a"])
    assert back["nested"]["a"].dtype == np.uint64 and back["empty"].shape == (0, 4)
    with pytest.raises(TypeError, match=r"^t\.bad: object cannot be written to a state file$"):
        write_state(tmp_path, "t", {"bad": object()})

    marker = tmp_path / "pwned"
    with open(tmp_path / "s.npz", "wb") as fh:
        np.savez(fh, a0=np.array([_Planted(marker)], dtype=object))
    with pytest.raises(RunFileError, match=r"s\.npz: unreadable arrays \(it holds pickled objects, which "
                                           r"lobgym never loads\)$"):
        read_state(tmp_path, "s")
    assert not marker.exists()
    (tmp_path / "s.npz").write_bytes(pickle.dumps(_Planted(marker)))  # not even an archive
    with pytest.raises(RunFileError, match=r"s\.npz: unreadable arrays \("):
        read_state(tmp_path, "s")
    assert not marker.exists()


def test_state_file_errors_name_the_file(tmp_path):
    write_state(tmp_path, "s", {"x": np.zeros(2)})
    (tmp_path / "s.json").write_text('{"x": {"__array__": "a7"}}')
    with pytest.raises(RunFileError, match=r"s\.npz: no array 'a7' \(named in s\.json\)$"):
        read_state(tmp_path, "s")
    (tmp_path / "s.json").write_text('{"x": ')
    with pytest.raises(RunFileError, match=r"s\.json: unreadable JSON \(Expecting value: line 1 column 7"):
        read_state(tmp_path, "s")
    with pytest.raises(RunFileError, match=r"nope\.json: missing$"):
        read_json(tmp_path / "nope.json")
    (tmp_path / "l.json").write_text("[1]")
    with pytest.raises(RunFileError, match=r"l\.json: expected a JSON object, got array$"):
        read_json(tmp_path / "l.json", expect=dict)


# -------------------------------------------------------------------------------------- folders
def test_a_folder_lock_names_its_holder_refuses_a_second_one_and_is_gone_after(tmp_path):
    with exclusive(tmp_path / "f", "study") as lock:
        holder = json.loads(lock.read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        assert {"started", "command"} <= set(holder)
        with pytest.raises(FolderBusy, match=rf"another lobgym study \(pid {os.getpid()} on "):
            with exclusive(tmp_path / "f", "study"):
                pass
    assert not lock.exists()


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / ".lock").write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(),
                                              "started": "then", "command": "lobgym study x"}))
    with exclusive(folder, "study") as lock:
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not (folder / ".lock").exists()


def test_remove_leftovers_removes_only_what_interrupted_writes_leave(tmp_path):
    ours = [tmp_path / ".results.csv.ab_12x.tmp", tmp_path / "checkpoints" / ".latest.json.q.tmp"]
    ours_dirs = [tmp_path / "checkpoints" / ".step_000000000512.x8_k", tmp_path / ".best.old", tmp_path / ".final.k2"]
    theirs = [tmp_path / ".gitignore", tmp_path / "a.tmp", tmp_path / ".lock", tmp_path / "checkpoints" / "latest.json"]
    theirs_dirs = [tmp_path / ".git", tmp_path / "checkpoints" / "step_000000000512", tmp_path / ".cache.old"]
    for d in ours_dirs + theirs_dirs:
        d.mkdir(parents=True)
    for f in ours + theirs:
        f.write_text("x")
    assert sorted(remove_leftovers(tmp_path, ("checkpoints", "missing"))) == sorted(ours + ours_dirs)
    assert all(p.exists() for p in theirs + theirs_dirs)
