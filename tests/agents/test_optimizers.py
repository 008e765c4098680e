"""Learning-rate-free and schedule-free optimizers in ``lobgym train``: Prodigy and D-Adaptation adapt their
step size inside PPO and SAC, schedule-free AdamW is evaluated at its averaged weights and updated at its
gradient point, and a missing extra is a clear error naming it."""

from __future__ import annotations

import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import checkpoint_steps, rewound_copy, torch_members

from lobgym.agents import callbacks, training
from lobgym.config import ConfigError, load_training_config

ENV = "cj2015"
PPO = {"name": "opt_ppo", "kind": "ppo", "n_envs": 4, "policy": {"net_arch": [16, 16]},
       "hyperparams": {"n_steps": 64, "batch_size": 64, "n_epochs": 2, "gamma": 1.0},
       "timesteps": 512, "eval": {"every": 256, "episodes": 4}, "checkpoint": {"every": 256, "keep": 1}}
SAC = {"name": "opt_sac", "kind": "sac", "n_envs": 2, "policy": {"net_arch": [16, 16]},
       "hyperparams": {"buffer_size": 2000, "learning_starts": 64, "batch_size": 32, "gamma": 1.0},
       "timesteps": 320, "eval": {"every": 160, "episodes": 4}, "checkpoint": {"every": 160, "keep": 1}}


def _train(preset: dict, root: Path, name: str) -> Path:
    return training.start(ENV, {**preset, "name": name}, seed=0, name=name, runs_dir=root, progress=False,
                          command=["test"])


def _optimizer_state(run: Path, member: str) -> dict:
    with zipfile.ZipFile(run / "final" / "model.zip") as z:
        return torch.load(io.BytesIO(z.read(member)), weights_only=True)


@pytest.mark.parametrize("name, kwargs", [("prodigy", {}), ("dadapt_adam", {})])
def test_learning_rate_free_optimizers_adapt_their_step_size_in_ppo(name, kwargs, tmp_path):
    run = _train({**PPO, "optimizer": {"name": name, "kwargs": kwargs}, "learning_rate": 1.0}, tmp_path, "run")
    group = _optimizer_state(run, "policy.optimizer.pth")["param_groups"][0]
    assert group["lr"] == 1.0  # learning_rate is the multiplier on d
    assert group["d"] > 1e-6  # d grew from its initial estimate d0 = 1e-6
    rows = json.loads((run / "evaluations.json").read_text())
    assert all(np.isfinite(r["return"]) for r in rows)


def test_prodigy_adapts_the_step_size_of_sacs_actor_and_critics(tmp_path):
    run = _train({**SAC, "optimizer": {"name": "prodigy", "kwargs": {"safeguard_warmup": True,
                                                                     "use_bias_correction": True}},
                  "learning_rate": 1.0}, tmp_path, "run")
    for part in ("actor", "critic"):
        group = _optimizer_state(run, f"{part}.optimizer.pth")["param_groups"][0]
        assert group["d"] > 1e-6, part


@pytest.mark.parametrize("preset", [PPO, SAC], ids=["ppo", "sac"])
def test_schedule_free_adamw_is_evaluated_at_its_average_and_updated_at_its_gradient_point(preset, tmp_path,
                                                                                            monkeypatch):
    seen = {"eval_modes": [], "step_modes": [], "moved": []}
    last_step: dict[str, list[torch.Tensor]] = {}
    original = callbacks.EvalCallback.evaluate_now

    def evaluate_now(self, block="eval"):
        model = self.model
        opt = model.policy.optimizer if hasattr(model.policy, "optimizer") and model.policy.optimizer else \
            model.actor.optimizer
        if not seen["step_modes"]:  # first use: watch every step of this optimizer
            opt.register_step_pre_hook(lambda o, a, k: seen["step_modes"].append(o.param_groups[0]["train_mode"]))
            opt.register_step_post_hook(lambda o, a, k: last_step.__setitem__(
                "y", [p.detach().clone() for g in o.param_groups for p in g["params"]]))
        seen["eval_modes"].append(opt.param_groups[0]["train_mode"])
        if "y" in last_step:  # the weights evaluated are not the point the last update left
            now = [p.detach() for g in opt.param_groups for p in g["params"]]
            seen["moved"].append(any(not torch.equal(a, b) for a, b in zip(now, last_step["y"], strict=True)))
        return original(self, block)

    monkeypatch.setattr(callbacks.EvalCallback, "evaluate_now", evaluate_now)
    _train({**preset, "optimizer": {"name": "adamw_schedulefree", "kwargs": {"warmup_steps": 10}},
            "learning_rate": 1e-3}, tmp_path, "run")
    assert seen["eval_modes"] and not any(seen["eval_modes"])  # every evaluation in eval mode (x)
    assert len(seen["step_modes"]) > 0 and all(seen["step_modes"])  # every update in train mode (y)
    assert seen["moved"] and all(seen["moved"])


def test_without_the_schedule_free_callback_evaluation_would_see_the_gradient_point():
    """The property the test above relies on: eval() moves the weights from y to x once steps were taken."""
    import schedulefree

    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(4))
    opt = schedulefree.AdamWScheduleFree([w], lr=0.1)
    opt.train()
    for _ in range(3):
        opt.zero_grad()
        (w ** 2).sum().backward()
        opt.step()
    y = w.detach().clone()
    opt.eval()
    assert not torch.equal(w.detach(), y)


@pytest.mark.parametrize("name, package", [("prodigy", "prodigyopt"), ("dadapt_adam", "dadaptation"),
                                           ("adamw_schedulefree", "schedulefree")])
def test_a_missing_optimizer_extra_is_an_error_naming_it_and_writes_nothing(name, package, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, package, None)  # import now raises ImportError
    with pytest.raises(ConfigError, match=rf"optimizer.name = '{name}': needs the package {package}.*"
                                          r"pip install 'lobgym\[optim\]'"):
        _train({**PPO, "optimizer": {"name": name}, "learning_rate": 1.0}, tmp_path, "run")
    assert not (tmp_path / "run").exists()


def test_optimizer_kwargs_are_checked_against_the_chosen_optimizer():
    with pytest.raises(ConfigError, match=r"kwargs.amsgrad: not an argument of Prodigy; allowed: betas, beta3"):
        load_training_config({**PPO, "optimizer": {"name": "prodigy", "kwargs": {"amsgrad": True}}})
    with pytest.raises(ConfigError, match="optimizer.name"):
        load_training_config({**PPO, "optimizer": {"name": "lion"}})


@pytest.mark.parametrize("name, lr, preset", [("adamw_schedulefree", 1e-3, PPO), ("adamw_schedulefree", 1e-3, SAC),
                                              ("prodigy", 1.0, PPO)], ids=["schedulefree-ppo", "schedulefree-sac",
                                                                           "prodigy-ppo"])
def test_a_run_resumed_from_a_checkpoint_ends_as_the_uninterrupted_one(name, lr, preset, tmp_path):
    whole = _train({**preset, "optimizer": {"name": name}, "learning_rate": lr,
                    "checkpoint": {"every": preset["checkpoint"]["every"], "keep": 3}}, tmp_path, "whole")
    first = checkpoint_steps(whole)[0]
    copy = rewound_copy(whole, tmp_path / "copy", first)
    training.resume(copy, progress=False, command=["resume"])
    assert torch_members(copy / "final" / "model.zip") == torch_members(whole / "final" / "model.zip")
    assert (copy / "evaluations.json").read_text() == (whole / "evaluations.json").read_text()
