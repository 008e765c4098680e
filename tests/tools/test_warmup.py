"""``lobgym warmup`` fills numba's cache so that the next process's first use compiles nothing."""

from __future__ import annotations

import pytest
from helpers import python_env, run_lobgym

from lobgym.compile_notice import NOTICE
from lobgym.simulation import PARALLEL_MIN_ENVS
from lobgym.tools.warmup import warm

FIRST_USE = ("import gymnasium as gym, lobgym; e = gym.make('lobgym/MarketMaking-v0', config='as2008'); "
             "e.reset(seed=0); e.step(e.action_space.sample())")


def test_warm_reports_what_it_compiled():
    w = warm("as2008", threads=False)
    assert (w.preset, w.kind, w.threaded_seconds, w.threaded_min_envs) == ("as2008", "reduced_form", None,
                                                                           PARALLEL_MIN_ENVS)
    assert w.serial_seconds >= 0


@pytest.mark.slow
def test_after_warmup_a_new_process_compiles_nothing(tmp_path):
    import subprocess
    import sys

    env = {"COLUMNS": "200", "PATH": "/usr/bin:/bin", **python_env(), "NUMBA_CACHE_DIR": str(tmp_path)}
    cold = subprocess.run([sys.executable, "-c", FIRST_USE], capture_output=True, text=True, env=env, check=True)
    assert NOTICE in cold.stderr  # an empty cache compiles (the check below could not fail otherwise)
    for f in tmp_path.rglob("*.nb[ic]"):
        f.unlink()
    out = run_lobgym("warmup", "as2008", "--no-threads", env=env).stdout
    assert "as2008" in out and "reduced_form" in out and str(tmp_path) in out
    warm_run = subprocess.run([sys.executable, "-c", FIRST_USE], capture_output=True, text=True, env=env, check=True)
    assert NOTICE not in warm_run.stderr


def test_warmup_of_an_unknown_preset_says_which_and_what_exists():
    proc = run_lobgym("warmup", "no_such_preset", check=False)
    assert proc.returncode != 0
    assert "no_such_preset" in proc.stderr + proc.stdout and "as2008" in proc.stderr + proc.stdout
