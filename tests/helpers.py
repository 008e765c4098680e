"""Plain helpers shared by the tests (fixtures live in ``conftest.py``).

Imported as ``from helpers import ...``: ``conftest.py`` puts this folder on ``sys.path``, so the import works
from every sub-folder, whichever folder pytest is started from.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

from lobgym.presets import list_presets, read_yaml

#: The repository's top folder (README.md, envs/, experiments/, src/).
ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------------ env presets
def preset(name: str) -> dict:
    """Env preset ``name`` as the dict it is read into, with its name (as ``load_env_config(name)`` reads it)."""
    return read_yaml(list_presets("envs")[name]) | {"name": name}


def short_env(name: str, n_steps: int, *, small_book: bool = True, **market) -> dict:
    """Env preset ``name`` (read from its YAML, without a name) with an ``n_steps`` horizon; a book preset also
    gets a 10-step warm-up and a small book (64 levels, 256 orders) unless ``small_book`` is false.
    ``market`` then overrides any item of ``market``."""
    cfg = read_yaml(list_presets("envs")[name])
    m = cfg["market"]
    m["horizon"] = n_steps * m["dt"]
    if small_book and m.get("kind") == "book":
        m.update({"warmup": 10 * m["dt"], "levels": 64, "max_orders": 256})
    m.update(market)
    return cfg


def short_cst2010(**market) -> dict:
    """cst2010 with a 20-step (20-second) episode after a 30-second warm-up, on a small book (compile and run
    time count in CI); ``market`` overrides any item of ``market``."""
    return short_env("cst2010", 20, **{"horizon": 20, "dt": 1.0, "warmup": 30, **market})


# -------------------------------------------------------------------------------- VecEnv traces
def vec_trace(venv, actions) -> list[dict]:
    """Everything a VecEnv step hands back, for each step of ``actions`` (T, N, A): observations,
    rewards, dones, every info dict read out in full (as SB3's info buffer reads them), the count of
    episodes that ended and the running returns."""
    out = [{"obs": venv.reset().copy()}]
    for a in actions:
        obs, rewards, dones, infos = venv.step(a)
        out.append({"obs": obs, "rewards": rewards, "dones": dones, "n_done": venv.sim.n_done,
                    "ep_return": venv._ep_return.copy(), "metrics": venv.sim.buffers.metrics.copy(),
                    "infos": [_plain(infos[i]) for i in range(len(infos))]})
    return out


def _plain(info: dict) -> dict:
    info = dict(info)
    if "episode" in info:
        info["episode"] = {k: v for k, v in info["episode"].items() if k != "t"}  # wall time differs
    return info


def assert_traces_equal(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for t, (x, y) in enumerate(zip(a, b, strict=True)):
        assert x.keys() == y.keys()
        for k in x:
            if k == "infos":
                for i, (u, v) in enumerate(zip(x[k], y[k], strict=True)):
                    assert u.keys() == v.keys(), f"step {t}, env {i}: info keys {sorted(u)} != {sorted(v)}"
                    for key in u:
                        np.testing.assert_equal(u[key], v[key], err_msg=f"step {t}, env {i}: info[{key!r}]")
            else:
                np.testing.assert_array_equal(x[k], y[k], err_msg=f"step {t}: {k}")


def episode_ends(trace: list[dict]) -> tuple[int, int]:
    """(dones, dones whose info carries a terminal observation and an episode record) over a trace."""
    dones = sum(int(s["dones"].sum()) for s in trace[1:])
    full = sum(1 for s in trace[1:] for i in np.flatnonzero(s["dones"])
               if {"terminal_observation", "episode", "episode_metrics"} <= s["infos"][i].keys())
    return dones, full


# ------------------------------------------------------------------------------ the CLI, as a user runs it
def python_env() -> dict[str, str]:
    """The variables a child Python needs to find this lobgym and its numba cache (and nothing else)."""
    keep = ("PYTHONPATH", "HOME", "NUMBA_CACHE_DIR", "VIRTUAL_ENV", "LANG")
    return {k: os.environ[k] for k in keep if k in os.environ}


def run_lobgym(*args: str, check: bool = True, env: dict[str, str] | None = None,
               timeout: float | None = None) -> subprocess.CompletedProcess:
    """``python -m lobgym *args`` in a subprocess, its output captured as text. ``env`` is the child's whole
    environment; by default a clean one: PATH, COLUMNS=200 and :func:`python_env`. ``check``: a non-zero exit
    fails the test, showing both outputs."""
    if env is None:
        env = {"COLUMNS": "200", "PATH": "/usr/bin:/bin", **python_env()}
    proc = subprocess.run([sys.executable, "-m", "lobgym", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"lobgym {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


# ------------------------------------------------------------------------------------ training runs
def torch_members(model_zip: Path) -> dict[str, bytes]:
    """The torch members of an SB3 save: policy weights and every optimizer's state."""
    with zipfile.ZipFile(model_zip) as zf:
        members = {n: zf.read(n) for n in zf.namelist() if n.endswith(".pth")}
    assert "policy.pth" in members and any("optimizer" in n for n in members), sorted(members)
    return members


def tb_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of a run's TensorBoard log, read with TensorBoard's own reader: tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def checkpoint_steps(run_dir: Path) -> list[int]:
    """The timesteps of the checkpoints kept in a run folder."""
    return sorted(int(p.name.removeprefix("step_")) for p in (run_dir / "checkpoints").glob("step_*"))


def rewound_copy(run_dir: Path, dest: Path, step: int) -> Path:
    """A copy of ``run_dir`` whose newest checkpoint is the one at ``step``: the state of a run killed
    right after that checkpoint (the later checkpoints and models are left in place, as a kill leaves them)."""
    shutil.copytree(run_dir, dest)
    name = f"step_{step:012d}"
    assert (dest / "checkpoints" / name).is_dir(), checkpoint_steps(dest)
    (dest / "checkpoints" / "latest.json").write_text(json.dumps({"step": step, "path": name}))
    return dest


# ------------------------------------------------------------------ the book engine: one isolated queue
#: The price (in ticks) of the ask wall of :func:`isolated_bid_queue`; the queue it isolates is one tick below.
WALL = 10_000


def isolated_bid_queue(n_books: int, max_orders: int, seed: int):
    """``n_books`` books (64 levels, ``max_orders`` orders) under a wall of asks at :data:`WALL` that nothing can
    move, the flow's last prices at ``WALL`` and ``WALL - 1``: a flow whose bids arrive one tick below the wall
    builds a single queue there. Returns (book, fill log, flow state, rng seeded ``seed`` + book index)."""
    from lobgym.market.book import flow as F
    from lobgym.market.book import lob as B
    from lobgym.market.constants import ASK
    from lobgym.market.rng import make_rng, seed_rng

    book, fills, flow = B.make_book(n_books, 64, max_orders), B.make_fill_log(n_books, 64), F.make_flow_state(n_books)
    events = np.zeros((n_books, 1, 5), dtype=np.int64)
    events[:, 0] = [B.EV_LIMIT, ASK, WALL, 10**12, B.OWNER_BACKGROUND]  # an ask wall nothing can move
    for i in range(n_books):
        B.reset_book(book, i, WALL - 32)
    B.apply_events(book, fills, events, np.zeros((n_books, 1), dtype=np.int64), np.zeros((n_books, 1), dtype=np.int64))
    flow.last_ask[:] = WALL
    flow.last_bid[:] = WALL - 1
    rng = make_rng(n_books)
    seed_rng(rng, np.arange(n_books, dtype=np.uint64) + seed)
    return book, fills, flow, rng


def queue_below_wall(book) -> np.ndarray:
    """Every book's count of resting orders one tick below :data:`WALL` (a view)."""
    return book.lvl_count[:, WALL - 1 - book.base_tick[0]]


def sampled_queue_lengths(book, flow, params, rng, fills, burn_in: int, samples: int) -> np.ndarray:
    """:func:`queue_below_wall` at each whole second of flow after the first ``burn_in``, for ``samples`` seconds,
    all books' samples in one array."""
    from lobgym.market.book import flow as F

    counts = []
    for t in range(1, burn_in + samples + 1):
        F.advance(book, flow, params, rng, fills, float(t))
        if t > burn_in:
            counts.append(queue_below_wall(book).copy())
    return np.concatenate(counts)
