"""Learning-rate controllers: each rule against hand-worked sequences, parity with torch's
ReduceLROnPlateau, and the SB3 contract (the controller is the ``learning_rate``; param-group edits
are overwritten)."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from lobgym.agents.lr_control import (
    BoldDriver,
    Constant,
    CosineWarmup,
    Cyclic,
    DivergenceGuard,
    KLTarget,
    Linear,
    LRController,
    Plateau,
    controller_of,
)


def test_time_bases():
    assert Constant(3e-4)(0.3) == 3e-4
    assert Linear(1e-3, 1e-4)(1.0) == pytest.approx(1e-3) and Linear(1e-3, 1e-4)(0.0) == pytest.approx(1e-4)
    cos = CosineWarmup(peak=1e-3, end=1e-5, warmup=0.1)
    assert cos(1.0) == 0.0 and cos(0.95) == pytest.approx(5e-4)  # half-way through the warm-up
    assert cos(0.9) == pytest.approx(1e-3) and cos(0.0) == pytest.approx(1e-5)
    assert cos(0.45) == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5))  # half-way through the decay
    cyc = Cyclic(low=1e-4, high=1e-3, cycles=2)
    assert cyc(1.0) == pytest.approx(1e-4) and cyc(0.75) == pytest.approx(1e-3) and cyc(0.5) == pytest.approx(1e-4)


def test_kl_target_raises_and_lowers_around_the_band():
    c = LRController(Constant(1e-3), [KLTarget(target=0.01, band=2.0, factor=2.0)])
    assert c.observe("approx_kl", 0.03) == 0.5  # above 0.02: halve
    assert c.observe("approx_kl", 0.01) == 0.5  # inside [0.005, 0.02]: keep
    assert c.observe("approx_kl", 0.001) == 1.0  # below 0.005: double
    assert c.observe("loss", 1e9) == 1.0  # not a signal this rule watches
    assert c(0.5) == pytest.approx(1e-3)


def test_plateau_reduces_after_patience_and_respects_cooldown_in_absolute_units():
    rule = Plateau(signal="eval_pnl", mode="max", patience=1, cooldown=1, threshold=0.5, factor=0.5)
    c = LRController(Constant(1.0), [rule])
    # -10 best; -9.8 is not better by more than 0.5 (bad 1); -9.9 bad 2 > patience -> reduce
    seq = [(-10.0, 1.0), (-9.8, 1.0), (-9.9, 0.5), (-20.0, 0.5), (-20.0, 0.5), (-20.0, 0.25), (-9.0, 0.25)]
    for value, expected in seq:
        assert c.observe("eval_pnl", value) == expected, (value, c.history)
    assert rule.best == -9.0


@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_plateau_matches_torch_reduce_lr_on_plateau(mode, seed):
    import torch

    rng = np.random.default_rng(seed)
    values = np.cumsum(rng.normal(0.0, 1.0, 200)) * (1 if seed % 2 else -1)
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode=mode, factor=0.5, patience=3, threshold=0.2,
                                                       threshold_mode="abs", cooldown=2, min_lr=0.0, eps=0.0)
    c = LRController(Constant(1.0), [Plateau(signal="m", mode=mode, patience=3, cooldown=2, threshold=0.2,
                                             factor=0.5)], lr_min=1e-300, multiplier_min=1e-300)
    for v in values:
        sched.step(float(v))
        c.observe("m", float(v))
        assert c(0.5) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
    assert c.multiplier < 1.0  # the sequences do plateau


def test_bold_driver_grows_while_improving_and_cuts_on_degradation():
    c = LRController(Constant(1.0), [BoldDriver(signal="r", smoothing=0.5, grow=1.1, cut=0.5, tolerance=0.1)])
    assert c.observe("r", 0.0) == 1.0  # first value seeds the average
    assert c.observe("r", 1.0) == pytest.approx(1.1)  # s: 0 -> 0.5
    assert c.observe("r", 1.0) == pytest.approx(1.21)  # s -> 0.75
    assert c.observe("r", 0.7) == pytest.approx(1.21)  # s -> 0.725: within the tolerance
    assert c.observe("r", 0.0) == pytest.approx(0.605)  # s -> 0.3625: cut


def test_divergence_guard_cuts_at_once_and_blocks_increases():
    guard = DivergenceGuard(signal="loss", max_ratio=10.0, cut=0.1, cooldown=2)
    c = LRController(Constant(1e-3), [guard, KLTarget(target=0.01, band=1.5, factor=2.0)])
    c.observe("loss", 1.0)
    assert c.observe("loss", float("nan")) == pytest.approx(0.1)
    assert guard.fired == 1
    assert c.observe("approx_kl", 1e-6) == pytest.approx(0.1)  # an increase, blocked
    c.observe("loss", 1.0)
    c.observe("loss", 1.0)  # the cooldown of 2 loss observations is over
    assert c.observe("approx_kl", 1e-6) == pytest.approx(0.2)
    assert c.observe("loss", 50.0) == pytest.approx(0.02)  # 50 > 10 x the running mean of 1
    assert guard.fired == 2


def test_rate_is_clamped_and_call_has_no_side_effects():
    c = LRController(Constant(1e-3), [KLTarget(factor=10.0)], lr_min=1e-5, lr_max=2e-3)
    for _ in range(5):
        c.observe("approx_kl", 1.0)
    assert c.multiplier == pytest.approx(1e-3)  # multiplier_min
    assert c(0.3) == 1e-5
    state = c.state_dict()
    for p in np.linspace(1, 0, 11):
        c(p)
    assert c.state_dict() == state
    c2 = LRController(Constant(1e-3), [KLTarget(factor=10.0)], lr_min=1e-5, lr_max=2e-3)
    c2.load_state_dict(pickle.loads(pickle.dumps(state)))
    assert c2.multiplier == c.multiplier and c2.history == c.history
    with pytest.raises(ValueError, match="1 rules saved, 2 configured"):
        LRController(Constant(1e-3), [KLTarget(), Plateau()]).load_state_dict(state)
    with pytest.raises(ValueError, match="does not match"):
        c2.load_state_dict({"rules": state["rules"]})  # no multiplier
    with pytest.raises(ValueError, match="lr_min = 0"):
        LRController(Constant(1e-3), lr_min=0.0)


# ------------------------------------------------------------------------------ the SB3 contract
def _ppo(learning_rate):
    import torch
    from stable_baselines3 import PPO

    import lobgym

    torch.set_num_threads(1)
    venv = lobgym.make_vec_env("cj2015", 2, seed=0)
    return PPO("MlpPolicy", venv, n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu",
               learning_rate=learning_rate)


def _param_group_lrs(model) -> list[float]:
    return [g["lr"] for g in model.policy.optimizer.param_groups]


def test_a_naive_param_group_edit_is_overwritten_by_sb3():
    model = _ppo(1e-3)
    model.learn(64)
    for g in model.policy.optimizer.param_groups:
        g["lr"] = 1e-6  # what a naive callback would do
    model.learn(64, reset_num_timesteps=False)
    assert _param_group_lrs(model) == [pytest.approx(1e-3)] * len(_param_group_lrs(model))


def test_observe_sets_the_rate_of_the_next_train_in_every_param_group(tmp_path):
    from stable_baselines3 import PPO

    controller = LRController(Constant(1e-3), [KLTarget(target=0.01, band=1.5, factor=4.0)])
    model = _ppo(controller)
    model.learn(64)
    assert _param_group_lrs(model) == [pytest.approx(1e-3)] * len(_param_group_lrs(model))
    assert controller_of(model) is controller
    controller.observe("approx_kl", 1.0)  # far above target: the rate drops 4x
    model.learn(64, reset_num_timesteps=False)
    assert all(lr == pytest.approx(2.5e-4) for lr in _param_group_lrs(model))
    assert model.logger.name_to_value.get("train/learning_rate", 2.5e-4) == pytest.approx(2.5e-4)
    # saved with the model and restored with its state
    model.save(tmp_path / "m.zip")
    loaded = PPO.load(tmp_path / "m.zip", device="cpu")
    restored = controller_of(loaded)
    assert restored.multiplier == 0.25 and restored(0.5) == pytest.approx(2.5e-4)
    assert math.isclose(restored.history[-1][1], 1.0)
    with pytest.raises(ValueError, match="no LRController"):
        controller_of(_ppo(1e-3))


def test_the_callback_feeds_training_signals_and_episode_returns():
    from lobgym.agents.lr_control import make_lr_callback

    controller = LRController(Constant(1e-3), [KLTarget(target=1e-9, band=1.5, factor=2.0),  # always too high
                                               BoldDriver(signal="train_return"), DivergenceGuard(signal="loss")])
    model = _ppo(controller)
    model.learn(32 * 2 * 4, callback=make_lr_callback(controller))  # 4 rollouts of 2 envs x 32 steps
    seen = {s for s, _, _ in controller.history}
    assert {"approx_kl", "loss"} <= seen
    assert "train_return" in seen  # cj2015 episodes are 40 steps: some end within 256 steps
    kl_decisions = sum(s == "approx_kl" for s, _, _ in controller.history)
    assert kl_decisions == 3  # after each train() but the last one
    assert controller.multiplier <= 0.5 ** 3 * 1.05 ** 4  # three KL halvings, at most a few bold-driver raises
    assert all(lr == pytest.approx(controller(model._current_progress_remaining))
               for lr in _param_group_lrs(model))


def test_controllers_build_from_yaml_specs_and_bad_specs_name_the_field():
    from lobgym.agents.lr_control import build_controller
    from lobgym.config import ConfigError

    c = build_controller({"base": {"kind": "cosine", "peak": 3e-4, "end": 3e-5, "warmup": 0.1},
                          "rules": [{"kind": "kl_target", "target": 0.02},
                                    {"kind": "plateau", "signal": "eval_pnl", "mode": "max", "patience": 2},
                                    {"kind": "divergence_guard", "signal": "loss"}],
                          "lr_min": 1e-6, "lr_max": 1e-3})
    assert isinstance(c.base, CosineWarmup) and c.base.peak == 3e-4
    assert [type(r) for r in c.rules] == [KLTarget, Plateau, DivergenceGuard]
    assert c.rules[0].target == 0.02 and c.rules[1].signal == "eval_pnl" and c.lr_max == 1e-3
    assert c(0.5) == pytest.approx(CosineWarmup(3e-4, 3e-5, 0.1)(0.5))
    bad = [
        ({"base": {"kind": "cosine", "peak": -1}}, r"base.cosine.peak = -1: Input should be greater than 0"),
        ({"base": {"kind": "expo", "lr": 1}},
         r"base: Input tag 'expo' found using 'kind' does not match any of the expected tags: 'constant'"),
        ({"base": {"kind": "constant", "lr": 1e-3}, "rules": [{"kind": "plateau", "factor": 2.0}]},
         r"rules\[0\].plateau.factor = 2.0: Input should be less than 1"),
        ({"base": {"kind": "constant", "lr": 1e-3}, "rules": [{"kind": "bold_driver", "signal": "sharpe"}]},
         r"rules\[0\].bold_driver.signal = 'sharpe'"),
        ({"base": {"kind": "constant", "lr": 1e-3}, "lr_min": 1e-2, "lr_max": 1e-3},
         r"lr_min = 0.01 > lr_max = 0.001"),
    ]
    for spec, message in bad:
        with pytest.raises(ConfigError, match=message):
            build_controller(spec)
