"""``lobgym train``: run folders, checkpoints that resume exactly (after a SIGKILL too), the learning-rate
controller inside SB3's training loop, ``lobgym evaluate`` on a run folder, and config errors.

Runs are tiny (a few hundred to a few thousand timesteps). The subprocess round trips are marked slow; the
in-process runs are built once per module and copied by the tests that change them."""

from __future__ import annotations

import base64
import json
import math
import os
import pickle
import re
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import time
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from helpers import checkpoint_steps, rewound_copy, torch_members
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.callbacks import BaseCallback, CallbackList

import lobgym
from lobgym import cli
from lobgym.agents import training
from lobgym.agents.checkpoints import CheckpointFallback, latest_checkpoint
from lobgym.agents.lr_control import Constant, DivergenceGuard, KLTarget, LRController, controller_of, make_lr_callback
from lobgym.agents.model_files import replay_buffer_state, restore_replay_buffer
from lobgym.config import ConfigError, load_env_config, load_training_config
from lobgym.state_files import read_state, write_state

ENV = "cj2015"
EVAL_SEED = 1_000_000  # TrainEvalConfig's default
COMMAND = ["lobgym", "train", "--env", ENV, "--agent", "tiny"]

#: Built once per module (in-process), copied by the tests that change them.
FIXTURE_PRESETS: dict[str, dict[str, Any]] = {
    "ppo": {"name": "tiny_ppo", "kind": "ppo", "n_envs": 4, "policy": {"net_arch": [16, 16]},
            "normalize": {"obs": True, "reward": True},
            "hyperparams": {"n_steps": 64, "batch_size": 64, "n_epochs": 2, "gamma": 1.0},
            "learning_rate": {"base": {"kind": "constant", "lr": 3e-4},
                              "rules": [{"kind": "kl_target", "target": 0.001}, {"kind": "bold_driver"},
                                        {"kind": "divergence_guard"}]},
            "timesteps": 1024, "eval": {"every": 512, "episodes": 8}, "checkpoint": {"every": 256, "keep": 3}},
    "sac": {"name": "tiny_sac", "kind": "sac", "n_envs": 4, "policy": {"net_arch": [16, 16]},
            "normalize": {"obs": True, "reward": True},
            "hyperparams": {"buffer_size": 5000, "learning_starts": 200, "batch_size": 32, "gamma": 1.0},
            "learning_rate": {"base": {"kind": "constant", "lr": 3e-4},
                              "rules": [{"kind": "plateau", "signal": "eval_return", "patience": 1},
                                        {"kind": "divergence_guard", "signal": "critic_loss"}]},
            "timesteps": 768, "eval": {"every": 256, "episodes": 8}, "checkpoint": {"every": 256, "keep": 2}},
}
#: Evaluation timesteps and kept checkpoints of the fixture runs.
FIXTURE_EVALS = {"ppo": [0, 512, 1024], "sac": [0, 256, 512, 768]}
FIXTURE_CHECKPOINTS = {"ppo": [512, 768, 1024], "sac": [512, 768]}

#: The subprocess round trip: large enough budgets that a run killed at its first checkpoint is mid-run.
ROUND_TRIP_PRESETS: dict[str, dict[str, Any]] = {
    "ppo": {**FIXTURE_PRESETS["ppo"], "name": "rt_ppo", "timesteps": 2048,
            "checkpoint": {"every": 512, "keep": 2}},
    "sac": {**FIXTURE_PRESETS["sac"], "name": "rt_sac", "timesteps": 1536, "eval": {"every": 512, "episodes": 8},
            "checkpoint": {"every": 512, "keep": 2}},
}


# ---------------------------------------------------------------------------------------- helpers
def _vecnorm_stats(folder: Path) -> dict[str, Any]:
    """The VecNormalize statistics saved in ``folder`` (vecnormalize.json + .npz)."""
    vn = read_state(folder, "vecnormalize")
    return {f"{part}_{key}": vn[f"{part}_rms"][key] for part in ("obs", "ret") for key in ("mean", "var", "count")}


def _assert_same_stats(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _assert_same_outcome(expected: Path, actual: Path) -> None:
    """Two run folders trained to the same final and best models, evaluations and controller state."""
    assert torch_members(actual / "final" / "model.zip") == torch_members(expected / "final" / "model.zip")
    assert torch_members(actual / "best" / "model.zip") == torch_members(expected / "best" / "model.zip")
    _assert_same_stats(_vecnorm_stats(actual / "final"), _vecnorm_stats(expected / "final"))
    # text equality: NaN-safe, and the JSON is written deterministically
    assert (actual / "evaluations.json").read_text() == (expected / "evaluations.json").read_text()
    ckpt_a, ckpt_e = latest_checkpoint(actual / "checkpoints"), latest_checkpoint(expected / "checkpoints")
    assert ckpt_a.name == ckpt_e.name
    assert (ckpt_a / "controller.json").read_text() == (ckpt_e / "controller.json").read_text()


def _flat(text: str) -> str:
    return " ".join(text.split())


def _record_step_lrs(optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, list[list[float]]]:
    """The learning rate of every param group at every optimizer step, as the step uses it."""
    seen: dict[str, list[list[float]]] = {name: [] for name in optimizers}
    for name, opt in optimizers.items():
        opt.register_step_pre_hook(
            lambda o, args, kwargs, name=name: seen[name].append([g["lr"] for g in o.param_groups]))
    return seen


def _assert_all_steps_used(seen: dict[str, list[list[float]]], lr: float) -> None:
    for name, steps in seen.items():
        assert steps, f"{name}: no optimizer step"
        assert all(x == pytest.approx(lr, rel=1e-12) for step in steps for x in step), (name, lr, steps)


def _sac(learning_rate: Any) -> SAC:
    torch.set_num_threads(1)
    return SAC("MlpPolicy", lobgym.make_vec_env(ENV, 2, seed=0), learning_rate=learning_rate, buffer_size=2000,
               learning_starts=20, batch_size=16, policy_kwargs={"net_arch": [16, 16]}, seed=0, device="cpu")


#: ``_sac``'s model as a training preset (for the tests that load it back through lobgym).
SMALL_SAC = {"kind": "sac", "n_envs": 2, "policy": {"net_arch": [16, 16]},
             "hyperparams": {"buffer_size": 2000, "learning_starts": 20, "batch_size": 16}}


def _sac_optimizers(model: SAC) -> dict[str, torch.optim.Optimizer]:
    assert model.ent_coef_optimizer is not None  # ent_coef="auto": SAC trains it with the same schedule
    return {"actor": model.actor.optimizer, "critic": model.critic.optimizer, "ent_coef": model.ent_coef_optimizer}


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


def _fixture_run(kind: str, root: Path) -> Path:
    run_dir = training.start(ENV, FIXTURE_PRESETS[kind], seed=0, name=kind, runs_dir=root, progress=False,
                             command=COMMAND)
    assert run_dir == root / kind
    return run_dir


@pytest.fixture(scope="module")
def ppo_run(runs_root) -> Path:
    """A finished PPO run (do not modify: copy it)."""
    return _fixture_run("ppo", runs_root)


@pytest.fixture(scope="module")
def sac_run(runs_root) -> Path:
    """A finished SAC run (do not modify: copy it)."""
    return _fixture_run("sac", runs_root)


# --------------------------------------------------------------- 1. SIGKILL + --resume (subprocesses)
def _lobgym_popen(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "w") as fh:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "lobgym", *args], stdout=fh, stderr=subprocess.STDOUT,
                                env={**os.environ, "COLUMNS": "200"})


def _wait_ok(proc: subprocess.Popen, log: Path, timeout: float = 600) -> None:
    rc = proc.wait(timeout=timeout)
    assert rc == 0, f"{proc.args} exited with {rc}:\n{log.read_text()}"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ppo", "sac"])
def test_a_sigkilled_run_resumes_to_the_same_models_and_evaluations_as_an_uninterrupted_one(kind, tmp_path):
    preset = tmp_path / f"{kind}.yaml"
    preset.write_text(yaml.safe_dump(ROUND_TRIP_PRESETS[kind]))
    budget = ROUND_TRIP_PRESETS[kind]["timesteps"]
    runs = tmp_path / "runs"
    common = ["train", "--env", ENV, "--agent", str(preset), "--seed", "3", "--runs-dir", str(runs), "--no-progress"]
    whole_log, killed_log, resume_log = tmp_path / "whole.log", tmp_path / "killed.log", tmp_path / "resume.log"
    killed_dir = runs / "killed"
    procs: list[subprocess.Popen] = []
    try:
        # the uninterrupted run and the one to kill train side by side
        whole = _lobgym_popen([*common, "--name", "whole"], whole_log)
        procs.append(whole)
        killed = _lobgym_popen([*common, "--name", "killed"], killed_log)
        procs.append(killed)
        deadline = time.monotonic() + 300
        while not (killed_dir / "checkpoints" / "latest.json").exists():
            assert killed.poll() is None, f"the run ended before its first checkpoint:\n{killed_log.read_text()}"
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.005)
        killed.send_signal(signal.SIGKILL)
        assert killed.wait(timeout=60) == -signal.SIGKILL
        # really mid-run: no final model, the newest checkpoint and evaluation short of the budget
        assert not (killed_dir / "final").exists()
        latest = json.loads((killed_dir / "checkpoints" / "latest.json").read_text())
        assert 0 < latest["step"] < budget
        if (killed_dir / "evaluations.json").exists():  # written after each evaluation
            assert json.loads((killed_dir / "evaluations.json").read_text())[-1]["timesteps"] < budget

        resume = _lobgym_popen(["train", "--resume", str(killed_dir), "--no-progress"], resume_log)
        procs.append(resume)
        _wait_ok(whole, whole_log)
        _wait_ok(resume, resume_log)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    _assert_same_outcome(runs / "whole", killed_dir)
    evaluations = json.loads((killed_dir / "evaluations.json").read_text())
    assert evaluations[-1]["timesteps"] == budget
    assert json.loads((killed_dir / "final" / "info.json").read_text())["timesteps"] == budget
    lines = (killed_dir / "command.txt").read_text().splitlines()
    assert len(lines) == 2 and "--name killed" in lines[0] and f"--resume {killed_dir}" in lines[1]
    assert "killed" in (killed_dir / "report.md").read_text()


# -------------------------------------------------------------------------- 2. the run folder
@pytest.mark.parametrize("kind", ["ppo", "sac"])
def test_a_run_folder_holds_config_metadata_logs_checkpoints_models_and_report(kind, request):
    run_dir: Path = request.getfixturevalue(f"{kind}_run")
    preset = FIXTURE_PRESETS[kind]
    budget = preset["timesteps"]

    # config.yaml: what --resume reads back
    assert training.RunConfig.read(run_dir) == training.RunConfig(load_env_config(ENV), load_training_config(preset),
                                                                  0, budget)
    assert (run_dir / "command.txt").read_text() == shlex.join(COMMAND) + "\n"
    meta = json.loads((run_dir / "meta.json").read_text())
    assert set(meta["versions"]) == set(training.PACKAGES)
    assert meta["versions"]["lobgym"] == metadata.version("lobgym")
    assert meta["versions"]["stable-baselines3"] == metadata.version("stable-baselines3")
    assert meta["versions"]["torch"] == torch.__version__
    assert "git_revision" in meta
    assert meta["git_revision"] is None or re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", meta["git_revision"])
    assert meta["python"] == sys.version.split()[0] and meta["machine"]["cpus"] == os.cpu_count()

    # TensorBoard: one event file holding SB3's and lobgym's scalars
    events = list((run_dir / "tb").glob("events.out.tfevents.*"))
    assert len(events) == 1
    data = events[0].read_bytes()
    grad_norm = "train/grad_norm_policy" if kind == "ppo" else "train/grad_norm_critic"
    for tag in ("eval/return", "eval/best", "eval_baselines/avellaneda_stoikov_return", "episode/pnl",
                "episode/sharpe", "reward_terms/pnl", "lr_control/multiplier", "train/lr_now", grad_norm,
                "train/learning_rate"):
        assert tag.encode() in data, tag

    # checkpoints: the newest `keep`, each complete; latest.json points to the last
    assert checkpoint_steps(run_dir) == FIXTURE_CHECKPOINTS[kind]
    latest = json.loads((run_dir / "checkpoints" / "latest.json").read_text())
    assert latest == {"step": budget, "path": f"step_{budget:012d}"}
    expected_files = {"model.zip", "state.json", "state.npz", "controller.json", "vecnormalize.json",
                      "vecnormalize.npz"}
    if kind == "sac":
        expected_files |= {"replay_buffer.json", "replay_buffer.npz"}
    for step in FIXTURE_CHECKPOINTS[kind]:
        folder = run_dir / "checkpoints" / f"step_{step:012d}"
        assert {p.name for p in folder.iterdir()} == expected_files
        state = read_state(folder, "state")
        assert state["num_timesteps"] == step
        assert set(state["callbacks"]) >= {"episodes", "evaluation", "lr_control", "checkpoint"}
        assert read_state(folder, "vecnormalize")["returns"].shape == (preset["n_envs"],)
        controller = json.loads((folder / "controller.json").read_text())
        assert len(controller["rules"]) == len(preset["learning_rate"]["rules"]) and controller["multiplier"] > 0
    # nothing half-written left behind (temporary folders are hidden)
    assert [p for p in run_dir.rglob(".*")] == []

    # evaluations.json: the periodic evaluations and the final one
    evaluations = json.loads((run_dir / "evaluations.json").read_text())
    assert [e["timesteps"] for e in evaluations] == FIXTURE_EVALS[kind]
    for e in evaluations:
        assert set(e) == {"timesteps", "return", "pnl", "sharpe", "max_drawdown", "pnl_std", "mean_abs_inventory",
                          "fills", "lr", "terms"}
        assert e["lr"] > 0 and np.isfinite(e["return"])
        # each reward term's mean episode sum; the terms add up to the return
        assert e["terms"] and math.isclose(sum(e["terms"].values()), e["return"], rel_tol=1e-6, abs_tol=1e-9)
    returns = [e["return"] for e in evaluations]

    # best/ holds the first evaluation with the best score; final/ the model at the end of the budget
    for which in ("best", "final"):
        assert {p.name for p in (run_dir / which).iterdir()} == {"model.zip", "vecnormalize.json", "vecnormalize.npz",
                                                                 "info.json"}
    best = json.loads((run_dir / "best" / "info.json").read_text())
    assert best["metric"] == "return" and best["score"] == max(returns)
    assert best["timesteps"] == evaluations[returns.index(max(returns))]["timesteps"]
    assert json.loads((run_dir / "final" / "info.json").read_text()) == {"timesteps": budget}

    # report: both models and every default baseline, on the held-out seeds; the saved models reproduce
    # the scores recorded while training
    md = (run_dir / "report.md").read_text()
    for row in (f"{preset['name']} (final)", f"{preset['name']} (best)",
                *training.default_baselines(load_env_config(ENV))):
        assert f"| {row} |" in md, row
    assert f"seeds {EVAL_SEED}..{EVAL_SEED + 7}" in md
    report = json.loads((run_dir / "report.json").read_text())
    assert report["eval_seeds"] == [EVAL_SEED, EVAL_SEED + 7] and report["timesteps"] == budget
    rows = report["agents"]
    assert rows[f"{preset['name']} (final)"]["return_mean"] == pytest.approx(returns[-1], rel=1e-9)
    assert rows[f"{preset['name']} (best)"]["return_mean"] == pytest.approx(max(returns), rel=1e-9)
    baselines = json.loads((run_dir / "baselines.json").read_text())
    assert list(baselines) == training.default_baselines(load_env_config(ENV))
    assert all(rows[name] == baselines[name] for name in baselines)


def test_starting_a_run_into_a_folder_that_holds_one_errors_and_changes_nothing(ppo_run):
    before = {p.name: p.read_bytes() for p in ppo_run.iterdir() if p.is_file()}
    with pytest.raises(ConfigError, match=r"already holds a run: continue it with `lobgym train --resume "):
        training.start(ENV, FIXTURE_PRESETS["ppo"], name=ppo_run.name, runs_dir=ppo_run.parent, progress=False,
                       command=["again"])
    assert {p.name: p.read_bytes() for p in ppo_run.iterdir() if p.is_file()} == before


@pytest.mark.parametrize("seed", [EVAL_SEED - 3, EVAL_SEED, EVAL_SEED + 7])
def test_a_training_seed_overlapping_the_evaluation_seeds_is_rejected_naming_seed(seed, tmp_path):
    with pytest.raises(ConfigError, match=rf"^seed = {seed}: training market seeds {seed}\.\.{seed + 3} overlap "
                                          rf"the held-out evaluation seeds {EVAL_SEED}\.\.{EVAL_SEED + 7}"):
        training.start(ENV, FIXTURE_PRESETS["ppo"], seed=seed, runs_dir=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []  # checked before the run folder is made
    # the neighbours on either side are fine (4 training envs, 8 evaluation episodes)
    env_cfg, agent_cfg = load_env_config(ENV), load_training_config(FIXTURE_PRESETS["ppo"])
    for ok in (EVAL_SEED - 4, EVAL_SEED + 8):
        training.check_seeds(training.RunConfig(env_cfg, agent_cfg, ok, 256))


@pytest.mark.parametrize("kind", ["ppo", "sac"])
def test_resuming_from_an_older_checkpoint_replays_the_rest_of_the_run_exactly(kind, request, tmp_path):
    run_dir: Path = request.getfixturevalue(f"{kind}_run")
    copy = rewound_copy(run_dir, tmp_path / "copy", FIXTURE_CHECKPOINTS[kind][0])
    assert training.resume(copy, progress=False, command=["resume"]) == copy
    _assert_same_outcome(run_dir, copy)
    # the checkpoints saved again after the one resumed from are the ones saved the first time
    assert checkpoint_steps(copy) == checkpoint_steps(run_dir)
    for step in FIXTURE_CHECKPOINTS[kind][1:]:
        name = f"step_{step:012d}"
        model_zip = Path("checkpoints") / name / "model.zip"
        assert torch_members(copy / model_zip) == torch_members(run_dir / model_zip)
    assert (copy / "command.txt").read_text().splitlines() == [shlex.join(COMMAND), "resume"]


def test_resuming_a_finished_run_trains_no_further(ppo_run, tmp_path):
    copy = Path(shutil.copytree(ppo_run, tmp_path / "copy"))  # copy2 keeps modification times
    saved = {p: p.stat().st_mtime_ns for p in (copy / "checkpoints").rglob("*") if p.is_file()}
    training.resume(copy, progress=False, command=["again"])
    _assert_same_outcome(ppo_run, copy)
    assert checkpoint_steps(copy) == checkpoint_steps(ppo_run)
    assert {p: p.stat().st_mtime_ns for p in (copy / "checkpoints").rglob("*") if p.is_file()} == saved  # untouched
    for step in checkpoint_steps(ppo_run):
        name = f"step_{step:012d}"
        for file in ("state.json", "state.npz"):
            assert (copy / "checkpoints" / name / file).read_bytes() == \
                (ppo_run / "checkpoints" / name / file).read_bytes()


def test_resume_survives_a_kill_while_a_replaced_model_folder_was_being_deleted(ppo_run, tmp_path):
    copy = Path(shutil.copytree(ppo_run, tmp_path / "copy"))
    # what a SIGKILL inside _save_model_dir's final shutil.rmtree(old) leaves: the new folder in place and
    # the old one (partly) still there. best/ is replaced at every improving evaluation; final/ when a finished
    # run is resumed, which makes this deterministic.
    for which in ("best", "final"):
        shutil.copytree(copy / which, copy / f".{which}.old")
    training.resume(copy, progress=False, command=["again"])
    _assert_same_outcome(ppo_run, copy)


# ------------------------------------------- 3./4. the controller inside SB3's train() (SAC; PPO: test_lr_control)
def test_observe_sets_the_rate_of_the_next_sac_train_in_every_optimizer_also_after_loading(tmp_path):
    def controller() -> LRController:
        return LRController(Constant(1e-3), [DivergenceGuard(signal="critic_loss", cut=0.1)])

    ctrl = controller()
    torch.set_num_threads(1)
    run = training.RunConfig(load_env_config(ENV), load_training_config(SMALL_SAC), 0, 1000)
    model = training.new_model(run, lobgym.make_vec_env(ENV, 2, seed=0), ctrl)
    assert controller_of(model) is ctrl
    seen = _record_step_lrs(_sac_optimizers(model))
    model.learn(64)
    _assert_all_steps_used(seen, 1e-3)
    assert ctrl.observe("critic_loss", float("nan")) == pytest.approx(0.1)
    for steps in seen.values():
        steps.clear()
    model.learn(32, reset_num_timesteps=False)
    _assert_all_steps_used(seen, 1e-4)

    # as `lobgym train --resume` does: the model loaded with a controller restored from controller.json
    model.save(tmp_path / "model.zip")
    write_state(tmp_path, "replay_buffer", replay_buffer_state(model.replay_buffer))
    restored = controller()
    restored.load_state_dict(json.loads(json.dumps(ctrl.state_dict())))
    loaded = training.load_model(tmp_path / "model.zip", run, env=lobgym.make_vec_env(ENV, 2, seed=1),
                                 learning_rate=restored)
    restore_replay_buffer(loaded.replay_buffer, read_state(tmp_path, "replay_buffer"), "replay_buffer")
    assert controller_of(loaded) is restored
    seen = _record_step_lrs(_sac_optimizers(loaded))
    loaded.learn(16, reset_num_timesteps=False)
    _assert_all_steps_used(seen, 1e-4)
    restored.observe("critic_loss", float("inf"))
    for steps in seen.values():
        steps.clear()
    loaded.learn(16, reset_num_timesteps=False)
    _assert_all_steps_used(seen, 1e-5)


def test_a_param_group_edit_from_a_callback_is_overwritten_by_sacs_schedule():
    class NaiveLR(BaseCallback):
        """What one might write instead of a controller: set the rate in the optimizers directly."""

        def __init__(self) -> None:
            super().__init__()
            self.edits = 0

        def _on_rollout_end(self) -> None:  # the last thing before SAC's train()
            for opt in _sac_optimizers(self.model).values():
                for group in opt.param_groups:
                    group["lr"] = 1e-6
                assert [g["lr"] for g in opt.param_groups] == [1e-6] * len(opt.param_groups)
            self.edits += 1

        def _on_step(self) -> bool:
            return True

    model = _sac(1e-3)
    seen = _record_step_lrs(_sac_optimizers(model))
    naive = NaiveLR()
    model.learn(64, callback=naive)
    assert naive.edits >= 20
    _assert_all_steps_used(seen, 1e-3)  # not one step at the edited rate
    for opt in _sac_optimizers(model).values():
        assert [g["lr"] for g in opt.param_groups] == [pytest.approx(1e-3)] * len(opt.param_groups)


# ---------------------------------------------------------------- 5. a bad controller.json on resume
def _corrupt_missing(path: Path) -> None:
    path.unlink()


def _corrupt_garbage(path: Path) -> None:
    path.write_text('{"multiplier": 0.5, "history": [')


def _corrupt_not_an_object(path: Path) -> None:
    path.write_text("[0.5]")


def _corrupt_bad_multiplier(path: Path) -> None:
    state = json.loads(path.read_text())
    path.write_text(json.dumps({**state, "multiplier": "fast"}))


def _corrupt_rule_fields(path: Path) -> None:
    state = json.loads(path.read_text())
    state["rules"][0] = {**state["rules"][0], "taget": 0.01}
    path.write_text(json.dumps(state))


def _corrupt_no_rules(path: Path) -> None:
    state = json.loads(path.read_text())
    del state["rules"]
    path.write_text(json.dumps(state))


def _corrupt_rule_value_type(path: Path) -> None:
    state = json.loads(path.read_text())
    state["rules"][0]["target"] = "0.001"  # KLTarget
    path.write_text(json.dumps(state))


@pytest.mark.parametrize("corrupt", [
    _corrupt_missing, _corrupt_garbage, _corrupt_not_an_object,
    _corrupt_bad_multiplier,
    _corrupt_rule_fields,
    _corrupt_no_rules,
    _corrupt_rule_value_type,
])
def test_resume_refuses_a_missing_or_corrupted_controller_naming_the_file(corrupt, ppo_run, tmp_path):
    step = FIXTURE_CHECKPOINTS["ppo"][0]  # a few rollouts left to train after it
    copy = rewound_copy(ppo_run, tmp_path / "copy", step)
    corrupt(copy / "checkpoints" / f"step_{step:012d}" / "controller.json")
    with pytest.raises(ValueError) as info:
        training.resume(copy, progress=False, command=["resume"])
    message = str(info.value)
    assert "controller.json" in message and "default learning rate" in message, message
    assert (copy / "final" / "model.zip").read_bytes() == (ppo_run / "final" / "model.zip").read_bytes()
    assert checkpoint_steps(copy) == checkpoint_steps(ppo_run)


def test_cli_resume_with_no_controller_in_any_checkpoint_exits_nonzero_naming_each_file(ppo_run, tmp_path, runner):
    copy = Path(shutil.copytree(ppo_run, tmp_path / "copy"))
    missing = [copy / "checkpoints" / f"step_{step:012d}" / "controller.json" for step in FIXTURE_CHECKPOINTS["ppo"]]
    for path in missing:
        path.unlink()
    result = runner.invoke(cli.app, ["train", "--resume", str(copy), "--no-progress"])
    assert result.exit_code == 2, result.output
    out = _flat(result.output)
    assert out.startswith(f"error: {copy / 'checkpoints'}: no readable checkpoint (")
    for path in missing:
        assert f"{path}: missing; the run trains with a learning-rate controller and will not resume at a default " \
               "learning rate" in out
    assert "Traceback" not in result.output


# ------------------------------------------------------------- 6. the divergence guard inside SB3
def test_divergence_guard_cuts_on_a_nan_loss_logged_by_sb3_and_blocks_increases_for_its_cooldown():
    class InjectNaNLoss(BaseCallback):
        """Before the controller's callback reads SB3's logger, replaces the last train()'s loss by NaN once."""

        def __init__(self, at: int) -> None:
            super().__init__()
            self.at, self.rollouts = at, 0

        def _on_rollout_start(self) -> None:
            self.rollouts += 1
            if self.rollouts == self.at:
                assert "train/loss" in self.model.logger.name_to_value  # SB3 logged a real loss there
                self.model.logger.name_to_value["train/loss"] = float("nan")

        def _on_step(self) -> bool:
            return True

    guard = DivergenceGuard(signal="loss", max_ratio=1e12, cut=0.1, cooldown=2)  # only the NaN fires it
    kl = KLTarget(target=1.0, band=1.5, factor=2.0)  # PPO's KL is far below 1 / 1.5: always an increase
    controller = LRController(Constant(1e-3), [kl, guard])
    torch.set_num_threads(1)
    model = PPO("MlpPolicy", lobgym.make_vec_env(ENV, 2, seed=0), n_steps=32, batch_size=32, n_epochs=1, seed=0,
                device="cpu", learning_rate=controller, policy_kwargs={"net_arch": [16, 16]})
    inject = InjectNaNLoss(at=3)
    lrs: list[tuple[int, float]] = []
    model.policy.optimizer.register_step_pre_hook(
        lambda o, args, kwargs: lrs.append((inject.rollouts, o.param_groups[0]["lr"])))
    model.learn(6 * 64, callback=CallbackList([inject, make_lr_callback(controller)]))

    assert inject.rollouts == 6
    assert all(v < 1.0 / 1.5 for s, v, _ in controller.history if s == "approx_kl")
    # after each train() but the last: (approx_kl, loss); the multiplier after each observation
    assert [s for s, _, _ in controller.history] == ["approx_kl", "loss"] * 5
    nan_at = [i for i, (s, v, _) in enumerate(controller.history) if s == "loss" and np.isnan(v)]
    assert nan_at == [3]  # the loss read at the start of the third rollout
    assert [m for _, _, m in controller.history] == pytest.approx(
        [2.0, 2.0,  # rollout 2: KL raises
         4.0, 0.4,  # rollout 3: KL raises, the NaN loss cuts by 0.1 and blocks increases for 2 loss observations
         0.4, 0.4,  # rollout 4: KL increase blocked
         0.4, 0.4,  # rollout 5: blocked (the loss read here ends the cooldown)
         0.8, 0.8])  # rollout 6: increases allowed again
    assert guard.fired == 1 and guard.blocked == 0
    # and the rate every train() used: train k follows rollout k
    per_train = {k: sorted({lr for r, lr in lrs if r == k}) for k in range(1, 7)}
    assert per_train == {1: [pytest.approx(1e-3)], 2: [pytest.approx(2e-3)], 3: [pytest.approx(4e-4)],
                         4: [pytest.approx(4e-4)], 5: [pytest.approx(4e-4)], 6: [pytest.approx(8e-4)]}


# ------------------------------------------------------------- 7. lobgym evaluate --agent <run folder>
def test_evaluate_cli_scores_a_run_folder_on_its_env_like_its_report(ppo_run, tmp_path, runner):
    out = tmp_path / "eval.json"
    result = runner.invoke(cli.app, ["evaluate", "--agent", str(ppo_run), "--agent", "avellaneda_stoikov",
                                     "--episodes", "8", "--seed", str(EVAL_SEED), "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert f"{ENV}: 8 episodes per agent" in result.output and f"│ {ppo_run.name} " in result.output
    data = json.loads(out.read_text())
    assert data["env"] == ENV  # no --env: the run's own env
    got = {a["agent"]: a["summary"] for a in data["agents"]}
    assert list(got) == [ppo_run.name, "avellaneda_stoikov"]
    report = json.loads((ppo_run / "report.json").read_text())["agents"]
    # the run folder's best model, on the report's held-out seeds
    for key in ("return_mean", "pnl_mean", "fills_mean"):
        assert got[ppo_run.name][key] == pytest.approx(report["tiny_ppo (best)"][key], rel=1e-9), key
        assert got["avellaneda_stoikov"][key] == pytest.approx(report["avellaneda_stoikov"][key], rel=1e-9), key


def test_evaluate_cli_rejects_an_env_with_other_spaces_naming_both_envs(ppo_run, runner):
    result = runner.invoke(cli.app, ["evaluate", "--agent", str(ppo_run), "--env", "cst2010", "--episodes", "2"])
    assert result.exit_code == 2, result.output
    out = _flat(result.output)
    assert f"error: agent '{ppo_run}' was trained on env '{ENV}'; env 'cst2010' has other observations or " \
           f"actions" in out


def test_a_run_without_models_yet_says_so_and_how_to_resume(ppo_run, tmp_path, runner):
    copy = Path(shutil.copytree(ppo_run, tmp_path / "copy"))
    shutil.rmtree(copy / "best")
    shutil.rmtree(copy / "final")
    with pytest.raises(ValueError, match=r"no trained model yet \(looked for best/model.zip, final/model.zip\); "
                                         rf"resume it with `lobgym train --resume {re.escape(str(copy))}`"):
        training.trained_agent(copy)
    result = runner.invoke(cli.app, ["evaluate", "--agent", str(copy), "--episodes", "2"])
    assert result.exit_code == 2 and "no trained model yet" in _flat(result.output)


# ---------------------------------------------------------------------------------- 8. config errors
PPO_PRESET = FIXTURE_PRESETS["ppo"]
BATCH_OF_ONE = {**PPO_PRESET, "hyperparams": {**PPO_PRESET["hyperparams"], "batch_size": 1}}  # SB3 rejects it


@pytest.mark.parametrize(("preset", "message"), [
    ({**PPO_PRESET, "hyperparams": {"n_step": 64}},
     r"hyperparams\.n_step: not a PPO hyperparameter here; allowed: n_steps, batch_size, n_epochs, gamma, "),
    ({**PPO_PRESET, "hyperparams": {"buffer_size": 1000}},
     r"hyperparams\.buffer_size: not a PPO hyperparameter here; allowed: n_steps, "),
    ({**FIXTURE_PRESETS["sac"], "hyperparams": {"n_epochs": 2}},
     r"hyperparams\.n_epochs: not a SAC hyperparameter here; allowed: buffer_size, learning_starts, "),
    ({**PPO_PRESET, "optimizer": {"name": "adam", "kwargs": {"lr": 1e-3}}},
     r"kwargs\.lr: not an argument of Adam; allowed: betas, eps, weight_decay, amsgrad \(lr comes from "
     r"learning_rate\)"),
    ({**PPO_PRESET, "optimizer": {"name": "rmsprop", "kwargs": {"betas": [0.9, 0.99]}}},
     r"kwargs\.betas: not an argument of RMSprop; allowed: alpha, eps, weight_decay, momentum, centered"),
    ({**PPO_PRESET, "optimizer": {"name": "sgd"}},
     r"optimizer\.name = 'sgd': Input should be 'adam', 'adamw', 'rmsprop', 'prodigy', 'dadapt_adam' or "
     r"'adamw_schedulefree'"),
    ({**PPO_PRESET, "policy": {"activation": "gelu"}},
     r"policy\.activation = 'gelu': Input should be 'tanh', 'relu', 'elu' or 'leaky_relu'"),
    ({**PPO_PRESET, "learning_rate": -1.0}, r"learning_rate = -1\.0: .*allowed: a number > 0, or a controller mapping"),
])
def test_bad_training_presets_are_rejected_naming_the_field_and_the_allowed_values(preset, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        load_training_config(preset)
    with pytest.raises(ConfigError, match=message):
        training.start(ENV, preset, runs_dir=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_hyperparams_sb3_rejects_are_reported_as_config_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"agent 'tiny_ppo': PPO rejected the preset's hyperparams / policy: "
                                          r"`batch_size` must be greater than 1"):
        training.start(ENV, BATCH_OF_ONE, runs_dir=tmp_path,
                       name="bad", progress=False)


def test_a_start_sb3_rejects_does_not_block_its_run_folder(tmp_path):
    with pytest.raises(ConfigError, match="rejected"):
        training.start(ENV, BATCH_OF_ONE, runs_dir=tmp_path,
                       name="retry", progress=False)
    fixed = {**PPO_PRESET, "timesteps": 256, "eval": {"every": 256, "episodes": 2, "baselines": ["random"]}}
    assert training.start(ENV, fixed, runs_dir=tmp_path, name="retry", progress=False) == tmp_path / "retry"


def test_an_unknown_algorithm_kind_is_named_with_the_allowed_kinds():
    with pytest.raises(ConfigError, match=r"kind = 'a2c'.*ppo, sac"):
        load_training_config({**PPO_PRESET, "kind": "a2c"})


def test_cli_train_of_a_baseline_preset_says_it_is_a_baseline_and_names_the_allowed_kinds(tmp_path, runner):
    result = runner.invoke(cli.app, ["train", "--agent", "avellaneda_stoikov", "--env", ENV,
                                     "--runs-dir", str(tmp_path), "--no-progress"])
    assert result.exit_code == 2, result.output
    assert "error: agent 'avellaneda_stoikov': kind = 'avellaneda_stoikov' is an analytic baseline, nothing to " \
           "train (allowed kinds: ppo, sac); evaluate it with `lobgym evaluate`" in _flat(result.output)
    assert list(tmp_path.iterdir()) == []


def test_cli_train_names_the_bad_field_of_a_yaml_preset(tmp_path, runner):
    preset = tmp_path / "typo.yaml"
    preset.write_text(yaml.safe_dump({**PPO_PRESET, "hyperparams": {"n_epoch": 2}}))
    result = runner.invoke(cli.app, ["train", "--agent", str(preset), "--runs-dir", str(tmp_path / "runs"),
                                     "--no-progress"])
    assert result.exit_code == 2, result.output
    assert f"error: {preset}: hyperparams.n_epoch: not a PPO hyperparameter here; allowed: n_steps" in \
        _flat(result.output)
    assert not (tmp_path / "runs").exists()


def test_divergence_guard_with_reload_best_puts_back_the_best_weights(tmp_path):
    from lobgym.agents.callbacks import ReloadBestCallback
    from lobgym.agents.lr_control import build_controller

    ctrl = build_controller({"base": {"kind": "constant", "lr": 3e-4},
                             "rules": [{"kind": "divergence_guard", "reload_best": True}]})
    model = PPO("MlpPolicy", lobgym.make_vec_env("cj2015", n_envs=2, seed=0), learning_rate=ctrl, n_steps=32,
                batch_size=32, n_epochs=1, seed=0, device="cpu")
    best = tmp_path / "best"
    best.mkdir()
    model.save(best / "model.zip")
    saved = {k: v.clone() for k, v in model.policy.state_dict().items()}
    model.learn(64)
    assert any(not torch.equal(saved[k], v) for k, v in model.policy.state_dict().items())  # training moved them
    cb = ReloadBestCallback(ctrl, best)
    cb.init_callback(model)
    cb.on_rollout_start()
    assert cb.reloads == 0  # the guard has not fired
    ctrl.observe("loss", float("nan"))
    cb.on_rollout_start()
    assert cb.reloads == 1
    assert all(torch.equal(saved[k], v) for k, v in model.policy.state_dict().items())
    cb.on_rollout_start()
    assert cb.reloads == 1  # one reload per firing


def test_a_saved_flag_of_the_wrong_type_is_refused():
    guard = LRController(Constant(1e-3), [DivergenceGuard(reload_best=True)])
    state = guard.state_dict()
    state["rules"][0]["reload_best"] = 1
    with pytest.raises(ValueError, match="reload_best = 1"):
        LRController(Constant(1e-3), [DivergenceGuard(reload_best=True)]).load_state_dict(state)


@pytest.mark.parametrize(("name", "kwargs", "cls"), [
    ("adam", {"eps": 1e-5}, torch.optim.Adam),
    ("adamw", {"weight_decay": 0.05, "betas": [0.8, 0.9]}, torch.optim.AdamW),
    ("rmsprop", {"alpha": 0.95, "momentum": 0.1}, torch.optim.RMSprop),
])
@pytest.mark.parametrize("kind", ["ppo", "sac"])
def test_the_presets_optimizer_and_its_kwargs_are_used(kind, name, kwargs, cls):
    preset = {"kind": kind, "n_envs": 2, "policy": {"net_arch": [8]}, "optimizer": {"name": name, "kwargs": kwargs},
              "hyperparams": {"n_steps": 16, "batch_size": 16} if kind == "ppo" else {"buffer_size": 100}}
    run = training.RunConfig(load_env_config("cj2015"), load_training_config(preset), 0, 64)
    model = training.new_model(run, training.make_training_env(run), None)
    optimizers = [model.policy.optimizer] if kind == "ppo" else [model.actor.optimizer, model.critic.optimizer]
    for opt in optimizers:
        assert type(opt) is cls
        for key, value in kwargs.items():
            assert opt.defaults[key] == (tuple(value) if isinstance(value, list) else value)


# ------------------------------------------------- 9. run folders: reading one runs no code; corrupt files
class _Planted:
    """What a malicious shared run folder would hold: a pickle that, once unpickled, creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def _plant_in_model_zip(path: Path, marker: Path, extra_key: str | None = None) -> None:
    """Replace every pickled entry of an SB3 save's ``data`` (and add ``extra_key``) by a planted pickle."""
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    data = json.loads(members["data"])
    planted = base64.b64encode(pickle.dumps(_Planted(marker))).decode()
    serialized = [k for k, v in data.items() if isinstance(v, dict) and ":serialized:" in v]
    assert {"observation_space", "policy_class", "learning_rate", "_last_obs"} <= set(serialized), serialized
    for key in serialized:
        data[key][":serialized:"] = planted
    if extra_key is not None:
        data[extra_key] = {":type:": "<class 'object'>", ":serialized:": planted}
    members["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(path, "w") as zf:
        for name, raw in members.items():
            zf.writestr(name, raw)


def _plant_npz(path: Path, marker: Path) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, a0=np.array([_Planted(marker)], dtype=object))  # an object array: a pickle inside the npz


def test_evaluating_and_resuming_a_run_folder_runs_no_code_from_it(ppo_run, tmp_path, runner):
    copy = rewound_copy(ppo_run, tmp_path / "copy", FIXTURE_CHECKPOINTS["ppo"][1])
    marker = tmp_path / "pwned"
    folders = [copy / "best", copy / "final", *sorted((copy / "checkpoints").glob("step_*"))]
    for folder in folders:
        _plant_in_model_zip(folder / "model.zip", marker)
        for name in ("vecnormalize.pkl", "state.pkl", "replay_buffer.pkl"):  # the pickles older versions read
            (folder / name).write_bytes(pickle.dumps(_Planted(marker)))

    result = runner.invoke(cli.app, ["evaluate", "--agent", str(copy), "--episodes", "2"])
    assert result.exit_code == 0, result.output
    assert not marker.exists()
    training.trained_agent(copy, "final")
    assert not marker.exists()
    training.resume(copy, progress=False, command=["resume"])
    assert not marker.exists()
    _assert_same_outcome(ppo_run, copy)  # every pickled entry was rebuilt from the run's config and state


def test_a_pickled_model_entry_lobgym_does_not_rebuild_is_refused_naming_it(ppo_run, tmp_path):
    copy = Path(shutil.copytree(ppo_run, tmp_path / "copy"))
    marker = tmp_path / "pwned"
    _plant_in_model_zip(copy / "best" / "model.zip", marker, extra_key="surprise")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(copy / 'best' / 'model.zip'))}: data entry 'surprise' is "
                                         r"a pickled object lobgym does not rebuild from the run's config; refusing"):
        training.trained_agent(copy)
    assert not marker.exists()


def _truncate(path: Path, marker: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[:len(raw) // 2])


def _flip_a_byte(path: Path, marker: Path) -> None:
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        offset = zf.getinfo("policy.pth").header_offset
    name_len, extra_len = struct.unpack("<HH", raw[offset + 26:offset + 30])  # the member's local header
    raw[offset + 30 + name_len + extra_len + 40] ^= 0xFF  # inside the stored weights
    path.write_bytes(bytes(raw))


def _garbage(path: Path, marker: Path) -> None:
    path.write_text('{"obs_rms": {"mean": ')


def _old_pickle(path: Path, marker: Path) -> None:
    for name in ("vecnormalize.json", "vecnormalize.npz"):
        (path.parent / name).unlink()
    (path.parent / "vecnormalize.pkl").write_bytes(pickle.dumps(_Planted(marker)))


@pytest.mark.parametrize(("file", "corrupt", "message"), [
    ("model.zip", _truncate, r"unreadable model \("),
    ("model.zip", _flip_a_byte, r"unreadable model \(member 'policy.pth' fails its checksum\)"),
    ("vecnormalize.npz", _truncate, r"unreadable arrays \("),
    ("vecnormalize.npz", _plant_npz, r"unreadable arrays \(it holds pickled objects, which lobgym never loads\)"),
    ("vecnormalize.json", _garbage, r"unreadable JSON \("),
    ("vecnormalize.pkl", _old_pickle, r"a pickle written by an older lobgym; this version stores normaliser "
                                      r"statistics as npz/JSON and never unpickles run files"),
])
def test_evaluating_a_run_with_a_corrupt_model_file_is_a_one_line_error_naming_it(ppo_run, tmp_path, runner, file,
                                                                                    corrupt, message):
    copy = Path(shutil.copytree(ppo_run, tmp_path / "copy"))
    marker = tmp_path / "pwned"
    path = copy / "best" / file
    corrupt(path, marker)
    result = runner.invoke(cli.app, ["evaluate", "--agent", str(copy), "--episodes", "2"])
    assert result.exit_code == 2, result.output
    assert re.fullmatch(rf"error: {re.escape(str(path))}: {message}.*\n", result.output), result.output
    assert not marker.exists()


def _remove(path: Path) -> None:
    path.unlink()


def _truncate_file(path: Path) -> None:
    _truncate(path, path)


@pytest.mark.parametrize(("file", "corrupt"), [
    ("state.npz", _truncate_file), ("state.json", _truncate_file), ("model.zip", _truncate_file),
    ("vecnormalize.npz", _remove), ("controller.json", _remove),
])
def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous_one_and_resumes_exactly(ppo_run, tmp_path, file,
                                                                                         corrupt):
    previous, newest = FIXTURE_CHECKPOINTS["ppo"][:2]
    copy = rewound_copy(ppo_run, tmp_path / "copy", newest)
    bad = copy / "checkpoints" / f"step_{newest:012d}" / file
    corrupt(bad)
    with pytest.warns(CheckpointFallback, match=rf"^{re.escape(str(bad))}: .*; resuming from the previous kept "
                                                rf"checkpoint, step_{previous:012d}$"):
        training.resume(copy, progress=False, command=["resume"])
    _assert_same_outcome(ppo_run, copy)


def _pickled_state(checkpoint: Path) -> Path:
    for name in ("state.json", "state.npz"):
        (checkpoint / name).unlink()
    (checkpoint / "state.pkl").write_bytes(b"\x80\x05N.")
    return checkpoint / "state.pkl"


@pytest.mark.parametrize(("where", "message"), [
    (lambda c: _pickled_state(c), r"a pickle written by an older lobgym; this version stores run state as npz/JSON"),
    (lambda c: _garbage(c / "state.json", c) or c / "state.json", r"unreadable JSON \("),
])
def test_without_a_readable_checkpoint_resume_is_an_error_naming_each_file(ppo_run, tmp_path, where, message):
    copy = rewound_copy(ppo_run, tmp_path / "copy", FIXTURE_CHECKPOINTS["ppo"][0])  # the oldest kept one
    bad = where(copy / "checkpoints" / f"step_{FIXTURE_CHECKPOINTS['ppo'][0]:012d}")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(copy / 'checkpoints'))}: no readable checkpoint "
                                         rf"\({re.escape(str(bad))}: {message}"):
        training.resume(copy, progress=False, command=["resume"])
    assert (copy / "final" / "model.zip").read_bytes() == (ppo_run / "final" / "model.zip").read_bytes()


@pytest.mark.parametrize(("file", "message"), [
    ("checkpoints/latest.json", r"unreadable JSON \("),
    ("baselines.json", r"unreadable JSON \("),
])
def test_resuming_with_a_corrupt_run_file_is_an_error_naming_it(ppo_run, tmp_path, runner, file, message):
    copy = Path(shutil.copytree(ppo_run, tmp_path / "copy"))
    (copy / file).write_text('{"step": 10')
    result = runner.invoke(cli.app, ["train", "--resume", str(copy), "--no-progress"])
    assert result.exit_code == 2, result.output
    assert re.fullmatch(rf"error: {re.escape(str(copy / file))}: {message}.*\n", result.output), result.output


def test_resume_removes_what_interrupted_writes_left_and_refuses_a_run_another_process_trains(ppo_run, tmp_path):
    copy = Path(shutil.copytree(ppo_run, tmp_path / "copy"))
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom lobgym.folders import exclusive\n"
                               "with exclusive(sys.argv[1], 'training run'):\n    print('held', flush=True)\n"
                               "    time.sleep(600)\n", str(copy)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(ValueError, match=rf"^{re.escape(str(copy))}: another lobgym training run \(pid "
                                             rf"{holder.pid} on .*\) holds {re.escape(str(copy / '.lock'))}"):
            training.resume(copy, progress=False, command=["resume"])
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    planted = [copy / ".evaluations.json.q8w_2k.tmp", copy / "checkpoints" / ".latest.json.0xk3.tmp"]
    for path in planted:
        path.write_text("half")
    folders = [copy / "checkpoints" / ".step_000000001024.m2n_b8", copy / ".best.u1y7t_"]
    for folder in folders:
        folder.mkdir()
        (folder / "model.zip").write_bytes(b"PK")
    training.resume(copy, progress=False, command=["resume"])
    assert [p for p in copy.rglob(".*")] == []  # the leftovers, and the lock once the resume ended
    _assert_same_outcome(ppo_run, copy)


# ----------------------------------------------------------- portable math: the same weights on other CPUs
@pytest.mark.slow
def test_train_gives_the_same_weights_whatever_code_paths_the_processor_would_pick(tmp_path):
    """Another machine's MKL and ATen pick other instruction-set code paths, which round differently
    (here emulated by forcing others: MKL_CBWR=COMPATIBLE, ATEN_CPU_CAPABILITY=default); `lobgym train`
    pins both to the same fixed paths whatever the environment says, so the weights stay byte-identical.
    Opting out shows the check bites."""
    preset = tmp_path / "tiny.yaml"
    preset.write_text(yaml.safe_dump({**FIXTURE_PRESETS["ppo"], "name": "tiny_math", "timesteps": 256,
                                      "learning_rate": 3e-4, "eval": {"every": 256, "episodes": 4},
                                      "checkpoint": {"every": 256, "keep": 1}}))
    other_cpu = {"MKL_CBWR": "COMPATIBLE", "ATEN_CPU_CAPABILITY": "default"}
    runs = {"here": {}, "other_cpu": other_cpu, "other_cpu_native": other_cpu | {"LOBGYM_NATIVE_MATH": "1"}}
    for name, extra in runs.items():
        env = {k: v for k, v in os.environ.items() if k not in (*other_cpu, "LOBGYM_NATIVE_MATH")} | extra
        out = subprocess.run([sys.executable, "-m", "lobgym", "train", "--env", ENV, "--agent", str(preset),
                              "--runs-dir", str(tmp_path / "runs"), "--name", name, "--no-progress"],
                             env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stdout + out.stderr
    weights = {name: torch_members(tmp_path / "runs" / name / "final" / "model.zip") for name in runs}
    assert weights["other_cpu"] == weights["here"]
    assert weights["other_cpu_native"] != weights["here"]  # without the pin the code paths show
    meta = {name: json.loads((tmp_path / "runs" / name / "meta.json").read_text())["math"] for name in runs}
    assert meta["here"]["portable"] is True and meta["other_cpu_native"]["portable"] is False
