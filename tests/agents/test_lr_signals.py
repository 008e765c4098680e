"""Learning-rate control from trading performance and the optimiser: the bandit rule against hand-worked
Exp3 updates, evaluation drawdowns against a step-by-step recomputation, validation seed blocks, the
unclipped gradient norm, the sharpness probe (exact on a quadratic; training unchanged by it) and the Huber
critic loss (bit-identical to a rescaled squared error when no error reaches its threshold)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tb_scalars, torch_members

from lobgym.agents import make_agent, training
from lobgym.agents.losses import critic_loss
from lobgym.agents.lr_control import Bandit, Constant, LRController, build_controller
from lobgym.agents.probes import sharpness
from lobgym.config import ConfigError, load_env_config, load_training_config
from lobgym.env import make_simulation
from lobgym.evaluation import evaluate, marked_pnl

ENV = "cj2015"  # a task of lobgym score, so the score signals work

TINY_PPO = {"name": "sig_ppo", "kind": "ppo", "n_envs": 4, "policy": {"net_arch": [16, 16]},
            "hyperparams": {"n_steps": 64, "batch_size": 64, "n_epochs": 2, "gamma": 1.0},
            "learning_rate": 3e-4, "timesteps": 768, "eval": {"every": 256, "episodes": 8},
            "checkpoint": {"every": 256, "keep": 2}}
TINY_SAC = {"name": "sig_sac", "kind": "sac", "n_envs": 2, "policy": {"net_arch": [16, 16]},
            "hyperparams": {"buffer_size": 2000, "learning_starts": 64, "batch_size": 32, "gamma": 1.0},
            "learning_rate": 3e-4, "timesteps": 384, "eval": {"every": 192, "episodes": 4},
            "checkpoint": {"every": 192, "keep": 2}}


def _train(preset: dict, root: Path, name: str = "run") -> Path:
    return training.start(ENV, preset, seed=0, name=name, runs_dir=root, progress=False, command=["test"])


# ------------------------------------------------------------------------------------------- bandit
def test_bandit_follows_exp3_by_hand():
    rule = Bandit(signal="eval_return", arms=[0.5, 2.0], gamma=0.5, seed=3)
    ctl = LRController(Constant(1e-3), [rule])
    # first observation: no reward, an arm is drawn and the multiplier becomes that arm
    m = ctl.observe("eval_return", 1.0)
    first = rule.arm
    u0 = np.random.default_rng([3, 0]).random()
    assert first == (0 if u0 < 0.5 else 1)  # equal weights: p = (0.5, 0.5)
    assert m == rule.arms[first]
    # second: improvement +2 with scale |2| -> reward 0.5 + 0.5 tanh(1); importance weight 1 / p = 2
    ctl.observe("eval_return", 3.0)
    reward = 0.5 + 0.5 * math.tanh(1.0)
    expected = [0.0, 0.0]
    expected[first] = 0.5 * (reward / 0.5) / 2
    assert rule.log_weights == pytest.approx(expected, rel=1e-15)
    w = np.exp(np.array(expected) - max(expected))
    p = 0.5 * w / w.sum() + 0.25
    np.testing.assert_allclose(rule.probabilities(), p, rtol=1e-15)
    u1 = np.random.default_rng([3, 1]).random()
    assert rule.arm == (0 if u1 < p[0] else 1)
    assert ctl.multiplier == pytest.approx(rule.arms[rule.arm])  # the factor moved it from the old arm to the new
    # a fall in max mode is a loss: reward below 0.5; scale is the running mean magnitude 0.9 * 2 + 0.1 * 1
    arm = rule.arm
    before = list(rule.log_weights)
    p_arm = rule.probabilities()[arm]
    ctl.observe("eval_return", 2.0)
    scale = 0.9 * 2.0 + 0.1 * 1.0
    assert rule.scale == pytest.approx(scale)
    gain = 0.5 * ((0.5 + 0.5 * math.tanh(-1.0 / scale)) / p_arm) / 2
    assert rule.log_weights[arm] == pytest.approx(before[arm] + gain, rel=1e-14)
    assert rule.log_weights[1 - arm] == before[1 - arm]


def test_bandit_prefers_the_arm_that_improves_the_signal_and_resumes_its_draws():
    rule = Bandit(signal="val_sharpe", arms=[0.25, 4.0], gamma=0.1, seed=0)
    ctl = LRController(Constant(1e-3), [rule])
    value, picks = 0.0, []
    for t in range(200):  # arm 1 (x4) raises the signal, arm 0 lowers it
        ctl.observe("val_sharpe", value)
        picks.append(rule.arm)
        value += 1.0 if rule.arm == 1 else -1.0
        if t == 99:
            saved = json.loads(json.dumps(ctl.state_dict()))
    assert np.mean(picks[100:]) > 0.85
    # a controller restored from the state after 100 observations draws the same arms from there on
    twin = build_controller({"base": {"kind": "constant", "lr": 1e-3},
                             "rules": [{"kind": "bandit", "signal": "val_sharpe", "arms": [0.25, 4.0], "gamma": 0.1}]})
    twin.load_state_dict(saved)
    value, twin_picks = sum(1.0 if a == 1 else -1.0 for a in picks[:100]), []
    for _ in range(100):
        twin.observe("val_sharpe", value)
        twin_picks.append(twin.rules[0].arm)
        value += 1.0 if twin.rules[0].arm == 1 else -1.0
    assert twin_picks == picks[100:]


@pytest.mark.parametrize("rule, message", [
    ({"kind": "bandit", "arms": [1.0]}, "arms"),
    ({"kind": "bandit", "arms": [1.0, -2.0]}, "arms"),
    ({"kind": "bandit", "gamma": 0.0}, "gamma"),
    ({"kind": "bandit", "signal": "eval_sortino"}, "signal"),
])
def test_bad_bandit_specs_name_the_field(rule, message):
    with pytest.raises(ConfigError, match=message):
        build_controller({"base": {"kind": "constant", "lr": 1e-3}, "rules": [rule]})


# --------------------------------------------------------------------------------------- drawdown
def test_evaluation_drawdown_is_the_largest_fall_of_the_marked_pnl_step_by_step():
    agent = make_agent("avellaneda_stoikov", ENV)
    ev = evaluate(agent, ENV, episodes=6, seed=11)
    cfg = load_env_config(ENV)
    for j in range(6):  # one env at a time, PnL path recomputed from the state after every step
        sim = make_simulation(cfg, 1)
        sim.seed(np.array([11 + j], dtype=np.uint64))
        obs = sim.reset().copy()
        path = [0.0]
        for _ in range(cfg.market.n_steps):
            sim.actions[...] = agent.predict(obs)[0]
            b = sim.step(auto_reset=False)
            obs = b.obs.copy()
            path.append(float(marked_pnl(sim)[0]))
        path = np.array(path)
        assert path[-1] == pytest.approx(ev.metrics[j, ev.metric_names.index("pnl")], abs=1e-9)
        assert ev.drawdowns[j] == pytest.approx(np.max(np.maximum.accumulate(path) - path), abs=1e-9)
    assert (ev.drawdowns >= np.maximum(0.0, -ev.episode_values("pnl")) - 1e-12).all()
    assert ev.summary["max_drawdown_mean"] == pytest.approx(ev.drawdowns.mean())
    assert ev.drawdowns.max() > 0


def test_book_evaluations_measure_drawdowns_too():
    ev = evaluate(make_agent("book_quoter", "cst2010"), "cst2010", episodes=2, seed=5)
    assert ev.drawdowns.shape == (2,) and (ev.drawdowns >= 0).all()
    assert (ev.drawdowns >= -ev.episode_values("pnl") - 1e-9).all()


# ------------------------------------------------------------------------------ seeds and presets
def test_validation_blocks_must_not_overlap_training_evaluation_or_the_tasks_test_seeds(tmp_path):
    base = {**TINY_PPO, "eval": {"every": 256, "episodes": 8, "validation": {"episodes": 8, "seed": 1_000_004}}}
    with pytest.raises(ConfigError, match=r"evaluation seeds \(eval.seed\) 1000000..1000007 overlap the validation"):
        _train(base, tmp_path)
    task_seed = 5_000_000 + 2 * 100_000  # cj2015's test block
    clash = {**TINY_PPO, "eval": {"every": 256, "episodes": 8, "validation": {"episodes": 8, "seed": task_seed + 3}}}
    with pytest.raises(ConfigError, match="test seeds of task 'cj2015'"):
        _train(clash, tmp_path)
    with pytest.raises(ConfigError, match=r"learning_rate.rules.0.signal = 'val_sharpe': needs a validation"):
        load_training_config({**TINY_PPO, "learning_rate": {"base": {"kind": "constant", "lr": 1e-3},
                                                            "rules": [{"kind": "plateau", "signal": "val_sharpe"}]}})
    with pytest.raises(ConfigError, match="needs the probe"):
        load_training_config({**TINY_PPO, "learning_rate": {"base": {"kind": "constant", "lr": 1e-3},
                                                            "rules": [{"kind": "plateau", "signal": "sharpness"}]}})
    with pytest.raises(ConfigError, match="critic_loss"):
        load_training_config({**TINY_PPO, "critic_loss": "l1"})


def test_score_signals_need_a_task_env(tmp_path):
    preset = {**TINY_PPO, "learning_rate": {"base": {"kind": "constant", "lr": 1e-3},
                                            "rules": [{"kind": "plateau", "signal": "eval_score"}]}}
    env = {**load_env_config(ENV).model_dump(), "name": "my_cj"}
    with pytest.raises(ConfigError, match="eval_score / val_score signals need the env to be a task"):
        training.start(env, preset, seed=0, name="x", runs_dir=tmp_path, progress=False, command=["test"])


# ------------------------------------------------------------------------- signals inside training
def test_every_new_signal_reaches_the_controller_and_tensorboard(tmp_path):
    preset = {**TINY_PPO, "probe": {"every": 2, "radius": 0.01, "batch": 64},
              "eval": {"every": 256, "episodes": 8, "validation": {"episodes": 6, "seed": 2_000_000}},
              "learning_rate": {"base": {"kind": "constant", "lr": 3e-4}, "rules": [
                  {"kind": "bandit", "signal": "val_sharpe"},
                  {"kind": "plateau", "signal": "val_drawdown", "mode": "min"},
                  {"kind": "plateau", "signal": "eval_drawdown", "mode": "min"},
                  {"kind": "plateau", "signal": "eval_score"}, {"kind": "plateau", "signal": "val_score"},
                  {"kind": "bold_driver", "signal": "grad_norm"},
                  {"kind": "plateau", "signal": "sharpness", "mode": "min"}]}}
    run = _train(preset, tmp_path)
    controller = json.loads(sorted((run / "checkpoints").glob("step_*"))[-1].joinpath("controller.json").read_text())
    seen = {signal for signal, _, _ in controller["history"]}
    assert seen == {"val_sharpe", "val_drawdown", "eval_drawdown", "eval_score", "val_score", "grad_norm",
                    "sharpness"}
    rows = json.loads((run / "evaluations.json").read_text())
    refs = json.loads((run / "score_refs.json").read_text())
    for row in rows:
        zero, ref = refs["eval"]
        assert row["score"] == pytest.approx((row["return"] - zero) / (ref - zero))
        assert set(row["validation"]) == {"return", "pnl", "sharpe", "max_drawdown", "score"}
        assert row["max_drawdown"] >= 0
    # the validation block is its own seeds: its results differ from the model-selection block's
    assert rows[0]["validation"]["return"] != rows[0]["return"]
    tb = tb_scalars(run)
    for tag in ("val/sharpe", "val/max_drawdown", "eval/max_drawdown", "eval/score", "probe/sharpness",
                "probe/curvature", "probe/seconds", "train/grad_norm_policy_unclipped"):
        assert tb.get(tag), tag
    # probed every 2nd rollout: 768 / (4 x 64) = 3 rollouts -> rollouts 1 and 3
    assert len(tb["probe/sharpness"]) == 2
    unclipped = [v for _, v in tb["train/grad_norm_policy_unclipped"]]
    clipped = [v for _, v in tb["train/grad_norm_policy"]]
    assert all(u >= c - 1e-6 for u, c in zip(unclipped, clipped, strict=True))


def test_the_unclipped_gradient_norm_is_what_clipping_saw(tmp_path):
    preset = {**TINY_PPO, "hyperparams": {**TINY_PPO["hyperparams"], "max_grad_norm": 1e-3}, "timesteps": 512,
              "learning_rate": {"base": {"kind": "constant", "lr": 3e-4},
                                "rules": [{"kind": "bold_driver", "signal": "grad_norm"}]}}
    tb = tb_scalars(_train(preset, tmp_path))
    unclipped = [v for _, v in tb["train/grad_norm_policy_unclipped"]]
    clipped_max = [v for _, v in tb["train/grad_norm_policy_max"]]
    assert all(c <= 1e-3 * (1 + 1e-4) for c in clipped_max)  # applied gradients were clipped to 1e-3
    assert all(u > 1e-2 for u in unclipped)  # the norm before clipping is far larger


# ---------------------------------------------------------------------------------- the probe
def test_sharpness_is_exact_on_a_quadratic():
    torch.manual_seed(0)
    a = torch.randn(5, 5, dtype=torch.float64)
    hessian = a @ a.T + torch.eye(5, dtype=torch.float64)
    w = torch.randn(5, dtype=torch.float64, requires_grad=True)
    before = w.detach().clone()
    out = sharpness(lambda: 0.5 * w @ hessian @ w, [w], radius=0.1)
    g = hessian @ before
    u = g / torch.linalg.vector_norm(g)
    assert out["grad_norm"] == pytest.approx(float(torch.linalg.vector_norm(g)), rel=1e-12)
    assert out["curvature"] == pytest.approx(float(u @ hessian @ u), rel=1e-8)
    assert out["sharpness"] == pytest.approx(0.1 * out["grad_norm"] + 0.005 * float(u @ hessian @ u), rel=1e-10)
    assert torch.equal(w.detach(), before)  # the weights are put back exactly


@pytest.mark.parametrize("preset", [TINY_PPO, TINY_SAC], ids=["ppo", "sac"])
def test_a_probed_run_trains_bit_identically_to_an_unprobed_one(preset, tmp_path):
    plain = _train(preset, tmp_path, "plain")
    probed = _train({**preset, "probe": {"every": 1, "radius": 0.05, "batch": 32}}, tmp_path, "probed")
    assert torch_members(probed / "final" / "model.zip") == torch_members(plain / "final" / "model.zip")
    assert (probed / "evaluations.json").read_text() == (plain / "evaluations.json").read_text()
    seconds = [v for _, v in tb_scalars(probed)["probe/seconds"]]
    assert seconds and all(0 < s < 5 for s in seconds)


# ----------------------------------------------------------------------------------- Huber loss
def test_huber_swap_computes_huber_and_is_undone():
    import stable_baselines3.ppo.ppo as ppo_module
    import stable_baselines3.sac.sac as sac_module

    x, y = torch.tensor([0.0, 0.5, 3.0]), torch.tensor([0.0, 0.0, 0.0])
    before = ppo_module.F, sac_module.F
    with critic_loss("huber", delta=1.0):
        for module in (ppo_module, sac_module):
            assert float(module.F.mse_loss(x, y)) == pytest.approx((0.0 + 0.125 + 2.5) / 3)
            assert module.F.relu is torch.nn.functional.relu
    assert (ppo_module.F, sac_module.F) == before
    with critic_loss("mse"):
        assert ppo_module.F is before[0]


def test_ppo_with_huber_above_every_error_and_twice_vf_coef_trains_as_with_mse(tmp_path):
    hp = TINY_PPO["hyperparams"]
    mse = _train({**TINY_PPO, "hyperparams": {**hp, "vf_coef": 0.5}}, tmp_path, "mse")
    huber = _train({**TINY_PPO, "critic_loss": "huber", "huber_delta": 1e12, "hyperparams": {**hp, "vf_coef": 1.0}},
                   tmp_path, "huber")
    assert torch_members(huber / "final" / "model.zip") == torch_members(mse / "final" / "model.zip")
    small = _train({**TINY_PPO, "critic_loss": "huber", "huber_delta": 0.01, "hyperparams": {**hp, "vf_coef": 1.0}},
                   tmp_path, "small")
    assert torch_members(small / "final" / "model.zip") != torch_members(mse / "final" / "model.zip")
    # the logged value loss is Huber's: with delta 1e12 half the squared error of the same step
    v_mse = [v for _, v in tb_scalars(mse)["train/value_loss"]]
    v_huber = [v for _, v in tb_scalars(huber)["train/value_loss"]]
    np.testing.assert_allclose(v_huber, 0.5 * np.array(v_mse), rtol=1e-6)


def test_sac_trains_its_critics_with_huber(tmp_path):
    run = _train({**TINY_SAC, "critic_loss": "huber", "huber_delta": 1e-3}, tmp_path, "huber")
    plain = _train(TINY_SAC, tmp_path, "mse")
    assert torch_members(run / "final" / "model.zip") != torch_members(plain / "final" / "model.zip")
    assert load_training_config({**TINY_SAC, "critic_loss": "huber"}).critic_loss == "huber"
