"""``lobgym bench``: env-steps per second, single and batched, against a bare random-number loop.

The bare loop advances the same per-env generators and draws exactly the random numbers one env
step draws (two fill uniforms, the mid's noise, jumps if any), with the same one-kernel-call-per-step
granularity and the same threading as the env: it is the speed limit of any env built on these
random streams, and the benchmark reports each batched env's throughput as a fraction of it.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

import numba
import numpy as np

from lobgym.config import BookEnvConfig, EnvConfig, load_env_config
from lobgym.market._jit import kernel, parallel_kernel
from lobgym.market.constants import NOISE_BINOMIAL, STREAM_FILLS, STREAM_MARKET
from lobgym.market.rng import make_rng, normal, poisson_from_uniform, seed_rng, uniform
from lobgym.simulation import PARALLEL_MIN_ENVS, market_params


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


@dataclass
class BenchRow:
    """One measurement: ``steps_per_s`` env-steps per second (N envs x steps / wall time)."""

    what: str
    n_envs: int
    steps_per_s: float
    bare_steps_per_s: float | None = None
    events_per_step: float | None = None  #: order-book envs: background events per env step

    @property
    def ratio(self) -> float | None:
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
    """``MarketMakingVecEnv.step`` (SB3 API) and the bare loop, for ``n_envs`` envs."""
    from lobgym.vec_env import make_vec_env

    venv = make_vec_env(cfg, n_envs=n_envs, seed=0)
    venv.reset()
    actions = np.zeros((n_envs, venv.sim.action_dim), dtype=np.float32)

    def vec_step():
        venv.step(actions)

    rng = make_rng(n_envs)
    seed_rng(rng, np.arange(n_envs, dtype=np.uint64))
    acc = np.zeros(n_envs)
    p = market_params(cfg)
    bare_kernel = _bare_parallel if n_envs >= PARALLEL_MIN_ENVS else _bare_serial

    def bare_step():
        bare_kernel(rng, p, acc)

    bare = _rate(bare_step, n_envs, min_seconds)
    return [BenchRow("batched VecEnv.step (SB3 API)", n_envs, _rate(vec_step, n_envs, min_seconds), bare)]


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
    """Book events per second under the CST (2010) flow on one core, next to a bare loop drawing
    the same random numbers per event; also the memory of 1000 books with a 200-level window."""
    from lobgym.market import book as B
    from lobgym.market import flow as F

    params = F.make_cst_params(F.CST2010["lam_table"], F.CST2010["theta_table"], F.CST2010["mu"], levels=10,
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


def bench_book_env(cfg: BookEnvConfig, n_envs: int, min_seconds: float) -> BenchRow:
    """``MarketMakingVecEnv.step`` of ``n_envs`` order-book envs, the agent quoting one lot a tick
    outside the mid on both sides, next to a bare loop drawing the same random numbers (per env
    step: the latency draws, and per background event a waiting time and a choice).

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
    return BenchRow(what, n_envs, rate, _rate(bare_step, n_envs, min_seconds), events_per_step=per_env_step)


def import_and_first_step_seconds(env: str) -> float:
    """Wall time of a fresh interpreter importing lobgym and taking one env step (numba cache warm:
    the measurement runs twice and reports the second)."""
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
    (``VecNormalize``) count as training time, not env time.
    """
    import torch
    from stable_baselines3.common.vec_env import VecEnvWrapper, VecNormalize

    from lobgym.agents.training import RunConfig, make_controller, make_training_env, new_model
    from lobgym.config import load_training_config

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
    run_cfg = RunConfig(load_env_config(env), cfg, 0, timesteps)
    torch.set_num_threads(cfg.torch_threads)
    venv = make_training_env(run_cfg)
    timed = Timed(venv.venv if isinstance(venv, VecNormalize) else venv)
    if isinstance(venv, VecNormalize):
        venv.venv = timed
    else:
        venv = timed
    model = new_model(run_cfg, venv, make_controller(cfg))
    t = time.perf_counter()
    model.learn(timesteps)
    total = time.perf_counter() - t
    return {"what": f"{cfg.kind.upper()} training ({cfg.name})", "env": run_cfg.env.name, "agent": cfg.name,
            "n_envs": cfg.n_envs, "timesteps": model.num_timesteps, "seconds": total,
            "timesteps_per_s": model.num_timesteps / total, "env_seconds": timed.seconds,
            "env_share": timed.seconds / total}


def run(env: str = "as2008", n_envs: tuple[int, ...] = (1, 100, 1000, 10000), min_seconds: float = 1.0,
        startup: bool = True, book: bool = True, train: tuple[str, ...] = (), train_timesteps: int = 50_000) -> dict:
    """All measurements, as a dict ready for JSON."""
    cfg = load_env_config(env)
    rows = [bench_single(cfg, min_seconds)]
    for n in n_envs:
        rows += [bench_book_env(cfg, n, min_seconds)] if isinstance(cfg, BookEnvConfig) else bench_batched(
            cfg, n, min_seconds)
    result = {
        "env": cfg.name,
        "threads": numba.get_num_threads(),
        "rows": [asdict(r) | {"ratio_to_bare": r.ratio} for r in rows],
    }
    if startup:
        result["import_and_first_step_s"] = import_and_first_step_seconds(env)
    if book:
        result["book_flow"] = bench_book_flow()
        if not isinstance(cfg, BookEnvConfig):
            result["book_env"] = asdict(row := bench_book_env(load_env_config("cst2010"), 1000, min_seconds)) | {
                "ratio_to_bare": row.ratio}
    if train:
        result["training"] = [bench_training(env, agent, train_timesteps) for agent in train]
    return result
