"""The walkthroughs of docs/architecture.md, followed once each, on a copy of the package.

Each test copies ``src/lobgym`` to a temporary folder, makes exactly the edits its walkthrough lists
(the toy flow model of ``flow_model/touch.py``; the toy reward term below), checks which source files
changed against the walkthrough's file count, and then uses the result in a fresh interpreter (its
own numba cache): an env config naming the new model or term loads, an env built from it steps, and
the new code does what it says. An anchor that no longer matches fails the test: the walkthrough
must then be brought up to date with the code.
"""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "src" / "lobgym"

pytestmark = pytest.mark.slow  # each compiles a simulation from an empty cache in a subprocess


def _copy_package(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    shutil.copytree(PACKAGE, root / "lobgym", ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    (tmp_path / "envs").symlink_to(REPO / "envs")  # the presets, found beside src/ as in a checkout
    return root / "lobgym"


def _insert(path: Path, anchor: str, text: str, after: bool = False) -> None:
    """Insert ``text`` before (or after) the one occurrence of ``anchor`` in ``path``."""
    source = path.read_text()
    assert source.count(anchor) == 1, f"{path.name}: anchor {anchor!r} found {source.count(anchor)} times"
    new = anchor + text if after else text + anchor
    path.write_text(source.replace(anchor, new))


def _changed(copy: Path) -> set[str]:
    """Source files of the copy that differ from the package (new files included)."""
    out = set()
    for path in copy.rglob("*.py"):
        rel = path.relative_to(copy)
        original = PACKAGE / rel
        if not original.exists() or not filecmp.cmp(path, original, shallow=False):
            out.add(rel.as_posix())
    return out


def _run(copy: Path, script: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(copy.parent), "NUMBA_CACHE_DIR": str(copy.parent / "numba-cache")}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, env=env,
                          cwd=copy.parent, timeout=1200)
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


# ------------------------------------------------------------------------------------ a flow model
def test_a_new_flow_model_touches_three_source_files(tmp_path):
    pkg = _copy_package(tmp_path)
    # 1. the model's own file: its code, builder and kernel
    shutil.copy(HERE / "flow_model" / "touch.py", pkg / "market" / "book" / "flow" / "touch.py")
    # 2. its line in the dispatch's table of models
    dispatch = pkg / "market" / "book" / "flow" / "dispatch.py"
    _insert(dispatch, "from lobgym.market.book.lob import",
            "from lobgym.market.book.flow.touch import TouchParams, _advance_touch\n")
    _insert(dispatch, "QueueReactiveParams: _advance_qr", ", TouchParams: _advance_touch", after=True)
    # 3. its config model, in the union of flow configs
    config = pkg / "flow_config.py"
    _insert(config, "#: A flow config, dispatched on its ``model`` key.", textwrap.dedent('''\
        class TouchFlow(Strict):
            """Toy flow: limit orders one tick from the opposite best, market orders, no cancellations."""

            model: Literal["touch"] = "touch"
            lam: Rate = Field(1.0, description="limit orders per second per side")
            mu: Rate = Field(0.5, description="market orders per second per side")
            size: int = Field(1, ge=1, le=LOTS_MAX, description="lots per background order")

            def params(self) -> F.FlowParams:
                from lobgym.market.book.flow.touch import touch_params

                return touch_params(self.lam, self.mu, self.size)

            def event_rates(self) -> dict[str, float]:
                return {"lam": 2.0 * self.lam, "mu": 2.0 * self.mu}

            def reach(self) -> tuple[str, int]:
                return "lam", 1


        '''))
    _insert(config, "FlowConfig = Annotated[CSTFlow | HawkesFlow | QueueReactiveFlow",
            " | TouchFlow", after=True)

    assert _changed(pkg) == {"market/book/flow/touch.py", "market/book/flow/dispatch.py", "flow_config.py"}

    out = _run(pkg, """
        import gymnasium as gym
        import numpy as np

        from lobgym import presets
        from lobgym.market.book import flow as F
        from lobgym.market.book import lob as B
        from lobgym.market.book.flow.touch import touch_params
        from lobgym.market.rng import make_rng, seed_rng

        cfg = presets.read_yaml(presets.resolve("envs", "cst2010"))
        cfg["market"].update(flow={"model": "touch", "lam": 2.0, "mu": 0.5}, warmup=10, horizon=20)
        env = gym.make("lobgym/MarketMaking-v0", config=cfg)
        env.reset(seed=0)
        for _ in range(20):
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
            assert np.isfinite(reward)
        sim = env.unwrapped.sim
        assert sim.params.flow.model == 3, sim.params.flow.model
        print("env", *sim.state.flow.events[0])  # limit bid, limit ask, market buy, market sell, cancels

        # The model alone on 400 books for 50 s: each count is Poisson(rate x 50 s) per book.
        n = 400
        book, fills, flow = B.make_book(n, 200, 1024), B.make_fill_log(n, 256), F.make_flow_state(n, 0)
        rng = make_rng(n)
        seed_rng(rng, np.arange(n, dtype=np.uint64))
        for i in range(n):
            F.seed_book(book, flow, fills, i, 10_000, 10, 3, 1)
        F.advance(book, flow, touch_params(2.0, 0.5), rng, fills, 50.0)
        print("model", *flow.events.mean(axis=0))
    """)
    lines = {line.split()[0]: [float(x) for x in line.split()[1:]] for line in out.splitlines()}
    env_counts = lines["env"]
    assert env_counts[4] == env_counts[5] == 0  # the touch flow never cancels
    assert env_counts[0] > 0 and env_counts[1] > 0
    limit_bid, limit_ask, buy, sell, cancel_bid, cancel_ask = lines["model"]
    se_limit, se_market = (2.0 * 50 / 400) ** 0.5, (0.5 * 50 / 400) ** 0.5
    assert abs(limit_bid - 100.0) < 5 * se_limit and abs(limit_ask - 100.0) < 5 * se_limit
    assert abs(buy - 25.0) < 5 * se_market and abs(sell - 25.0) < 5 * se_market
    assert cancel_bid == cancel_ask == 0.0


# ------------------------------------------------------------------------------------ a reward term
def test_a_new_reward_term_touches_one_source_file(tmp_path):
    pkg = _copy_package(tmp_path)
    rewards = pkg / "rewards.py"
    # 1. its code, 2. its parameter model, 3. its TERMS entry with formula and reads, 4. its branch
    _insert(rewards, "\nMAX_PARAMS = 2", "SQUARED_PNL = 11\n")
    _insert(rewards, "class CvarParams(_Params):", textwrap.dedent('''\
        class SquaredPnlParams(_Params):
            scale: float = Field(1.0, gt=0, le=COEF_MAX, description="divides the PnL before squaring")


        '''))
    _insert(rewards, "TERMS: dict[str, RewardTerm] = {\n",
            '    "squared_pnl": RewardTerm(SQUARED_PNL, SquaredPnlParams, "-(PnL_t / scale)^2", reads=("out.pnl",)),\n',
            after=True)
    _insert(rewards, "    if code == SPREAD_CAPTURED:\n",
            "    if code == SQUARED_PNL:\n        return -(pnl / prm[0]) ** 2\n")

    assert _changed(pkg) == {"rewards.py"}

    out = _run(pkg, """
        import gymnasium as gym
        import numpy as np

        from lobgym import presets

        for preset in ("as2008", "cst2010"):  # every market kind
            cfg = presets.read_yaml(presets.resolve("envs", preset))
            cfg["reward"] = [{"term": "pnl"}, {"term": "squared_pnl", "weight": 0.5, "params": {"scale": 2.0}}]
            env = gym.make("lobgym/MarketMaking-v0", config=cfg)
            env.reset(seed=1)
            worst = 0.0
            for _ in range(30):
                obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
                terms = info["reward_terms"]
                pnl = terms["pnl"]
                worst = max(worst, abs(terms["squared_pnl"] + 0.5 * (pnl / 2.0) ** 2))
                assert reward == terms["pnl"] + terms["squared_pnl"]
            print(preset, worst)
    """)
    for line in out.splitlines():
        preset, worst = line.split()
        assert float(worst) < 1e-12, (preset, worst)
