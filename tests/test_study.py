"""``lobgym study``: a tiny grid end to end on both backends (a process pool, and a real local Ray
instance), resuming, failing trials, spec validation, and resuming after a SIGKILL of the whole study.

Trials are tiny (256 timesteps of PPO, 4 evaluation episodes); the Ray run and the subprocess round
trip are marked slow (they still run in CI).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

import lobgym.study as study
from lobgym.config import ConfigError
from lobgym.study import run_study

TINY_PPO: dict[str, Any] = {
    "kind": "ppo", "n_envs": 2, "policy": {"net_arch": [8, 8]},
    "hyperparams": {"n_steps": 64, "batch_size": 64, "n_epochs": 1, "gamma": 1.0},
    "learning_rate": 1e-3, "timesteps": 256, "eval": {"every": 128, "episodes": 4},
    "checkpoint": {"every": 128, "keep": 1},
}
TIMESTEPS = 256
EVALS = [0, 128, 256]  # eval.every = 128: at the start, every 128 timesteps, and at the end


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _spec(folder: Path, agents: dict[str, dict[str, Any]], seeds: list[int], timesteps: int = TIMESTEPS,
          every: int = 128, name: str = "tiny") -> Path:
    """A study spec in ``folder``: each agent a tiny preset written next to it."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {label: str(_write(folder / f"{label}.yaml", {"name": f"tiny_{label}", **preset}))
             for label, preset in agents.items()}
    return _write(folder / "spec.yaml", {
        "name": name, "envs": ["cj2015"], "agents": paths, "seeds": seeds, "timesteps": timesteps,
        "eval": {"episodes": 4, "every": every, "baselines": ["random"]}})


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "results.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _report_mtimes(out: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*/report.json")}


TRIALS = {f"cj2015__{agent}__seed{seed}" for agent in ("a", "b") for seed in (0, 1)}


@pytest.fixture(scope="module")
def grid_spec(tmp_path_factory) -> Path:
    """2 arms (two learning rates) x 2 seeds."""
    return _spec(tmp_path_factory.mktemp("grid"), {"a": TINY_PPO, "b": {**TINY_PPO, "learning_rate": 3e-4}},
                 seeds=[0, 1])


@pytest.fixture(scope="module")
def local_study(grid_spec, tmp_path_factory) -> Path:
    return run_study(str(grid_spec), out=tmp_path_factory.mktemp("local") / "study", workers=2, progress=False)


def test_local_backend_runs_every_trial_and_writes_one_row_per_evaluation(local_study):
    rows = _rows(local_study)
    assert {r["trial"] for r in rows} == TRIALS
    for trial in TRIALS:
        mine = [r for r in rows if r["trial"] == trial]
        assert [int(r["timesteps"]) for r in mine] == EVALS
        assert [r["final"] for r in mine] == ["0", "0", "1"]
        assert (local_study / "runs" / trial / "report.json").is_file()
        assert (local_study / "runs" / trial / "final" / "model.zip").is_file()
    lrs = {r["agent"]: r["lr_now"] for r in rows}
    assert lrs == {"a": "0.001", "b": "0.0003"}
    # every row carries the trial's configuration
    assert {(r["agent"], Path(r["agent_preset"]).name) for r in rows} == {("a", "a.yaml"), ("b", "b.yaml")}
    assert {(r["budget"], r["eval_episodes"], r["eval_seed"]) for r in rows} == {(str(TIMESTEPS), "4", "1000000")}
    assert json.loads((local_study / "failures.json").read_text()) == {}
    # the study's own baselines.json: the env's baselines as its first trial evaluated them
    first = json.loads((local_study / "runs" / sorted(TRIALS)[0] / "baselines.json").read_text())
    assert json.loads((local_study / "baselines.json").read_text()) == {"cj2015": first}
    assert "random" in first and "pnl_mean" in first["random"]


def test_rerunning_a_finished_study_runs_nothing(local_study, monkeypatch):
    before, csv_before = _report_mtimes(local_study), (local_study / "results.csv").read_text()
    assert set(before) == TRIALS

    def no_pool(*args, **kwargs):
        raise AssertionError("a finished study started a process pool")

    monkeypatch.setattr(study, "ProcessPoolExecutor", no_pool)
    run_study(local_study / "spec.yaml", out=local_study, workers=2, progress=False)
    assert _report_mtimes(local_study) == before
    assert (local_study / "results.csv").read_text() == csv_before


@pytest.mark.slow
def test_ray_backend_gives_the_same_results_as_the_local_one(grid_spec, local_study, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    assert not ray.is_initialized()
    out = run_study(str(grid_spec), out=tmp_path / "study", workers=2, progress=False, backend="ray")
    assert not ray.is_initialized()  # the local instance it started is shut down
    rows = _rows(out)
    assert {r["trial"] for r in rows} == TRIALS
    assert (out / "results.csv").read_text() == (local_study / "results.csv").read_text()
    assert json.loads((out / "failures.json").read_text()) == {}
    for trial in TRIALS:
        assert (out / "runs" / trial / "report.json").is_file()

    # finished: the Ray backend resumes like the local one and does not even start Ray
    before = _report_mtimes(out)

    def no_init(*args, **kwargs):
        raise AssertionError("a finished study started Ray")

    monkeypatch.setattr(ray, "init", no_init)
    run_study(str(grid_spec), out=out, workers=2, progress=False, backend="ray")
    assert _report_mtimes(out) == before


def test_a_failing_trial_is_recorded_and_the_others_finish(tmp_path):
    bad = {**TINY_PPO, "hyperparams": {**TINY_PPO["hyperparams"], "batch_size": 1}}  # SB3 rejects it at start
    spec = _spec(tmp_path / "spec", {"ok": TINY_PPO, "bad": bad}, seeds=[0])
    out = run_study(str(spec), out=tmp_path / "study", workers=1, progress=False)  # one process: cheaper
    failures = json.loads((out / "failures.json").read_text())
    assert set(failures) == {"cj2015__bad__seed0"}
    failure = failures["cj2015__bad__seed0"]
    assert failure["status"] == "failed"
    assert "ConfigError" in failure["error"] and "`batch_size` must be greater than 1" in failure["error"]
    assert "Traceback" in failure["traceback"]
    rows = _rows(out)
    assert {r["trial"] for r in rows} == {"cj2015__ok__seed0"}
    assert [int(r["timesteps"]) for r in rows] == EVALS


BASE = {"envs": ["cj2015"], "agents": {"a": "ppo"}, "seeds": [0], "timesteps": 256}


@pytest.mark.parametrize(("update", "message"), [
    ({"seeds": [0, 0]}, r"seeds = \[0, 0\]: .*seeds must be distinct"),
    ({"seeds": []}, r"seeds"),
    ({"agents": {"a": "no_such_preset"}}, r"agents\.a = 'no_such_preset': .*unknown; available: .*ppo"),
    ({"envs": ["no_such_env"]}, r"envs: 'no_such_env': .*unknown; available: .*cj2015"),
    ({"learning_rates": [-1]}, r"learning_rates = \[-1\]: .*every learning rate must be > 0"),
    ({"timesteps": 0}, r"timesteps"),
    ({"workers": 0}, r"workers"),
    # a reward is a list or a per-env mapping: the error follows the form given, not pydantic's union tags
    ({"rewards": {"bad": [{"term": "pnl", "params": {"nope": 1}}]}},
     r"rewards\.bad\[0\]: params\.nope = 1: Extra inputs are not permitted \(term 'pnl' takes: none\)$"),
    ({"rewards": {"bad": {"cj2015": [{"term": "nope"}]}}}, r"rewards\.bad\.cj2015\[0\]: term = 'nope': unknown"),
    ({"rewards": {"bad": {"as2008": [{"term": "pnl"}]}}}, r"rewards\.bad: per-env rewards for \['as2008'\]"),
])
def test_spec_errors_name_the_field(update, message, tmp_path):
    with pytest.raises(ConfigError, match=message) as err:
        run_study({**BASE, **update}, out=tmp_path / "study", progress=False)
    assert "function-after" not in str(err.value) and "list[" not in str(err.value)
    assert not (tmp_path / "study").exists()


def test_backend_errors_name_the_value_and_the_allowed_ones(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"backend = 'dask': expected one of 'local', 'ray'"):
        run_study(BASE, out=tmp_path / "study", progress=False, backend="dask")
    with pytest.raises(ConfigError, match=r"address = 'auto': only with backend = 'ray'"):
        run_study(BASE, out=tmp_path / "study", progress=False, address="auto")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed: `import ray` fails
    with pytest.raises(ConfigError, match=r"^backend = 'ray': Ray is not installed; pip install 'lobgym\[ray\]'$"):
        run_study(BASE, out=tmp_path / "study", progress=False, backend="ray")
    assert not (tmp_path / "study").exists()


def test_cli_study_reports_a_bad_backend(tmp_path):
    from typer.testing import CliRunner

    from lobgym.cli import app

    result = CliRunner().invoke(app, ["study", "lr_robustness", "--backend", "dask", "--out", str(tmp_path / "s")])
    assert result.exit_code == 2
    assert "backend = 'dask': expected one of 'local', 'ray'" in result.output
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_a_study_killed_mid_way_resumes_without_rerunning_finished_trials(tmp_path):
    preset = {**TINY_PPO, "timesteps": 512, "eval": {"every": 256, "episodes": 4}}
    spec = _spec(tmp_path / "spec", {"a": preset}, seeds=[0, 1, 2], timesteps=512, every=256)
    trials = {f"cj2015__a__seed{s}" for s in (0, 1, 2)}
    out = tmp_path / "study"
    cmd = [sys.executable, "-m", "lobgym", "study", str(spec), "--out", str(out), "--workers", "1", "--no-progress"]
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True)
        try:
            deadline = time.monotonic() + 120
            while not ((out / "results.csv").is_file() and _rows(out)):
                assert proc.poll() is None, (tmp_path / "killed.log").read_text()
                assert time.monotonic() < deadline, "no trial finished in 120 s"
                time.sleep(0.02)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)  # the study and its worker process
            proc.wait()
    finished = _report_mtimes(out)
    assert {r["trial"] for r in _rows(out)} <= set(finished)
    assert 1 <= len(finished) < len(trials), "the study was not killed mid-way"

    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = _rows(out)
    pairs = [(r["trial"], int(r["timesteps"])) for r in rows]
    assert len(pairs) == len(set(pairs)), "duplicate rows"
    assert sorted(pairs) == sorted((t, ts) for t in trials for ts in (0, 256, 512))
    after = _report_mtimes(out)
    assert set(after) == trials
    assert {t: after[t] for t in finished} == finished, "a trial finished before the kill was run again"
    assert json.loads((out / "failures.json").read_text()) == {}
