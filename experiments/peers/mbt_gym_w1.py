"""W1 against mbt_gym: lobgym and mbt_gym stepping the Avellaneda-Stoikov market, measured in one run.

The workload (W1): the Avellaneda & Stoikov (2008) market -- S0 = 100, sigma = 2, T = 1, 200 steps
(dt = 0.005), order arrivals at rate A = 140 per side, fill probability exp(-k depth) with k = 1.5 --
quoted at the fixed depth 0.6454 on both sides every step (no agent, one constant action array), with
episodes reset inside the timed loop as SB3 would. Rates are trajectory-steps/s (env-steps/s summed
over the batch).

Measurements, each in its own subprocess (so numba's JIT, caches and memory do not leak between them),
interleaved over ``--repeats`` rounds, reported as medians:

- ``mbt_gym vec1000 (SB3 VecEnv)``: ``TradingEnvironment(num_trajectories=1000)`` with mbt_gym's default
  dynamics classes (``LimitOrderModelDynamics``: ``BrownianMotionMidpriceModel``, ``PoissonArrivalModel``,
  ``ExponentialFillFunction``) set to the parameters above, wrapped in mbt_gym's own SB3 ``VecEnv``
  (``StableBaselinesTradingEnvironment``, which resets when the batch's episodes end), stepped via ``step()``.
- ``mbt_gym vec1000 (raw step)``: the same env's ``TradingEnvironment.step`` loop, calling ``reset()`` on done.
- ``lobgym vec1000 (SB3 VecEnv)``: ``lobgym.make_vec_env("as2008", n_envs=1000, seed=0)`` with auto-reset,
  stepped via SB3's ``step()`` (at 1,000 envs lobgym picks its serial kernel: one core, as NumPy uses; the
  table notes the kernel).
- ``... single``: one env, ``env.step`` in a loop, resetting when the episode ends (lobgym through
  ``gymnasium.make("lobgym/MarketMaking-v0", config="as2008")``; mbt_gym with ``num_trajectories=1``).

The two markets are the same model up to the discretisation: mbt_gym moves the mid by a Gaussian
increment and fills a side when a Bernoulli(A dt) arrival meets a Bernoulli(exp(-k depth)) fill; lobgym's
``as2008`` preset moves it by +/- sigma sqrt(dt) (the paper's binomial walk) and fills with probability
A exp(-k depth) dt. Both take actions in [-1, 1]: depth 0.6454 is action ``2 * 0.6454 / 3.0701 - 1``
for mbt_gym (max depth -ln(0.01) / k) and ``2 * 0.6454 / 5 - 1`` for lobgym (``max_depth: 5``); the
script checks that each env decodes them back to 0.6454.

Getting mbt_gym: it is not on PyPI. Put a copy of the ``mbt_gym/`` package of github.com/JJJerome/mbt_gym
in a folder DIR (so that ``DIR/mbt_gym/gym/TradingEnvironment.py`` exists) and pass ``--mbt-gym DIR``.
It imports the old ``gym`` package (0.26.2); if that is not installed, ``pip install --target GYMDIR
gym==0.26.2 gym_notices --no-deps`` and pass ``--extra-path GYMDIR``. With stable-baselines3 >= 2.0, the
wrapper's ``get_attr`` must return a list (SB3's ``VecEnv.__init__`` reads ``get_attr("render_mode")``).

Usage::

    python experiments/peers/mbt_gym_w1.py --mbt-gym /tmp/lead_peers/mbt_gym_src \
        --extra-path /tmp/lead_peers/gym_site --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np

# W1: the Avellaneda-Stoikov (2008) market and the fixed quote.
S0, SIGMA, HORIZON, N_STEPS, ARRIVAL_RATE, FILL_K = 100.0, 2.0, 1.0, 200, 140.0, 1.5
DEPTH = 0.6454
N_VEC = 1000

#: name -> (library, n_envs, description)
MEASUREMENTS = {
    "mbt_vec_sb3": ("mbt_gym", N_VEC, "mbt_gym vec1000 (SB3 VecEnv)"),
    "mbt_vec_raw": ("mbt_gym", N_VEC, "mbt_gym vec1000 (raw TradingEnvironment.step)"),
    "lob_vec_sb3": ("lobgym", N_VEC, "lobgym vec1000 (SB3 VecEnv)"),
    "mbt_single": ("mbt_gym", 1, "mbt_gym single (env.step)"),
    "lob_single": ("lobgym", 1, "lobgym single (gymnasium.make, env.step)"),
}
#: (lobgym row, mbt_gym row) pairs whose ratio is printed
RATIOS = [("lob_vec_sb3", "mbt_vec_sb3"), ("lob_vec_sb3", "mbt_vec_raw"), ("lob_single", "mbt_single")]


# ------------------------------------------------------------------------------------------ workers
def _mbt_env(n: int):
    """mbt_gym's TradingEnvironment on the W1 market with ``n`` trajectories."""
    from mbt_gym.gym.ModelDynamics import LimitOrderModelDynamics
    from mbt_gym.gym.TradingEnvironment import TradingEnvironment
    from mbt_gym.stochastic_processes.arrival_models import PoissonArrivalModel
    from mbt_gym.stochastic_processes.fill_probability_models import ExponentialFillFunction
    from mbt_gym.stochastic_processes.midprice_models import BrownianMotionMidpriceModel

    dt = HORIZON / N_STEPS
    dynamics = LimitOrderModelDynamics(
        midprice_model=BrownianMotionMidpriceModel(volatility=SIGMA, initial_price=S0, terminal_time=HORIZON,
                                                   step_size=dt, num_trajectories=n, seed=1),
        arrival_model=PoissonArrivalModel(intensity=np.array([ARRIVAL_RATE, ARRIVAL_RATE]), step_size=dt,
                                          num_trajectories=n, seed=2),
        fill_probability_model=ExponentialFillFunction(fill_exponent=FILL_K, step_size=dt, num_trajectories=n,
                                                       seed=3),
        num_trajectories=n, seed=4)
    env = TradingEnvironment(terminal_time=HORIZON, n_steps=N_STEPS, model_dynamics=dynamics, num_trajectories=n,
                             seed=5)
    action = env.normalise_action(np.full((n, 2), DEPTH))  # the normalised action quoting DEPTH
    decoded = env.normalise_action(action, inverse=True)
    return env, action, float(np.max(np.abs(decoded - DEPTH)))


def _timed(step, block: int, seconds: float, warmup_s: float) -> tuple[int, float]:
    """Call ``step`` in blocks of ``block`` calls: ``warmup_s`` untimed, then until ``seconds`` passed."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < warmup_s:
        for _ in range(block):
            step()
    n = 0
    t0 = time.perf_counter()
    while True:
        for _ in range(block):
            step()
        n += block
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return n, elapsed


def run_worker(name: str, seconds: float, warmup_s: float) -> dict:
    """Build measurement ``name``'s env, check its depth, warm it up and time it; returns the result."""
    library, n_envs, _ = MEASUREMENTS[name]
    extra: dict = {}
    if name in ("mbt_vec_sb3", "mbt_vec_raw", "mbt_single"):
        env, action, depth_err = _mbt_env(n_envs)
        if name == "mbt_vec_sb3":
            from mbt_gym.gym.StableBaselinesTradingEnvironment import StableBaselinesTradingEnvironment

            venv = StableBaselinesTradingEnvironment(env)
            venv.reset()
            state = {"episodes": 0}

            def step():
                _, _, dones, _ = venv.step(action)
                state["episodes"] += int(dones.all())
        else:
            env.reset()
            state = {"episodes": 0}

            def step():
                _, _, dones, _ = env.step(action)
                if dones[0]:
                    env.reset()
                    state["episodes"] += 1
        extra["depth_abs_err"] = depth_err
        extra["decoded_depth"] = float(env.normalise_action(action, inverse=True)[0, 0])
    else:
        import gymnasium

        import lobgym
        from lobgym.spaces import encode_depths

        if n_envs > 1:
            venv = lobgym.make_vec_env("as2008", n_envs=n_envs, seed=0)
            a1 = encode_depths(DEPTH, DEPTH, venv.sim.codec)
            action = np.broadcast_to(a1, venv.sim.actions.shape).copy()
            venv.reset()
            venv.step(action)  # compiles; then check what the market quoted
            out = venv.sim.outcome
            depths = np.concatenate([out.bid_depth, out.ask_depth])
            extra["parallel"] = bool(venv.sim.parallel)
            state = {"episodes": 0}

            def step():
                _, _, dones, _ = venv.step(action)
                state["episodes"] += int(dones.all())
        else:
            env = gymnasium.make("lobgym/MarketMaking-v0", config="as2008")
            action = encode_depths(DEPTH, DEPTH, env.unwrapped.sim.codec)
            env.reset(seed=0)
            env.step(action)
            out = env.unwrapped.sim.outcome
            depths = np.concatenate([out.bid_depth, out.ask_depth])
            env.reset(seed=0)
            state = {"episodes": 0}

            def step():
                _, _, terminated, truncated, _ = env.step(action)
                if terminated or truncated:
                    env.reset()
                    state["episodes"] += 1
        extra["depth_abs_err"] = float(np.max(np.abs(depths - DEPTH)))
        extra["decoded_depth"] = float(depths[0])
        extra["action"] = float(action.reshape(-1)[0])
    steps, elapsed = _timed(step, N_STEPS, seconds, warmup_s)
    return {"name": name, "library": library, "n_envs": n_envs, "steps": steps, "elapsed": elapsed,
            "rate": steps * n_envs / elapsed, "episodes_done": state["episodes"], **extra}


# ------------------------------------------------------------------------------------------- driver
def spawn(name: str, args: argparse.Namespace) -> dict:
    """Run measurement ``name`` in a fresh interpreter and return its JSON result."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", name, "--mbt-gym", args.mbt_gym,
           "--seconds", str(args.seconds), "--warmup", str(args.warmup)]
    for p in args.extra_path:
        cmd += ["--extra-path", p]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {name} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fmt_rate(x: float) -> str:
    """A rate with a thousands separator."""
    return f"{x:,.0f}"


def main() -> None:
    """Parse the command line; run one worker, or all measurements and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mbt-gym", required=True, help="folder holding the mbt_gym package (DIR/mbt_gym/...)")
    parser.add_argument("--extra-path", action="append", default=[],
                        help="another folder for sys.path, e.g. one holding the old `gym` package (repeatable)")
    parser.add_argument("--repeats", type=int, default=3, help="processes per measurement (median reported)")
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per measurement")
    parser.add_argument("--warmup", type=float, default=0.5, help="untimed seconds after the first (compiling) step")
    parser.add_argument("--only", nargs="*", choices=list(MEASUREMENTS), help="run only these measurements")
    parser.add_argument("--worker", choices=list(MEASUREMENTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path[:0] = [os.path.abspath(args.mbt_gym), *map(os.path.abspath, args.extra_path)]

    if args.worker:
        warnings.filterwarnings("ignore")
        print(json.dumps(run_worker(args.worker, args.seconds, args.warmup)))
        return

    names = args.only or list(MEASUREMENTS)
    load_start = os.getloadavg()
    print(f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} cpus; "
          f"{args.repeats} repeats x {len(names)} measurements, {args.seconds:g} s each, interleaved")
    print("load average at start (1/5/15 min): " + " ".join(f"{x:.2f}" for x in load_start))
    results: dict[str, list[dict]] = {n: [] for n in names}
    for r in range(args.repeats):
        for name in names:
            res = spawn(name, args)
            results[name].append(res)
            print(f"  round {r + 1}/{args.repeats} {name:15s} {fmt_rate(res['rate']):>14s} steps/s "
                  f"({res['steps']} steps in {res['elapsed']:.2f} s, {res['episodes_done']} resets)", flush=True)
    load_end = os.getloadavg()

    medians = {n: statistics.median(x["rate"] for x in rs) for n, rs in results.items()}
    print()
    print(f"{'what':50s} {'median steps/s':>15s} {'min - max':>27s} {'n':>3s}  depth")
    for name in names:
        rates = [x["rate"] for x in results[name]]
        first = results[name][0]
        note = f"{first['decoded_depth']:.6f} (err {first['depth_abs_err']:.1e})"
        if "parallel" in first:
            note += ", parallel kernel" if first["parallel"] else ", serial kernel"
        print(f"{MEASUREMENTS[name][2]:50s} {fmt_rate(medians[name]):>15s} "
              f"{fmt_rate(min(rates)) + ' - ' + fmt_rate(max(rates)):>27s} {len(rates):>3d}  {note}")
    print()
    for lob, mbt in RATIOS:
        if lob in medians and mbt in medians:
            print(f"ratio {MEASUREMENTS[lob][2]} / {MEASUREMENTS[mbt][2]}: {medians[lob] / medians[mbt]:.1f}x")
    print("load average at end (1/5/15 min): " + " ".join(f"{x:.2f}" for x in load_end))


if __name__ == "__main__":
    main()
