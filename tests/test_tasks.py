"""The task suite (``lobgym.tasks``, ``lobgym tasks``, ``lobgym score``): tasks cover the env presets, seed
blocks are held out, the references score exactly 0 and 1, scores match a hand computation, and the
ratio interval of :func:`lobgym.stats.paired_ratio_ci` behaves."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from helpers import ROOT

from lobgym import cli, tasks
from lobgym.agents import make_agent
from lobgym.config import BookEnvConfig, TrainingConfig, load_agent_config, load_env_config
from lobgym.evaluation import evaluate
from lobgym.presets import list_presets, load_yaml
from lobgym.stats import BCA_MIN_N, paired_ratio_ci

TUNING_JSON = ROOT / "experiments" / "tasks" / "book_quoter_tuning.json"


# ------------------------------------------------------------------------------------------ tasks
def test_the_tasks_are_the_shipped_env_presets_with_their_market_kind():
    assert set(tasks.TASKS) == set(list_presets("envs"))
    for name, t in tasks.TASKS.items():
        env = load_env_config(t.env)
        assert t.name == name == env.name
        assert t.kind == ("book" if isinstance(env, BookEnvConfig) else "reduced_form")
        assert 2 <= t.episodes <= tasks.MAX_EPISODES and t.why


def test_seed_blocks_are_disjoint_from_each_other_and_from_training_evaluation_and_tuning_seeds():
    blocks = sorted((t.seed, t.seed + tasks.MAX_EPISODES) for t in tasks.TASKS.values())
    for (_, end), (start, _) in zip(blocks, blocks[1:], strict=False):
        assert end <= start
    used = [(tasks.TUNING_SEED, tasks.TUNING_SEED + tasks.TUNING_EPISODES)]
    for name in list_presets("agents"):
        cfg = load_agent_config(name)
        if isinstance(cfg, TrainingConfig):  # training env i on seed i (seed 0..); evaluations on eval.seed + j
            used += [(0, 1000 + cfg.n_envs), (cfg.eval.seed, cfg.eval.seed + cfg.eval.episodes)]
    default_eval = TrainingConfig(kind="ppo").eval
    used.append((default_eval.seed, default_eval.seed + 100_000))  # even a 100,000-episode evaluation
    for lo, hi in used:
        for start, end in blocks:
            assert hi <= start or end <= lo, ((lo, hi), (start, end))


def test_every_reference_is_a_preset_that_builds_on_its_task():
    for t in tasks.TASKS.values():
        env = tasks.task_env(t)
        for name in (t.zero, t.reference):
            assert name in list_presets("agents")
            make_agent(name, env)  # builds: the right market kind and the env has what it reads


def test_book_references_are_the_tuned_quoters_from_the_committed_tuning_table():
    table = json.loads(TUNING_JSON.read_text())["tasks"]
    for t in tasks.TASKS.values():
        if t.kind != "book":
            continue
        result = table[t.name]
        assert t.reference == f"book_quoter_{t.name}"
        cfg = load_agent_config(t.reference)
        assert cfg.kind == "book_quoter" and cfg.params == result["best"]["params"]
        assert result["seeds"] == [tasks.TUNING_SEED, tasks.TUNING_SEED + tasks.TUNING_EPISODES - 1]
        grids = tasks.tuning_grids(t.name)  # the base grid and the task's extensions, every point once
        assert result["grids"] == [{k: list(v) for k, v in g.items()} for g in grids]
        points = [p for g in grids for p in tasks.grid_points(g)]
        keys = [tasks._key(r["params"]) for r in result["rows"]]
        assert len(set(keys)) == len(keys) and set(keys) == {tasks._key(p) for p in points}
        assert result["best"]["return_mean"] == max(r["return_mean"] for r in result["rows"])
        env = load_env_config(t.env)
        assert cfg.params["offset"] <= env.action.max_offset and cfg.params["size"] <= env.action.max_size
        assert f"{result['best']['return_mean']:.4f}" in cfg.description


def test_the_tuning_grid_has_192_points_within_the_book_action_spaces():
    points = tasks.grid_points()
    assert len(points) == 192 and len({json.dumps(p) for p in points}) == 192
    with pytest.raises(ValueError, match="book_quoter tuning needs a book task; allowed: cst2010"):
        tasks.tune_book_quoter("as2008")
    with pytest.raises(ValueError, match="action.max_offset = 5"):
        tasks.tune_book_quoter("cst2010", grids=[{"offset": (6,)}], episodes=2)
    with pytest.raises(ValueError, match="reach the task seed blocks"):
        tasks.tune_book_quoter("cst2010", seed=tasks.SEED_BASE, episodes=2)


def test_tuning_runs_every_point_once_picks_the_best_and_reuses_known_rows_exactly():
    grids = [{"offset": (0, 1), "skew": (0.5,)}, {"offset": (1, 2), "skew": (0.5,)}]
    result = tasks.tune_book_quoter("cst2010", grids=grids, episodes=3)
    assert [(r["params"]["offset"], r["stage"]) for r in result["rows"]] == [(0, 0), (1, 0), (2, 1)]
    assert result["best"]["return_mean"] == max(r["return_mean"] for r in result["rows"])
    env = load_env_config("cst2010")
    by_hand = evaluate(make_agent({"kind": "book_quoter", "params": {"offset": 2, "skew": 0.5}}, env), env,
                       episodes=3, seed=tasks.TUNING_SEED).returns.mean()
    assert result["rows"][2]["return_mean"] == by_hand
    again = tasks.tune_book_quoter("cst2010", grids=grids, episodes=3, known=result["rows"][:2])
    assert again["rows"] == result["rows"]
    preset = tasks.tuned_preset_yaml(result)
    assert "tuned on seeds 0..2" in preset and "then the extension offset in {1, 2}" in preset
    assert load_agent_config(load_yaml(preset)).kind == "book_quoter"


# ------------------------------------------------------------------------------------------ score
def test_random_scores_exactly_0_and_the_reference_exactly_1_on_the_same_seeds():
    zero = tasks.score("random", "as2008", episodes=20)
    assert zero.score.mean == 0.0 and (zero.score.low, zero.score.high) == (0.0, 0.0)
    assert zero.returns["agent"] == zero.returns["zero"] and zero.score.method == "exact"
    one = tasks.score("cartea_jaimungal", "cj2015", episodes=20)
    assert one.score.mean == 1.0 and (one.score.low, one.score.high) == (1.0, 1.0)
    assert one.seed == tasks.TASKS["cj2015"].seed and one.overridden


def test_a_score_on_a_tiny_protocol_matches_a_hand_computation():
    t = tasks.TASKS["cj2015"]
    got = tasks.score("fixed_spread", "cj2015", episodes=10)
    env = load_env_config("cj2015")
    r = {name: evaluate(make_agent(name, env), env, episodes=10, seed=t.seed).returns
         for name in ("fixed_spread", "random", "cartea_jaimungal")}
    x, z, o = r["fixed_spread"], r["random"], r["cartea_jaimungal"]
    ratio = (x.mean() - z.mean()) / (o.mean() - z.mean())
    assert got.score.mean == pytest.approx(ratio, rel=1e-12)
    # below 200 episodes: the delta-method t interval, by hand
    se = np.std((x - z) - ratio * (o - z), ddof=1) / math.sqrt(10) / abs(o.mean() - z.mean())
    half = 2.2621571627409915 * se  # t_{0.975, 9}
    assert got.score.method == "delta"
    assert (got.score.low, got.score.high) == pytest.approx((ratio - half, ratio + half), rel=1e-9)
    assert got.returns == pytest.approx({"agent": x.mean(), "zero": z.mean(), "reference": o.mean()})
    assert got.episode_returns["agent"] == x.tolist()


def test_the_interval_contains_the_score_and_shrinks_with_the_number_of_episodes():
    small = tasks.score("avellaneda_stoikov", "cj2015", episodes=30).score
    large = tasks.score("avellaneda_stoikov", "cj2015", episodes=300).score
    for ci in (small, large):
        assert ci.low < ci.mean < ci.high
    assert large.method == "paired_bca" and small.method == "delta"
    assert large.high - large.low < small.high - small.low


def test_paired_ratio_ci_bootstrap_and_delta_method_agree_at_large_n_and_refuse_bad_input():
    rng = np.random.default_rng(3)
    n = 2000
    market = rng.normal(0, 5, n)  # noise shared by the three agents (common random numbers) cancels
    z, o, x = market + rng.normal(0, 1, n), market + 2 + rng.normal(0, 1, n), market + 1 + rng.normal(0, 1, n)
    bca, delta = paired_ratio_ci(x, z, o), paired_ratio_ci(x, z, o, method="delta")
    assert bca.method == "paired_bca" and n >= BCA_MIN_N and delta.method == "delta"
    assert bca.mean == delta.mean == pytest.approx((x - z).mean() / (o - z).mean())
    assert bca.low == pytest.approx(delta.low, abs=0.01) and bca.high == pytest.approx(delta.high, abs=0.01)
    assert paired_ratio_ci(x, z, o) == bca  # deterministic (fixed bootstrap seed)
    assert "95% paired BCa bootstrap interval, n = 2000 episodes" == bca.label("episodes")
    with pytest.raises(ValueError, match="differ in length"):
        paired_ratio_ci(x[:-1], z, o)
    with pytest.raises(ValueError, match="same mean"):
        paired_ratio_ci(x, z, z)
    with pytest.raises(ValueError, match="at least 2"):
        paired_ratio_ci(x[:1], z[:1], o[:1])


def test_the_delta_interval_covers_the_true_ratio_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    n, reps, hits = 50, 400, 0
    for _ in range(reps):
        market = rng.normal(0, 3, n)
        z, o, x = market + rng.normal(0, 1, n), market + 2 + rng.normal(0, 1, n), market + 1 + rng.normal(0, 1, n)
        ci = paired_ratio_ci(x, z, o)
        hits += ci.low <= 0.5 <= ci.high
    assert 0.91 <= hits / reps <= 0.98


def test_bad_input_names_the_value_and_what_is_allowed():
    with pytest.raises(ValueError, match=r"--task 'nope': unknown task; allowed: as2008, as2008_paper, cj2015"):
        tasks.score("random", "nope", episodes=2)
    with pytest.raises(ValueError, match=r"--episodes 1: must be between 2 and"):
        tasks.score("random", "as2008", episodes=1)
    with pytest.raises(ValueError, match=r"'cst2010'.*avellaneda_stoikov.*reduced_form.*allowed tasks for this "
                                         r"agent: as2008, as2008_paper, cj2015"):
        tasks.score("avellaneda_stoikov", "cst2010", episodes=2)
    with pytest.raises(ValueError, match=r"'as2008'.*book_quoter.*allowed tasks for this agent: cst2010, hawkes"):
        tasks.score("book_quoter", "as2008", episodes=2)


# -------------------------------------------------------------------------------------------- CLI
def test_cli_tasks_lists_every_task_with_kind_protocol_and_references(runner):
    result = runner.invoke(cli.app, ["tasks"])
    assert result.exit_code == 0, result.output
    for t in tasks.TASKS.values():
        for text in (t.name, t.kind, t.seeds, t.reference):
            assert text in result.output
    assert "random" in result.output and "1,000" in result.output


def test_cli_score_prints_the_score_and_writes_json_with_every_field(runner, tmp_path):
    out = tmp_path / "score.json"
    result = runner.invoke(cli.app, ["score", "--agent", "random", "--task", "as2008", "--episodes", "20",
                                     "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "as2008" in result.output and "protocol overridden" in result.output
    data = json.loads(out.read_text())
    assert data["agent"] == "random" and data["episodes_override"] == 20 and data["protocol_overridden"]
    (row,) = data["tasks"]
    for key in ("task", "agent", "episodes", "seed", "seeds", "protocol_overridden", "score", "score_ci",
                "score_se", "score_method", "return_mean", "return_se", "zero_agent", "reference_agent",
                "episode_returns"):
        assert key in row, key
    assert row["task"] == "as2008" and row["episodes"] == 20 and row["seed"] == tasks.TASKS["as2008"].seed
    assert row["score"] == 0.0 and row["score_ci"] == [0.0, 0.0]
    assert set(row["return_mean"]) == {"agent", "zero", "reference"}
    assert row["reference_agent"] == "avellaneda_stoikov_symmetric"
    assert len(row["episode_returns"]["reference"]) == 20
    assert row["score_method"] == "95% zero-width interval (the same score in every resample), n = 20 episodes"


def test_cli_score_by_default_scores_every_task_the_agent_builds_on_and_says_what_it_skipped(runner, tmp_path):
    out = tmp_path / "cj.json"
    result = runner.invoke(cli.app, ["score", "--agent", "cartea_jaimungal", "--episodes", "5", "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert [r["task"] for r in data["tasks"]] == ["cj2015"] and data["tasks"][0]["score"] == 1.0
    assert set(data["skipped"]) == {"as2008", "as2008_paper"}  # no inventory penalty to read phi from
    assert "skipped as2008" in result.output and "phi" in result.output


@pytest.mark.parametrize(("args", "fragments"), [
    (["--agent", "random", "--task", "nope"], ["--task 'nope'", "allowed: as2008, as2008_paper"]),
    (["--agent", "avellaneda_stoikov", "--task", "cst2010"], ["cst2010", "allowed tasks for this agent: as2008"]),
    (["--agent", "random", "--episodes", "1"], ["--episodes 1", "between 2 and"]),
    (["--agent", "no_such_agent"], ["no_such_agent", "random"]),
    (["--agent", "ppo"], ["training preset", "lobgym train"]),
    (["--agent", "cartea_jaimungal", "--task", "as2008"], ["as2008", "phi"]),
])
def test_cli_score_errors_name_the_value_and_what_is_allowed(runner, args, fragments):
    result = runner.invoke(cli.app, ["score", *args])
    assert result.exit_code == 2, result.output
    assert "error" in result.output
    for fragment in fragments:
        assert fragment in result.output, (fragment, result.output)


@pytest.mark.slow
def test_book_tasks_score_random_0_and_the_tuned_reference_1_and_the_default_quoter_in_between():
    for name in ("cst2010", "hawkes", "queue_reactive"):
        ref = tasks.TASKS[name].reference
        assert tasks.score("random", name, episodes=4).score.mean == 0.0
        assert tasks.score(ref, name, episodes=4).score.mean == 1.0
    s = tasks.score("book_quoter", "cst2010", episodes=20)
    assert s.score.low < s.score.mean < s.score.high


@pytest.mark.slow
def test_a_trained_run_is_scored_with_its_own_action_and_observation_on_the_tasks_market(tmp_path, runner):
    from lobgym.agents import training

    preset = {"name": "tiny_ppo", "kind": "ppo", "n_envs": 2, "policy": {"net_arch": [8]},
              "hyperparams": {"n_steps": 64, "batch_size": 64, "n_epochs": 1, "gamma": 1.0},
              "timesteps": 128, "eval": {"every": 128, "episodes": 2}, "checkpoint": {"every": 128, "keep": 1}}
    run = training.start("cj2015", preset, seed=0, name="tiny", runs_dir=tmp_path, progress=False)
    run_env = training.RunConfig.read(run).env
    env = tasks.task_env(tasks.TASKS["as2008"], run_env)
    assert env.market == load_env_config("as2008").market and env.reward == load_env_config("as2008").reward
    assert env.action == run_env.action and env.observation == run_env.observation
    out = tmp_path / "run.json"
    result = runner.invoke(cli.app, ["score", "--agent", str(run), "--episodes", "5", "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert [r["task"] for r in data["tasks"]] == ["as2008", "as2008_paper", "cj2015"]
    assert "own action and observation" in data["tasks"][0]["interface"] and "own action" in result.output
    result = runner.invoke(cli.app, ["score", "--agent", str(run), "--task", "hawkes"])
    assert result.exit_code == 2 and "hawkes" in result.output and "reduced_form" in result.output
