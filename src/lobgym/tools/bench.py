"""``lobgym bench``: env-steps per second, single and batched, against a bare random-number loop.

The bare loop advances the same per-env generators and draws exactly the random numbers one env
step draws (two fill uniforms, the mid's noise, jumps if any), with the same one-kernel-call-per-step
granularity and the same threading as the env: it is the speed limit of any env built on these
random streams, and the benchmark reports each batched env's throughput as a fraction of it.

``lobgym bench --all`` runs a declarative benchmark spec (``experiments/env_benchmark.yaml``,
``kind: benchmark``; :class:`BenchSpec`) with :func:`run_spec`: every market's presets at every N,
each next to its bare loop, the book engine's events/s, memory per env and training throughput, all
in one run, written as ``benchmark.json``, ``throughput.png`` and a ``README.md`` report.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numba
import numpy as np
from pydantic import Field, field_validator, model_validator

from lobgym import market_kinds
from lobgym.book_simulation import BOOK_PARALLEL_MIN_ENVS
from lobgym.config import (
    AnyEnvConfig,
    BookEnvConfig,
    ConfigError,
    EnvConfig,
    _load,
    load_env_config,
    load_training_config,
)
from lobgym.config_base import Strict
from lobgym.io import write_atomic, write_json_atomic, write_text_atomic
from lobgym.market._jit import kernel, parallel_kernel
from lobgym.market.constants import NOISE_BINOMIAL, STREAM_FILLS, STREAM_MARKET
from lobgym.market.reduced_form.model import advance_mid, ask_price, bid_price, fill_events
from lobgym.market.rng import make_rng, normal, poisson_from_uniform, seed_rng, uniform
from lobgym.progress import ProgressLines, bar, is_terminal
from lobgym.provenance import machine, provenance
from lobgym.simulation import PARALLEL_MIN_ENVS, market_params
from lobgym.simulation_base import PARALLEL_CHUNKS


def _bare(rng, p, acc):
    for i in numba.prange(rng.shape[0]):
        x = uniform(rng, i, STREAM_FILLS) + uniform(rng, i, STREAM_FILLS)
        if p.noise == NOISE_BINOMIAL:
            x += uniform(rng, i, STREAM_MARKET)
        else:
            x += normal(rng, i, STREAM_MARKET)
        if p.jump_rate > 0.0:
            for _ in range(poisson_from_uniform(uniform(rng, i, STREAM_MARKET), p.jump_rate * p.dt)):
                x += normal(rng, i, STREAM_MARKET)
        acc[i] += x


_bare_serial = kernel(_bare)
_bare_parallel = parallel_kernel(_bare)


# The limit row: the same reduced-form market in a minimal kernel - the engine's own draws and formulas
# (quote prices, fills, mid move), cash, inventory and the horizon's reset, and nothing else (no action
# decoding, inventory limit, reward terms, observation, statistics, infos or Python around the call).
# What the env reaches of it is what the framework costs.
@kernel
def _minimal_range(lo, hi, rng, p, bid_depth, ask_depth, mid, cash, inventory, step):
    for i in range(np.uint64(lo), np.uint64(hi)):  # unsigned, as the env's chunks: no index wraparound
        m = mid[i]
        bid = bid_price(m, bid_depth, p.tick_size)
        ask = ask_price(m, ask_depth, p.tick_size)
        u_bid = uniform(rng, i, STREAM_FILLS)
        u_ask = uniform(rng, i, STREAM_FILLS)
        bought = fill_events(u_bid, m - bid if p.tick_size > 0.0 else bid_depth, p)
        sold = fill_events(u_ask, ask - m if p.tick_size > 0.0 else ask_depth, p)
        cash[i] += sold * ask - bought * bid
        inventory[i] += bought - sold
        mid[i] = advance_mid(m, p, rng, i)
        step[i] += 1
        if step[i] >= p.n_steps:
            step[i] = 0
            mid[i] = p.s0
            cash[i] = 0.0
            inventory[i] = 0


def _minimal(rng, p, bid_depth, ask_depth, mid, cash, inventory, step):
    _minimal_range(0, mid.shape[0], rng, p, bid_depth, ask_depth, mid, cash, inventory, step)


def _minimal_chunked(rng, p, bid_depth, ask_depth, mid, cash, inventory, step):
    n = mid.shape[0]
    chunks = min(n, PARALLEL_CHUNKS)
    for c in numba.prange(chunks):  # writes nothing itself: each chunk's kernel does
        _minimal_range(c * n // chunks, (c + 1) * n // chunks, rng, p, bid_depth, ask_depth, mid, cash, inventory,
                       step)


_minimal_serial = kernel(_minimal)
_minimal_parallel = parallel_kernel(_minimal_chunked)


def minimal_kernel_rate(cfg: EnvConfig, n_envs: int, bid_depth: float, ask_depth: float, parallel: bool,
                        min_seconds: float) -> float:
    """Env-steps/s of the minimal kernel of ``cfg``'s market (the limit row) quoting fixed depths."""
    p = market_params(cfg)
    rng = make_rng(n_envs)
    seed_rng(rng, np.arange(n_envs, dtype=np.uint64))
    mid, cash = np.full(n_envs, p.s0), np.zeros(n_envs)
    inventory, step = np.zeros(n_envs, dtype=np.int64), np.zeros(n_envs, dtype=np.int64)
    fn = _minimal_parallel if parallel else _minimal_serial
    return _rate(lambda: fn(rng, p, float(bid_depth), float(ask_depth), mid, cash, inventory, step), n_envs,
                 min_seconds)


@dataclass
class BenchRow:
    """One measurement: ``steps_per_s`` env-steps per second (N envs x steps / wall time)."""

    what: str
    n_envs: int
    steps_per_s: float
    bare_steps_per_s: float | None = None
    events_per_step: float | None = None  #: order-book envs: background events per env step
    memory_bytes: int | None = None  #: bytes of the simulation's per-env arrays, all N envs (see sim_memory)
    threads: int = 1  #: threads the env's (and the bare loop's) kernels run on: numba's when parallel
    limit_steps_per_s: float | None = None  #: the minimal kernel of the same market, N and threads

    @property
    def limit_ratio(self) -> float | None:
        """The env's speed over the minimal kernel's, ``None`` without one."""
        return self.steps_per_s / self.limit_steps_per_s if self.limit_steps_per_s else None

    @property
    def ratio(self) -> float | None:
        """The env's speed over the bare loop's, ``None`` without a bare loop."""
        return self.steps_per_s / self.bare_steps_per_s if self.bare_steps_per_s else None


def _rate(fn, n_envs: int, min_seconds: float) -> float:
    """Env-steps/s of ``fn`` (one call = one step of ``n_envs`` envs), best of three timed runs."""
    fn()
    calls = 1
    while True:  # grow the batch of calls until one run lasts long enough to time well
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        if time.perf_counter() - t0 >= min_seconds / 3:
            break
        calls *= 2
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        best = max(best, calls * n_envs / (time.perf_counter() - t0))
    return best


def bench_single(cfg: EnvConfig, min_seconds: float) -> BenchRow:
    """One env through ``gymnasium.make`` (with its default wrappers) and ``env.step``."""
    import gymnasium

    from lobgym import ENV_ID

    env = gymnasium.make(ENV_ID, config=cfg)
    env.reset(seed=0)
    action = np.zeros(env.action_space.shape, dtype=np.float32)

    def one_step():
        if env.step(action)[2]:
            env.reset()

    return BenchRow("single env, gymnasium.make + env.step", 1, _rate(one_step, 1, min_seconds))


def bench_batched(cfg: EnvConfig, n_envs: int, min_seconds: float) -> list[BenchRow]:
    """``MarketMakingVecEnv.step`` (SB3 API) for ``n_envs`` envs, with the bare loop and the minimal kernel.

    The minimal kernel (:func:`minimal_kernel_rate`) quotes the depths the env's zero action decodes to, on
    as many threads as the env uses.
    """
    from lobgym.vec_env import make_vec_env

    venv = make_vec_env(cfg, n_envs=n_envs, seed=0)
    venv.reset()
    actions = np.zeros((n_envs, venv.sim.action_dim), dtype=np.float32)

    def vec_step():
        venv.step(actions)

    parallel = venv.sim.parallel
    rng = make_rng(n_envs)
    seed_rng(rng, np.arange(n_envs, dtype=np.uint64))
    acc = np.zeros(n_envs)
    p = market_params(cfg)
    bare_kernel = _bare_parallel if parallel else _bare_serial

    def bare_step():
        bare_kernel(rng, p, acc)

    bare = _rate(bare_step, n_envs, min_seconds)
    env_rate = _rate(vec_step, n_envs, min_seconds)
    out = venv.sim.outcome  # the depths the zero action quotes (NaN: that side does not quote)
    depths = [float(d) if np.isfinite(d) else np.inf for d in (out.bid_depth[0], out.ask_depth[0])]
    limit = minimal_kernel_rate(cfg, n_envs, *depths, parallel=parallel, min_seconds=min_seconds)
    return [BenchRow("batched VecEnv.step (SB3 API)", n_envs, env_rate, bare, memory_bytes=sim_memory(venv.sim)[0],
                     threads=numba.get_num_threads() if parallel else 1, limit_steps_per_s=limit)]


def bench_crossover(cfg: AnyEnvConfig, sizes: tuple[int, ...], min_seconds: float) -> list[dict]:
    """Serial against threaded kernels of ``cfg``'s env, per batch size: where threads start to pay.

    Each row: ``n_envs``, the SB3 ``VecEnv.step`` env-steps/s with each kernel, their ratio, and which one
    lobgym picks at that size (the market kind's ``parallel_min_envs``).
    """
    from lobgym.vec_env import make_vec_env

    rows = []
    for n in sizes:
        rates = {}
        for parallel in (False, True):
            venv = make_vec_env(cfg, n_envs=n, seed=0, parallel=parallel)
            venv.reset()
            actions = np.zeros((n, venv.sim.action_dim), dtype=np.float32)
            rates[parallel] = _rate(lambda v=venv, a=actions: v.step(a), n, min_seconds)
        picks = "threaded" if n >= venv.sim.parallel_min_envs else "serial"
        rows.append({"n_envs": n, "serial_steps_per_s": rates[False], "threaded_steps_per_s": rates[True],
                     "threaded_over_serial": rates[True] / rates[False], "lobgym_picks": picks,
                     "threads": numba.get_num_threads()})
    return rows


def _bare_flow(rng, n_events, acc):
    for i in range(rng.shape[0]):
        x = 0.0
        for _ in range(n_events[i]):  # per event: an exponential waiting time and a uniform choice
            x += -math.log(1.0 - uniform(rng, i, STREAM_MARKET)) + uniform(rng, i, STREAM_MARKET)
        acc[i] += x


def _bare_flow_prange(rng, n_events, acc):
    for i in numba.prange(rng.shape[0]):
        x = 0.0
        for _ in range(n_events[i]):
            x += -math.log(1.0 - uniform(rng, i, STREAM_MARKET)) + uniform(rng, i, STREAM_MARKET)
        acc[i] += x


_bare_flow_kernel = kernel(_bare_flow)
_bare_flow_parallel = parallel_kernel(_bare_flow_prange)


def bench_book_flow(n_books: int = 100, seconds_simulated: float = 200.0) -> dict:
    """Book events per second under the CST (2010) flow on one core, next to a bare loop.

    The bare loop draws the same random numbers per event. Also measures the memory of 1000 books with a
    200-level window.
    """
    from lobgym.market.book import flow as F
    from lobgym.market.book import lob as B

    params = F.cst_params(F.CST2010["lam_table"], F.CST2010["theta_table"], F.CST2010["mu"], levels=10,
                               k=F.CST2010["k"], alpha=F.CST2010["alpha"])
    book, fills, state = B.make_book(n_books, 200, 1024), B.make_fill_log(n_books, 256), F.make_flow_state(n_books)
    rng = make_rng(n_books)
    seed_rng(rng, np.arange(n_books, dtype=np.uint64))
    for i in range(n_books):
        F.seed_book(book, state, fills, i, 10_000, 10, 3, 1)
    F.advance(book, state, params, rng, fills, 1.0)  # compile, and leave the initial shape
    before = state.events.sum(axis=1).copy()
    t0 = time.perf_counter()
    for t in range(2, int(seconds_simulated) + 2):
        F.advance(book, state, params, rng, fills, float(t))
    elapsed = time.perf_counter() - t0
    per_book = state.events.sum(axis=1) - before
    acc = np.zeros(n_books)
    _bare_flow_kernel(rng, per_book, acc)
    t0 = time.perf_counter()
    _bare_flow_kernel(rng, per_book, acc)
    bare_elapsed = time.perf_counter() - t0
    thousand = B.make_book(1000, 200, 1024)
    memory = sum(a.nbytes for a in thousand)
    return {"what": "book events under CST (2010) flow, one core", "n_books": n_books,
            "events": int(per_book.sum()), "events_per_s": float(per_book.sum() / elapsed),
            "bare_events_per_s": float(per_book.sum() / bare_elapsed),
            "memory_1000_books_200_levels_1024_orders_bytes": int(memory)}


def bench_rows(cfg: AnyEnvConfig, n_envs: int, min_seconds: float, gym_vector: bool = False) -> list[BenchRow]:
    """The rows of ``n_envs`` envs of ``cfg``: its market kind's (:mod:`lobgym.market_kinds`), the env's first.

    With ``gym_vector`` also ``gymnasium.make_vec``'s (:func:`bench_gym_vector`).
    """
    rows = market_kinds.of(cfg).load("bench_rows")(cfg, n_envs, min_seconds)
    return rows + [bench_gym_vector(cfg, n_envs, min_seconds)] if gym_vector else rows


#: ``gymnasium.make_vec(..., vectorization_mode="sync")`` loops over N single envs in Python: measured
#: up to this N (beyond, one timed call takes seconds and says nothing new).
SYNC_VECTOR_MAX_ENVS = 1000


def bench_gym_vector(cfg: AnyEnvConfig, n_envs: int, min_seconds: float, mode: str | None = None) -> BenchRow:
    """``VectorEnv.step`` of ``gymnasium.make_vec(ENV_ID, num_envs=n_envs, config=cfg)``.

    That is the registered :class:`~lobgym.gym_vector.MarketMakingVectorEnv` (``mode`` None), or with
    ``mode="sync"`` Gymnasium's ``SyncVectorEnv`` over ``n_envs`` single envs (what ``make_vec`` gives an
    env without a ``vector_entry_point``).
    """
    import gymnasium

    from lobgym import ENV_ID

    envs = gymnasium.make_vec(ENV_ID, num_envs=n_envs, config=cfg, **({"vectorization_mode": mode} if mode else {}))
    envs.reset(seed=0)
    actions = np.zeros(envs.action_space.shape, dtype=np.float32)

    def vec_step():
        envs.step(actions)

    sim = getattr(envs, "sim", None)
    what = ("gymnasium.make_vec VectorEnv.step" if mode is None
            else f"gymnasium.make_vec({mode}) SyncVectorEnv.step")
    row = BenchRow(what, n_envs, _rate(vec_step, n_envs, min_seconds),
                   threads=numba.get_num_threads() if sim is not None and sim.parallel else 1)
    envs.close()
    return row


def bench_book_rows(cfg: BookEnvConfig, n_envs: int, min_seconds: float) -> list[BenchRow]:
    """The order-book rows of ``n_envs`` envs: :func:`bench_book_env`."""
    return [bench_book_env(cfg, n_envs, min_seconds)]


def bench_book_env(cfg: BookEnvConfig, n_envs: int, min_seconds: float) -> BenchRow:
    """``MarketMakingVecEnv.step`` of ``n_envs`` order-book envs, next to a bare loop.

    The agent quotes one lot a tick outside the mid on both sides; the bare loop draws the same random
    numbers (per env step: the latency draws, and per background event a waiting time and a choice).

    ``events_per_step`` counts every background event the engine applied, the warm-up of the
    episodes that auto-reset included (each episode starts with ``market.warmup`` seconds of flow).
    """
    from lobgym.book_spaces import encode_book_action
    from lobgym.vec_env import make_vec_env

    venv = make_vec_env(cfg, n_envs=n_envs, seed=0)
    venv.reset()
    actions = np.repeat(encode_book_action(venv.sim.codec, 1, 1, 1, 1)[None], n_envs, axis=0)
    out, stats, dones = venv.sim.outcome, venv.sim.stats, venv.sim.buffers.dones
    count = [0, 0]  # env steps, background events

    def vec_step():
        venv.step(actions)
        count[0] += n_envs
        count[1] += int(out.events.sum()) + int(stats.warmup_events[dones].sum())

    rate = _rate(vec_step, n_envs, min_seconds)
    per_env_step = count[1] / count[0]
    rng = make_rng(n_envs)
    seed_rng(rng, np.arange(n_envs, dtype=np.uint64))
    acc = np.zeros(n_envs)
    draws = np.full(n_envs, int(round(per_env_step)) + 1)  # + 1: the two latency uniforms
    bare_kernel = _bare_flow_parallel if venv.sim.parallel else _bare_flow_kernel  # the env's threading

    def bare_step():
        bare_kernel(rng, draws, acc)

    what = f"order-book VecEnv.step ({cfg.market.flow.model} flow)"
    return BenchRow(what, n_envs, rate, _rate(bare_step, n_envs, min_seconds), events_per_step=per_env_step,
                    memory_bytes=sim_memory(venv.sim)[0], threads=numba.get_num_threads() if venv.sim.parallel else 1)


#: Simulation attributes shared by all envs (config, parameters, specs), left out of the memory per env.
_SHARED_ATTRS = frozenset({"cfg", "params", "codec", "obs_spec", "reward_spec"})


def sim_memory(sim) -> tuple[int, int]:
    """``(per_env, other)``: bytes of the numpy arrays a simulation holds.

    The arrays of a :class:`~lobgym.simulation.Simulation` or :class:`~lobgym.book_simulation.BookSimulation`
    (state, book, flow, fill log, episode statistics, step outcome, generators, reward state, buffers,
    actions), split into arrays with one row per env and the rest (small fixed-size scratch). The shared
    config and parameters are left out; views count once, as their base array.
    """
    n = sim.n_envs
    seen: set[int] = set()
    totals = [0, 0]

    def visit(x) -> None:
        if isinstance(x, np.ndarray):
            while isinstance(x.base, np.ndarray):
                x = x.base
            if id(x) not in seen:
                seen.add(id(x))
                totals[0 if x.ndim and x.shape[0] == n else 1] += x.nbytes
        elif isinstance(x, tuple):
            for v in x:
                visit(v)

    for key, value in vars(sim).items():
        if key not in _SHARED_ATTRS:
            visit(value)
    return totals[0], totals[1]


def import_and_first_step_seconds(env: str) -> float:
    """Wall time of a fresh interpreter importing lobgym and taking one env step.

    The numba cache is warm: the measurement runs twice and reports the second.
    """
    code = (
        "import time; t = time.perf_counter(); import gymnasium, lobgym, numpy as np; "
        f"e = gymnasium.make(lobgym.ENV_ID, config={env!r}); e.reset(seed=0); "
        "e.step(np.zeros(e.action_space.shape, dtype=np.float32)); print(time.perf_counter() - t)"
    )
    out = ""
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def bench_training(env: str, agent: str, timesteps: int) -> dict:
    """SB3 training throughput with a preset, and the share of wall time spent inside the env.

    The run is :func:`lobgym.agents.training.new_model` on the preset's batched env (as ``lobgym
    train`` builds it, without evaluation and checkpoint callbacks); a wrapper right above the
    lobgym vec env times ``reset``, ``step_async`` and ``step_wait``, so SB3's own wrappers
    (``VecNormalize``) count as training time, not env time. SB3's reads of the infos are timed
    apart (``info_read_seconds``).
    """
    import torch
    from stable_baselines3.common.vec_env import VecEnvWrapper, VecNormalize

    from lobgym.agents.training import RunConfig, make_controller, make_training_env, new_model
    from lobgym.config import load_training_config, with_interface

    class Timed(VecEnvWrapper):
        def __init__(self, venv):
            super().__init__(venv)
            self.seconds = 0.0

        def reset(self):
            t = time.perf_counter()
            obs = self.venv.reset()
            self.seconds += time.perf_counter() - t
            return obs

        def step_async(self, actions):
            t = time.perf_counter()
            self.venv.step_async(actions)
            self.seconds += time.perf_counter() - t

        def step_wait(self):
            t = time.perf_counter()
            out = self.venv.step_wait()
            self.seconds += time.perf_counter() - t
            return out

    cfg = load_training_config(agent)
    run_cfg = RunConfig(with_interface(load_env_config(env), cfg.interface), cfg, 0, timesteps)
    torch.set_num_threads(cfg.torch_threads)
    venv = make_training_env(run_cfg)
    timed = Timed(venv.venv if isinstance(venv, VecNormalize) else venv)
    if isinstance(venv, VecNormalize):
        venv.venv = timed
    else:
        venv = timed
    model = new_model(run_cfg, venv, make_controller(cfg))
    # SB3 reads every env's info at every step (its episode buffer): timed too, since that read is
    # where lazily built infos would cost
    read_infos, info_seconds = model._update_info_buffer, [0.0]

    def timed_read(infos, dones=None):
        t = time.perf_counter()
        read_infos(infos, dones)
        info_seconds[0] += time.perf_counter() - t

    model._update_info_buffer = timed_read
    t = time.perf_counter()
    model.learn(timesteps)
    total = time.perf_counter() - t
    return {"what": f"{cfg.kind.upper()} training ({cfg.name})", "env": run_cfg.env.name, "agent": cfg.name,
            "n_envs": cfg.n_envs, "timesteps": model.num_timesteps, "seconds": total,
            "timesteps_per_s": model.num_timesteps / total, "env_seconds": timed.seconds,
            "env_share": timed.seconds / total, "info_read_seconds": info_seconds[0],
            "info_read_share": info_seconds[0] / total}


def run(env: str = "as2008", n_envs: tuple[int, ...] = (1, 100, 1000, 10000), min_seconds: float = 1.0,
        startup: bool = True, book: bool = True, train: tuple[str, ...] = (), train_timesteps: int = 50_000,
        progress: bool = False, gym_vector: bool = True) -> dict:
    """All measurements, as a dict ready for JSON, with the run's provenance (machine, versions, ...).

    ``progress`` shows them as they run (a bar on a terminal, plain lines elsewhere). ``gym_vector`` adds,
    per N, ``gymnasium.make_vec``'s VectorEnv and (N <= :data:`SYNC_VECTOR_MAX_ENVS`) its SyncVectorEnv,
    and their speed over the SB3 VecEnv's as ``result["gym_vector"]``.
    """
    cfg = load_env_config(env)
    record = provenance()
    book_env = book and cfg.market.kind != "book"
    steps = _Steps(1 + len(n_envs) + startup + book + book_env + len(train), progress)
    with steps:
        steps.next("single env")
        rows = [bench_single(cfg, min_seconds)]
        ratios = []
        for n in n_envs:
            steps.next(f"N = {n:,}")
            batched = bench_rows(cfg, n, min_seconds, gym_vector=gym_vector)
            rows += batched
            if gym_vector:
                sync = bench_gym_vector(cfg, n, min_seconds, "sync") if n <= SYNC_VECTOR_MAX_ENVS else None
                rows += [sync] if sync else []
                vec_env, make_vec = batched[0].steps_per_s, batched[-1].steps_per_s
                ratios.append({"n_envs": n, "make_vec_over_vec_env": make_vec / vec_env,
                               "make_vec_over_sync": make_vec / sync.steps_per_s if sync else None})
        result = {
            "env": cfg.name,
            "threads": numba.get_num_threads(),
            "rows": [asdict(r) | {"ratio_to_bare": r.ratio, "ratio_to_limit": r.limit_ratio} for r in rows],
            "gym_vector": ratios,
        }
        if startup:
            steps.next("import + first step")
            result["import_and_first_step_s"] = import_and_first_step_seconds(env)
        if book:
            steps.next("book engine events/s")
            result["book_flow"] = bench_book_flow()
            if book_env:
                steps.next("order-book env cst2010")
                result["book_env"] = asdict(row := bench_book_env(load_env_config("cst2010"), 1000, min_seconds)) | {
                    "ratio_to_bare": row.ratio}
        for agent in train:
            steps.next(f"training {agent}")
            result.setdefault("training", []).append(bench_training(env, agent, train_timesteps))
    return result | _finish_record(record)


def _finish_record(record: dict[str, Any]) -> dict[str, Any]:
    """A :func:`~lobgym.provenance.provenance` record taken at the start of a benchmark, completed at its end.

    Adds the load average at start and end, and numba's threading layer (known once a parallel kernel has
    run).
    """
    record = dict(record)
    m = dict(record["machine"])
    m["load_average_start"] = m.pop("load_average")
    m["load_average_end"] = list(os.getloadavg())
    m["numba_threading_layer"] = machine()["numba_threading_layer"]
    record["machine"] = m
    return record


class _Steps:
    """Progress over a benchmark's measurements.

    A transient rich bar on a terminal (redrawn only between measurements: no refresh thread competes
    with the timed kernels for the cores), else a plain line on stdout as each measurement starts.
    """

    def __init__(self, total: int, enabled: bool):
        self.done = -1
        self.lines = ProgressLines("bench", total, "measurements") if enabled and not is_terminal() else None
        self.bar = bar("bench", "{task.description}", remaining=False, disable=not enabled or self.lines is not None,
                       transient=True, auto_refresh=False)
        self.task = self.bar.add_task("", total=total)

    def __enter__(self) -> _Steps:
        self.bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.update(self.task, completed=max(self.done + 1, 0), refresh=True)
        self.bar.stop()
        if self.lines is not None and exc[0] is None:
            self.lines.done = self.done + 1
            self.lines.end("done")

    def next(self, label: str) -> None:
        """The next measurement starts."""
        self.done += 1
        self.bar.update(self.task, completed=self.done, description=label, refresh=True)
        if self.lines is not None:
            self.lines.update(self.done, f"now {label}", force=True)


# ------------------------------------------------------------------------------ the benchmark study
MARKET_TITLES = {"reduced_form": "reduced-form market", "book": "order-book market"}


class BenchMarketSpec(Strict):
    """The env presets of one market and the batch sizes to time them at."""

    envs: list[str] = Field(min_length=1, description="env preset names or YAML paths")
    n_envs: list[int] = Field(min_length=1, description="batch sizes N of MarketMakingVecEnv.step")
    single: bool = Field(True, description="also time one env through gymnasium.make + env.step")

    @field_validator("n_envs")
    @classmethod
    def _sizes(cls, v):
        if any(n < 1 for n in v) or len(set(v)) != len(v):
            raise ValueError("batch sizes must be distinct integers >= 1, e.g. [1, 10, 100]")
        return v


class BookFlowBenchSpec(Strict):
    """The book engine alone under the CST (2010) flow, one core (:func:`bench_book_flow`)."""

    books: int = Field(100, gt=0, description="independent books")
    seconds: float = Field(200.0, gt=0, description="seconds of flow simulated per book")


class TrainingBenchSpec(Strict):
    """SB3 training throughput and the env's share of it (:func:`bench_training`)."""

    agents: list[str] = Field(min_length=1, description="training preset names or YAML paths (ppo, sac, ...)")
    env: str = Field("as2008", description="env preset name or YAML path")
    timesteps: int = Field(50_000, gt=0, description="timesteps per training measurement")


class BenchSpec(Strict):
    """A benchmark spec (``kind: benchmark``): what one run of :func:`run_spec` measures.

    Env-steps/s of each market's presets at each N next to the bare loop, book engine events/s, memory
    per env, and optionally training throughput, all in one run.
    """

    kind: Literal["benchmark"]
    name: str = "env_benchmark"
    description: str = ""
    seconds: float = Field(1.0, gt=0, description="minimum timed seconds per measurement")
    reduced_form: BenchMarketSpec | None = Field(None, description="reduced-form env presets and their N")
    book: BenchMarketSpec | None = Field(None, description="order-book env presets and their N")
    book_flow: BookFlowBenchSpec | None = Field(None, description="book engine events/s (true: the defaults)")
    memory: bool = Field(True, description="report the simulation's bytes per env at each N")
    startup: bool = Field(False, description="time import + make + reset + first step in a fresh process "
                                             "(the first reduced-form env, else the first book env)")
    training: TrainingBenchSpec | None = Field(None, description="training throughput with these presets")

    @field_validator("book_flow", mode="before")
    @classmethod
    def _flag(cls, v):
        if isinstance(v, bool):
            return {} if v else None
        if v is not None and not isinstance(v, dict | BookFlowBenchSpec):
            raise ValueError("allowed: true, false, or a mapping {books: 100, seconds: 200}")
        return v

    @model_validator(mode="after")
    def _check(self) -> BenchSpec:
        if self.reduced_form is None and self.book is None and self.book_flow is None and self.training is None:
            raise ValueError("nothing to measure: give at least one of reduced_form, book, book_flow, training")
        for market in ("reduced_form", "book"):
            group = getattr(self, market)
            for env in group.envs if group is not None else ():
                try:
                    cfg = load_env_config(env)
                except ConfigError as err:
                    raise ValueError(f"{market}.envs: {env!r}: {err}") from None
                if (kind := cfg.market.kind) != market:
                    raise ValueError(f"{market}.envs: {env!r} has market.kind = {kind}; allowed here: "
                                     f"{MARKET_TITLES[market]} envs only (list it under {kind}.envs)")
        if self.training is not None:
            for agent in self.training.agents:
                try:
                    load_training_config(agent)
                except ConfigError as err:
                    raise ValueError(f"training.agents: {agent!r}: {err}") from None
            try:
                load_env_config(self.training.env)
            except ConfigError as err:
                raise ValueError(f"training.env = {self.training.env!r}: {err}") from None
        return self


def load_bench_spec(spec: str | Path | dict | BenchSpec) -> BenchSpec:
    """A benchmark spec from a name in ``experiments/`` (``env_benchmark``), a YAML path or a dict."""
    return _load(BenchSpec, "experiments", spec)


def _row(market: str, env: str, r: BenchRow, memory: bool) -> dict[str, Any]:
    row = {"market": market, "env": env} | asdict(r) | {"ratio_to_bare": r.ratio, "ratio_to_limit": r.limit_ratio}
    row["events_per_s"] = r.steps_per_s * r.events_per_step if r.events_per_step is not None else None
    if memory and r.memory_bytes is not None:
        row["memory_bytes_per_env"] = r.memory_bytes / r.n_envs
    else:
        row["memory_bytes"] = row["memory_bytes_per_env"] = None
    row["load_1min"] = os.getloadavg()[0]
    return row


def run_spec(spec: str | Path | dict | BenchSpec, out: Path, progress: bool = True,
             command: list[str] | None = None) -> dict:
    """Run every measurement of a benchmark spec in one process and write the results into ``out``.

    Writes ``benchmark.json``, ``throughput.png`` and ``README.md``; returns the results (the JSON's
    content).

    Each env-steps/s figure is paired with the bare random-number loop of the same envs measured
    right next to it; ``command`` (default ``sys.argv``) is recorded as the command that ran it.
    """
    spec = load_bench_spec(spec)
    out = Path(out)
    record = provenance(command)  # before the measurements: start time and load
    t_start = time.perf_counter()
    jobs: list[tuple[str, Any]] = []
    for market in ("reduced_form", "book"):
        group = getattr(spec, market)
        for env in group.envs if group is not None else ():
            if group.single:
                jobs.append((f"{env}: single env", ("single", market, env)))
            jobs += [(f"{env}: N = {n:,}", ("batched", market, env, n)) for n in group.n_envs]
    if spec.book_flow is not None:
        jobs.append(("book engine events/s", ("book_flow",)))
    startup_env = (spec.reduced_form or spec.book).envs[0] if spec.startup and (spec.reduced_form or spec.book) \
        else None
    if startup_env is not None:
        jobs.append(("import + first step", ("startup",)))
    for agent in spec.training.agents if spec.training is not None else ():
        jobs.append((f"training {agent}", ("training", agent)))

    result: dict[str, Any] = {"kind": "benchmark", "name": spec.name, "description": spec.description,
                              "spec": spec.model_dump(mode="json"), "rows": [], "book_flow": None,
                              "import_and_first_step_s": None, "training": []}
    with _Steps(len(jobs), progress) as steps:
        for label, job in jobs:
            steps.next(label)
            if job[0] == "single":
                cfg = load_env_config(job[2])
                result["rows"].append(_row(job[1], cfg.name, bench_single(cfg, spec.seconds), spec.memory))
            elif job[0] == "batched":
                _, market, env, n = job
                cfg = load_env_config(env)
                row = bench_rows(cfg, n, spec.seconds)[0]
                result["rows"].append(_row(market, cfg.name, row, spec.memory))
            elif job[0] == "book_flow":
                bf = bench_book_flow(spec.book_flow.books, spec.book_flow.seconds)
                result["book_flow"] = bf | {"ratio_to_bare": bf["events_per_s"] / bf["bare_events_per_s"]}
            elif job[0] == "startup":
                result["import_and_first_step_s"] = import_and_first_step_seconds(startup_env)
                result["startup_env"] = load_env_config(startup_env).name
            else:
                result["training"].append(bench_training(spec.training.env, job[1], spec.training.timesteps))
    result |= _finish_record(record)
    result["wall_seconds"] = time.perf_counter() - t_start
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "benchmark.json", result)
    plot_throughput(result, out / "throughput.png")
    write_text_atomic(out / "README.md", report_markdown(result))
    return result


def plot_throughput(result: dict, path: Path) -> Path:
    """Env-steps/s against N (log-log), one panel per market, the bare loop dashed in the same colour."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    markets = [m for m in MARKET_TITLES if any(r["market"] == m for r in result["rows"])]
    fig = Figure(figsize=(6.0 * max(1, len(markets)), 5.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, max(1, len(markets)), squeeze=False)[0]
    for ax, market in zip(axes, markets, strict=False):
        rows = [r for r in result["rows"] if r["market"] == market]
        for k, env in enumerate(dict.fromkeys(r["env"] for r in rows)):
            color = f"C{k}"
            batched = sorted((r for r in rows if r["env"] == env and r["bare_steps_per_s"]), key=lambda r: r["n_envs"])
            single = [r for r in rows if r["env"] == env and not r["bare_steps_per_s"]]
            if batched:
                ns = [r["n_envs"] for r in batched]
                ax.plot(ns, [r["steps_per_s"] for r in batched], "o-", color=color, label=f"{env}: VecEnv.step")
                ax.plot(ns, [r["bare_steps_per_s"] for r in batched], "x--", color=color, alpha=0.8,
                        label=f"{env}: bare loop (limit)")
            for r in single:
                ax.plot([1], [r["steps_per_s"]], "*", color=color, markersize=11, label=f"{env}: gymnasium.make")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("N (batched envs)")
        ax.set_ylabel("env-steps/s")
        ax.set_title(MARKET_TITLES[market])
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    if not markets:
        axes[0].text(0.5, 0.5, "no env measurements in this spec", ha="center", va="center")
        axes[0].set_axis_off()
    fig.suptitle(f"{result['name']}: env-steps/s vs N ({result['machine']['numba_threads']} numba threads)")
    return write_atomic(path, lambda fh: fig.savefig(fh, format="png", dpi=110))


def _num(x: float | None, digits: int = 0) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


def _bytes(x: float | None) -> str:
    if x is None:
        return "-"
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if x >= scale:
            return f"{x / scale:,.1f} {unit}"
    return f"{x:,.0f} B"


def _what(r: dict) -> str:
    return "single env, `gymnasium.make` + `env.step`" if not r["bare_steps_per_s"] else "`VecEnv.step` (SB3 API)"


def report_markdown(result: dict) -> str:
    """The benchmark's ``README.md``.

    Every row with its ratio to the bare loop, the book engine, memory per env, training, and the
    machine, versions and command of the run.
    """
    m, v = result["machine"], result["versions"]
    lines = [f"# {result['name']}", ""]
    if result.get("description"):
        lines += [result["description"].strip(), ""]
    lines += [f"Measured by `{result['command']}` on {result['started']} in {result['wall_seconds']:.0f} s "
              f"(numba compilation included), "
              f"all rows in that one run. Each figure is the best of three timed runs of at least "
              f"{result['spec']['seconds'] / 3:.2g} s; each env-steps/s figure sits next to the bare loop "
              f"(the same generators drawing the same random numbers per step, with the same threading) "
              f"measured right after it, the speed limit of any env built on those draws.", "",
              f"Machine: {m['cpu'] or 'unknown CPU'}, {m['cpus_available']} of {m['cpus']} cores available, "
              f"{m['numba_threads']} numba threads; load average (1, 5, 15 min) "
              f"{_loadavg(m['load_average_start'])} at the start and {_loadavg(m['load_average_end'])} at the end "
              f"(the machine is shared: other jobs' load lowers the figures; each row's `load` column is the "
              f"1-minute load average just after it).", "",
              *_load_caveat(result), "![env-steps/s vs N](throughput.png)", ""]
    show_memory = result["spec"].get("memory", True)
    for market, title in MARKET_TITLES.items():
        rows = [r for r in result["rows"] if r["market"] == market]
        if not rows:
            continue
        book = market == "book"
        head = ["env", "what", "N", "threads", "env-steps/s", "bare loop steps/s", "ratio to bare"]
        head += ["events/step", "book events/s"] if book else []
        head += ["memory/env"] if show_memory else []
        head += ["load"]
        lines += [f"## {title[0].upper() + title[1:]}", "", "| " + " | ".join(head) + " |",
                  "|" + "---|" * len(head)]
        for r in rows:
            cells = [r["env"], _what(r), f"{r['n_envs']:,}", str(r["threads"]), _num(r["steps_per_s"]),
                     _num(r["bare_steps_per_s"]), _pct(r["ratio_to_bare"])]
            cells += [_num(r["events_per_step"], 1), _num(r["events_per_s"])] if book else []
            cells += [_bytes(r["memory_bytes_per_env"])] if show_memory else []
            cells += [f"{r['load_1min']:.2f}"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        if book:
            lines += ["Book events/s counts every background event the engine applied, the warm-ups of "
                      "episodes that restarted in the timed window included; the bare loop draws, per env "
                      "step, the latency uniforms and per event a waiting time and a choice.", "",
                      *_restart_caveat(rows)]
    if show_memory and result["rows"]:
        lines += ["Memory/env: bytes of the simulation's numpy arrays with one row per env (market state, "
                  "book, flow and fill log, episode statistics, step outcome, generators, reward state, "
                  "observation/reward/metric buffers, actions) divided by N; the shared config and parameters, "
                  "Python objects and compiled code are not counted.", ""]
    bf = result.get("book_flow")
    if bf:
        lines += ["## Book engine", "", "| what | books | events | events/s | bare loop events/s | ratio to bare "
                  "| memory, 1,000 books x 200 levels x 1,024 orders |", "|---|---|---|---|---|---|---|",
                  f"| {bf['what']} | {bf['n_books']:,} | {bf['events']:,} | {_num(bf['events_per_s'])} | "
                  f"{_num(bf['bare_events_per_s'])} | {_pct(bf['ratio_to_bare'])} | "
                  f"{_bytes(bf['memory_1000_books_200_levels_1024_orders_bytes'])} |", ""]
    if result.get("import_and_first_step_s") is not None:
        lines += [f"`import lobgym` + `gymnasium.make` + reset + first step of `{result['startup_env']}` in a fresh "
                  f"process, numba cache warm: {result['import_and_first_step_s']:.2f} s.", ""]
    if result.get("training"):
        lines += ["## Training", "", "| what | env | N envs | timesteps | seconds | timesteps/s | env seconds | "
                  "env share |", "|---|---|---|---|---|---|---|---|"]
        for t in result["training"]:
            lines.append(f"| {t['what']} | {t['env']} | {t['n_envs']} | {t['timesteps']:,} | {t['seconds']:.1f} | "
                         f"{_num(t['timesteps_per_s'])} | {t['env_seconds']:.2f} | {t['env_share']:.1%} |")
        lines += ["", "Env seconds: time inside the lobgym vec env (reset, step_async, step_wait); SB3's own "
                  "wrappers count as training time.", ""]
    lines += ["## Machine and versions", "", "| | |", "|---|---|",
              f"| command | `{result['command']}` |", f"| started | {result['started']} |",
              f"| platform | {m['platform']} |", f"| CPU | {m['cpu'] or '-'} |",
              f"| cores (available / total) | {m['cpus_available']} / {m['cpus']} |",
              f"| numba threads | {m['numba_threads']} ({m.get('numba_threading_layer') or '-'} layer) |",
              f"| load average at start / end | {_loadavg(m['load_average_start'])} / "
              f"{_loadavg(m['load_average_end'])} |",
              f"| Python | {result['python']} |"]
    lines += [f"| {name} | {ver or 'not installed'} |" for name, ver in v.items()]
    if result.get("git_revision"):
        lines.append(f"| git revision | {result['git_revision']}"
                     f"{' (with uncommitted changes)' if result['git_dirty'] else ''} |")
    lines += ["", "Raw numbers: [`benchmark.json`](benchmark.json).", ""]
    return "\n".join(lines)


def _restart_caveat(rows: list[dict]) -> list[str]:
    """A note on book rows whose timed runs saw no episode restart (about half the events per step)."""
    flagged = []
    for env in dict.fromkeys(r["env"] for r in rows):
        eps = [r for r in rows if r["env"] == env and r["events_per_step"]]
        top = max((r["events_per_step"] for r in eps), default=0.0)
        flagged += [f"{env} N = {r['n_envs']:,}" for r in eps if r["events_per_step"] < 0.75 * top]
    if not flagged:
        return []
    return [f"Each episode starts with `market.warmup` seconds of flow (300 s in the presets, as long as the "
            f"episode), and the N envs of a row restart together. Rows whose timed runs were shorter than an "
            f"episode may contain no restart: they show about half the events per step (the episode's own flow) "
            f"and an env-steps/s above the long-run average, here {', '.join(flagged)}.", ""]


def _load_caveat(result: dict) -> list[str]:
    """A warning paragraph when the load average exceeded the cores during the run."""
    m = result["machine"]
    loads = [m["load_average_start"][0], m["load_average_end"][0], *(r["load_1min"] for r in result["rows"])]
    cores = m["cpus_available"] or 1
    if max(loads) <= cores:
        return []
    return [f"**The machine was oversubscribed during this run** (1-minute load up to {max(loads):.1f} on {cores} "
            f"cores). Kernels that run on {m['numba_threads']} threads (the `threads` column: reduced-form N >= "
            f"{PARALLEL_MIN_ENVS:,}, book N >= {BOOK_PARALLEL_MIN_ENVS}) wait at every step for all their threads "
            f"to be scheduled, so their rows, bare loop included, fall furthest below an idle machine's; "
            f"single-thread rows suffer less. Compare rows with similar load only.", ""]


def _loadavg(values: list[float]) -> str:
    return ", ".join(f"{x:.2f}" for x in values)


def rich_tables(result: dict) -> list[Any]:
    """Rich tables of a :func:`run_spec` result, for the terminal."""
    from rich.table import Table

    m = result["machine"]
    tables = []
    table = Table(title=f"lobgym bench --all ({result['name']}): {m['numba_threads']} numba threads, load "
                        f"{_loadavg(m['load_average_start'])} -> {_loadavg(m['load_average_end'])}")
    for col in ("market", "env", "what", "N", "threads", "env-steps/s", "bare steps/s", "ratio", "events/s",
                "memory/env"):
        table.add_column(col, justify="left" if col in ("market", "env", "what") else "right")
    for r in result["rows"]:
        what = "VecEnv.step" if r["bare_steps_per_s"] else "gymnasium.make"
        table.add_row(r["market"].replace("_", "-"), r["env"], what, f"{r['n_envs']:,}", str(r["threads"]),
                      _num(r["steps_per_s"]), _num(r["bare_steps_per_s"]), _pct(r["ratio_to_bare"]),
                      _num(r["events_per_s"]), _bytes(r["memory_bytes_per_env"]))
    tables.append(table)
    bf = result.get("book_flow")
    if bf:
        table = Table(title="book engine")
        for col in ("what", "books", "events/s", "bare loop events/s", "ratio", "1,000 books x 200 levels"):
            table.add_column(col, justify="left" if col == "what" else "right")
        table.add_row(bf["what"], f"{bf['n_books']:,}", _num(bf["events_per_s"]), _num(bf["bare_events_per_s"]),
                      _pct(bf["ratio_to_bare"]), _bytes(bf["memory_1000_books_200_levels_1024_orders_bytes"]))
        tables.append(table)
    if result.get("training"):
        table = Table(title="training")
        for col in ("what", "env", "N envs", "timesteps/s", "env share"):
            table.add_column(col, justify="left" if col in ("what", "env") else "right")
        for t in result["training"]:
            table.add_row(t["what"], t["env"], str(t["n_envs"]), _num(t["timesteps_per_s"]), f"{t['env_share']:.1%}")
        tables.append(table)
    return tables
