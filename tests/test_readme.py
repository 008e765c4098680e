"""The README's examples work as written."""

from __future__ import annotations

import re

import gymnasium as gym
import numpy as np
import pytest
import yaml
from helpers import ROOT

import lobgym

README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_the_tour_runs_as_written():
    """The tour's Python blocks, in order, in one namespace, exactly as printed."""
    tour = README.split("## A short tour", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", tour, flags=re.S)
    assert len(blocks) == 2
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md (tour)", "exec"), namespace)
    assert namespace["obs"].shape == (1000, 2) and set(namespace["info"]["reward_terms"]) == {
        "pnl", "running_inventory_penalty", "terminal_inventory_penalty"}
    assert namespace["actions"].shape == (1000, 2) and namespace["venv"].action_space.contains(namespace["actions"][0])


def test_env_yaml_example_builds_and_steps():
    (example,) = [b for b in _blocks("yaml") if "kind: reduced_form" in b]
    cfg = yaml.safe_load(example)
    env = gym.make(lobgym.ENV_ID, config=cfg)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (5,)
    obs, reward, *_ = env.step(np.zeros(4, dtype=np.float32))
    assert np.isfinite(reward) and env.observation_space.contains(obs)


def test_book_yaml_example_builds_and_steps():
    (example,) = [b for b in _blocks("yaml") if "kind: book" in b]
    cfg = yaml.safe_load(example)
    cfg["market"].update({"horizon": 5, "warmup": 5})  # keep the test short; the rest as written
    env = gym.make(lobgym.ENV_ID, config=cfg)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (2 + 1 + 2 * 5 + 1 + 5 + 2,)
    for _ in range(5):
        obs, reward, terminated, _, info = env.step(env.action_space.sample())
        assert np.isfinite(reward) and env.observation_space.contains(obs)
    assert terminated and set(info["reward_terms"]) == {"pnl", "fees", "adverse_selection"}


def test_exactly_two_setup_commands_and_the_test_command_is_marked():
    setup = README.split("## Set up", 1)[1].split("\n## ", 1)[0]
    commands = _blocks_in(setup)
    assert len(commands) == 2
    assert "<!-- test-command -->\n```bash\n" + commands[1] in setup
    assert "pytest" in commands[1] and "lobgym evaluate" in commands[0]


def _blocks_in(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


@pytest.mark.slow
def test_lr_controller_example_runs():
    (example,) = [b for b in _blocks("python") if "LRController" in b]
    example = example.replace("100_000", "256").replace("16, seed", "2, seed")  # a tiny budget, as written otherwise
    namespace: dict = {"lobgym": lobgym}
    exec(example, namespace)
    assert namespace["model"].num_timesteps >= 256


def test_training_preset_example_validates():
    from lobgym.config import TrainingConfig, load_training_config
    from lobgym.presets import load_yaml

    (example,) = [b for b in _blocks("yaml") if "kind: ppo" in b]
    cfg = load_training_config(load_yaml(example))
    assert isinstance(cfg, TrainingConfig) and cfg.optimizer.name == "adamw" and cfg.learning_rate == 3e-4


def test_learning_rate_yaml_example_builds_a_controller():
    from lobgym.agents.lr_control import DivergenceGuard, KLTarget, build_controller
    from lobgym.presets import load_yaml

    example, signals = [b for b in _blocks("yaml") if b.startswith("learning_rate:")]
    controller = build_controller(load_yaml(example)["learning_rate"])
    assert [type(r) for r in controller.rules] == [KLTarget, DivergenceGuard]
    assert controller(1.0) == 3e-4 and controller.lr_max == 3e-2
    # the trading-signal example is a valid part of a training preset (validation block and probe included)
    from lobgym.agents.lr_control import Bandit, Plateau
    from lobgym.config import load_training_config

    cfg = load_training_config({"kind": "ppo", **load_yaml(signals)})
    assert [type(r) for r in build_controller(cfg.learning_rate).rules] == [Bandit, Plateau, DivergenceGuard]
    assert cfg.eval.validation.seed == 2_000_000 and cfg.probe.every == 10
