"""Reward curricula: schedule maths against hand-worked values, config errors naming field and value,
envs whose reward follows the progress they are given (final weights by default), and ``lobgym train``
setting the weights per rollout, logging them, evaluating with the final ones and resuming exactly."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from helpers import preset, rewound_copy, tb_scalars, torch_members

import lobgym
from lobgym import curriculum
from lobgym.agents import training
from lobgym.agents.callbacks import RewardCurriculumCallback
from lobgym.config import ConfigError, load_env_config
from lobgym.env import MarketMakingEnv, make_simulation
from lobgym.state_files import read_state
from lobgym.vec_env import make_vec_env

PENALTY = "running_inventory_penalty"


def with_schedule(name: str, schedule: dict | None, weight: float = 1.0, phi: float = 0.5, **market) -> dict:
    """Preset ``name`` with the reward pnl + a running inventory penalty carrying ``schedule``."""
    data = preset(name)
    term: dict[str, Any] = {"term": PENALTY, "weight": weight, "params": {"phi": phi}}
    if schedule is not None:
        term["schedule"] = schedule
    data["reward"] = [{"term": "pnl"}, term]
    data["market"].update(market)
    return data


def schedule(spec: dict):
    """The validated schedule model of ``spec``."""
    return load_env_config(with_schedule("as2008", spec)).reward[1].schedule


# --------------------------------------------------------------------------------- schedule maths
RAMP = {"start": 0.0, "end": 1.0, "begin": 0.0, "until": 0.5}


@pytest.mark.parametrize(("spec", "expected"), [
    ({"kind": "linear", **RAMP}, {0.0: 0.0, 0.1: 0.2, 0.25: 0.5, 0.5: 1.0, 0.75: 1.0, 1.0: 1.0}),
    # down from 2 to 0.5 between 0.2 and 0.8: (1 - t) 2 + t 0.5 with t = (p - 0.2) / 0.6
    ({"kind": "linear", "start": 2.0, "end": 0.5, "begin": 0.2, "until": 0.8},
     {0.0: 2.0, 0.2: 2.0, 0.35: 1.625, 0.5: 1.25, 0.8: 0.5, 0.9: 0.5, 1.0: 0.5}),
    ({"kind": "linear", "start": 3.0, "end": 7.0}, {0.0: 3.0, 0.25: 4.0, 0.5: 5.0, 1.0: 7.0}),
    # w = (1 + cos(pi t)) / 2, m = w start + (1 - w) end
    ({"kind": "cosine", "start": 0.0, "end": 1.0},
     {0.0: 0.0, 0.25: (1 - math.sqrt(0.5)) / 2, 0.5: 0.5, 0.75: (1 + math.sqrt(0.5)) / 2, 1.0: 1.0}),
    ({"kind": "cosine", "start": 1.0, "end": 0.0, "begin": 0.5, "until": 1.0},
     {0.0: 1.0, 0.5: 1.0, 0.625: (1 + math.sqrt(0.5)) / 2, 0.75: 0.5, 1.0: 0.0}),
    ({"kind": "cosine", **RAMP}, {0.125: 0.5 - math.sqrt(0.5) / 2, 0.25: 0.5, 0.6: 1.0}),
    ({"kind": "step", "values": [0.0, 0.5, 2.0], "at": [0.25, 0.75]},
     {0.0: 0.0, 0.2499: 0.0, 0.25: 0.5, 0.5: 0.5, 0.7499: 0.5, 0.75: 2.0, 1.0: 2.0}),
    ({"kind": "step", "values": [4.0]}, {0.0: 4.0, 0.5: 4.0, 1.0: 4.0}),
    ({"kind": "constant"}, {0.0: 1.0, 0.3: 1.0, 1.0: 1.0}),
])
def test_multipliers_match_hand_worked_values(spec, expected):
    s = schedule(spec)
    got = {p: s.multiplier(p) for p in expected}
    assert got == pytest.approx(expected, abs=1e-15), spec
    assert [curriculum.multiplier(s, p) for p in expected] == list(got.values())


def test_ramps_are_exact_at_their_ends():
    for kind in ("linear", "cosine"):
        s = schedule({"kind": kind, "start": 0.1, "end": 0.3, "begin": 0.2, "until": 0.7})
        assert (s.multiplier(0.0), s.multiplier(0.2), s.multiplier(0.7), s.multiplier(1.0)) == (0.1, 0.1, 0.3, 0.3)


def test_no_schedule_is_one_and_progress_outside_zero_one_is_refused():
    assert curriculum.multiplier(None, 0.0) == curriculum.multiplier(None, 1.0) == 1.0
    s = schedule({"kind": "linear", **RAMP})
    for bad in (-0.1, 1.5, float("nan")):
        for f in (lambda p: curriculum.multiplier(None, p), s.multiplier, schedule({"kind": "step", "values": [1.0]}
                                                                                   ).multiplier):
            with pytest.raises(ValueError, match=r"^progress = .*: allowed: a fraction of the training budget in"):
                f(bad)


def test_reward_weights_are_each_weight_times_its_multiplier():
    data = with_schedule("as2008", {"kind": "linear", "start": 0.0, "end": 2.0}, weight=-3.0)
    data["reward"].append({"term": "terminal_inventory_penalty", "weight": 0.5, "params": {"alpha": 1.0},
                           "schedule": {"kind": "step", "values": [1.0, 4.0], "at": [0.5]}})
    cfg = load_env_config(data)
    np.testing.assert_array_equal(curriculum.reward_weights(cfg, 0.0), [1.0, -0.0, 0.5])
    np.testing.assert_array_equal(curriculum.reward_weights(cfg, 0.25), [1.0, -1.5, 0.5])
    np.testing.assert_array_equal(curriculum.reward_weights(cfg, 0.5), [1.0, -3.0, 2.0])
    np.testing.assert_array_equal(curriculum.reward_weights(cfg), [1.0, -6.0, 2.0])  # the final weights
    assert [t.weight_at(0.25) for t in cfg.reward] == [1.0, -1.5, 0.5]
    assert curriculum.scheduled_terms(cfg) == [(1, PENALTY), (2, "terminal_inventory_penalty")]
    assert curriculum.has_schedule(cfg)
    assert not curriculum.has_schedule(load_env_config("cj2015"))
    assert not curriculum.has_schedule(load_env_config(with_schedule("as2008", {"kind": "constant"})))


# ------------------------------------------------------------------------------------ config errors
@pytest.mark.parametrize(("spec", "fragments"), [
    ({"kind": "linear", "start": 0.0, "end": 1.0, "begin": 0.6, "until": 0.5},
     ["reward[1].schedule: until = 0.5: must be above begin = 0.6"]),
    ({"kind": "lin", "start": 0.0}, ["reward[1].schedule: kind = 'lin': unknown schedule",
                                     "allowed: constant, linear, cosine, step"]),
    ({"start": 0.0, "end": 1.0}, ["reward[1].schedule: kind: missing; allowed: constant, linear, cosine, step"]),
    ({"kind": "linear", "start": -1.0, "end": 1.0}, ["reward[1].schedule.start = -1.0",
                                                     "greater than or equal to 0"]),
    ({"kind": "cosine", "start": 0.0}, ["reward[1].schedule.end", "Field required"]),
    ({"kind": "cosine", "start": 0.0, "end": 1.0, "until": 1.5}, ["reward[1].schedule.until = 1.5",
                                                                  "less than or equal to 1"]),
    ({"kind": "linear", "start": 0.0, "end": 1.0, "begin": 1.0}, ["reward[1].schedule.begin = 1.0", "less than 1"]),
    ({"kind": "linear", "start": 0.0, "end": float("inf")}, ["reward[1].schedule.end = inf", "finite number"]),
    ({"kind": "linear", "start": 0.0, "end": 1.0, "steps": 3},
     ["reward[1].schedule: steps = 3: not a field of a linear schedule; allowed: kind, start, end, begin, until"]),
    ({"kind": "step", "values": [1.0, 2.0], "at": [0.5, 0.7]},
     ["reward[1].schedule: values has 2 entries: need one more than at, i.e. 3"]),
    ({"kind": "step", "values": [1.0, 2.0, 3.0], "at": [0.5, 0.4]},
     ["reward[1].schedule: at[1] = 0.4: must be above at[0] = 0.5"]),
    ({"kind": "step", "values": [1.0, 2.0], "at": [0.0]},
     ["reward[1].schedule: at[0] = 0: allowed: a progress strictly between 0 and 1"]),
    ({"kind": "step", "values": [1.0, 2.0], "at": [1.0]}, ["at[0] = 1: allowed: a progress strictly between"]),
    ({"kind": "step", "values": [1.0, -2.0], "at": [0.5]}, ["reward[1].schedule.values[1] = -2.0"]),
    ({"kind": "step", "values": []}, ["reward[1].schedule.values", "at least 1 item"]),
    ({"kind": "constant", "start": 1.0}, ["schedule: start = 1.0: not a field of a constant schedule; allowed: kind"]),
    ({"kind": "step", "value": [1.0]}, ["schedule: value = [1.0]: not a field of a step schedule; allowed: kind, "
                                        "values, at"]),
    ({"kind": {"a": 1}}, ["reward[1].schedule: kind = {'a': 1}: unknown schedule"]),
    ("linear", ["reward[1].schedule = 'linear'", "valid dictionary"]),
])
def test_bad_schedules_are_refused_naming_field_value_and_what_is_allowed(spec, fragments):
    with pytest.raises(ConfigError) as err:
        load_env_config(with_schedule("as2008", spec))
    msg = str(err.value)
    assert all(f in msg for f in fragments), msg
    assert "\n" not in msg


def test_a_weight_times_the_largest_multiplier_is_bounded_like_a_weight():
    with pytest.raises(ConfigError, match=r"reward\[1\]: schedule: weight = -2000 times the schedule's largest "
                                          r"multiplier 1000 is 2e\+06: allowed: \|weight \* multiplier\| at most "
                                          r"1e\+06"):
        load_env_config(with_schedule("as2008", {"kind": "step", "values": [0.0, 1000.0], "at": [0.5]},
                                      weight=-2000.0))
    load_env_config(with_schedule("as2008", {"kind": "step", "values": [0.0, 500.0], "at": [0.5]}, weight=-2000.0))


def test_terms_without_schedule_validate_and_dump_as_before():
    cfg = load_env_config("cj2015")
    assert all(t.schedule is None for t in cfg.reward)
    # no "schedule" key: run configs and study trial keys (hashes of the dump) are unchanged
    assert cfg.model_dump(mode="json")["reward"][0] == {"term": "pnl", "weight": 1.0, "params": {}}
    assert all("schedule" not in t for t in cfg.model_dump()["reward"])
    cfg2 = load_env_config(with_schedule("as2008", {"kind": "cosine", **RAMP}))
    again = load_env_config(json.loads(json.dumps(cfg2.model_dump(mode="json"))))  # what config.yaml holds
    assert again == cfg2 and again.reward[1].schedule.kind == "cosine"


# -------------------------------------------------------------------------------- env reward follows
def _run(venv, steps: int, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rewards and weighted terms of ``steps`` steps of fixed ``actions``."""
    venv.reset()
    rewards, terms = [], []
    for _ in range(steps):
        _, r, _, _ = venv.step(actions)
        rewards.append(venv.sim.buffers.rewards.copy())
        terms.append(venv.sim.buffers.terms.copy())
    return np.array(rewards), np.array(terms)


def test_the_reward_terms_scale_exactly_with_the_progress_set():
    data = with_schedule("as2008", {"kind": "linear", "start": 0.0, "end": 2.0, "until": 0.5}, phi=0.1,
                         inventory={"initial": 3})  # a non-zero inventory from the first step
    n, steps = 4, 30
    actions = np.full((n, 2), -0.5, dtype=np.float32)
    out = {}
    for progress in (0.0, 0.125, 1.0):
        venv = make_vec_env(data, n_envs=n, seed=7)
        venv.set_reward_progress(progress)
        assert venv.reward_progress == progress
        out[progress] = _run(venv, steps, actions)
    (_, t0), (_, t_q), (r1, t1) = out[0.0], out[0.125], out[1.0]
    assert (t1[..., 1] < 0).all()  # the penalty is active at every step: the comparisons below can fail
    np.testing.assert_array_equal(t0[..., 0], t1[..., 0])  # same market, same PnL
    np.testing.assert_array_equal(t0[..., 1], 0.0)  # weight 0 at progress 0
    np.testing.assert_array_equal(t_q[..., 1], t1[..., 1] / 4)  # m(0.125) = 0.5 = m(1) / 4, exact in binary
    np.testing.assert_array_equal(r1, t1.sum(axis=-1))
    # a fresh env takes the final weights: the unscheduled reward with weight 2 exactly
    fresh = make_vec_env(data, n_envs=n, seed=7)
    ref = make_vec_env(with_schedule("as2008", None, weight=2.0, phi=0.1, inventory={"initial": 3}), n_envs=n, seed=7)
    np.testing.assert_array_equal(_run(fresh, steps, actions)[1], _run(ref, steps, actions)[1])


def test_setting_the_progress_mid_episode_changes_the_reward_from_the_next_step():
    data = with_schedule("as2008", {"kind": "step", "values": [0.0, 1.0], "at": [0.5]}, phi=0.1,
                         inventory={"initial": 3})
    env = MarketMakingEnv(data)
    np.testing.assert_array_equal(env.sim.reward_spec.weights, [1.0, 1.0])  # final weights
    assert env.reward_progress == 1.0
    env.set_reward_progress(0.2)
    np.testing.assert_array_equal(env.sim.reward_spec.weights, [1.0, 0.0])
    env.reset(seed=3)
    action = np.zeros(2, dtype=np.float32)
    seen = []
    for t in range(6):
        if t == 3:
            env.set_reward_progress(0.5)
        _, reward, _, _, info = env.step(action)
        seen.append(info["reward_terms"][PENALTY])
        assert reward == sum(info["reward_terms"].values())
    assert seen[:3] == [0.0, 0.0, 0.0] and all(v < 0 for v in seen[3:]), seen
    with pytest.raises(ValueError, match=r"progress = 2: allowed"):
        env.set_reward_progress(2)


def test_gymnasium_make_and_evaluation_use_the_final_weights():
    import gymnasium as gym

    data = with_schedule("as2008", {"kind": "cosine", "start": 5.0, "end": 0.25}, weight=2.0)
    env = gym.make(lobgym.ENV_ID, config=data)
    np.testing.assert_array_equal(env.unwrapped.sim.reward_spec.weights, [1.0, 0.5])
    from lobgym.agents import make_agent
    from lobgym.evaluation import evaluate

    agent = make_agent("fixed_spread", "as2008")
    scheduled = evaluate(agent, data, episodes=4, seed=11).summary
    final = evaluate(agent, with_schedule("as2008", None, weight=0.5), episodes=4, seed=11).summary
    assert scheduled[f"term_{PENALTY}_mean"] == final[f"term_{PENALTY}_mean"] < 0
    assert scheduled == final


def test_a_book_config_gets_its_final_weights_too():
    from lobgym.book_simulation import BookSimulation

    data = preset("cst2010")
    data["reward"] = [{"term": "pnl", "schedule": {"kind": "step", "values": [0.5, 3.0], "at": [0.5]}},
                      {"term": "fees", "weight": 2.0}]
    sim = make_simulation(load_env_config(data), 2)  # building it compiles nothing but the seeding
    assert type(sim) is BookSimulation
    np.testing.assert_array_equal(sim.reward_spec.weights, [3.0, 2.0])


def test_the_callback_names_a_repeated_term_by_its_index():
    data = with_schedule("as2008", {"kind": "linear", **RAMP})
    data["reward"].append({"term": PENALTY, "params": {"phi": 1.0}, "schedule": {"kind": "linear", **RAMP}})
    data["reward"].append({"term": "fees", "schedule": {"kind": "constant"}})
    cb = RewardCurriculumCallback(load_env_config(data), 100)
    assert cb.tags == {1: f"curriculum/{PENALTY}_1", 2: f"curriculum/{PENALTY}_2"}
    with pytest.raises(ValueError, match=r"total = 0: the training budget must be >= 1"):
        RewardCurriculumCallback(load_env_config(data), 0)


def test_the_callback_sets_the_weights_of_the_env_under_vecnormalize():
    from stable_baselines3.common.vec_env import VecNormalize

    cfg = load_env_config(with_schedule("as2008", {"kind": "linear", **RAMP}))
    venv = make_vec_env(cfg, n_envs=2, seed=0)
    cb = RewardCurriculumCallback(cfg, 400)
    recorded: list = []
    wrapped = VecNormalize(venv)
    cb.model = SimpleNamespace(num_timesteps=100, get_env=lambda: wrapped,
                               logger=SimpleNamespace(record=lambda key, value: recorded.append((key, value))))
    cb.on_rollout_start()
    np.testing.assert_array_equal(venv.sim.reward_spec.weights, [1.0, 0.5])  # progress 0.25
    cb.model.num_timesteps = 600  # past the budget (an on-policy rollout can overshoot): progress 1
    cb.on_rollout_start()
    np.testing.assert_array_equal(venv.sim.reward_spec.weights, [1.0, 1.0])
    assert recorded == [(f"curriculum/{PENALTY}", 0.5), (f"curriculum/{PENALTY}", 1.0)]


# ----------------------------------------------------------------------------- lobgym train, resume
ROLLOUT = 2 * 32  # n_envs x n_steps
BUDGET = 6 * ROLLOUT
PRESET = {"name": "curriculum_ppo", "kind": "ppo", "n_envs": 2, "policy": {"net_arch": [8]},
          "normalize": {"obs": True, "reward": True},
          "hyperparams": {"n_steps": 32, "batch_size": 32, "n_epochs": 1, "gamma": 1.0},
          "timesteps": BUDGET, "eval": {"every": 2 * ROLLOUT, "episodes": 2, "baselines": ["random"]},
          "checkpoint": {"every": 2 * ROLLOUT, "keep": 3}}
#: cj2015 with its running penalty ramped in over the first half of training, to 2x at the end.
RAMPED = {"kind": "linear", "start": 0.0, "end": 2.0, "begin": 0.0, "until": 0.5}


def _env() -> dict:
    data = preset("cj2015")
    data["reward"][1]["schedule"] = RAMPED
    return data


@pytest.fixture(scope="module")
def scheduled_run(tmp_path_factory) -> Path:
    """A finished scheduled run (do not modify: copy it)."""
    return training.start(_env(), PRESET, seed=0, name="whole", runs_dir=tmp_path_factory.mktemp("runs"),
                          progress=False, command=["lobgym", "train"])


def test_training_logs_each_rollouts_scheduled_weight(scheduled_run):
    logged = tb_scalars(scheduled_run)[f"curriculum/{PENALTY}"]
    # set at each rollout start (progress k / 6), dumped with SB3's scalars at that rollout's end
    expected = [(ROLLOUT * (k + 1), RAMPED["end"] * min(1.0, (k / 6) / RAMPED["until"])) for k in range(6)]
    assert [s for s, _ in logged] == [s for s, _ in expected]
    assert [v for _, v in logged] == pytest.approx([v for _, v in expected], rel=1e-6)
    assert not any(tag.startswith("curriculum/") and tag != f"curriculum/{PENALTY}"
                   for tag in tb_scalars(scheduled_run))


def test_evaluations_during_training_use_the_final_weights(scheduled_run):
    evaluations = json.loads((scheduled_run / "evaluations.json").read_text())
    assert [e["timesteps"] for e in evaluations] == [0, 2 * ROLLOUT, 4 * ROLLOUT, BUDGET]
    # at timestep 0 the training env's penalty weighs 0; the evaluation's weighs 2 (cj2015 starts with
    # |q| up to 4, so the penalty is never 0 over an episode)
    assert all(e["terms"][PENALTY] < 0 for e in evaluations), evaluations


def test_a_scheduled_run_resumed_from_a_checkpoint_equals_the_uninterrupted_run(scheduled_run, tmp_path):
    copy_dir = rewound_copy(scheduled_run, tmp_path / "resumed", 2 * ROLLOUT)  # mid-ramp: weight 2/3 x 2
    training.resume(copy_dir, progress=False, command=["resume"])
    assert torch_members(copy_dir / "final" / "model.zip") == torch_members(scheduled_run / "final" / "model.zip")
    assert torch_members(copy_dir / "best" / "model.zip") == torch_members(scheduled_run / "best" / "model.zip")
    a, b = read_state(copy_dir / "final", "vecnormalize"), read_state(scheduled_run / "final", "vecnormalize")
    for part in ("obs_rms", "ret_rms"):
        for key in ("mean", "var", "count"):
            np.testing.assert_array_equal(a[part][key], b[part][key], err_msg=f"{part}.{key}")
    assert (copy_dir / "evaluations.json").read_text() == (scheduled_run / "evaluations.json").read_text()


def test_the_resume_comparison_fails_when_the_resumed_run_skips_the_curriculum(scheduled_run, tmp_path,
                                                                               monkeypatch):
    # the control for the test above: resumed without the callback, the env keeps its final weights
    monkeypatch.setattr(RewardCurriculumCallback, "_apply", lambda self: None)
    copy_dir = rewound_copy(scheduled_run, tmp_path / "resumed", 2 * ROLLOUT)
    training.resume(copy_dir, progress=False, command=["resume"])
    assert torch_members(copy_dir / "final" / "model.zip") != torch_members(scheduled_run / "final" / "model.zip")
