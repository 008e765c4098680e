"""The benchmark's book row measures real work (events applied by the engine and the same draws bare), and
``lobgym bench --all`` runs a validated benchmark spec into a JSON, a figure and a report."""

from __future__ import annotations

import json

import pytest
import yaml
from helpers import run_lobgym, short_cst2010

from lobgym.config import ConfigError
from lobgym.tools.bench import (
    BenchSpec,
    _minimal_parallel,
    _minimal_serial,
    bench_batched,
    bench_book_env,
    bench_book_flow,
    bench_crossover,
    load_bench_spec,
    run_spec,
)


@pytest.mark.slow
def test_book_flow_row_counts_events_and_memory():
    row = bench_book_flow(n_books=4, seconds_simulated=5.0)
    # CST (2010) rates sum to roughly 20-40 events per second per book.
    assert 4 * 5 * 10 < row["events"] < 4 * 5 * 100
    assert row["events_per_s"] > 0 and row["bare_events_per_s"] > 0
    # 1000 books x (200 levels x 4 + 1024 orders x 9 + 15) int64 words.
    assert row["memory_1000_books_200_levels_1024_orders_bytes"] == 1000 * 8 * (200 * 4 + 1024 * 9 + 15)


@pytest.mark.slow
def test_book_env_row_counts_background_events_per_step():
    from lobgym.config import load_env_config

    row = bench_book_env(load_env_config(short_cst2010()), n_envs=3, min_seconds=0.05)
    # cst2010 runs ~38 background events per second and book; here each 20-step episode also starts
    # with a 30-second warm-up that the row counts, so ~38 * (20 + 30) / 20 per step
    assert 30 * 50 / 20 < row.events_per_step < 50 * 50 / 20
    assert row.steps_per_s > 0 and row.bare_steps_per_s > row.steps_per_s


# ------------------------------------------------------------------------ the limit row and threads
@pytest.mark.parametrize("kernel", [_minimal_serial, _minimal_parallel], ids=["serial", "threaded"])
def test_minimal_kernel_is_the_same_market_with_the_same_draws(kernel):
    """The limit row simulates what the env does: quoting the same depths, mid, cash and inventory agree."""
    import numpy as np

    import lobgym
    from lobgym.config import load_env_config
    from lobgym.market.rng import make_rng, seed_rng
    from lobgym.simulation import market_params

    n, steps = 40, 150  # under as2008's 200-step horizon: no reset in either
    cfg = load_env_config("as2008")
    venv = lobgym.make_vec_env(cfg, n_envs=n, seed=0)
    venv.reset()
    actions = np.full((n, venv.sim.action_dim), -0.5, dtype=np.float32)
    for _ in range(steps):
        venv.step(actions)
    depth = float(venv.sim.outcome.bid_depth[0])
    p = market_params(cfg)
    rng = make_rng(n)
    seed_rng(rng, np.arange(n, dtype=np.uint64))
    mid, cash = np.full(n, p.s0), np.zeros(n)
    inventory, step = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    for _ in range(steps):
        kernel(rng, p, depth, depth, mid, cash, inventory, step)
    state = venv.sim.state
    assert (step == steps).all() and np.abs(inventory).max() > 0  # it traded
    np.testing.assert_array_equal(mid, state.mid)
    np.testing.assert_array_equal(inventory, state.inventory)
    np.testing.assert_array_equal(cash, state.cash)


def test_batched_row_reports_the_minimal_kernel_at_the_same_size():
    from lobgym.config import load_env_config

    (row,) = bench_batched(load_env_config("as2008"), n_envs=8, min_seconds=0.01)
    assert row.limit_steps_per_s > 0 and row.limit_ratio == row.steps_per_s / row.limit_steps_per_s


def test_crossover_measures_both_kernels_and_says_which_lobgym_picks():
    from lobgym.config import load_env_config
    from lobgym.simulation import PARALLEL_MIN_ENVS

    rows = bench_crossover(load_env_config("as2008"), (4, PARALLEL_MIN_ENVS), min_seconds=0.01)
    assert [r["lobgym_picks"] for r in rows] == ["serial", "threaded"]
    for r in rows:
        assert r["serial_steps_per_s"] > 0 and r["threaded_steps_per_s"] > 0
        assert r["threaded_over_serial"] == r["threaded_steps_per_s"] / r["serial_steps_per_s"]


# ------------------------------------------------------------------------- the benchmark spec (--all)
TINY = {"kind": "benchmark", "name": "tiny", "seconds": 0.01,
        "reduced_form": {"envs": ["as2008"], "n_envs": [1, 10]},
        "book_flow": {"books": 2, "seconds": 3}}


def test_shipped_benchmark_spec_validates():
    spec = load_bench_spec("env_benchmark")
    assert isinstance(spec, BenchSpec) and spec.kind == "benchmark" and spec.name == "env_benchmark"
    assert spec.reduced_form.n_envs and spec.book.n_envs and spec.book_flow is not None


@pytest.mark.parametrize(("change", "expected"), [
    ({"kind": "training"}, ["kind = 'training'", "'benchmark'"]),
    ({"seconds": 0}, ["seconds = 0", "greater than 0"]),
    ({"reduced_form": {"envs": ["as2008"], "n_envs": [0, 10]}}, ["reduced_form.n_envs = [0, 10]", ">= 1"]),
    ({"reduced_form": {"envs": ["as2008"], "n_envs": [10, 10]}}, ["reduced_form.n_envs", "distinct"]),
    ({"reduced_form": {"envs": ["as2008"], "n_envs": [1], "sizes": [2]}},
     ["reduced_form.sizes", "allowed: envs, n_envs, single"]),
    ({"reduced_form": {"envs": ["cst2010"], "n_envs": [1]}},
     ["reduced_form.envs", "'cst2010'", "market.kind = book", "reduced-form market envs only"]),
    ({"book": {"envs": ["as2008"], "n_envs": [1]}}, ["book.envs", "'as2008'", "order-book market envs only"]),
    ({"book": {"envs": ["no_such_env"], "n_envs": [1]}}, ["book.envs", "no_such_env", "cst2010"]),
    ({"book_flow": "yes"}, ["book_flow = 'yes'", "true, false"]),
    ({"training": {"agents": ["random"]}}, ["training.agents", "'random'", "ppo"]),
    ({"trainig": {"agents": ["ppo"]}}, ["trainig", "allowed:", "training"]),
])
def test_bad_spec_errors_name_field_value_and_what_is_allowed(change, expected):
    with pytest.raises(ConfigError) as err:
        load_bench_spec(TINY | change)
    for text in expected:
        assert text in str(err.value), str(err.value)


def test_spec_with_nothing_to_measure_is_refused():
    with pytest.raises(ConfigError, match="reduced_form, book, book_flow, training"):
        load_bench_spec({"kind": "benchmark"})
    assert load_bench_spec(TINY | {"book_flow": True}).book_flow.books == 100  # true: the defaults
    assert load_bench_spec(TINY | {"book_flow": False}).book_flow is None


def _check_outputs(out, result):
    data = json.loads((out / "benchmark.json").read_text())
    assert data["kind"] == "benchmark" and data["name"] == result["name"]
    png = (out / "throughput.png").read_bytes()
    assert len(png) > 1000 and png.startswith(b"\x89PNG\r\n\x1a\n")
    return data, (out / "README.md").read_text()


@pytest.mark.slow
def test_run_spec_writes_json_figure_and_report(tmp_path):
    out = tmp_path / "bench"
    book_yaml = tmp_path / "small_book.yaml"
    book_yaml.write_text(yaml.safe_dump(short_cst2010()))
    spec = TINY | {"book": {"envs": [str(book_yaml)], "n_envs": [2], "single": False}}
    result = run_spec(spec, out, progress=False, command=["lobgym", "bench", "--all"])
    data, readme = _check_outputs(out, result)
    rows = data["rows"]
    assert [(r["market"], r["n_envs"], r["bare_steps_per_s"] is None) for r in rows] == [
        ("reduced_form", 1, True), ("reduced_form", 1, False), ("reduced_form", 10, False), ("book", 2, False)]
    for r in rows[1:]:
        assert r["steps_per_s"] > 0 and r["ratio_to_bare"] == pytest.approx(r["steps_per_s"] / r["bare_steps_per_s"])
        assert r["memory_bytes_per_env"] == pytest.approx(r["memory_bytes"] / r["n_envs"])
    # memory per env does not depend on N (one row of each per-env array per env); a book weighs far more
    assert all(r["threads"] == 1 for r in rows)  # N below the parallel thresholds: single-thread kernels
    assert rows[1]["memory_bytes_per_env"] == rows[2]["memory_bytes_per_env"] > 0
    assert rows[3]["memory_bytes_per_env"] > 10 * rows[1]["memory_bytes_per_env"]
    assert rows[3]["events_per_s"] == pytest.approx(rows[3]["steps_per_s"] * rows[3]["events_per_step"])
    assert data["book_flow"]["n_books"] == 2 and data["book_flow"]["events_per_s"] > 0
    assert data["training"] == [] and data["import_and_first_step_s"] is None
    assert data["command"] == "lobgym bench --all"
    assert set(data["versions"]) >= {"lobgym", "numpy", "numba", "stable-baselines3", "torch"}
    assert data["machine"]["numba_threads"] >= 1 and len(data["machine"]["load_average_start"]) == 3
    # the report: one table line per row, the book engine, the machine, the command and the figure
    assert readme.startswith("# tiny")
    assert readme.count("| as2008 |") == 3 and readme.count("| small_book |") == 1
    assert "## Order-book market" in readme and "## Book engine" in readme and "## Training" not in readme
    assert "`lobgym bench --all`" in readme and "](throughput.png)" in readme and "numba" in readme


def test_run_spec_accepts_a_yaml_path_and_writes_training_rows(tmp_path, monkeypatch):
    import lobgym.tools.bench as bench

    calls = []

    def fake_training(env, agent, timesteps):  # the real one is timed in test_training; here: the plumbing
        calls.append((env, agent, timesteps))
        return {"what": "PPO training (ppo)", "env": env, "agent": agent, "n_envs": 16, "timesteps": timesteps,
                "seconds": 2.0, "timesteps_per_s": timesteps / 2.0, "env_seconds": 0.5, "env_share": 0.25}

    monkeypatch.setattr(bench, "bench_training", fake_training)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"kind": "benchmark", "training": {"agents": ["ppo"], "timesteps": 64}}))
    result = run_spec(path, tmp_path / "out", progress=False)
    assert result["name"] == "spec" and calls == [("as2008", "ppo", 64)] and result["rows"] == []
    _, readme = _check_outputs(tmp_path / "out", result)
    assert "## Training" in readme and "| PPO training (ppo) | as2008 | 16 | 64 |" in readme


@pytest.mark.slow
@pytest.mark.parametrize("command", ["bench --all --spec {spec} --out {out}", "study {spec} --out {out}"])
def test_cli_bench_all_runs_a_spec_into_out(tmp_path, command):
    """``lobgym bench --all`` and ``lobgym study`` on a ``kind: benchmark`` spec run the same benchmark."""
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "report"
    argv = command.format(spec=spec, out=out).split()
    proc = run_lobgym(*argv)
    assert "VecEnv.step" in proc.stdout and "book engine" in proc.stdout and str(out / "README.md") in proc.stdout
    data = json.loads((out / "benchmark.json").read_text())
    assert [r["n_envs"] for r in data["rows"]] == [1, 1, 10]
    assert data["command"].startswith("lobgym " + command.split()[0])
    assert (out / "throughput.png").stat().st_size > 0 and (out / "README.md").is_file()
    bad = run_lobgym("bench", "--all", "--spec", str(tmp_path / "nope.yaml"), check=False)
    assert bad.returncode == 2 and "nope.yaml" in bad.stdout
