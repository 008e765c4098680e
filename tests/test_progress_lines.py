"""Progress of long work when stdout is not a terminal: plain periodic lines, no control codes, for
``train``, ``study``, ``bench`` and ``validate``."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import time

import pytest
import yaml
from helpers import run_lobgym

from lobgym.progress import ProgressLines, duration, interval_seconds

NUMBER = r"[\d,]+"


def test_a_line_says_how_far_how_fast_and_how_long_is_left(monkeypatch):
    clock = iter([100.0, 100.0, 110.0, 110.0])
    monkeypatch.setattr(time, "monotonic", lambda: next(clock))
    out = io.StringIO()
    lines = ProgressLines("train x", 300_000, "timesteps", rate_unit="steps", start=20_000, interval=0, file=out)
    lines._t0 = 100.0
    lines.update(41_000, "last eval return 4.12")
    assert out.getvalue() == ("train x: 41,000/300,000 timesteps (13.7%), 2,100 steps/s, elapsed 10s, eta 2m03s, "
                              "last eval return 4.12\n")


def test_lines_come_at_most_once_per_interval_plus_the_first_and_the_last():
    out = io.StringIO()
    with ProgressLines("w", 10, "items", interval=3600, file=out) as lines:
        for i in range(1, 11):
            lines.update(i)
    text = out.getvalue().splitlines()
    assert [t.split(",")[0] for t in text] == ["w: 0/10 items (0.0%)", "w: 10/10 items (100.0%)"]


def test_a_heartbeat_reports_while_no_update_comes():
    out = io.StringIO()
    with ProgressLines("study", 4, "trials done", interval=0.05, file=out, heartbeat=True):
        time.sleep(0.4)
    assert len(out.getvalue().splitlines()) >= 4


def test_durations_and_the_interval_variable(monkeypatch):
    assert [duration(s) for s in (0.4, 59, 123, 3725)] == ["0s", "59s", "2m03s", "1h02m"]
    monkeypatch.setenv("LOBGYM_PROGRESS_INTERVAL", "2.5")
    assert interval_seconds() == 2.5
    monkeypatch.setenv("LOBGYM_PROGRESS_INTERVAL", "soon")
    with pytest.raises(ValueError, match=r"LOBGYM_PROGRESS_INTERVAL = 'soon': allowed: a number of seconds >= 0"):
        interval_seconds()


def test_the_study_display_prints_lines_off_a_terminal(capsys, monkeypatch):
    from lobgym.tools.study import _Display

    monkeypatch.setenv("LOBGYM_PROGRESS_INTERVAL", "3600")
    with _Display(total=3, done=1, enabled=True) as display:
        display.update(running=2)
        display.update(done=2, running=1)
        display.update(done=3, failed=0, running=0)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(",")[0] for line in lines] == [
        "study: 1/3 trials done (33.3%)", "study: 2/3 trials done (66.7%)", "study: 3/3 trials done (100.0%)",
        "study: 3/3 trials done (100.0%)"]
    assert "running 1, failed 0" in lines[1] and "eta" in lines[1]
    assert not any("\x1b" in line for line in lines)


# ------------------------------------------------------------------- the commands, stdout piped
def _lobgym(*args: str, **env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LOBGYM_PROGRESS_INTERVAL": "0", "COLUMNS": "200", **env}
    for var in ("FORCE_COLOR", "FORCE_TERMINAL", "TTY_COMPATIBLE"):
        env.pop(var, None)
    proc = run_lobgym(*args, env=env, timeout=1200)
    assert "\x1b" not in proc.stdout and "\r" not in proc.stdout  # no control codes
    return proc


@pytest.mark.slow
def test_train_prints_progress_lines_when_stdout_is_a_pipe(tmp_path):
    preset = tmp_path / "tiny.yaml"
    preset.write_text(yaml.safe_dump({
        "name": "tiny", "kind": "ppo", "n_envs": 4, "policy": {"net_arch": [8]}, "learning_rate": 1e-3,
        "hyperparams": {"n_steps": 16, "batch_size": 16, "n_epochs": 1}, "timesteps": 256,
        "eval": {"every": 128, "episodes": 2, "baselines": ["random"]}, "checkpoint": {"every": 256, "keep": 1}}))
    proc = _lobgym("train", "--env", "cj2015", "--agent", str(preset), "--runs-dir", str(tmp_path / "runs"),
                   "--name", "piped")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("train piped: ")]
    pattern = (rf"train piped: ({NUMBER})/256 timesteps \(\d+\.\d%\), {NUMBER} steps/s, elapsed \w+(, eta \w+)?, "
               r"last eval return (-|\S+), lr \S+")
    assert len(lines) >= 2 and all(re.fullmatch(pattern, line) for line in lines), proc.stdout
    done = [int(re.fullmatch(pattern, line).group(1).replace(",", "")) for line in lines]
    assert done == sorted(done) and done[0] == 0 and done[-1] == 256
    assert "last eval return -," not in lines[-1]  # the evaluations' score by the end


@pytest.mark.slow
def test_validate_prints_progress_lines_and_keeps_json_stdout_clean(tmp_path):
    proc = _lobgym("validate", "cst2010", "--books", "1", "--seconds", "20", "--out", str(tmp_path))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("validate cst2010: ")]
    assert lines[0].startswith("validate cst2010: 0/20 s recorded of 1 books (0.0%)")
    assert lines[-1].startswith("validate cst2010: 20/20 s recorded of 1 books (100.0%)") and len(lines) >= 3
    proc = _lobgym("validate", "cst2010", "--books", "1", "--seconds", "20", "--out", str(tmp_path), "--json")
    assert json.loads(proc.stdout)["seconds"] == 20  # stdout: the facts only
    assert "validate cst2010: 20/20 s recorded" in proc.stderr


@pytest.mark.slow
def test_bench_prints_a_line_per_measurement(tmp_path):
    proc = _lobgym("bench", "--n-envs", "1,30", "--seconds", "0.02", "--no-startup", "--no-book", "--json",
                   str(tmp_path / "b.json"))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("bench: ")]
    assert [line.split(",")[0] for line in lines] == ["bench: 0/3 measurements (0.0%)",
                                                      "bench: 1/3 measurements (33.3%)",
                                                      "bench: 2/3 measurements (66.7%)",
                                                      "bench: 3/3 measurements (100.0%)"]
    assert lines[0].endswith("now single env") and lines[2].endswith("now N = 30") and lines[3].endswith("done")
    data = json.loads((tmp_path / "b.json").read_text())
    assert data["machine"]["cpus"] == os.cpu_count() and "git_revision" in data
