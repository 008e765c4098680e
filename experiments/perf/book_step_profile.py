"""Where a step of the order-book env goes: flow, the agent's orders and fills, observation, reward, resets.

For each batch size N, a serial simulation of the preset (one core, so that shares are per env-step) is
stepped with the zero action until its books are in their steady state, then timed:

* **step**: ``Simulation.step`` (auto-reset on), per env-step;
* **reset**: ``Simulation.reset`` of every env (seeding a book and its ``warmup`` seconds of flow),
  charged to the step at the rate episodes end (one per ``n_steps`` env-steps);
* on a copy of the state at the same moment, each part of a step on its own, in a loop over the envs
  compiled with the engine's options (``lobgym.market._jit.kernel``): **flow** (one step's ``dt`` of
  background flow around the agent's resting orders, matching against them included:
  ``market.book.step._run_flow``), **observation** (recording the agent's view and writing the
  observation row), **decoding** the action into wanted orders, and the **reward** terms;
* **agent orders, settlement, bookkeeping**: the rest of the step (planning, cancels and entries with
  their latencies, fills, fees, marks, statistics): step minus the parts above.

Usage::

    python experiments/perf/book_step_profile.py --env cst2010 --n-envs 1,100,1000
"""

from __future__ import annotations

import argparse
import copy
import os

import numpy as np

from lobgym.book_spaces import decode_book_one, write_book_obs_one
from lobgym.config import load_env_config
from lobgym.env import make_simulation
from lobgym.market._jit import kernel
from lobgym.market.book.lob import keep_centered
from lobgym.market.book.step import _observe, _run_flow
from lobgym.rewards import reward_one
from lobgym.simulation_base import bind_entry_point
from lobgym.tools.bench import _rate


@kernel
def _decode_all(actions, codec, st):
    for i in range(st.step.shape[0]):
        decode_book_one(i, actions, codec, st)


@kernel
def _observe_all(st, spec, p, obs):
    for i in range(st.step.shape[0]):
        _observe(st, i)
        write_book_obs_one(i, spec, st, p, obs)


@kernel
def _reward_all(spec, out, st, stats, p, rstate, terms):
    total = 0.0
    for i in range(st.step.shape[0]):
        total += reward_one(i, spec, out, st, stats, p, rstate, terms)
    return total


@kernel
def _flow_all(st, p, rng):
    events = 0
    for i in range(st.step.shape[0]):
        keep_centered(st.book, i, (st.flow.last_bid[i] + st.flow.last_ask[i]) // 2)  # as every step does
        events += _run_flow(st, p, rng, i, st.flow.t[i] + p.dt)
    return events


def _bound(kernel, *args):
    """``kernel(*args)`` without numba's per-call typing of the arguments (~9 us for these NamedTuples)."""
    return bind_entry_point(kernel, args)


def _seconds(fn, min_seconds: float) -> float:
    """Seconds per call of ``fn``: best of three timed runs, as every ``lobgym bench`` figure."""
    return 1.0 / _rate(fn, 1, min_seconds)


def profile(env: str, n: int, min_seconds: float) -> dict:
    """Microseconds per env-step of each part of a step of ``n`` serial envs of ``env``."""
    cfg = load_env_config(env)
    sim = make_simulation(cfg, n, parallel=False)
    sim.reset()
    for _ in range(20):  # past the first step's queue placement
        sim.step(auto_reset=True)
    step = _seconds(lambda: sim.step(auto_reset=True), min_seconds) / n
    reset = _seconds(lambda: sim.reset(), min_seconds) / n
    st, p = copy.deepcopy(sim.state), sim.params
    rng = sim.rng.copy()
    flow_state = copy.deepcopy(st)
    flow = _seconds(_bound(_flow_all, flow_state, p, rng), min_seconds) / n
    obs = np.zeros_like(sim.buffers.obs)
    observe = _seconds(_bound(_observe_all, st, sim.obs_spec, p, obs), min_seconds) / n
    actions = sim.actions.copy()
    decode = _seconds(_bound(_decode_all, actions, sim.codec, st), min_seconds) / n
    rstate, terms, stats = sim.reward_state.copy(), sim.buffers.terms.copy(), copy.deepcopy(sim.stats)
    reward = _seconds(_bound(_reward_all, sim.reward_spec, sim.outcome, st, stats, p, rstate, terms), min_seconds) / n
    per_step_reset = reset / cfg.market.n_steps
    parts = {"flow (dt of background flow, matching the agent's orders included)": flow,
             "observation (the agent's view and its row)": observe,
             "decoding the action": decode, "reward terms": reward,
             f"resets (1 per {cfg.market.n_steps} steps: seeding + {cfg.market.warmup:g} s warm-up)": per_step_reset}
    rest = step + per_step_reset - sum(parts.values())
    parts["agent orders, settlement, bookkeeping (the rest)"] = rest
    return {"env": cfg.name, "n_envs": n, "step_us": step * 1e6, "reset_us": reset * 1e6,
            "parts_us": {k: v * 1e6 for k, v in parts.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--env", default="cst2010", help="an order-book env preset or YAML path")
    ap.add_argument("--n-envs", default="1,100,1000", help="comma-separated batch sizes")
    ap.add_argument("--seconds", type=float, default=1.0, help="minimum timed seconds per measurement")
    args = ap.parse_args()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for n in (int(x) for x in args.n_envs.split(",")):
        r = profile(args.env, n, args.seconds)
        total = r["step_us"] + r["parts_us"][next(k for k in r["parts_us"] if k.startswith("resets"))]
        print(f"\n{r['env']}, N = {n:,} serial: {r['step_us']:.2f} us per env-step "
              f"({1e6 / r['step_us']:,.0f} env-steps/s on one core), reset {r['reset_us']:.0f} us per env")
        for k, v in r["parts_us"].items():
            print(f"  {k:72} {v:7.2f} us  {v / total:6.1%}")
    print(f"\nload average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
