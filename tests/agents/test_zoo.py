"""Training with RL Baselines3 Zoo (`python -m rl_zoo3.train --gym-packages lobgym`) and the conf files we ship."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest
import yaml
from helpers import ROOT
from stable_baselines3 import PPO, SAC

import lobgym
from lobgym import presets

ZOO = ROOT / "experiments" / "zoo"

# A tiny budget on top of the shipped hyperparameters (-params overrides single keys of the conf file).
RUNS = {
    "ppo": (PPO, ["-n", "256", "--eval-freq", "128", "--eval-episodes", "2",
                  "-params", "n_envs:2", "n_steps:128", "batch_size:64", "n_epochs:2"]),
    "sac": (SAC, ["-n", "300", "--eval-freq", "-1", "-params", "learning_starts:100", "batch_size:64"]),
}


def _zoo_train(algo: str, log_folder: Path, extra: list[str]) -> subprocess.CompletedProcess:
    assert importlib.util.find_spec("rl_zoo3") is not None, "rl_zoo3 is not installed: pip install -e '.[test]'"
    cmd = [sys.executable, "-m", "rl_zoo3.train", "--algo", algo, "--env", lobgym.ENV_ID, "--gym-packages", "lobgym",
           "--conf-file", str(ZOO / f"{algo}.yml"), "--env-kwargs", "config:'cj2015'",
           "--log-folder", str(log_folder), "--seed", "0", "--num-threads", "1", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=log_folder)


@pytest.mark.parametrize("algo", sorted(RUNS))
def test_conf_file_is_in_zoo_format(algo):
    conf = yaml.safe_load((ZOO / f"{algo}.yml").read_text())
    assert list(conf) == [lobgym.ENV_ID]
    hp = conf[lobgym.ENV_ID]
    assert hp["policy"] == "MlpPolicy" and hp["n_envs"] >= 1 and float(hp["n_timesteps"]) > 0
    assert presets.resolve("envs", hp["env_kwargs"]["config"]).is_file()


@pytest.mark.slow
@pytest.mark.parametrize("algo", sorted(RUNS))
def test_zoo_trains_saves_and_the_model_predicts(algo, tmp_path):
    cls, extra = RUNS[algo]
    proc = _zoo_train(algo, tmp_path, extra)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    (run,) = (tmp_path / algo).iterdir()  # <log folder>/<algo>/lobgym-MarketMaking-v0_1
    model_path = run / "lobgym-MarketMaking-v0.zip"
    assert model_path.is_file(), sorted(p.name for p in run.iterdir())
    if algo == "ppo":  # the evaluation env ran too (--env-kwargs gives it the preset of the training env)
        assert (run / "evaluations.npz").is_file()

    env = gym.make(lobgym.ENV_ID, config="cj2015")
    model = cls.load(model_path, device="cpu")
    assert model.observation_space == env.observation_space and model.action_space == env.action_space
    obs, _ = env.reset(seed=1)
    action, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(action)
    obs, *_ = env.step(action)
    assert env.observation_space.contains(obs)
