"""TensorBoard logs of a tiny real training run, read back with TensorBoard's own reader: each
evaluation is written at the timestep it measured, SB3's scalars are neither lost nor duplicated,
and every run logs the learning rate its optimizer stepped with."""

from __future__ import annotations

import json

import pytest
from helpers import tb_scalars

from lobgym.agents import training

ROLLOUT = 4 * 16  # n_envs x n_steps
BUDGET = 4 * ROLLOUT
PRESET = {"name": "tb_ppo", "kind": "ppo", "n_envs": 4, "policy": {"net_arch": [8]},
          "hyperparams": {"n_steps": 16, "batch_size": 16, "n_epochs": 1},
          "timesteps": BUDGET, "eval": {"every": ROLLOUT, "episodes": 2, "baselines": ["random"]},
          "checkpoint": {"every": BUDGET, "keep": 1}}


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> tuple[dict[str, list[tuple[int, float]]], list[dict]]:
    run_dir = training.start("cj2015", {**PRESET, "learning_rate": 7e-4}, runs_dir=tmp_path_factory.mktemp("runs"),
                             name="fixed", progress=False, command=["lobgym", "train"])
    return tb_scalars(run_dir), json.loads((run_dir / "evaluations.json").read_text())


def test_each_evaluation_is_logged_at_the_timestep_it_measured(logs):
    scalars, evaluations = logs
    assert [e["timesteps"] for e in evaluations] == [0, ROLLOUT, 2 * ROLLOUT, 3 * ROLLOUT, BUDGET]
    for key in ("return", "pnl", "mean_abs_inventory"):
        logged = scalars[f"eval/{key}"]
        assert [step for step, _ in logged] == [e["timesteps"] for e in evaluations], key
        assert [v for _, v in logged] == pytest.approx([e[key] for e in evaluations], rel=1e-6), key
    assert [step for step, _ in scalars["eval_baselines/random_return"]] == [e["timesteps"] for e in evaluations]
    assert [step for step, _ in scalars["eval/best"]] == [e["timesteps"] for e in evaluations]


def test_sb3_scalars_are_neither_lost_nor_duplicated(logs):
    scalars, _ = logs
    rollout_ends = [ROLLOUT * k for k in range(1, BUDGET // ROLLOUT + 1)]
    assert [step for step, _ in scalars["time/fps"]] == rollout_ends
    # PPO trains after every rollout; SB3 logs train/* at the end of the next one, and the last train()'s
    # at the final dump (at the budget, like the one before it)
    trains = [*rollout_ends[1:], BUDGET]
    for tag in ("train/learning_rate", "train/loss", "train/approx_kl", "train/grad_norm_policy"):
        assert [step for step, _ in scalars[tag]] == trains, tag


def test_a_fixed_rate_run_logs_lr_now_as_the_rate_its_optimizer_used(logs):
    scalars, evaluations = logs
    lr_now = scalars["train/lr_now"]
    assert len(lr_now) == BUDGET // ROLLOUT  # one per train(), the last one's too
    assert [v for _, v in lr_now] == pytest.approx([7e-4] * len(lr_now), rel=1e-6)
    assert [step for step, _ in lr_now] == [step for step, _ in scalars["train/learning_rate"]]
    assert all(e["lr"] == pytest.approx(7e-4) for e in evaluations)


def test_a_scheduled_rate_is_logged_as_it_changes(tmp_path):
    lr = {"base": {"kind": "linear", "start": 1e-3, "end": 1e-4}}
    run_dir = training.start("cj2015", {**PRESET, "learning_rate": lr, "eval": {**PRESET["eval"], "every": BUDGET}},
                             runs_dir=tmp_path, name="linear", progress=False, command=["lobgym", "train"])
    scalars = tb_scalars(run_dir)
    lr_now = [v for _, v in scalars["train/lr_now"]]
    assert len(lr_now) == BUDGET // ROLLOUT and all(a > b for a, b in zip(lr_now, lr_now[1:], strict=False))
    assert lr_now == pytest.approx([v for _, v in scalars["train/learning_rate"]], rel=1e-6)
